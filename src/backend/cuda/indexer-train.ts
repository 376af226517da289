// CUDA launches of the indexer's training kernels (kernels/indexer_train.cu): float scores, their backward,
// and the KL loss. Contract: src/tensor/ops/indexer-train.ts; CPU reference: src/backend/cpu/indexer-train.ts.
// Each op has two paths: bf16 q and k/kv take the GEMM path (the q·kᵀ products through cuBLASLt — gathered
// rows in sparse mode, every key in dense mode — with small kernels between; kernels/indexer_train_gemm.cu
// has the math), f32 inputs (and bf16 with indexerTrainTune.gemm off) the CUDA-core kernels. In sparse mode
// (the DSA sparse stage) bf16 inputs of at most 16 heads take one-pass kernels before both: the KL loss
// (kernels/indexer_kl_flash.cu, indexerTrainTune.flash) and the scores with their backward
// (kernels/indexer_scores_flash.cu, indexerTrainTune.scoresFlash).
// The op layer has checked shapes and made every input contiguous; here only the kernels' limits (shared
// memory, H ≤ 256 for the backward's per-thread dw) and dtypes are checked. A null start/end/indices view
// is passed as a null pointer: the kernels read the range (dense) or the indices (sparse).
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend, CudaStorage } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';
import { gatheredScores } from './gathered-scores.js';
import { scatterKernel } from './sparse-mla-backward.js';
import { temporaries } from './temporaries.js';
import { gemmPathOn } from './gemm-switch.js';

const NT = 256;
const TKI = 32;
const HG = 16;
const TKL = 16;
const MAX_GRID_Y = 65535;

const SCORES_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const SCORES_BWD_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const KL_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

const ptr = (b: CudaBackend, v: View | null): number => (v ? b.address(v) : 0);

function sfx(op: string, q: View, k: View): string {
  if ((q.dtype !== 'f32' && q.dtype !== 'bf16') || k.dtype !== q.dtype) throw new DsvError(`${op} on cuda: q and k must both be f32 or both bf16, got ${q.dtype} and ${k.dtype}`);
  return q.dtype;
}

