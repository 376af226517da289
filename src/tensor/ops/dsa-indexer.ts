// DSA indexer operations (issue 11): the lightning indexer's logits, the paged indexer-key cache, and the
// DSA top-k selection. Each is an optional Backend capability; the CPU reference is
// src/backend/cpu/dsa-indexer.ts (bit-identical to the host model's src/model/indexer.ts), the CUDA
// kernels are kernels/dsa_indexer.cu and topk_select in kernels/topk.cu.
//
//   indexerLogits(q, k, kScale, w, start, end) → f32 [Tq, Tk]
//     out[i, t] = fround(fround(Σ_h w[i, h]·relu(q[i, h]·k[t])) · kScale[t])   for t in [start[i], end[i])
//     out[i, t] = −inf                                                       elsewhere
//     q f8e4m3 [Tq, H, D], k f8e4m3 [Tk, D], kScale f32 [Tk], w f32 [Tq, H] (the q scale and H^-½·D^-½
//     already folded in, as the model does), start/end i32 [Tq]. −inf outside the range is what the host
//     model writes (its causal mask) and what the reference's `I += mask` gives before its top-k.
//   indexerLogitsPaged(q, cache, w, blockTable, contextLens, maxCtx) → f32 [B·N, maxCtx]
//     q [B, N, H, D] (N = next_n: 1 for decode, 2 with MTP); query j of sequence b sees keys
//     [0, ctx[b] − N + j + 1) read from the paged cache; equal to indexerLogits on the gathered keys.
//   indexerCacheWrite(cache, k, kScale, slots)   in place; slot = block·64 + offset, −1 skips
//     cache u8 [blocks, 64·(D+4)]: per page 64·D e4m3 bytes (token-major) then 64 f32 scales (DeepGEMM).
//   topkSelect(x, k, {start, end, blockTable, rowsPerSeq}) → i32 [R, k]
//     per row the k largest of x[r, start:end] (selectTopkRow's rule: NaN = +inf, ties → lowest column),
//     ascending columns, −1 padded; or paged slots blockTable[⌊r/rowsPerSeq⌋, ⌊p/64⌋]·64 + p mod 64 of
//     p = column − start.
//   causalSelect(end, k, {blockTable, rowsPerSeq}) → i32 [R, k]
//     dense attention's selection: row r takes every causal key, positions 0 .. min(end[r], k) − 1 in
//     order, then −1; or their paged slots as topkSelect emits them. It is topkSelect's result on a row
//     of equal logits (ties → lowest column), without the logits: a dense model has no indexer.
// None is differentiable (the indexer's training signal is its own KL loss, built separately).
import { DsvError } from '../../errors.js';
import type { Backend } from '../backend.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous } from './view.js';
import { noGrad } from '../autograd.js';

// the page geometry is defined once, next to the CPU reference (the lowest layer that needs it)
export { INDEXER_PAGE, indexerPageBytes } from '../../backend/cpu/dsa-indexer.js';
import { indexerPageBytes } from '../../backend/cpu/dsa-indexer.js';

function need<K extends keyof Backend>(b: Backend, op: K): NonNullable<Backend[K]> {
  const f = b[op];
  if (typeof f !== 'function') throw new DsvError(`${op}: the '${b.name}' backend does not implement it`);
  return (f as (...a: unknown[]) => unknown).bind(b) as NonNullable<Backend[K]>;
}

function shapeIs(op: string, name: string, t: Tensor, want: readonly number[]): void {
  if (t.rank !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(`${op}: ${name} must have shape ${fmtShape(want)}, got ${fmtShape(t.shape)}`);
  }
}
function dtypeIs(op: string, name: string, t: Tensor, d: string): void {
  if (t.dtype !== d) throw new DsvError(`${op}: ${name} must be ${d}, got ${t.dtype}`);
}
const i32 = (t: Tensor): Tensor => contiguous(t.dtype === 'i32' ? t : cast(t, 'i32'));

