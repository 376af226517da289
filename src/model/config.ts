// Model configuration from a Hugging Face DeepSeek-V3.2 `config.json` (the real field names), validated
// with zod and then checked for the cross-field constraints the architecture imposes. The result is the
// reference's ModelArgs in camelCase plus the derived numbers every module needs (softmax scales, YaRN).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DsvError } from '../errors.js';

export class ConfigError extends DsvError {}

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

const ropeScalingSchema = z
  .object({
    type: z.literal('yarn').optional(),
    rope_type: z.literal('yarn').optional(),
    factor: z.number().positive(),
    original_max_position_embeddings: posInt,
    beta_fast: z.number().positive(),
    beta_slow: z.number().positive(),
    mscale: z.number().nonnegative().default(1),
    mscale_all_dim: z.number().nonnegative().optional(),
  })
  .strict();

const quantSchema = z
  .object({
    activation_scheme: z.literal('dynamic'),
    fmt: z.literal('e4m3'),
    quant_method: z.literal('fp8'),
    scale_fmt: z.enum(['ue8m0']).nullable().optional(),
    weight_block_size: z.tuple([z.literal(128), z.literal(128)]),
  })
  .strict();

// Fields of the published config.json that carry no architectural meaning for this implementation
// (bookkeeping of transformers, training-time options). They are accepted and ignored; any other
// field is an error so that a typo or a config for another model is not silently misread.
const ignored = {
  architectures: z.array(z.string()).optional(),
  auto_map: z.record(z.string(), z.string()).optional(),
  attention_bias: z.literal(false).optional(),
  attention_dropout: z.number().optional(),
  aux_loss_alpha: z.number().optional(),
  seq_aux: z.boolean().optional(),
  ep_size: z.number().optional(),
  initializer_range: z.number().optional(),
  pretraining_tp: z.number().optional(),
  torch_dtype: z.string().optional(),
  dtype: z.string().optional(),
  transformers_version: z.string().optional(),
  use_cache: z.boolean().optional(),
  rope_interleave: z.boolean().optional(),
};

const hfSchema = z
  .object({
    ...ignored,
    model_type: z.enum(['deepseek_v32']),
    vocab_size: posInt,
    hidden_size: posInt,
    intermediate_size: posInt,
    moe_intermediate_size: posInt,
    num_hidden_layers: posInt,
    first_k_dense_replace: nonNegInt,
    moe_layer_freq: z.literal(1).default(1),
    num_attention_heads: posInt,
    num_key_value_heads: posInt.optional(),
    q_lora_rank: posInt,
    kv_lora_rank: posInt,
    qk_nope_head_dim: posInt,
    qk_rope_head_dim: posInt,
    v_head_dim: posInt,
    n_routed_experts: posInt,
    n_shared_experts: nonNegInt,
    num_experts_per_tok: posInt,
    n_group: posInt,
    topk_group: posInt,
    scoring_func: z.enum(['sigmoid', 'softmax']),
    routed_scaling_factor: z.number().positive(),
    norm_topk_prob: z.boolean(),
    topk_method: z.enum(['noaux_tc', 'greedy', 'group_limited_greedy']),
    index_n_heads: posInt,
    index_head_dim: posInt,
    index_topk: posInt,
    rope_theta: z.number().positive(),
    rope_scaling: ropeScalingSchema.nullable().optional(),
    max_position_embeddings: posInt,
    rms_norm_eps: z.number().positive(),
    hidden_act: z.literal('silu').default('silu'),
    bos_token_id: nonNegInt.nullable().optional(),
    eos_token_id: z.union([nonNegInt, z.array(nonNegInt)]).nullable().optional(),
    tie_word_embeddings: z.literal(false).default(false),
    num_nextn_predict_layers: nonNegInt.default(0),
    quantization_config: quantSchema.optional(),
  })
  .strict();

export type HfConfig = z.infer<typeof hfSchema>;

export interface YarnConfig {
  factor: number;
  originalMaxPositions: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
}

