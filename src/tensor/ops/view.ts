// View ops: no data is copied (except contiguous() and cast()); gradients map back through the
// inverse view.
import { DsvError } from '../../errors.js';
import { record } from '../autograd.js';
import type { DType } from '../dtype.js';
import { ShapeError, Tensor, contiguousStrides, fmtShape, normAxis, numelOf } from '../tensor.js';

/** A copy with the same shape in row-major order (returns t itself when already contiguous). */
export function contiguous(t: Tensor): Tensor {
  if (t.isContiguous()) return t;
  const out = new Tensor(t.backend.alloc(t.dtype, t.numel), [...t.shape]);
  t.backend.copy(out, t);
  return record(out, 'contiguous', [t], (g) => [g]);
}

/** Cast to another dtype (rounding by the target's rules); the gradient casts back. */
export function cast(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const out = new Tensor(t.backend.alloc(dtype, t.numel), [...t.shape]);
  t.backend.copy(out, t);
  return record(out, 'cast', [t], (g) => [cast(g, t.dtype)]);
}

/**
 * Strides for viewing t with a new shape without copying, or null when impossible. Old dims are
 * grouped into runs that are contiguous relative to each other ("chunks"); each chunk must be covered
 * exactly by a run of new dims, which then get strides counted from the chunk's innermost stride.
 */
function viewStrides(t: Tensor, shape: readonly number[]): number[] | null {
  if (t.isContiguous() || t.numel === 0) return contiguousStrides(shape);
  const os = t.shape;
  const ost = t.strides;
  const out = new Array<number>(shape.length).fill(1);
  let vd = shape.length - 1;
  let base = ost[os.length - 1] ?? 1;
  let tNumel = 1;
  let vNumel = 1;
  for (let td = os.length - 1; td >= 0; td--) {
    tNumel *= os[td]!;
    const chunkEnds = td === 0 || (os[td - 1] !== 1 && ost[td - 1] !== tNumel * base);
    if (!chunkEnds) continue;
    while (vd >= 0 && (vNumel < tNumel || shape[vd] === 1)) {
      out[vd] = vNumel * base;
      vNumel *= shape[vd]!;
      vd--;
    }
    if (vNumel !== tNumel) return null;
    if (td > 0) {
      base = ost[td - 1]!;
      tNumel = 1;
      vNumel = 1;
    }
  }
  return vd === -1 ? out : null;
}

/** reshape: a view when the layout allows, else a contiguous copy. One dim may be -1. */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numelOf(s.filter((_, i) => i !== neg));
    if (rest === 0 || t.numel % rest !== 0) throw new ShapeError(`reshape: cannot infer -1 to view ${fmtShape(t.shape)} as ${fmtShape(shape)}`);
    s[neg] = t.numel / rest;
  }
  if (numelOf(s) !== t.numel || s.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(`reshape: cannot view ${fmtShape(t.shape)} (${t.numel} elements) as ${fmtShape(shape)}`);
  }
  const st = viewStrides(t, s);
  const src = st ? t : contiguous(t);
  const out = src._view(s, st ?? contiguousStrides(s), src.offset);
  return record(out, 'reshape', [src], (g) => [reshape(g, src.shape)]);
}

export function flatten(t: Tensor, start = 0, end = -1): Tensor {
  if (t.rank === 0) return reshape(t, [1]);
  const a = normAxis(start, t.rank, 'flatten');
  const b = normAxis(end, t.rank, 'flatten');
  const shape = [...t.shape.slice(0, a), numelOf(t.shape.slice(a, b + 1)), ...t.shape.slice(b + 1)];
  return reshape(t, shape);
}

export function permute(t: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== t.rank) throw new ShapeError(`permute: ${dims.length} dims given for a tensor of rank ${t.rank}`);
  const d = dims.map((x) => normAxis(x, t.rank, 'permute'));
  if (new Set(d).size !== d.length) throw new ShapeError(`permute: repeated dim in [${dims.join(', ')}]`);
  const out = t._view(d.map((i) => t.shape[i]!), d.map((i) => t.strides[i]!), t.offset);
  const inv = new Array<number>(d.length);
  d.forEach((p, i) => (inv[p] = i));
  return record(out, 'permute', [t], (g) => [permute(g, inv)]);
}