/** Lightning-indexer logits f32 [Tq, Tk] (see the file header). */
export function indexerLogits(q: Tensor, k: Tensor, kScale: Tensor, w: Tensor, start: Tensor, end: Tensor): Tensor {
  const op = 'indexerLogits';
  sameDevice(op, q, k, kScale, w, start, end);
  if (q.rank !== 3) throw new ShapeError(`${op}: q must be [Tq, H, D], got ${fmtShape(q.shape)}`);
  const [Tq, H, D] = q.shape as [number, number, number];
  if (k.rank !== 2 || k.shape[1] !== D) throw new ShapeError(`${op}: k must be [Tk, ${D}], got ${fmtShape(k.shape)}`);
  const Tk = k.shape[0]!;
  dtypeIs(op, 'q', q, 'f8e4m3');
  dtypeIs(op, 'k', k, 'f8e4m3');
  shapeIs(op, 'kScale', kScale, [Tk]);
  shapeIs(op, 'w', w, [Tq, H]);
  shapeIs(op, 'start', start, [Tq]);
  shapeIs(op, 'end', end, [Tq]);
  return noGrad(() => {
    const out = alloc(q.backend, [Tq, Tk], 'f32');
    if (out.numel > 0) {
      need(q.backend, 'indexerLogits')(out, contiguous(q), contiguous(k), contiguous(cast(kScale, 'f32')), contiguous(cast(w, 'f32')), i32(start), i32(end));
    }
    return out;
  });
}

/** Paged lightning-indexer logits f32 [B·N, maxCtx] (see the file header). */
export function indexerLogitsPaged(q: Tensor, cache: Tensor, w: Tensor, blockTable: Tensor, contextLens: Tensor, maxCtx: number): Tensor {
  const op = 'indexerLogitsPaged';
  sameDevice(op, q, cache, w, blockTable, contextLens);
  if (q.rank !== 4) throw new ShapeError(`${op}: q must be [B, N, H, D], got ${fmtShape(q.shape)}`);
  const [B, N, H, D] = q.shape as [number, number, number, number];
  dtypeIs(op, 'q', q, 'f8e4m3');
  dtypeIs(op, 'cache', cache, 'u8');
  if (cache.rank !== 2 || cache.shape[1] !== indexerPageBytes(D)) throw new ShapeError(`${op}: cache must be u8 [blocks, ${indexerPageBytes(D)}], got ${fmtShape(cache.shape)}`);
  shapeIs(op, 'w', w, [B, N, H]);
  if (blockTable.rank !== 2 || blockTable.shape[0] !== B) throw new ShapeError(`${op}: blockTable must be [${B}, maxBlocks], got ${fmtShape(blockTable.shape)}`);
  shapeIs(op, 'contextLens', contextLens, [B]);
  if (!Number.isInteger(maxCtx) || maxCtx < 0) throw new DsvError(`${op}: maxCtx must be a non-negative integer, got ${maxCtx}`);
  return noGrad(() => {
    const out = alloc(q.backend, [B * N, maxCtx], 'f32');
    if (out.numel > 0) need(q.backend, 'indexerLogitsPaged')(out, contiguous(q), contiguous(cache), contiguous(cast(w, 'f32')), i32(blockTable), i32(contextLens));
    return out;
  });
}

/** A zeroed paged indexer-key cache u8 [numBlocks, 64·(D+4)]. */
export function indexerCache(numBlocks: number, D: number, backend: Backend): Tensor {
  const c = alloc(backend, [numBlocks, indexerPageBytes(D)], 'u8');
  if (c.numel > 0) backend.fill(c, 0);
  return c;
}

/** Store keys k f8e4m3 [T, D] with scales f32 [T] at slots i32 [T] (−1 skips) of `cache`, in place. */
export function indexerCacheWrite(cache: Tensor, k: Tensor, kScale: Tensor, slots: Tensor): void {
  const op = 'indexerCacheWrite';
  sameDevice(op, cache, k, kScale, slots);
  dtypeIs(op, 'k', k, 'f8e4m3');
  dtypeIs(op, 'cache', cache, 'u8');
  if (k.rank !== 2) throw new ShapeError(`${op}: k must be [T, D], got ${fmtShape(k.shape)}`);
  const [T, D] = k.shape as [number, number];
  if (cache.rank !== 2 || cache.shape[1] !== indexerPageBytes(D)) throw new ShapeError(`${op}: cache must be u8 [blocks, ${indexerPageBytes(D)}], got ${fmtShape(cache.shape)}`);
  if (!cache.isContiguous()) throw new DsvError(`${op}: the cache must be contiguous (it is written in place)`);
  shapeIs(op, 'kScale', kScale, [T]);
  shapeIs(op, 'slots', slots, [T]);
  if (T === 0) return;
  noGrad(() => need(cache.backend, 'indexerCacheWrite')(cache, contiguous(k), contiguous(cast(kScale, 'f32')), i32(slots)));
}

