// The tiny DeepSeek-V3.2 of the training tests: every code path (a dense and an MoE layer with groups
// and a shared expert, sparse top-k ≪ S, one MTP module) at sizes where an f64 forward takes
// milliseconds. kv_lora_rank and index_head_dim stay 128 (the config requires FP8 blocks of 128).
import type { Tensor } from '../../src/tensor/tensor.js';
import { DeepseekV32 } from '../../src/model/model.js';
import { randomCheckpoint, randomConfig } from '../../src/model/random-weights.js';
import { mapSource } from '../../src/model/weights.js';
import type { ModelConfig } from '../../src/model/config.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../src/tensor/random.js';

export function tinyConfig(over: Record<string, unknown> = {}): ModelConfig {
  return randomConfig({
    vocab_size: 64,
    hidden_size: 64,
    intermediate_size: 96,
    moe_intermediate_size: 16,
    num_hidden_layers: 2,
    first_k_dense_replace: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    q_lora_rank: 32,
    qk_nope_head_dim: 16,
    qk_rope_head_dim: 16,
    v_head_dim: 16,
    index_n_heads: 2,
    index_topk: 4,
    num_nextn_predict_layers: 1,
    ...over,
  });
}

export function tinyModel(opts: { master?: 'f32' | 'f64'; seed?: number; cfg?: ModelConfig } = {}): DeepseekV32 {
  const cfg = opts.cfg ?? tinyConfig();
  return DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, opts.seed ?? 1)), { master: opts.master ?? 'f32' });
}

/** Deterministic pseudo-random token rows [B·S]. */
export function tokenRows(B: number, S: number, vocab: number, seed = 3): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: B * S }, () => rng.nextU32() % vocab);
}

/** Selections [T, width] → the forced layout [T, index_topk] (−1 padded). */
export function forcedOf(sel: { width: number; idx: Tensor }, topk: number): Int32Array {
  const w = sel.width;
  const src = sel.idx.toHost() as Int32Array;
  const T = src.length / w;
  const out = new Int32Array(T * topk).fill(-1);
  for (let t = 0; t < T; t++) for (let j = 0; j < Math.min(w, topk); j++) out[t * topk + j] = src[t * w + j]!;
  return out;
}

/** The training tests' model as a config.json object (the trainer's `model.config`). */
export const TRAIN_MODEL = {
  model_type: 'deepseek_v32', vocab_size: 64, hidden_size: 64, intermediate_size: 96, moe_intermediate_size: 16,
  num_hidden_layers: 2, first_k_dense_replace: 1, num_attention_heads: 2, num_key_value_heads: 2, q_lora_rank: 32,
  kv_lora_rank: 128, qk_nope_head_dim: 16, qk_rope_head_dim: 16, v_head_dim: 16, n_routed_experts: 8, n_shared_experts: 1,
  num_experts_per_tok: 2, n_group: 4, topk_group: 2, scoring_func: 'sigmoid', routed_scaling_factor: 2.5, norm_topk_prob: true,
  topk_method: 'noaux_tc', index_n_heads: 2, index_head_dim: 128, index_topk: 4, rope_theta: 10000, max_position_embeddings: 4096,
  rms_norm_eps: 1e-6, bos_token_id: 0, eos_token_id: 1, tie_word_embeddings: false, num_nextn_predict_layers: 1,
};

/**
 * A fresh work directory (mkdtemp with `prefix`) holding data.jsonl: 40 pre-tokenized documents of 10–28
 * ids in [2, 62), the same every time (seeded), for training configs over TRAIN_MODEL's vocabulary.
 */
export function tinyCorpus(prefix: string): { dir: string; data: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const rng = new Rng(7);
  const lines = Array.from({ length: 40 }, (_, d) => JSON.stringify({ ids: Array.from({ length: 10 + (d % 7) * 3 }, () => 2 + (rng.nextU32() % 60)) }));
  const data = join(dir, 'data.jsonl');
  writeFileSync(data, lines.join('\n') + '\n');
  return { dir, data };
}
