// Reductions over dims (sum, mean, amax, amin, max with indices) and sum-to-shape for broadcasting.
import { record } from '../autograd.js';
import type { ReduceOp } from '../backend.js';
import { Tensor, normAxis } from '../tensor.js';
import { div, eq, mul, muls } from './elementwise.js';
import { sameShape } from './shape.js';
import { alloc } from './util.js';
import { _setSumTo, cast, expand, reshape } from './view.js';

export type Dims = number | readonly number[] | undefined;

function normDims(t: Tensor, dims: Dims, op: string): number[] {
  if (dims === undefined) return [...Array(t.rank).keys()];
  const list = typeof dims === 'number' ? [dims] : [...dims];
  const out = [...new Set(list.map((d) => normAxis(d, t.rank, op)))].sort((a, b) => a - b);
  return out;
}

function keptShape(t: Tensor, axes: readonly number[], keepdim: boolean): number[] {
  const s: number[] = [];
  t.shape.forEach((d, i) => {
    if (!axes.includes(i)) s.push(d);
    else if (keepdim) s.push(1);
  });
  return s;
}

function rawReduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepdim: boolean): Tensor {
  const out = alloc(x.backend, keptShape(x, axes, keepdim), x.dtype === 'bool' || x.dtype === 'u8' ? 'i64' : x.dtype);
  if (axes.length === 0) {
    x.backend.copy(out, x);
    return out;
  }
  if (op !== 'sum' && axes.some((a) => x.shape[a] === 0)) {
    throw new RangeError(`${op === 'max' ? 'amax' : 'amin'}: cannot reduce over an empty dim (shape [${x.shape.join(', ')}])`);
  }
  x.backend.reduce(op, out, x, axes);
  return out;
}

/** Σ over dims (all when omitted). */
export function sum(x: Tensor, dims?: Dims, keepdim = false): Tensor {
  const axes = normDims(x, dims, 'sum');
  const out = rawReduce('sum', x, axes, keepdim);
  return record(out, 'sum', [x], (g) => [expand(reshape(g, keptShape(x, axes, true)), x.shape)]);
}

export function mean(x: Tensor, dims?: Dims, keepdim = false): Tensor {
  const axes = normDims(x, dims, 'mean');
  let n = 1;
  for (const a of axes) n *= x.shape[a]!;
  return muls(sum(x, axes, keepdim), 1 / n);
}

function extremum(op: 'max' | 'min', x: Tensor, dims: Dims, keepdim: boolean): Tensor {
  const name = op === 'max' ? 'amax' : 'amin';
  const axes = normDims(x, dims, name);
  const out = rawReduce(op, x, axes, keepdim);
  // Gradient splits evenly among tied extrema (torch's amax/amin rule).
  return record(out, name, [x], (g) => {
    const shp = keptShape(x, axes, true);
    const hit = cast(eq(x, expand(reshape(out, shp), x.shape)), g.dtype);
    const count = sum(hit, axes, true);
    return [mul(hit, expand(reshape(div(reshape(g, shp), count), shp), x.shape))];
  });
}
export const amax = (x: Tensor, dims?: Dims, keepdim = false): Tensor => extremum('max', x, dims, keepdim);
export const amin = (x: Tensor, dims?: Dims, keepdim = false): Tensor => extremum('min', x, dims, keepdim);

/** Sum a gradient of a broadcast result back to `shape`. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(g, axes, true), shape);
}
_setSumTo(sumToShape);