export function transpose(t: Tensor, a = -2, b = -1): Tensor {
  const p = [...Array(t.rank).keys()];
  const x = normAxis(a, t.rank, 'transpose');
  const y = normAxis(b, t.rank, 'transpose');
  p[x] = y;
  p[y] = x;
  return permute(t, p);
}

/** Elements [start, start+length) of `axis` (a view). */
export function narrow(t: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis(axis, t.rank, 'narrow');
  const n = t.shape[a]!;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > n) {
    throw new ShapeError(`narrow: [${start}, ${start + length}) out of range for dim ${axis} of size ${n} (shape ${fmtShape(t.shape)})`);
  }
  const shape = [...t.shape];
  shape[a] = length;
  const out = t._view(shape, t.strides, t.offset + start * t.strides[a]!);
  return record(out, 'narrow', [t], (g) => [padNarrowGrad(g, t, a, start)]);
}

function padNarrowGrad(g: Tensor, t: Tensor, axis: number, start: number): Tensor {
  const z = new Tensor(g.backend.alloc(g.dtype, t.numel), [...t.shape]);
  g.backend.fill(z, 0);
  const dst = z._view(g.shape, z.strides, start * z.strides[axis]!);
  g.backend.copy(dst, g);
  return z;
}

/** Index `i` of `axis`, removing that dim (a view). */
export function select(t: Tensor, axis: number, i: number): Tensor {
  const a = normAxis(axis, t.rank, 'select');
  const idx = i < 0 ? i + t.shape[a]! : i;
  return squeeze(narrow(t, a, idx, 1), a);
}

export function unsqueeze(t: Tensor, axis: number): Tensor {
  const a = normAxis(axis, t.rank + 1, 'unsqueeze');
  const shape = [...t.shape];
  const strides = [...t.strides];
  shape.splice(a, 0, 1);
  strides.splice(a, 0, a < t.rank ? t.strides[a]! * t.shape[a]! : 1);
  const out = t._view(shape, strides, t.offset);
  return record(out, 'unsqueeze', [t], (g) => [reshape(g, t.shape)]);
}

export function squeeze(t: Tensor, axis: number): Tensor {
  const a = normAxis(axis, t.rank, 'squeeze');
  if (t.shape[a] !== 1) throw new ShapeError(`squeeze: dim ${axis} has size ${t.shape[a]}, expected 1 (shape ${fmtShape(t.shape)})`);
  const shape = t.shape.filter((_, i) => i !== a);
  const strides = t.strides.filter((_, i) => i !== a);
  const out = t._view(shape, strides, t.offset);
  return record(out, 'squeeze', [t], (g) => [reshape(g, t.shape)]);
}

/** Broadcast to `shape` by stride-0 dims (NumPy rules; -1 keeps a dim). */
export function expand(t: Tensor, shape: readonly number[]): Tensor {
  if (shape.length < t.rank) throw new ShapeError(`expand: cannot expand ${fmtShape(t.shape)} to fewer dims ${fmtShape(shape)}`);
  const lead = shape.length - t.rank;
  const outShape: number[] = [];
  const strides: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    const src = i - lead;
    const want = shape[i] === -1 && src >= 0 ? t.shape[src]! : shape[i]!;
    if (src < 0) {
      outShape.push(want);
      strides.push(0);
    } else if (t.shape[src] === want) {
      outShape.push(want);
      strides.push(t.strides[src]!);
    } else if (t.shape[src] === 1) {
      outShape.push(want);
      strides.push(0);
    } else {
      throw new ShapeError(`expand: cannot expand ${fmtShape(t.shape)} to ${fmtShape(shape)} (dim ${i}: ${t.shape[src]} vs ${want})`);
    }
  }
  if (outShape.length === t.rank && outShape.every((d, i) => d === t.shape[i])) return t;
  const out = t._view(outShape, strides, t.offset);
  return record(out, 'expand', [t], (g) => [sumTo(g, t.shape)]);
}

let sumToImpl: ((g: Tensor, shape: readonly number[]) => Tensor) | null = null;
/** reduce.ts registers sum-to-shape here (view.ts must not import reduce.ts: reduce imports view). */
export function _setSumTo(fn: (g: Tensor, shape: readonly number[]) => Tensor): void {
  sumToImpl = fn;
}
/** Sum a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (!sumToImpl) throw new DsvError('internal: sumTo used before ops/reduce.js was loaded');
  return sumToImpl(g, shape);
}
