// Indexing and joining: embedding, index_select/index_add, gather/scatter_add (torch semantics),
// cat/split/stack. Index tensors are integer (i64 or i32); out-of-range indices throw a RangeError in
// the kernel. Ops whose kernels write in place (index_add, scatter_add) are exposed out of place here:
// they return x + (the scattered values), so x itself is never modified and autograd stays simple.
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { isInt } from '../dtype.js';
import { ShapeError, Tensor, fmtShape, normAxis } from '../tensor.js';
import { add } from './elementwise.js';
import { alloc, promote, sameDevice } from './util.js';
import { cast, contiguous, narrow, reshape, unsqueeze } from './view.js';

function requireIndex(op: string, idx: Tensor): void {
  if (!isInt(idx.dtype) || idx.dtype === 'bool') {
    throw new DsvError(`${op}: index tensor must be i64 or i32, got ${idx.dtype} of shape ${fmtShape(idx.shape)}`);
  }
}

function zerosLike(shape: readonly number[], like: Tensor): Tensor {
  const z = alloc(like.backend, shape, like.dtype);
  like.backend.fill(z, 0);
  return z;
}

/** A contiguous copy of x (never x itself: the caller writes into it). */
function cloneRaw(x: Tensor): Tensor {
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.copy(out, x);
  return out;
}

/** The leading corner of x with shape `shape` (a view; no autograd). */
function corner(x: Tensor, shape: readonly number[]): Tensor {
  return x._view(shape, x.strides, x.offset);
}

/** t placed at the origin of a zero tensor of `shape` (t's shape ≤ shape in every dim). */
function padTo(t: Tensor, shape: readonly number[]): Tensor {
  if (t.shape.every((d, i) => d === shape[i])) return t;
  const z = zerosLike(shape, t);
  t.backend.copy(corner(z, t.shape), t);
  return z;
}

// ---- index_select / index_add / embedding --------------------------------------------------------
/** x.index_select(axis, idx): idx is 1-D (or a scalar) of positions along `axis`. */
export function indexSelect(x: Tensor, axis: number, idx: Tensor): Tensor {
  requireIndex('indexSelect', idx);
  sameDevice('indexSelect', x, idx);
  if (idx.rank > 1) throw new ShapeError(`indexSelect: index must be 1-D, got ${fmtShape(idx.shape)} for input ${fmtShape(x.shape)}`);
  const a = normAxis(axis, x.rank, 'indexSelect');
  const id = noGrad(() => contiguous(reshape(idx, [idx.numel])));
  const shape = [...x.shape];
  shape[a] = id.numel;
  const out = alloc(x.backend, shape, x.dtype);
  if (out.numel > 0) x.backend.indexSelect(out, noGrad(() => contiguous(x)), a, id);
  return record(out, 'indexSelect', [x], (g) => [indexAdd(zerosLike(x.shape, g), a, id, g)]);
}

/** x.index_add(axis, idx, src) out of place: out = x, then out[.., idx[j], ..] += src[.., j, ..]. */
export function indexAdd(x: Tensor, axis: number, idx: Tensor, src: Tensor): Tensor {
  requireIndex('indexAdd', idx);
  sameDevice('indexAdd', x, idx, src);
  if (idx.rank > 1) throw new ShapeError(`indexAdd: index must be 1-D, got ${fmtShape(idx.shape)}`);
  const a = normAxis(axis, x.rank, 'indexAdd');
  const want = [...x.shape];
  want[a] = idx.numel;
  if (src.rank !== x.rank || src.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(`indexAdd: source ${fmtShape(src.shape)} does not fit input ${fmtShape(x.shape)} with ${idx.numel} indices along dim ${a} (expected ${fmtShape(want)})`);
  }
  const id = noGrad(() => contiguous(reshape(idx, [idx.numel])));
  const out = cloneRaw(x);
  if (src.numel > 0) x.backend.indexAdd(out, a, id, noGrad(() => contiguous(src)));
  return record(out, 'indexAdd', [x, src], (g) => [g, src.requiresGrad ? cast(indexSelect(g, a, id), src.dtype) : null]);
}

/** Rows of weight [V, D] picked by integer ids of any shape → [...ids.shape, D]. */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (weight.rank !== 2) throw new ShapeError(`embedding: weight must be [V, D], got ${fmtShape(weight.shape)}`);
  requireIndex('embedding', ids);
  const flat = noGrad(() => reshape(ids, [ids.numel]));
  return reshape(indexSelect(weight, 0, flat), [...ids.shape, weight.shape[1]!]);
}

// ---- gather / scatter_add ------------------------------------------------------------------------
function checkGatherShapes(op: string, x: Tensor, a: number, idx: Tensor, src?: Tensor): void {
  if (idx.rank !== x.rank) throw new ShapeError(`${op}: index ${fmtShape(idx.shape)} and input ${fmtShape(x.shape)} must have the same rank`);
  for (let d = 0; d < x.rank; d++) {
    if (d !== a && idx.shape[d]! > x.shape[d]!) {
      throw new ShapeError(`${op}: index ${fmtShape(idx.shape)} is larger than input ${fmtShape(x.shape)} in dim ${d}`);
    }
  }
  if (src) {
    if (src.rank !== x.rank || idx.shape.some((d, i) => d > src.shape[i]!)) {
      throw new ShapeError(`${op}: index ${fmtShape(idx.shape)} is larger than source ${fmtShape(src.shape)} (input ${fmtShape(x.shape)})`);
    }
  }
}

