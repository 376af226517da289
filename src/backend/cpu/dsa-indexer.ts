// CPU references of the DSA indexer operations (issue 11): lightning-indexer logits (dense and paged),
// the paged indexer-key cache writer, and the DSA top-k selection. They are the numerical oracle the
// CUDA kernels are tested against, and they reproduce today's host model (src/model/indexer.ts) bit for bit.
//
// Logits, exactly as the model's former host loop computed them (indexScores, now the test oracle in
// test/oracles/indexer.ts):
//   l[q, h, t]  = the f32 GEMM  Q[q·H + h, :] · K[t, :]  of the decoded e4m3 values, computed by this
//                 backend's sgemm on the SAME problems the host issues: queries in chunks of
//                 max(1, ⌊2^22 / Tk⌋) (selectRows), each chunk in blocks of max(1, ⌊2^22 / (H·Tk)⌋) rows
//                 (indexScores), each block one sgemm(Q_block [n·H, D], K[lo : hi]ᵀ) where [lo, hi) spans
//                 the block's key ranges (the host's narrow(K, 0, 0, tv) when every range starts at 0).
//                 The dot product's own order is the GEMM path's (OpenBLAS or the TypeScript kernel);
//                 issuing identical calls makes it identical to the host's on whichever path is active.
//   acc         = Σ_h (l > 0 ? l · w[q, h] : 0), in double (JS numbers), h = 0 … H−1 in order
//   out[q, t]   = fround(fround(acc) · scale[t])                     for t in [start[q], end[q])
//   out[q, t]   = −inf                                                elsewhere (the host's causal mask and
//                 the reference's `I += mask`; DeepGEMM's fp8_mqa_logits with clean logits)
// Ranges are clamped to [0, Tk); start ≥ end is an empty range (a row of −inf).
//
// Paged indexer-key cache (DeepGEMM's layout): pages of PAGE = 64 tokens, each page
//   [64 × D e4m3 bytes, token-major][64 × f32 scale, little-endian]   = 64·(D + 4) bytes (8448 for D = 128)
// stored as u8 [numBlocks, 64·(D+4)]. Token slot = block·64 + offset. The paged logits of sequence b read
// its key at position p from block blockTable[b, ⌊p/64⌋], offset p mod 64.
//
// Top-k selection: per row, among the columns [start, end), exactly selectTopkRow (src/backend/cpu/topk-select.ts):
// when valid = end − start ≤ k all valid columns, else the k largest (NaN counts as +inf, −0 equals +0),
// ties at the threshold to the lowest columns; output ascending, −1 padded to k. Entries are column indices,
// or paged-cache slots: position p = column − start of row r (sequence ⌊r / rowsPerSeq⌋) maps to
// blockTable[seq, ⌊p/64⌋]·64 + p mod 64, and to −1 when that page lies beyond the table or is negative.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import { e4m3BitsToF32 } from '../../tensor/dtype.js';
import { sgemm } from './gemm.js';
import { dataOf, isContiguousView, rawContiguous, readF, readIndex } from './strided.js';
import { selectTopkRow } from './topk-select.js';
import { scratchF32 } from './scratch.js';
import { parallelRows } from './pool.js';

/** Tokens per page of the paged indexer-key cache (DeepGEMM's block size). */
export const INDEXER_PAGE = 64;
/** Bytes of one page for head dim D: 64 tokens × (D e4m3 bytes + one f32 scale). */
export const indexerPageBytes = (D: number): number => INDEXER_PAGE * (D + 4);

/** The host's score block: a [rows, T] logits block stays a few MiB (indexer.ts SCORE_BLOCK_ELEMS). */
const SCORE_BLOCK_ELEMS = 1 << 22;

let lut: Float32Array | null = null;
function e4m3Lut(): Float32Array {
  if (!lut) {
    lut = new Float32Array(256);
    for (let i = 0; i < 256; i++) lut[i] = e4m3BitsToF32(i);
  }
  return lut;
}

function decodeE4m3(bits: Uint8Array): Float32Array {
  const l = e4m3Lut();
  const o = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) o[i] = l[bits[i]!]!;
  return o;
}

function ints(v: View): Int32Array | Float64Array {
  return readIndex(v);
}

/**
 * The logits of Tq queries (decoded q [Tq, H, D], weights w [Tq, H]) against keys [Tk, D] with scales ks,
 * query i seeing [start[i], end[i]) (already clamped), written to out[outOff + i·outStride + t] for
 * t < Tk (−inf outside the range); the exact operation order of the host's selectRows/indexScores.
 */
