// The score GEMM of the DSA ops' cuBLASLt paths: the sparse MLA forward (sparse-mla.ts), its backward
// (sparse-mla-backward.ts) and the indexer's training ops (indexer-train.ts). All H heads of a query share
// its k selected key rows, so gathering those rows once into a dense bf16 block makes each query's scores
// of all heads one tensor-core GEMM (M = H) instead of k scattered row reads per head.
import type { View } from '../../tensor/backend.js';
import type { CudaBackend, CudaStorage } from './cuda-backend.js';
import type { ParamKind } from './launch.js';

/** mla_gather_rows_<src> of kernels/sparse_mla_gemm.cu: (E, D, dv, rows, W, G, src, idx). */
const GATHER_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p'];

/**
 * The keys the scores read: `rows` rows (an index outside [0, rows) is a hole and gathers a zero row).
 * bf16 and f32 keys are dense [rows, D] rows; fp8 is the MLA cache, rows of W bytes (dv e4m3 latent dims,
 * an f32 scale per 128 of them, then the bf16 RoPE dims up to D), which the gather decodes to bf16. dv and
 * W are read only for fp8 (dense rows pass W = 0); the dense product (no gather) takes bf16 [rows, D] keys.
 */
export interface ScoreKeys {
  keys: View;
  src: 'bf16' | 'f32' | 'fp8';
  rows: number;
  dv: number;
  W: number;
}

/**
 * Scores of queries [n0, n0 + n) of q [Tq, H, D] bf16 into S, sdt out of an f32 accumulation; returns S
 * as [n, H, N]. Sparse (G and idx, the chunk's indices [n, N], given): gather the selected rows into
 * G [n, N, D] bf16, then per query S (H × N) = q (H × D) · Gᵀ (D × N), batched over the n queries. Dense
 * (G and idx null, N = rows): every query sees every key, so no gather — S (n·H × rows) = q (n·H × D) ·
 * keysᵀ (D × rows), one GEMM over the chunk's query rows.
 */
export function gatheredScores(b: CudaBackend, S: CudaStorage, sdt: 'bf16' | 'f32', G: CudaStorage | null, q: View, keys: ScoreKeys, n0: number, n: number,
  idx: View | null): View {
  const [, H, D] = q.shape as [number, number, number];
  const qC: View = { storage: q.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: q.offset + n0 * H * D };
  if (G) {
    const N = idx!.shape[1]!;
    const sV: View = { storage: S, dtype: sdt, shape: [n, H, N], strides: [H * N, N, 1], offset: 0 };
    const gather = b.rt.modules.get('sparse_mla_gemm', `mla_gather_rows_${keys.src}`, GATHER_SIG);
    // one warp per gathered row (256-thread CTAs)
    gather.launch(Math.ceil((n * N * 32) / 256), 256, 0, [n * N, D, keys.dv, keys.rows, keys.W,
      b.address({ storage: G, dtype: 'bf16', shape: [n * N * D], strides: [1], offset: 0 }), b.address(keys.keys), b.address(idx!)]);
    // Gᵀ [D, N] per query, read column-major from the row-major [N, D] block
    b.matmul(sV, qC, { storage: G, dtype: 'bf16', shape: [n, D, N], strides: [N * D, 1, D], offset: 0 });
    return sV;
  }
  const Tk = keys.rows;
  // keysᵀ [D, Tk] read column-major from the row-major keys
  b.matmul({ storage: S, dtype: sdt, shape: [n * H, Tk], strides: [Tk, 1], offset: 0 }, { ...qC, shape: [n * H, D], strides: [D, 1] },
    { storage: keys.keys.storage, dtype: 'bf16', shape: [D, Tk], strides: [1, D], offset: keys.keys.offset });
  return { storage: S, dtype: sdt, shape: [n, H, Tk], strides: [H * Tk, Tk, 1], offset: 0 };
}