function smemFor(b: CudaBackend, op: string, bytes: number, kern: { setMaxDynamicSmem(n: number, a: number): void }): void {
  if (bytes > b.rt.info.maxSharedPerBlockOptin - 1024) throw new DsvError(`${op} on cuda: ${bytes} bytes of shared memory needed, the device allows ${b.rt.info.maxSharedPerBlockOptin}`);
  if (bytes > 46 * 1024) kern.setMaxDynamicSmem(bytes, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
}

/** kernels/indexer_scores_flash.cu: heads a CTA holds (all of the row's), key tile, C's pitch, and the shapes it takes. */
const SCORES_FLASH = { HG: 16, TK: 64, PP: 72, D_MAX: 256, K_MAX: 2048 };
const SCORES_FLASH_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p'];
const SCORES_BWD_FLASH_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

/**
 * The one-pass scores kernels' dynamic shared memory for these sparse inputs (Q [16][D + 8] and two tiles
 * [TK][D + 8] bf16, the backward's C [16][PP] bf16, the indices [k rounded up to TK] i32), or null where
 * they do not apply (then the gemm path runs).
 */
function scoresFlashSmem(b: CudaBackend, q: View, k: View, N: number, backward: boolean): number | null {
  const [Tq, H, D] = q.shape as [number, number, number];
  if (!indexerTrainTune.scoresFlash || H > SCORES_FLASH.HG || q.dtype !== 'bf16' || k.dtype !== 'bf16') return null;
  if (D % 64 !== 0 || D > SCORES_FLASH.D_MAX || N === 0 || N > SCORES_FLASH.K_MAX || k.shape[0] === 0 || Tq > 2 ** 31 - 1) return null;
  if (b.address(q) % 16 !== 0 || b.address(k) % 16 !== 0) return null; // 16-byte row loads
  const smem = 2 * (SCORES_FLASH.HG + 2 * SCORES_FLASH.TK) * (D + 8) + (backward ? 2 * SCORES_FLASH.HG * SCORES_FLASH.PP : 0)
    + 4 * Math.ceil(N / SCORES_FLASH.TK) * SCORES_FLASH.TK;
  return smem > b.rt.info.maxSharedPerBlockOptin - 2048 ? null : smem; // room for the static dw partials
}

export function indexerScoresCuda(b: CudaBackend, out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const op = 'indexerScores';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const N = out.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_scores_fwd_${sfx(op, q, k)}`, SCORES_SIG);
  if (out.dtype !== 'f32' || w.dtype !== 'f32') throw new DsvError(`${op} on cuda: out and w must be f32`);
  if (Tq * N === 0) return;
  const flash = indices && scoresFlashSmem(b, q, k, N, false);
  if (flash) {
    const fk = b.rt.modules.get('indexer_scores_flash', 'indexer_scores_flash', SCORES_FLASH_SIG);
    smemFor(b, op, flash, fk);
    fk.launch(Tq, NT, flash, [H, N, D, Tk, b.address(q), b.address(k), b.address(w), b.address(out), b.address(indices)]);
    return;
  }
  if (scoresGemmPath(b, out, q, k, w, start, end, indices)) return;
  const tiles = Math.ceil(N / TKI);
  if (tiles > MAX_GRID_Y) throw new DsvError(`${op} on cuda: ${N} columns exceed the grid (${MAX_GRID_Y} tiles of ${TKI})`);
  const smem = 4 * (H * D + H + TKI * (D + 1) + (NT / 32) * TKI);
  smemFor(b, op, smem, kern);
  kern.launch(Tq, NT, smem, [Tq, H, D, Tk, N, b.address(out), b.address(q), b.address(k), b.address(w), ptr(b, start), ptr(b, end), ptr(b, indices)], tiles);
}

export function indexerScoresBackwardCuda(b: CudaBackend, dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const op = 'indexerScoresBackward';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const N = dout.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_scores_bwd_${sfx(op, q, k)}`, SCORES_BWD_SIG);
  if (dk.dtype !== 'f32' || dw.dtype !== 'f32' || dout.dtype !== 'f32' || w.dtype !== 'f32' || dq.dtype !== q.dtype) {
    throw new DsvError(`${op} on cuda: dk, dw, dout and w must be f32 and dq in q's dtype`);
  }
  b.fill(dk, 0); // accumulated with atomics (both paths)
  if (Tq === 0) return;
  const flash = indices && dq.dtype === 'bf16' && scoresFlashSmem(b, q, k, N, true);
  if (flash) {
    const fk = b.rt.modules.get('indexer_scores_flash', 'indexer_scores_bwd_flash', SCORES_BWD_FLASH_SIG);
    smemFor(b, op, flash, fk);
    fk.launch(Tq, NT, flash, [H, N, D, Tk, b.address(dq), b.address(dk), b.address(dw), b.address(dout), b.address(q), b.address(k), b.address(w),
      b.address(indices)]);
    return;
  }
  if (scoresBwdGemmPath(b, dq, dk, dw, dout, q, k, w, start, end, indices)) return;
  if (H > NT) throw new DsvError(`${op} on cuda: at most ${NT} heads, got ${H}`);
  const smem = 4 * (2 * H * D + TKI * (D + 1) + 2 * H * TKI + H + TKI);
  smemFor(b, op, smem, kern);
  kern.launch(Tq, NT, smem, [Tq, H, D, Tk, N, b.address(dq), b.address(dk), b.address(dw), b.address(dout), b.address(q), b.address(k), b.address(w),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}

/**
 * Path choice and the GEMM paths' temporary budget, for tests and benchmarks: gemm = false sends bf16
 * inputs of all three ops to the CUDA-core kernels too; chunkBytes bounds the bytes of a GEMM path's
 * temporaries (queries are processed in chunks of max(1, ⌊chunkBytes / bytes per query⌋), the bytes per
 * query being indexerKlBytesPerQuery or indexerScoresBytesPerQuery). gemm is on by default since the tests
 * of both paths passed on an H100 (2026-12-06, test/tensor/indexer-train.test.ts sets each one); there
 * (bench/dsa-train.ts) the GEMM paths were 5–38× faster than the CUDA-core kernels and 1.7–4.0× faster
 * than torch (the sparse KL loss: 14.1 ms against 385.9 ms and torch's 24.5 ms).
 */
export const indexerTrainTune = {
  gemm: gemmPathOn('indexer-train', true),
  chunkBytes: 1 << 30,
  /**
   * The sparse KL loss's one-pass kernel (kernels/indexer_kl_flash.cu) for bf16 queries of at most
   * min(16, flashMaxHeads) heads. On by default since its tests passed on an H100 (2026-12-07, every case and
   * path of test/tensor/indexer-train.test.ts's KL test), where it took 3.0 ms against the gemm path's 8.3
   * (bench/dsa-train.ts: s_q 4 096, k 2 048, 16 heads).
   */
  flash: gemmPathOn('indexer-kl-flash', true),
  flashMaxHeads: 16,
  /**
   * The sparse scores' and their backward's one-pass kernels (kernels/indexer_scores_flash.cu) for bf16 q and
   * k of at most 16 heads, D % 64 == 0, D ≤ 256. On by default since their tests passed on an H100
   * (2026-12-07, docs/runs/2026-12-07-late/call1: every case and path of test/tensor/indexer-train.test.ts's
   * scores test), where the mid config's sparse-stage step took 438 ms with them against 516 without
   * (bench/train-step.ts; one timed step against the median of three).
   */
  scoresFlash: gemmPathOn('indexer-scores-flash', true),
};

/**
 * Bytes of the KL GEMM path's temporaries per query of a chunk: sparse (N = k selected) G [k, D] bf16 and
 * S [H, k] bf16, 2kD + 2Hk (≈ 2.9 MB at k 2048, H 128, D 576); dense (N = Tk keys) S [H, Tk] f32, 4H·Tk.
 */
export function indexerKlBytesPerQuery(H: number, N: number, D: number, sparse: boolean): number {
  return sparse ? 2 * N * D + 2 * H * N : 4 * H * N;
}

/**
 * Bytes of the scores' GEMM-path temporaries per query of a chunk: the forward's L [H, N] f32 (and, sparse,
 * G [k, D] bf16); the backward adds C [H, N] bf16 (and, sparse, dG [k, D] f32): sparse 2kD + 4Hk forward,
 * 6kD + 6Hk backward (≈ 1 and 2.4 MB at k 2048, H 64, D 128); dense 4H·Tk and 6H·Tk (2 and 3 MB at Tk 8K).
 * A chunked dense backward also holds one dk-sized f32 partial [Tk, D].
 */
export function indexerScoresBytesPerQuery(H: number, N: number, D: number, sparse: boolean, backward: boolean): number {
  const fwd = (sparse ? 2 * N * D : 0) + 4 * H * N;
  return backward ? fwd + 2 * H * N + (sparse ? 4 * N * D : 0) : fwd;
}

const KL_ROWS_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const REDUCE_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p'];
const COEF_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

/** Whether the GEMM paths take these inputs (bf16 q and keys; the sparse gather's 16-byte stores need D % 8 = 0). */
function gemmApplies(q: View, k: View, N: number, sparse: boolean): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  return indexerTrainTune.gemm && q.dtype === 'bf16' && k.dtype === 'bf16' && Tq * H * N > 0 && k.shape[0]! > 0 && (!sparse || D % 8 === 0);
}

/** Rows [n0, n0 + n) of a contiguous [rows] or [rows, w] view (null stays null). */
function rowsOf(v: View | null, n0: number, n: number, w: number): View | null {
  return v && { ...v, shape: w === 1 ? [n] : [n, w], strides: w === 1 ? [1] : [w, 1], offset: v.offset + n0 * w };
}

const flat = (st: CudaStorage, dtype: 'bf16' | 'f32', numel: number): View => ({ storage: st, dtype, shape: [numel], strides: [1], offset: 0 });

/**
 * bf16 q and k: per chunk of n queries, l = q·kᵀ into L [n, H, N] f32 (gatheredScores: gathered rows when
 * sparse, every key when dense), then indexer_scores_reduce (Σ_h w·relu(l), −inf off the entries).
 * Returns false where the path does not apply.
 */
function scoresGemmPath(b: CudaBackend, out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const N = out.shape[1]!;
  const Tk = k.shape[0]!;
  const sparse = indices !== null;
  if (!gemmApplies(q, k, N, sparse)) return false;
  const chunk = Math.max(1, Math.min(Tq, Math.floor(indexerTrainTune.chunkBytes / indexerScoresBytesPerQuery(H, N, D, sparse, false))));
  const t = temporaries(b);
  try {
    const L = t.tmp('f32', chunk * H * N);
    const G = sparse ? t.tmp('bf16', chunk * N * D) : null;
    const reduce = b.rt.modules.get('indexer_train_gemm', 'indexer_scores_reduce', REDUCE_SIG);
    for (let n0 = 0; n0 < Tq; n0 += chunk) {
      const n = Math.min(chunk, Tq - n0);
      const idx = rowsOf(indices, n0, n, N);
      gatheredScores(b, L, 'f32', G, q, { keys: k, src: 'bf16', rows: Tk, dv: D, W: 0 }, n0, n, idx);
      reduce.launch(Math.ceil((n * N) / 256), 256, 0, [n, H, N, Tk, b.address(flat(L, 'f32', n * H * N)), b.address(rowsOf(w, n0, n, H)!),
        b.address(rowsOf(out, n0, n, N)!), ptr(b, rowsOf(start, n0, n, 1)), ptr(b, rowsOf(end, n0, n, 1)), ptr(b, idx)]);
    }
  } finally {
    t.dispose();
  }
  return true;
}

/**
 * bf16 q and k: per chunk of n queries, L as in the forward, then indexer_scores_coef (C = g·w where the
 * entry's l > 0, bf16; dw), dq = C·K (bf16 out into dq) and dk — sparse: dG = Cᵀ·q per query (f32) scattered
 * into dk by the sparse MLA backward's scatter; dense: Cᵀ·q over the chunk's n·H rows (f32), the first
 * chunk's straight into dk, later ones added. dk must be zeroed already. Returns false where the path does
 * not apply.
 */
function scoresBwdGemmPath(b: CudaBackend, dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null,
  indices: View | null): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const N = dout.shape[1]!;
  const Tk = k.shape[0]!;
  const sparse = indices !== null;
  if (!gemmApplies(q, k, N, sparse) || dq.dtype !== 'bf16') return false;
  const chunk = Math.max(1, Math.min(Tq, Math.floor(indexerTrainTune.chunkBytes / indexerScoresBytesPerQuery(H, N, D, sparse, true))));
  const t = temporaries(b);
  try {
    const L = t.tmp('f32', chunk * H * N);
    const C = t.tmp('bf16', chunk * H * N);
    const G = sparse ? t.tmp('bf16', chunk * N * D) : null;
    const dG = sparse ? t.tmp('f32', chunk * N * D) : null;
    const dkPart = !sparse && chunk < Tq ? t.tmp('f32', Tk * D) : null;
    const coef = b.rt.modules.get('indexer_train_gemm', 'indexer_scores_coef', COEF_SIG);
    const scatter = sparse ? scatterKernel(b, dk, D) : null;
    for (let n0 = 0; n0 < Tq; n0 += chunk) {
      const n = Math.min(chunk, Tq - n0);
      const idx = rowsOf(indices, n0, n, N);
      gatheredScores(b, L, 'f32', G, q, { keys: k, src: 'bf16', rows: Tk, dv: D, W: 0 }, n0, n, idx);
      coef.launch(Math.ceil((n * H * 32) / 256), 256, 0, [n, H, N, Tk, b.address(flat(L, 'f32', n * H * N)), b.address(rowsOf(w, n0, n, H)!),
        b.address(rowsOf(dout, n0, n, N)!), b.address(flat(C, 'bf16', n * H * N)), b.address(rowsOf(dw, n0, n, H)!), ptr(b, rowsOf(start, n0, n, 1)),
        ptr(b, rowsOf(end, n0, n, 1)), ptr(b, idx)]);
      const qC: View = { storage: q.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: q.offset + n0 * H * D };
      const dqC: View = { storage: dq.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: dq.offset + n0 * H * D };
      if (sparse) {
        b.matmul(dqC, { storage: C, dtype: 'bf16', shape: [n, H, N], strides: [H * N, N, 1], offset: 0 },
          { storage: G!, dtype: 'bf16', shape: [n, N, D], strides: [N * D, D, 1], offset: 0 }); // dq = C·G
        // dG = Cᵀ·q per query: Cᵀ [k, H] read column-major from the row-major [H, k] block
        b.matmul({ storage: dG!, dtype: 'f32', shape: [n, N, D], strides: [N * D, D, 1], offset: 0 },
          { storage: C, dtype: 'bf16', shape: [n, N, H], strides: [H * N, 1, N], offset: 0 }, qC);
        scatter!.launch(Math.ceil((n * N * 32) / 256), 256, 0, [n * N, D, Tk, b.address(dk), b.address(flat(dG!, 'f32', n * N * D)), b.address(idx!)]);
      } else {
        const c2: View = { storage: C, dtype: 'bf16', shape: [n * H, Tk], strides: [Tk, 1], offset: 0 };
        b.matmul({ ...dqC, shape: [n * H, D], strides: [D, 1] }, c2, k); // dq = C·k
        // dk (+)= Cᵀ·q over the chunk's n·H rows: Cᵀ [Tk, n·H] read column-major from C
        const part: View = n0 === 0 ? dk : { storage: dkPart!, dtype: 'f32', shape: [Tk, D], strides: [D, 1], offset: 0 };
        b.matmul(part, { storage: C, dtype: 'bf16', shape: [Tk, n * H], strides: [1, Tk], offset: 0 }, { ...qC, shape: [n * H, D], strides: [D, 1] });
        if (n0 > 0) b.binary('add', dk, dk, part);
      }
    }
  } finally {
    t.dispose();
  }
  return true;
}