export function logitsCore(
  q: Float32Array, w: Float32Array, keys: Float32Array, ks: Float32Array, Tq: number, H: number, D: number, Tk: number,
  start: ArrayLike<number>, end: ArrayLike<number>, out: Float32Array, outOff: number, outStride: number,
): void {
  for (let i = 0; i < Tq; i++) out.fill(-Infinity, outOff + i * outStride, outOff + i * outStride + Tk);
  if (Tk === 0) return;
  const chunk = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, Tk))); // selectRows
  const block = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, H * Tk))); // indexScores
  let C: Float32Array = new Float32Array(0);
  for (let c0 = 0; c0 < Tq; c0 += chunk) {
    const cn = Math.min(chunk, Tq - c0);
    for (let b0 = 0; b0 < cn; b0 += block) {
      const i0 = c0 + b0;
      const n = Math.min(block, cn - b0);
      let lo = Tk;
      let hi = 0;
      for (let i = i0; i < i0 + n; i++) {
        if (start[i]! < end[i]!) {
          lo = Math.min(lo, start[i]!);
          hi = Math.max(hi, end[i]!);
        }
      }
      if (lo >= hi) continue;
      const N = hi - lo;
      if (C.length < n * H * N) C = scratchF32('indexer.scores', n * H * N);
      sgemm(false, true, n * H, N, D, 1, q, i0 * H * D, D, keys, lo * D, D, 0, C, 0, N);
      // the block's rows of out only: a split stages (copies) what it is given when out is not shared
      const rows = out.subarray(outOff + i0 * outStride, outOff + (i0 + n) * outStride);
      const args = { C, w, ks, start, end, out: rows, outStride, i0, H, N, lo };
      parallelRows('indexerHeadSumRows', indexerHeadSumRows, args, n, 1.5 * H * N, ['out']);
    }
  }
}

/**
 * Rows [r0, r1) of a score block's head sum (logitsCore): block row i is query i0 + i, whose scores
 * C[(i·H + h)·N + t − lo] it reduces over its range [start, end) into out[i·outStride + t] (out: the
 * block's rows).
 */
export function indexerHeadSumRows(
  a: { C: Float32Array; w: Float32Array; ks: Float32Array; start: ArrayLike<number>; end: ArrayLike<number>; out: Float32Array; outStride: number; i0: number; H: number; N: number; lo: number },
  r0: number, r1: number,
): void {
  const { C, w, ks, start, end, out, H, N, lo } = a;
  const Ci = new Int32Array(C.buffer, C.byteOffset, C.length); // C's bits
  for (let i = r0; i < r1; i++) {
    const r = a.i0 + i;
    const row = i * a.outStride;
    for (let t = start[r]!; t < end[r]!; t++) {
      let acc = 0;
      for (let h = 0; h < H; h++) {
        const c = (i * H + h) * N + (t - lo);
        const l = C[c]!;
        // relu without a branch on the sign (half the logits are negative, at random: the branch
        // mispredicted ~half the time, 7.8 → 2.7 ms a layer at cpu-mid's 512-token prefill): l times
        // 1 − its sign bit, so a negative logit adds ±0 (acc + ±0 = acc, acc never being −0) and the
        // sum is the branchy one's bit for bit. NaN stays skipped (a predictable branch).
        if (l !== l) continue;
        acc += l * (1 - (Ci[c]! >>> 31)) * w[r * H + h]!;
      }
      out[row + t] = Math.fround(Math.fround(acc) * ks[t]!);
    }
  }
}

function clampRanges(s: ArrayLike<number>, e: ArrayLike<number>, n: number, Tk: number): { start: Int32Array; end: Int32Array } {
  const start = new Int32Array(n);
  const end = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const a = Math.max(0, Math.min(Tk, s[i]!));
    const b = Math.max(0, Math.min(Tk, e[i]!));
    start[i] = a;
    end[i] = Math.max(a, b);
  }
  return { start, end };
}

function f32Out(out: View, op: string): Float32Array {
  if (out.dtype !== 'f32' || !isContiguousView(out)) throw new DsvError(`${op}: out must be contiguous f32`);
  const d = dataOf(out) as Float32Array;
  return d;
}

