// DSV32_CUDA_GEMM: the process-wide choice of the DSA ops' cuBLASLt paths, over each path's default.
// Each op with two or three CUDA paths (tensor-core GEMM or fused paths and a CUDA-core kernel) keeps its switch in a tune
// object (indexerTune, sparseMlaTune, sparseMlaBackwardTune, indexerTrainTune); tests and benchmarks set
// those directly. Whole runs (a training job, the engine's tests, an RL run) are switched from outside by
//   DSV32_CUDA_GEMM=all | none | name[,name…]      names: indexer, indexer-mma, mla, mla-fused, mla-flash, mla-split, mla-wg, mla-bwd, mla-bwd-flash, indexer-train, indexer-kl-flash, indexer-scores-flash, moe, moe-gemv, moe-dw
// where a list turns exactly the named paths on and the others off. Unset, each path keeps its default.
// The tune objects read it when their modules load; a bad value is reported when the CUDA backend is
// created (gemmSwitchError), inside the command that uses it, as one line rather than a load-time trace.

export const GEMM_PATH_NAMES = ['indexer', 'indexer-mma', 'mla', 'mla-fused', 'mla-flash', 'mla-split', 'mla-wg', 'mla-bwd', 'mla-bwd-flash', 'indexer-train', 'indexer-kl-flash', 'indexer-scores-flash', 'moe', 'moe-gemv', 'moe-dw'] as const;
export type GemmPathName = (typeof GEMM_PATH_NAMES)[number];

/** What is wrong with DSV32_CUDA_GEMM, or null when it is unset or valid. */
export function gemmSwitchError(env: NodeJS.ProcessEnv = process.env): string | null {
  const words = listed(env);
  if (!words) return null;
  const bad = words.find((w) => !(GEMM_PATH_NAMES as readonly string[]).includes(w));
  return bad === undefined ? null
    : `DSV32_CUDA_GEMM: unknown path '${bad}' in '${env.DSV32_CUDA_GEMM}'; expected all, none, or a comma-separated list of ${GEMM_PATH_NAMES.join(', ')}`;
}

/** The switch of one path: DSV32_CUDA_GEMM's word when set and valid, else `dflt`. */
export function gemmPathOn(name: GemmPathName, dflt: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.DSV32_CUDA_GEMM?.trim();
  if (v === 'all') return true;
  if (v === 'none') return false;
  const words = listed(env);
  if (!words || gemmSwitchError(env)) return dflt;
  return words.includes(name);
}

/** The named paths of a list value; null when unset, empty, all or none. */
function listed(env: NodeJS.ProcessEnv): string[] | null {
  const v = env.DSV32_CUDA_GEMM?.trim();
  if (v === undefined || v === '' || v === 'all' || v === 'none') return null;
  return v.split(',').map((w) => w.trim());
}