export interface TopkSelectOptions {
  /** i32 [R]: first column of each row's range (default 0) */
  start?: Tensor;
  /** i32 [R]: end (exclusive) of each row's range (default N) */
  end?: Tensor;
  /** i32 [S, maxBlocks]: emit paged-cache slots instead of columns */
  blockTable?: Tensor;
  /** rows per sequence of the block table (default 1; next_n for decode logits [B·next_n, ·]) */
  rowsPerSeq?: number;
}

/** Dense attention's selection i32 [R, k]: every causal key of each row (see the file header). */
export function causalSelect(end: Tensor, k: number, opts: Omit<TopkSelectOptions, 'start' | 'end'> = {}): Tensor {
  const op = 'causalSelect';
  if (end.rank !== 1) throw new ShapeError(`${op}: end must be [R], got ${fmtShape(end.shape)}`);
  const R = end.shape[0]!;
  if (!Number.isInteger(k) || k < 0) throw new DsvError(`${op}: k must be a non-negative integer, got ${k}`);
  const rowsPerSeq = opts.rowsPerSeq ?? 1;
  if (!Number.isInteger(rowsPerSeq) || rowsPerSeq < 1) throw new DsvError(`${op}: rowsPerSeq must be a positive integer, got ${rowsPerSeq}`);
  sameDevice(op, ...[end, opts.blockTable].filter((t): t is Tensor => t !== undefined));
  const bt = opts.blockTable;
  if (bt && (bt.rank !== 2 || bt.shape[0]! * rowsPerSeq < R)) throw new ShapeError(`${op}: blockTable must be [≥ ${Math.ceil(R / rowsPerSeq)}, maxBlocks] for ${R} rows of ${rowsPerSeq} per sequence, got ${fmtShape(bt.shape)}`);
  return noGrad(() => {
    const out = alloc(end.backend, [R, k], 'i32');
    if (out.numel > 0) need(end.backend, 'causalSelect')(out, i32(end), bt ? i32(bt) : null, rowsPerSeq);
    return out;
  });
}

/** DSA top-k selection i32 [R, k] (see the file header). */
export function topkSelect(x: Tensor, k: number, opts: TopkSelectOptions = {}): Tensor {
  const op = 'topkSelect';
  if (x.rank !== 2) throw new ShapeError(`${op}: x must be [R, N], got ${fmtShape(x.shape)}`);
  const [R] = x.shape as [number, number];
  if (!Number.isInteger(k) || k < 0) throw new DsvError(`${op}: k must be a non-negative integer, got ${k}`);
  const rowsPerSeq = opts.rowsPerSeq ?? 1;
  if (!Number.isInteger(rowsPerSeq) || rowsPerSeq < 1) throw new DsvError(`${op}: rowsPerSeq must be a positive integer, got ${rowsPerSeq}`);
  const ts = [x, opts.start, opts.end, opts.blockTable].filter((t): t is Tensor => t !== undefined);
  sameDevice(op, ...ts);
  if (opts.start) shapeIs(op, 'start', opts.start, [R]);
  if (opts.end) shapeIs(op, 'end', opts.end, [R]);
  if (opts.blockTable) {
    const bt = opts.blockTable;
    if (bt.rank !== 2 || bt.shape[0]! * rowsPerSeq < R) throw new ShapeError(`${op}: blockTable must be [≥ ${Math.ceil(R / rowsPerSeq)}, maxBlocks] for ${R} rows of ${rowsPerSeq} per sequence, got ${fmtShape(bt.shape)}`);
  }
  return noGrad(() => {
    const out = alloc(x.backend, [R, k], 'i32');
    if (out.numel > 0) {
      need(x.backend, 'topkSelect')(out, contiguous(x.dtype === 'f32' ? x : cast(x, 'f32')), k,
        opts.start ? i32(opts.start) : null, opts.end ? i32(opts.end) : null, opts.blockTable ? i32(opts.blockTable) : null, rowsPerSeq);
    }
    return out;
  });
}
