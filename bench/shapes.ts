// The model shapes the benchmarks build with random weights (randomConfig overrides), named as the official
// reference's configs (../shared/reference/configs): tiny (CI size), cpu-mid (74 M parameters, the CPU
// comparison), mid (530 M parameters, the GPU comparison).
import path from 'node:path';
import type { RandomConfigOverrides } from '../src/model/index.js';

export const SHAPES: Record<string, RandomConfigOverrides> = {
  tiny: { num_hidden_layers: 2, vocab_size: 128, index_topk: 8 },
  'cpu-mid': {
    vocab_size: 8192, hidden_size: 1024, intermediate_size: 2048, moe_intermediate_size: 256, num_hidden_layers: 4, first_k_dense_replace: 1,
    num_attention_heads: 8, num_key_value_heads: 8, n_routed_experts: 16, n_shared_experts: 1, num_experts_per_tok: 4, n_group: 4, topk_group: 2,
    q_lora_rank: 512, kv_lora_rank: 256, qk_nope_head_dim: 64, qk_rope_head_dim: 32, v_head_dim: 64, index_n_heads: 8, index_head_dim: 128, index_topk: 256,
  },
  mid: {
    vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, moe_intermediate_size: 512, num_hidden_layers: 4, first_k_dense_replace: 1,
    num_attention_heads: 16, num_key_value_heads: 16, n_routed_experts: 32, n_shared_experts: 1, num_experts_per_tok: 4, n_group: 8, topk_group: 4,
    q_lora_rank: 768, kv_lora_rank: 512, qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, index_n_heads: 16, index_head_dim: 128, index_topk: 2048,
  },
};

/** The named shape, or a one-line error listing the names. */
export function shapeOf(name: string): RandomConfigOverrides {
  const s = SHAPES[name];
  if (!s) {
    console.error(`unknown --shape ${name}: one of ${Object.keys(SHAPES).join(', ')}`);
    process.exit(2);
  }
  return s;
}

type ModelModule = typeof import('../src/model/index.js');
/**
 * The CPU comparisons' model (bench/model-compare.ts, bench/cpu-op-compare.ts): the checkpoint in `dir`
 * (the official reference's dump, so both run the same weights), or cpu-mid's random weights. M is the
 * model module of the build being timed (another build's, with model-compare's --root). A checkpoint
 * that cannot be read is one line naming the folder and the cause, exit status 2.
 */
export function cpuMidModel(M: ModelModule, dir: string | undefined, who: string): InstanceType<ModelModule['DeepseekV32']> {
  if (dir === undefined) {
    const cfg = M.randomConfig(SHAPES['cpu-mid']!);
    return M.DeepseekV32.fromSource(cfg, M.mapSource(M.randomCheckpoint(cfg, 1)));
  }
  try {
    return M.DeepseekV32.load(path.resolve(dir));
  } catch (e) {
    console.error(`${who}: --model ${dir}: ${(e as Error).message}`);
    process.exit(2);
  }
}