/** The validated configuration; names follow the reference's ModelArgs. */
export interface ModelConfig {
  vocabSize: number;
  dim: number;
  interDim: number;
  moeInterDim: number;
  nLayers: number;
  nDenseLayers: number;
  nHeads: number;
  qLoraRank: number;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  qkHeadDim: number;
  vHeadDim: number;
  nRoutedExperts: number;
  nSharedExperts: number;
  nActivatedExperts: number;
  nExpertGroups: number;
  nLimitedGroups: number;
  scoreFunc: 'sigmoid' | 'softmax';
  routeScale: number;
  normTopkProb: boolean;
  indexNHeads: number;
  indexHeadDim: number;
  indexTopk: number;
  ropeTheta: number;
  /** YaRN parameters when they are active (rope_scaling given and max positions > original). */
  yarn: YarnConfig | null;
  maxPositions: number;
  normEps: number;
  /** Number of MTP layers stored after the main layers (checkpoint layer index nLayers + i). */
  nMtpLayers: number;
  /** FP8 e4m3 weights with 128×128 block scales. */
  fp8Weights: boolean;
  /**
   * Activation-quantisation scale format. The reference rounds the scales of every act_quant (indexer
   * q/k, MLA latent, fp8 linears) to powers of two with ue8m0; DeepSeek-V3.2 ships with it, and the
   * goldens use it for bf16 checkpoints too, so it is the default when no quantization_config says so.
   */
  scaleFmt: 'ue8m0' | null;
  /** MLA softmax scale: qk_head_dim^-0.5 · mscale² (mscale only with YaRN active). */
  softmaxScale: number;
  /** Indexer scale: index_head_dim^-0.5 (no mscale). */
  indexSoftmaxScale: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Validate a parsed config.json object. `where` names the source in error messages. */
export function parseConfig(raw: unknown, where = 'config.json'): ModelConfig {
  const r = hfSchema.safeParse(raw);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => {
      const path = i.path.join('.') || '(root)';
      if (i.code === 'unrecognized_keys') return `unknown field(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}${i.path.length ? ` in ${path}` : ''}`;
      return `${path}: ${i.message}`;
    });
    throw new ConfigError(`${where}: invalid DeepSeek-V3.2 config: ${msgs.join('; ')}`);
  }
  const c = r.data;
  const bad = (field: string, msg: string): never => {
    throw new ConfigError(`${where}: ${field}: ${msg}`);
  };
  if (c.num_key_value_heads !== undefined && c.num_key_value_heads !== c.num_attention_heads) {
    bad('num_key_value_heads', `must equal num_attention_heads (${c.num_attention_heads}) for MLA, got ${c.num_key_value_heads}`);
  }
  if (c.first_k_dense_replace > c.num_hidden_layers) {
    bad('first_k_dense_replace', `${c.first_k_dense_replace} exceeds num_hidden_layers (${c.num_hidden_layers})`);
  }
  if (c.qk_rope_head_dim % 2 !== 0) bad('qk_rope_head_dim', `must be even (RoPE rotates pairs), got ${c.qk_rope_head_dim}`);
  if (!isPow2(c.index_head_dim)) bad('index_head_dim', `must be a power of two (the indexer applies a Hadamard transform), got ${c.index_head_dim}`);
  if (c.index_head_dim % 128 !== 0) bad('index_head_dim', `must be a multiple of 128 (FP8 act_quant blocks of 128), got ${c.index_head_dim}`);
  if (c.index_head_dim <= c.qk_rope_head_dim) {
    bad('index_head_dim', `must exceed qk_rope_head_dim (${c.qk_rope_head_dim}): the indexer splits [rope, nope], got ${c.index_head_dim}`);
  }
  if (c.kv_lora_rank % 128 !== 0) bad('kv_lora_rank', `must be a multiple of 128 (the latent is FP8-quantised in blocks of 128), got ${c.kv_lora_rank}`);
  if (c.n_routed_experts % c.n_group !== 0) bad('n_group', `n_routed_experts (${c.n_routed_experts}) is not divisible by n_group (${c.n_group})`);
  if (c.topk_group > c.n_group) bad('topk_group', `${c.topk_group} exceeds n_group (${c.n_group})`);
  const perGroup = c.n_routed_experts / c.n_group;
  if (c.num_experts_per_tok > c.topk_group * perGroup) {
    bad('num_experts_per_tok', `${c.num_experts_per_tok} exceeds the experts in topk_group groups (${c.topk_group}·${perGroup})`);
  }
  if (c.n_group > 1 && c.topk_method === 'noaux_tc' && perGroup < 2) {
    bad('n_group', `noaux_tc scores a group by its top-2 experts, so each group needs ≥ 2 experts (got ${perGroup})`);
  }
  if (c.scoring_func === 'sigmoid' && !c.norm_topk_prob) {
    bad('norm_topk_prob', 'the reference always normalises sigmoid routing weights; false is not supported');
  }
  const rs = c.rope_scaling ?? null;
  if (rs && rs.type === undefined && rs.rope_type === undefined) bad('rope_scaling.type', 'missing (expected "yarn")');
  if (c.num_nextn_predict_layers > 1) bad('num_nextn_predict_layers', `at most 1 MTP layer is supported, got ${c.num_nextn_predict_layers}`);
  // The reference switches YaRN (and the mscale² softmax factor) on only when the context it is built
  // for exceeds the original length; with max_seq_len = max_position_embeddings that is this test.
  const yarn: YarnConfig | null = rs && c.max_position_embeddings > rs.original_max_position_embeddings
    ? { factor: rs.factor, originalMaxPositions: rs.original_max_position_embeddings, betaFast: rs.beta_fast, betaSlow: rs.beta_slow, mscale: rs.mscale_all_dim ?? rs.mscale }
    : null;
  const qkHeadDim = c.qk_nope_head_dim + c.qk_rope_head_dim;
  let softmaxScale = qkHeadDim ** -0.5;
  if (yarn) {
    const m = 0.1 * yarn.mscale * Math.log(yarn.factor) + 1;
    softmaxScale = softmaxScale * m * m;
  }
  const eos = c.eos_token_id ?? null;
  return {
    vocabSize: c.vocab_size,
    dim: c.hidden_size,
    interDim: c.intermediate_size,
    moeInterDim: c.moe_intermediate_size,
    nLayers: c.num_hidden_layers,
    nDenseLayers: c.first_k_dense_replace,
    nHeads: c.num_attention_heads,
    qLoraRank: c.q_lora_rank,
    kvLoraRank: c.kv_lora_rank,
    qkNopeHeadDim: c.qk_nope_head_dim,
    qkRopeHeadDim: c.qk_rope_head_dim,
    qkHeadDim,
    vHeadDim: c.v_head_dim,
    nRoutedExperts: c.n_routed_experts,
    nSharedExperts: c.n_shared_experts,
    nActivatedExperts: c.num_experts_per_tok,
    nExpertGroups: c.n_group,
    nLimitedGroups: c.topk_group,
    scoreFunc: c.scoring_func,
    routeScale: c.routed_scaling_factor,
    normTopkProb: c.norm_topk_prob,
    indexNHeads: c.index_n_heads,
    indexHeadDim: c.index_head_dim,
    indexTopk: c.index_topk,
    ropeTheta: c.rope_theta,
    yarn,
    maxPositions: c.max_position_embeddings,
    normEps: c.rms_norm_eps,
    nMtpLayers: c.num_nextn_predict_layers,
    fp8Weights: c.quantization_config !== undefined,
    scaleFmt: c.quantization_config ? (c.quantization_config.scale_fmt ?? null) : 'ue8m0',
    softmaxScale,
    indexSoftmaxScale: c.index_head_dim ** -0.5,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos === null ? [] : Array.isArray(eos) ? eos : [eos],
  };
}

/** Read and validate `<dir>/config.json` (or a config file path). */
export function loadConfig(path: string): ModelConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read model config ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw, path);
}