/** Dense logits (Backend.indexerLogits): q [Tq, H, D] e4m3, k [Tk, D] e4m3, kScale [Tk], w [Tq, H], start/end [Tq]. */
export function indexerLogitsCpu(out: View, q: View, k: View, kScale: View, w: View, start: View, end: View): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const r = clampRanges(ints(start), ints(end), Tq, Tk);
  const o = f32Out(out, 'indexerLogits');
  logitsCore(decodeE4m3(rawContiguous(q) as Uint8Array), readF(w, 'f32') as Float32Array, decodeE4m3(rawContiguous(k) as Uint8Array),
    readF(kScale, 'f32') as Float32Array, Tq, H, D, Tk, r.start, r.end, o, out.offset, Tk);
}

/**
 * Paged logits (Backend.indexerLogitsPaged): q [B, N, H, D] e4m3, cache u8 [blocks, 64·(D+4)], w [B, N, H],
 * blockTable i32 [B, maxBlocks], contextLens [B]; out [B·N, maxCtx]. Query j of sequence b sees keys
 * [0, ctx[b] − N + j + 1) (its own position and the ones before, as DeepGEMM's paged kernel and the host's
 * decode); columns from there to maxCtx are −inf. Equal, bit for bit, to the dense op on the gathered keys.
 */
export function indexerLogitsPagedCpu(out: View, q: View, cache: View, w: View, blockTable: View, contextLens: View): void {
  const [B, N, H, D] = q.shape as [number, number, number, number];
  const maxCtx = out.shape[1]!;
  const maxBlocks = blockTable.shape[1]!;
  const page = indexerPageBytes(D);
  const numBlocks = cache.shape[0]!;
  const bytes = rawContiguous(cache) as Uint8Array;
  const bt = ints(blockTable);
  const ctx = ints(contextLens);
  const qf = decodeE4m3(rawContiguous(q) as Uint8Array);
  const wf = readF(w, 'f32') as Float32Array;
  const o = f32Out(out, 'indexerLogitsPaged');
  const l = e4m3Lut();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < B; b++) {
    const T = Math.max(0, ctx[b]!);
    if (T > maxCtx) throw new DsvError(`indexerLogitsPaged: context length ${T} of sequence ${b} exceeds the output's ${maxCtx} columns`);
    if (T > maxBlocks * INDEXER_PAGE) throw new DsvError(`indexerLogitsPaged: context length ${ctx[b]} of sequence ${b} exceeds the block table's ${maxBlocks} pages of ${INDEXER_PAGE}`);
    const keys = new Float32Array(T * D);
    const ks = new Float32Array(T);
    for (let p = 0; p < T; p++) {
      const blk = bt[b * maxBlocks + (p >> 6)]!;
      if (blk < 0 || blk >= numBlocks) throw new DsvError(`indexerLogitsPaged: sequence ${b} position ${p} maps to block ${blk}, outside the cache's ${numBlocks} blocks`);
      const base = blk * page;
      const off = p & 63;
      for (let d = 0; d < D; d++) keys[p * D + d] = l[bytes[base + off * D + d]!]!;
      ks[p] = dv.getFloat32(base + INDEXER_PAGE * D + off * 4, true);
    }
    const s = new Int32Array(N);
    const e = new Int32Array(N);
    for (let j = 0; j < N; j++) e[j] = Math.max(0, Math.min(T, ctx[b]! - N + j + 1));
    const rowOff = out.offset + b * N * maxCtx;
    for (let j = 0; j < N; j++) o.fill(-Infinity, rowOff + j * maxCtx, rowOff + (j + 1) * maxCtx);
    logitsCore(qf.subarray(b * N * H * D), wf.subarray(b * N * H), keys, ks, N, H, D, T, s, e, o, rowOff, maxCtx);
  }
}

/** Cache writer (Backend.indexerCacheWrite): key i (k [T, D] e4m3, kScale [T]) into slot slots[i]; −1 skips. */
export function indexerCacheWriteCpu(cache: View, k: View, kScale: View, slots: View): void {
  const [T, D] = k.shape as [number, number];
  const page = indexerPageBytes(D);
  const numBlocks = cache.shape[0]!;
  if (!isContiguousView(cache)) throw new DsvError('indexerCacheWrite: the cache must be contiguous');
  const bytes = (dataOf(cache) as Uint8Array).subarray(cache.offset, cache.offset + numBlocks * page);
  const kb = rawContiguous(k) as Uint8Array;
  const sc = readF(kScale, 'f32') as Float32Array;
  const sl = ints(slots);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < T; i++) {
    const slot = sl[i]!;
    if (slot < 0) continue;
    const blk = Math.floor(slot / INDEXER_PAGE);
    if (blk >= numBlocks) throw new DsvError(`indexerCacheWrite: slot ${slot} of key ${i} is beyond the cache's ${numBlocks} blocks of ${INDEXER_PAGE}`);
    const off = slot % INDEXER_PAGE;
    bytes.set(kb.subarray(i * D, (i + 1) * D), blk * page + off * D);
    dv.setFloat32(blk * page + INDEXER_PAGE * D + off * 4, sc[i]!, true);
  }
}