/**
 * bf16 q and kv: per chunk of n queries, the main attention's scores S [n, H, N] by cuBLASLt (gatheredScores)
 * — sparse: bf16 out (the gemm forward's score); dense: f32 out (the score of causalMlaPrefillTrain, which
 * saved the dense lse) — then indexer_kl_rows (one CTA per row: target mass, KL, gradient). Returns false
 * where the path does not apply.
 */
function klGemmPath(b: CudaBackend, loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null,
  indices: View | null, scale: number): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const N = scores.shape[1]!;
  const sparse = indices !== null;
  if (!gemmApplies(q, kv, N, sparse)) return false;
  const chunk = Math.max(1, Math.min(Tq, Math.floor(indexerTrainTune.chunkBytes / indexerKlBytesPerQuery(H, N, D, sparse))));
  const t = temporaries(b);
  try {
    const sdt = sparse ? 'bf16' : 'f32';
    const S = t.tmp(sdt, chunk * H * N);
    const G = sparse ? t.tmp('bf16', chunk * N * D) : null;
    const rowsK = b.rt.modules.get('indexer_train_gemm', `indexer_kl_rows_${sdt}`, KL_ROWS_SIG);
    smemFor(b, 'indexerKlLoss', 4 * H, rowsK);
    for (let n0 = 0; n0 < Tq; n0 += chunk) {
      const n = Math.min(chunk, Tq - n0);
      const idx = rowsOf(indices, n0, n, N);
      gatheredScores(b, S, sdt, G, q, { keys: kv, src: 'bf16', rows: Tk, dv: D, W: 0 }, n0, n, idx);
      rowsK.launch(n, NT, 4 * H, [H, N, Tk, scale, b.address(flat(S, sdt, n * H * N)), b.address(rowsOf(lse, n0, n, H)!), b.address(rowsOf(scores, n0, n, N)!),
        b.address(rowsOf(loss, n0, n, 1)!), b.address(rowsOf(grad, n0, n, N)!), ptr(b, rowsOf(start, n0, n, 1)), ptr(b, rowsOf(end, n0, n, 1)), ptr(b, idx)]);
    }
  } finally {
    t.dispose();
  }
  return true;
}

