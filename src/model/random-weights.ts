// Randomly initialised DeepSeek-V3.2 checkpoints (in memory) for benchmarks and tests, drawn like the
// fixtures' weights (fixtures/README.md): embeddings N(0,1); every linear N(0, 1/fan_in); norm weights
// 1 + N(0, 0.05²); indexer k_norm bias N(0, 0.05²); gate e_score_correction_bias N(0, 0.1²). Tensors
// are stored in bf16 like the real checkpoint (the bias in f32).
import { Rng } from '../tensor/random.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { type HfConfig, type ModelConfig, parseConfig } from './config.js';
import { expectedTensors } from './weights.js';

export type RandomConfigOverrides = Partial<Omit<HfConfig, 'rope_scaling' | 'quantization_config'>> & { rope_scaling?: HfConfig['rope_scaling']; quantization_config?: HfConfig['quantization_config'] };

/** A small but complete config (every code path: dense + MoE layers, groups, sparse top-k). */
export function randomConfig(overrides: RandomConfigOverrides = {}): ModelConfig {
  const base: Record<string, unknown> = {
    model_type: 'deepseek_v32',
    vocab_size: 512,
    hidden_size: 256,
    intermediate_size: 512,
    moe_intermediate_size: 64,
    num_hidden_layers: 3,
    first_k_dense_replace: 1,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    q_lora_rank: 128,
    kv_lora_rank: 128,
    qk_nope_head_dim: 32,
    qk_rope_head_dim: 16,
    v_head_dim: 32,
    n_routed_experts: 8,
    n_shared_experts: 1,
    num_experts_per_tok: 2,
    n_group: 4,
    topk_group: 2,
    scoring_func: 'sigmoid',
    routed_scaling_factor: 2.5,
    norm_topk_prob: true,
    topk_method: 'noaux_tc',
    index_n_heads: 4,
    index_head_dim: 128,
    index_topk: 16,
    rope_theta: 10000,
    rope_scaling: { type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
    max_position_embeddings: 16384,
    rms_norm_eps: 1e-6,
    bos_token_id: 0,
    eos_token_id: 1,
    tie_word_embeddings: false,
    num_nextn_predict_layers: 0,
  };
  return parseConfig({ ...base, ...overrides }, '<random config>');
}

/** All tensors of a checkpoint for `cfg` (optional MTP copies of embedding/head omitted). */
export function randomCheckpoint(cfg: ModelConfig, seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const out = new Map<string, Tensor>();
  const draw = (n: number, mean: number, std: number): Float32Array => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
    return v;
  };
  for (const spec of expectedTensors(cfg)) {
    if (spec.optional && !spec.name.endsWith('e_score_correction_bias')) continue;
    const n = spec.shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (spec.name.endsWith('e_score_correction_bias')) v = draw(n, 0, 0.1);
    else if (spec.name.endsWith('k_norm.bias')) v = draw(n, 0, 0.05);
    else if (spec.shape.length === 1) v = draw(n, 1, 0.05);
    else if (spec.name.endsWith('embed_tokens.weight')) v = draw(n, 0, 1);
    else v = draw(n, 0, spec.shape[1]! ** -0.5);
    const dtype = spec.name.endsWith('e_score_correction_bias') ? 'f32' : 'bf16';
    out.set(spec.name, fromArray(v, spec.shape, { dtype }));
  }
  return out;
}