/**
 * DSA top-k (Backend.topkSelect): out i32 [R, k] from x f32 [R, N]; start/end [R] (null: 0 and N);
 * blockTable [S, maxBlocks] (null: column indices) with row r in sequence ⌊r / rowsPerSeq⌋.
 */
export function topkSelectCpu(out: View, x: View, k: number, start: View | null, end: View | null, blockTable: View | null, rowsPerSeq: number): void {
  const R = out.shape[0]!;
  const N = x.shape[1]!;
  const xs = readF(x, 'f32') as Float32Array;
  const s = start ? ints(start) : null;
  const e = end ? ints(end) : null;
  const bt = blockTable ? ints(blockTable) : null;
  const maxBlocks = blockTable ? blockTable.shape[1]! : 0;
  if (!isContiguousView(out) || out.dtype !== 'i32') throw new DsvError('topkSelect: out must be contiguous i32');
  const args = { xs, N, k, s, e, bt, maxBlocks, rowsPerSeq, o: dataOf(out) as Int32Array, outOff: out.offset };
  parallelRows('topkRows', topkRows, args, R, 9 * Math.max(1, N), ['o']);
}

/** Rows [r0, r1) of topkSelectCpu. */
export function topkRows(
  a: { xs: Float32Array; N: number; k: number; s: ArrayLike<number> | null; e: ArrayLike<number> | null; bt: ArrayLike<number> | null; maxBlocks: number; rowsPerSeq: number; o: Int32Array; outOff: number },
  r0: number, r1: number,
): void {
  const { xs, N, k, s, e, bt, maxBlocks, rowsPerSeq, o } = a;
  const scratch = new Float32Array(N);
  const row = new Int32Array(k);
  for (let r = r0; r < r1; r++) {
    const lo = s ? Math.max(0, Math.min(N, s[r]!)) : 0;
    const hi = e ? Math.max(lo, Math.min(N, e[r]!)) : N;
    selectTopkRow(xs, r * N + lo, hi - lo, k, row, 0, k, scratch);
    const ob = a.outOff + r * k;
    const seq = bt ? Math.floor(r / rowsPerSeq) : 0;
    for (let j = 0; j < k; j++) {
      const p = row[j]!;
      o[ob + j] = p < 0 ? -1 : bt ? pagedSlot(bt, seq, maxBlocks, p) : lo + p;
    }
  }
}

/** The paged-cache slot of position p of sequence `seq` (block table bt [S, maxBlocks]); −1 past the table or at a −1 block. */
function pagedSlot(bt: ArrayLike<number>, seq: number, maxBlocks: number, p: number): number {
  const pg = p >> 6;
  const blk = pg < maxBlocks ? bt[seq * maxBlocks + pg]! : -1;
  return blk < 0 ? -1 : blk * INDEXER_PAGE + (p & 63);
}

/**
 * Dense attention's selection (Backend.causalSelect): out i32 [R, k], row r the positions
 * 0 .. min(end[r], k) − 1 (or their slots through blockTable [S, maxBlocks], row r in sequence
 * ⌊r / rowsPerSeq⌋), then −1 — topkRows' output for a row of equal values.
 */
export function causalSelectCpu(out: View, end: View, blockTable: View | null, rowsPerSeq: number): void {
  if (!isContiguousView(out) || out.dtype !== 'i32') throw new DsvError('causalSelect: out must be contiguous i32');
  const [R, k] = out.shape as [number, number];
  const e = ints(end);
  const bt = blockTable ? ints(blockTable) : null;
  const maxBlocks = blockTable ? blockTable.shape[1]! : 0;
  const o = dataOf(out) as Int32Array;
  for (let r = 0; r < R; r++) {
    const n = Math.max(0, Math.min(k, e[r]!));
    const ob = out.offset + r * k;
    const seq = Math.floor(r / rowsPerSeq);
    for (let j = 0; j < n; j++) o[ob + j] = bt ? pagedSlot(bt, seq, maxBlocks, j) : j;
    o.fill(-1, ob + n, ob + k);
  }
}