/** kernels/indexer_kl_flash.cu: heads a CTA holds (all of the row's), key tile, and the shapes it takes. */
const KL_FLASH = { HG: 16, TK: 64, D_MAX: 576, K_MAX: 2048 };
const KL_FLASH_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

/**
 * The sparse KL loss in one pass (bf16 q and kv, at most 16 heads): one CTA per query row gathers its
 * selected rows once into shared memory, forms the head-summed attention mass there and finishes the row's
 * loss and gradient (no gathered block, no scores in device memory). Returns false where it does not apply.
 */
function klFlashPath(b: CudaBackend, loss: View, grad: View, scores: View, q: View, kv: View, lse: View, indices: View, scale: number): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const N = scores.shape[1]!;
  if (!indexerTrainTune.flash || H > Math.min(KL_FLASH.HG, indexerTrainTune.flashMaxHeads) || q.dtype !== 'bf16' || kv.dtype !== 'bf16') return false;
  if (D % 32 !== 0 || D > KL_FLASH.D_MAX || N === 0 || N > KL_FLASH.K_MAX || Tk === 0 || Tq > 2 ** 31 - 1) return false;
  if (b.address(q) % 16 !== 0 || b.address(kv) % 16 !== 0) return false;  // 16-byte row loads
  // Q [16][D + 8] and two tiles [TK][D + 8] bf16, the indices [k rounded up to TK] i32
  const smem = 2 * (KL_FLASH.HG + 2 * KL_FLASH.TK) * (D + 8) + 4 * Math.ceil(N / KL_FLASH.TK) * KL_FLASH.TK;
  if (smem > b.rt.info.maxSharedPerBlockOptin - 1024) return false;  // smemFor's margin for the static reductions
  const kern = b.rt.modules.get('indexer_kl_flash', 'indexer_kl_flash', KL_FLASH_SIG);
  smemFor(b, 'indexerKlLoss', smem, kern);
  kern.launch(Tq, NT, smem, [H, N, D, Tk, scale, b.address(q), b.address(kv), b.address(lse), b.address(scores), b.address(loss), b.address(grad),
    b.address(indices)]);
  return true;
}

export function indexerKlLossCuda(b: CudaBackend, loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null,
  dv: number, scale: number): void {
  const op = 'indexerKlLoss';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const N = scores.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_kl_loss_${sfx(op, q, kv)}`, KL_SIG);
  if (loss.dtype !== 'f32' || grad.dtype !== 'f32' || scores.dtype !== 'f32' || lse.dtype !== 'f32') throw new DsvError(`${op} on cuda: scores, lse, loss and grad must be f32`);
  if (Tq === 0) return;
  if (indices && klFlashPath(b, loss, grad, scores, q, kv, lse, indices, scale)) return;
  if (klGemmPath(b, loss, grad, scores, q, kv, lse, start, end, indices, scale)) return;
  const smem = 4 * (HG * D + TKL * D + HG * TKL + HG);
  smemFor(b, op, smem, kern);
  kern.launch(Tq, NT, smem, [Tq, H, D, dv, Tk, N, scale, b.address(loss), b.address(grad), b.address(scores), b.address(q), b.address(kv), b.address(lse),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}
