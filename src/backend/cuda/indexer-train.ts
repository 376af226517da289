// CUDA launches of the indexer's training kernels (kernels/indexer_train.cu): float scores, their backward,
// and the KL loss. Contract: src/tensor/ops/indexer-train.ts; CPU reference: src/backend/cpu/indexer-train.ts.
// The KL loss has two paths: bf16 q and kv take the GEMM path (the main attention's scores through
// cuBLASLt — gathered rows in sparse mode, every key in dense mode — then one row kernel;
// kernels/indexer_train_gemm.cu has the math), f32 inputs (and bf16 with indexerTrainTune.gemm off) the
// CUDA-core kernel.
// The op layer has checked shapes and made every input contiguous; here only the kernels' limits (shared
// memory, H ≤ 256 for the backward's per-thread dw) and dtypes are checked. A null start/end/indices view
// is passed as a null pointer: the kernels read the range (dense) or the indices (sparse).
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend, CudaStorage } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';
import { GATHER_SIG } from './sparse-mla.js';

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

export function indexerScoresCuda(b: CudaBackend, out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const op = 'indexerScores';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const N = out.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_scores_fwd_${sfx(op, q, k)}`, SCORES_SIG);
  if (out.dtype !== 'f32' || w.dtype !== 'f32') throw new DsvError(`${op} on cuda: out and w must be f32`);
  const tiles = Math.ceil(N / TKI);
  if (tiles > MAX_GRID_Y) throw new DsvError(`${op} on cuda: ${N} columns exceed the grid (${MAX_GRID_Y} tiles of ${TKI})`);
  const smem = 4 * (H * D + H + TKI * (D + 1) + (NT / 32) * TKI);
  smemFor(b, op, smem, kern);
  if (Tq * N === 0) return;
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
  if (H > NT) throw new DsvError(`${op} on cuda: at most ${NT} heads, got ${H}`);
  const smem = 4 * (2 * H * D + TKI * (D + 1) + 2 * H * TKI + H + TKI);
  smemFor(b, op, smem, kern);
  b.fill(dk, 0); // accumulated with atomics
  if (Tq === 0) return;
  kern.launch(Tq, NT, smem, [Tq, H, D, Tk, N, b.address(dq), b.address(dk), b.address(dw), b.address(dout), b.address(q), b.address(k), b.address(w),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}

/**
 * Path choice and the KL GEMM path's temporary budget, for tests and benchmarks: gemm = false sends bf16
 * inputs to the CUDA-core kernel too; chunkBytes bounds the bytes of the GEMM path's temporaries (queries
 * are processed in chunks of max(1, ⌊chunkBytes / indexerKlBytesPerQuery⌋)).
 */
export const indexerTrainTune = { gemm: true, chunkBytes: 1 << 30 };

/**
 * Bytes of the KL GEMM path's temporaries per query of a chunk: sparse (N = k selected) G [k, D] bf16 and
 * S [H, k] bf16, 2kD + 2Hk (≈ 2.9 MB at k 2048, H 128, D 576); dense (N = Tk keys) S [H, Tk] f32, 4H·Tk.
 */
export function indexerKlBytesPerQuery(H: number, N: number, D: number, sparse: boolean): number {
  return sparse ? 2 * N * D + 2 * H * N : 4 * H * N;
}

const KL_ROWS_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

/**
 * bf16 q and kv: per chunk of n queries, the main attention's scores S [n, H, N] by cuBLASLt — sparse:
 * gather each query's selected rows into G [n, k, D] bf16, S = q·Gᵀ batched over queries, bf16 out (the
 * gemm forward's score); dense: S [n·H, Tk] = q·kvᵀ over every key, one GEMM, f32 out (the score of
 * causalMlaPrefillTrain, which saved the dense lse) — then indexer_kl_rows (one CTA per row: target mass,
 * KL, gradient). Returns false where the path does not apply.
 */
function klGemmPath(b: CudaBackend, loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null,
  indices: View | null, scale: number): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const N = scores.shape[1]!;
  const sparse = indices !== null;
  if (!indexerTrainTune.gemm || q.dtype !== 'bf16' || kv.dtype !== 'bf16' || Tq * H * N === 0 || Tk === 0 || (sparse && D % 8 !== 0)) return false;
  const chunk = Math.max(1, Math.min(Tq, Math.floor(indexerTrainTune.chunkBytes / indexerKlBytesPerQuery(H, N, D, sparse))));
  const temps: CudaStorage[] = [];
  const tmp = (dtype: 'bf16' | 'f32', numel: number): CudaStorage => {
    const st = b.alloc(dtype, numel);
    temps.push(st);
    return st;
  };
  try {
    const sdt = sparse ? 'bf16' : 'f32';
    const S = tmp(sdt, chunk * H * N);
    const G = sparse ? tmp('bf16', chunk * N * D) : null;
    const gather = sparse ? b.rt.modules.get('sparse_mla_gemm', 'mla_gather_rows_bf16', GATHER_SIG) : null;
    const rowsK = b.rt.modules.get('indexer_train_gemm', `indexer_kl_rows_${sdt}`, KL_ROWS_SIG);
    smemFor(b, 'indexerKlLoss', 4 * H, rowsK);
    const chunkOf = (v: View | null, n0: number, n: number, w: number): View | null =>
      v && { ...v, shape: w === 1 ? [n] : [n, w], strides: w === 1 ? [1] : [w, 1], offset: v.offset + n0 * w };
    for (let n0 = 0; n0 < Tq; n0 += chunk) {
      const n = Math.min(chunk, Tq - n0);
      const qC: View = { storage: q.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: q.offset + n0 * H * D };
      const idx = chunkOf(indices, n0, n, N);
      if (sparse) {
        const rowsG: View = { storage: G!, dtype: 'bf16', shape: [n * N * D], strides: [1], offset: 0 };
        gather!.launch(Math.ceil((n * N * 32) / 256), 256, 0, [n * N, D, D, Tk, 0, b.address(rowsG), b.address(kv), b.address(idx!)]);
        // S = q·Gᵀ per query: Gᵀ [D, k] read column-major from the row-major [k, D] block
        b.matmul({ storage: S, dtype: 'bf16', shape: [n, H, N], strides: [H * N, N, 1], offset: 0 }, qC,
          { storage: G!, dtype: 'bf16', shape: [n, D, N], strides: [N * D, 1, D], offset: 0 });
      } else {
        // S = q·kvᵀ for the chunk's n·H query rows over every key: kvᵀ [D, Tk] read column-major from kv
        b.matmul({ storage: S, dtype: 'f32', shape: [n * H, N], strides: [N, 1], offset: 0 }, { ...qC, shape: [n * H, D], strides: [D, 1] },
          { storage: kv.storage, dtype: 'bf16', shape: [D, N], strides: [1, D], offset: kv.offset });
      }
      rowsK.launch(n, NT, 4 * H, [H, N, Tk, scale, b.address({ storage: S, dtype: sdt, shape: [n * H * N], strides: [1], offset: 0 }),
        b.address(chunkOf(lse, n0, n, H)!), b.address(chunkOf(scores, n0, n, N)!), b.address(chunkOf(loss, n0, n, 1)!),
        b.address(chunkOf(grad, n0, n, N)!), ptr(b, chunkOf(start, n0, n, 1)), ptr(b, chunkOf(end, n0, n, 1)), ptr(b, idx)]);
    }
  } finally {
    // stream-ordered reuse: later work on the stream runs after these kernels have finished with them
    for (const st of temps) st.dispose();
  }
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
  if (klGemmPath(b, loss, grad, scores, q, kv, lse, start, end, indices, scale)) return;
  const smem = 4 * (HG * D + TKL * D + HG * TKL + HG);
  smemFor(b, op, smem, kern);
  kern.launch(Tq, NT, smem, [Tq, H, D, dv, Tk, N, scale, b.address(loss), b.address(grad), b.address(scores), b.address(q), b.address(kv), b.address(lse),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}
