// DSV32_CUDA_GEMM: the process-wide choice of the DSA ops' cuBLASLt paths, over each path's default.
// Each op with two CUDA paths (a tensor-core GEMM path and a CUDA-core kernel) keeps its switch in a tune
// object (indexerTune, sparseMlaTune, sparseMlaBackwardTune, indexerTrainTune); tests and benchmarks set
// those directly. Whole runs (a training job, the engine's tests, an RL run) are switched from outside by
//   DSV32_CUDA_GEMM=all | none | name[,name…]      names: indexer, mla, mla-bwd, indexer-train
// where a list turns exactly the named paths on and the others off. Unset, each path keeps its default.
import { DsvError } from '../../errors.js';

export const GEMM_PATH_NAMES = ['indexer', 'mla', 'mla-bwd', 'indexer-train'] as const;
export type GemmPathName = (typeof GEMM_PATH_NAMES)[number];

/** The switch of one path: DSV32_CUDA_GEMM's word when set, else `dflt`. */
export function gemmPathOn(name: GemmPathName, dflt: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.DSV32_CUDA_GEMM?.trim();
  if (v === undefined || v === '') return dflt;
  if (v === 'all') return true;
  if (v === 'none') return false;
  const words = v.split(',').map((w) => w.trim());
  const bad = words.find((w) => !(GEMM_PATH_NAMES as readonly string[]).includes(w));
  if (bad !== undefined) {
    throw new DsvError(`DSV32_CUDA_GEMM: unknown path '${bad}' in '${v}'; expected all, none, or a comma-separated list of ${GEMM_PATH_NAMES.join(', ')}`);
  }
  return words.includes(name);
}
