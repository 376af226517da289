// Top-k selection along one dim, and max/argmax built on it.
//
// Tie rule (every backend): among equal values the LOWEST index comes first, so results are
// deterministic and identical across devices (torch leaves tie order unspecified). NaN ranks above
// every number (as torch.topk/argmax treat it); among NaNs the lowest index again comes first.
// With largest = false the order is ascending, ties still by lowest index (NaN is still "largest",
// so it comes last).
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { Tensor, fmtShape, normAxis } from '../tensor.js';
import { scatterAdd } from './indexing.js';
import { alloc } from './util.js';
import { contiguous, reshape, squeeze, transpose } from './view.js';

export interface TopkOptions {
  /** dim to select along (default −1) */
  axis?: number;
  /** largest values first (default true) or smallest first */
  largest?: boolean;
}

/** The k largest (or smallest) entries along `axis`, sorted, with their i64 indices. */
export function topk(x: Tensor, k: number, opts: TopkOptions = {}): { values: Tensor; indices: Tensor } {
  if (x.rank === 0) throw new DsvError(`topk: input must have rank ≥ 1, got shape ${fmtShape(x.shape)}`);
  const axis = normAxis(opts.axis ?? -1, x.rank, 'topk');
  const n = x.shape[axis]!;
  if (!Number.isInteger(k) || k < 0 || k > n) {
    throw new DsvError(`topk: k = ${k} must be an integer in [0, ${n}] for dim ${axis} of shape ${fmtShape(x.shape)}`);
  }
  const largest = opts.largest ?? true;
  const last = x.rank - 1;
  const { values, indices } = noGrad(() => {
    const xl = contiguous(axis === last ? x : transpose(x, axis, last));
    const shp = [...xl.shape.slice(0, -1), k];
    const v = alloc(x.backend, shp, x.dtype);
    const i = alloc(x.backend, shp, 'i64');
    if (v.numel > 0) x.backend.topk(v, i, xl, k, largest);
    return axis === last ? { values: v, indices: i } : { values: transpose(v, axis, last), indices: transpose(i, axis, last) };
  });
  const vals = record(values, 'topk', [x], (g) => [scatterAdd(zerosOf(x, g), axis, indices, g)]);
  return { values: vals, indices };
}

function zerosOf(x: Tensor, g: Tensor): Tensor {
  const z = alloc(g.backend, x.shape, g.dtype);
  g.backend.fill(z, 0);
  return z;
}

/** max along `axis` with the index of the first maximum; the gradient flows to that index only. */
export function maxWithIndices(x: Tensor, axis: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const a = normAxis(axis, x.rank, 'maxWithIndices');
  if (x.shape[a] === 0) throw new DsvError(`maxWithIndices: cannot reduce over empty dim ${axis} of shape ${fmtShape(x.shape)}`);
  const r = topk(x, 1, { axis: a });
  return keepdim ? r : { values: squeeze(r.values, a), indices: squeeze(r.indices, a) };
}

/** min along `axis` with the index of the first minimum. */
export function minWithIndices(x: Tensor, axis: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const a = normAxis(axis, x.rank, 'minWithIndices');
  if (x.shape[a] === 0) throw new DsvError(`minWithIndices: cannot reduce over empty dim ${axis} of shape ${fmtShape(x.shape)}`);
  const r = topk(x, 1, { axis: a, largest: false });
  return keepdim ? r : { values: squeeze(r.values, a), indices: squeeze(r.indices, a) };
}

/** Index (i64) of the first maximum along `axis`; over all elements (flattened) when axis is omitted. */
export function argmax(x: Tensor, axis?: number, keepdim = false): Tensor {
  if (axis === undefined) return maxWithIndices(noGrad(() => reshape(x, [-1])), 0).indices;
  return maxWithIndices(x, axis, keepdim).indices;
}

/** Index (i64) of the first minimum along `axis`; over all elements (flattened) when axis is omitted. */
export function argmin(x: Tensor, axis?: number, keepdim = false): Tensor {
  if (axis === undefined) return minWithIndices(noGrad(() => reshape(x, [-1])), 0).indices;
  return minWithIndices(x, axis, keepdim).indices;
}
