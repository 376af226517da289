// The CUDA paths the device tests of the DSA training ops run in turn (test/tensor/sparse-mla-backward.test.ts,
// indexer-train.test.ts): the CUDA-core kernels, the bf16 GEMM path with its default chunk budget, and the
// GEMM path with a budget of two queries a chunk (several chunks run, the last short for odd Tq). Each path
// is set explicitly, whatever the defaults (DSV32_CUDA_GEMM may change them); the 'kernel' path
// also sends the sparse MLA forward to its kernel (neither fused nor gathered GEMM), so each backward is
// paired with its own forward. The sparse MLA backward and the indexer's sparse KL loss and scores have a
// fourth path, 'flash' (their one-pass kernels, as many heads as each takes); the other paths turn it off.
import { sparseMlaTune } from '../../src/backend/cuda/sparse-mla.js';

export const GEMM_PATHS = ['kernel', 'gemm', 'gemm, 2 queries a chunk'] as const;
export const BACKWARD_PATHS = [...GEMM_PATHS, 'flash'] as const;
export type GemmPath = (typeof BACKWARD_PATHS)[number];

/**
 * fn() with `tune` (the op's switch and chunk budget, and the one-pass switch where the op has one) set for
 * `path`, restored after; null: as it is (CPU).
 */
export function onGemmPath<R>(tune: { gemm: boolean; chunkBytes: number; flash?: boolean; flashMaxHeads?: number; scoresFlash?: boolean }, path: GemmPath | null,
  bytesPerQuery: number, fn: () => R): R {
  const keep = { ...tune };
  const keepFwd = { gemm: sparseMlaTune.gemm, fused: sparseMlaTune.fused };
  try {
    if (path !== null) tune.gemm = path !== 'kernel';
    if (path !== null && tune.flash !== undefined) Object.assign(tune, { flash: path === 'flash', flashMaxHeads: Infinity });
    if (path !== null && tune.scoresFlash !== undefined) tune.scoresFlash = path === 'flash';
    if (path === 'kernel') Object.assign(sparseMlaTune, { gemm: false, fused: false });
    if (path === 'gemm, 2 queries a chunk') tune.chunkBytes = 2 * bytesPerQuery + 1;
    return fn();
  } finally {
    Object.assign(tune, keep);
    Object.assign(sparseMlaTune, keepFwd);
  }
}