/** torch.gather: out[i][j][k] = x[i][idx[i][j][k]][k] for axis 1 (idx may be smaller than x in other dims). */
export function gather(x: Tensor, axis: number, idx: Tensor): Tensor {
  requireIndex('gather', idx);
  sameDevice('gather', x, idx);
  const a = normAxis(axis, x.rank, 'gather');
  checkGatherShapes('gather', x, a, idx);
  const out = alloc(x.backend, idx.shape, x.dtype);
  if (out.numel > 0) {
    // The kernel wants x and idx to agree in every dim but `axis`: cut x down to idx's extent.
    const shp = [...idx.shape];
    shp[a] = x.shape[a]!;
    const xs = noGrad(() => contiguous(corner(x, shp)));
    x.backend.gather(out, xs, a, noGrad(() => contiguous(idx)));
  }
  return record(out, 'gather', [x], (g) => [scatterAdd(zerosLike(x.shape, g), a, idx, g)]);
}

/**
 * torch.scatter_add out of place: out = x, then out[i][idx[i][j][k]][k] += src[i][j][k] (axis 1);
 * only the leading idx.shape corner of src is used.
 */
export function scatterAdd(x: Tensor, axis: number, idx: Tensor, src: Tensor): Tensor {
  requireIndex('scatterAdd', idx);
  sameDevice('scatterAdd', x, idx, src);
  const a = normAxis(axis, x.rank, 'scatterAdd');
  checkGatherShapes('scatterAdd', x, a, idx, src);
  const ic = noGrad(() => contiguous(idx));
  let out: Tensor;
  if (idx.numel === 0) out = cloneRaw(x);
  else {
    const s = noGrad(() => contiguous(corner(src, idx.shape)));
    const shp = [...idx.shape];
    shp[a] = x.shape[a]!;
    if (shp.every((d, i) => d === x.shape[i])) {
      out = cloneRaw(x);
      x.backend.scatterAdd(out, a, ic, s);
    } else {
      // Scatter into a zero block the kernel's shape rules accept, then add it onto x's corner.
      const part = zerosLike(shp, x);
      x.backend.scatterAdd(part, a, ic, s);
      out = cloneRaw(x);
      const sumPart = noGrad(() => add(corner(x, shp), part));
      x.backend.copy(corner(out, shp), sumPart);
    }
  }
  return record(out, 'scatterAdd', [x, src], (g) => [
    g,
    src.requiresGrad ? cast(padTo(gather(g, a, ic), src.shape), src.dtype) : null,
  ]);
}

// ---- cat / split / stack -------------------------------------------------------------------------
/** Concatenate along `axis`; dtypes promote as in elementwise ops. */
export function cat(ts: readonly Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new DsvError('cat: expected at least one tensor');
  const first = ts[0]!;
  sameDevice('cat', ...ts);
  const a = normAxis(axis, first.rank, 'cat');
  let total = 0;
  let dtype = first.dtype;
  for (const t of ts) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new ShapeError(`cat: shapes ${fmtShape(first.shape)} and ${fmtShape(t.shape)} differ outside dim ${a}`);
    }
    total += t.shape[a]!;
    dtype = promote(dtype, t.dtype);
  }
  const shape = [...first.shape];
  shape[a] = total;
  const out = alloc(first.backend, shape, dtype);
  const starts: number[] = [];
  let at = 0;
  for (const t of ts) {
    starts.push(at);
    if (t.numel > 0) out.backend.copy(out._view(t.shape, out.strides, out.offset + at * out.strides[a]!), t);
    at += t.shape[a]!;
  }
  return record(out, 'cat', ts, (g) =>
    ts.map((t, i) => (t.requiresGrad ? cast(contiguous(narrow(g, a, starts[i]!, t.shape[a]!)), t.dtype) : null)));
}

/**
 * Split along `axis` into views: a number gives chunks of that size (the last may be smaller, as
 * torch.split); an array gives the sizes, which must add up to the dim.
 */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normAxis(axis, x.rank, 'split');
  const n = x.shape[a]!;
  let list: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes <= 0) throw new DsvError(`split: chunk size must be a positive integer, got ${sizes}`);
    list = [];
    for (let s = 0; s < n; s += sizes) list.push(Math.min(sizes, n - s));
    if (n === 0) list.push(0);
  } else {
    list = [...sizes];
    const sum = list.reduce((p, q) => p + q, 0);
    if (list.some((s) => !Number.isInteger(s) || s < 0) || sum !== n) {
      throw new ShapeError(`split: sizes [${list.join(', ')}] do not add up to dim ${a} of shape ${fmtShape(x.shape)}`);
    }
  }
  const out: Tensor[] = [];
  let at = 0;
  for (const s of list) {
    out.push(narrow(x, a, at, s));
    at += s;
  }
  return out;
}

/** Stack equally shaped tensors along a new dim `axis`. */
export function stack(ts: readonly Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new DsvError('stack: expected at least one tensor');
  const first = ts[0]!;
  for (const t of ts) {
    if (t.rank !== first.rank || t.shape.some((d, i) => d !== first.shape[i])) {
      throw new ShapeError(`stack: shapes ${fmtShape(first.shape)} and ${fmtShape(t.shape)} differ`);
    }
  }
  const a = normAxis(axis, first.rank + 1, 'stack');
  return cat(ts.map((t) => unsqueeze(t, a)), a);
}
