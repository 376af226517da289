// A tiny RL run's inputs on disk for the trainer and `dsv32 rl` tests: a random DeepSeek-V3.2 model directory
// (config.json, safetensors, the test tokenizer) and a generated code-interpreter environment.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCodeInterpreter } from '../../src/envs/families/code-interpreter/family.js';
import { parseConfig, randomCheckpoint } from '../../src/model/index.js';
import { fromArray, saveSharded } from '../../src/tensor/index.js';
import type { RlConfigInput } from '../../src/rl/config.js';
import { buildMiniDeepSeekTokenizer } from '../chat/mini-tokenizer.js';
import { scratchDir } from '../envs/family-helpers.js';

/** 2 layers (1 dense, 1 MoE of 4 experts, top-2): every code path of the model, small enough for CI. */
export const TINY_CONFIG = {
  model_type: 'deepseek_v32',
  vocab_size: 640,
  hidden_size: 64,
  intermediate_size: 128,
  moe_intermediate_size: 32,
  num_hidden_layers: 2,
  first_k_dense_replace: 1,
  num_attention_heads: 1,
  num_key_value_heads: 1,
  q_lora_rank: 32,
  kv_lora_rank: 128,
  qk_nope_head_dim: 8,
  qk_rope_head_dim: 8,
  v_head_dim: 8,
  n_routed_experts: 4,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  n_group: 2,
  topk_group: 1,
  scoring_func: 'sigmoid',
  routed_scaling_factor: 2.5,
  norm_topk_prob: true,
  topk_method: 'noaux_tc',
  index_n_heads: 1,
  index_head_dim: 128,
  index_topk: 2048,
  rope_theta: 10000,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-6,
  bos_token_id: 0,
  eos_token_id: 1,
  tie_word_embeddings: false,
  num_nextn_predict_layers: 0,
};

const EOS_SHIFT = 4;
const EOS_GAIN = 1.2;

export interface RlFixture {
  root: string;
  modelDir: string;
  envDir: string;
}

/** `config`: fields of the tiny model's config.json to override (e.g. a small index_topk, so rows run sparse attention) */
export function rlFixture(seed = 5, config: Record<string, unknown> = {}): RlFixture {
  const root = scratchDir('rl-train-');
  const files = buildMiniDeepSeekTokenizer();
  const modelDir = join(root, 'model');
  mkdirSync(modelDir, { recursive: true });
  const eos = (files.tokenizerJson as { added_tokens: { id: number; content: string }[] }).added_tokens.find((t) => t.content === '<｜end▁of▁sentence｜>')!.id;
  const raw = { ...TINY_CONFIG, ...config, eos_token_id: eos };
  const cfg = parseConfig(raw);
  const ckpt = randomCheckpoint(cfg, seed);
  // A random model almost never samples EOS (1/640), so every episode would run to the token limit and
  // earn the same reward: Â ≡ 0 and nothing to learn. Every embedding gets a shared component along
  // dimension 0 that survives to the final hidden state, and lm_head's EOS row reads it, so EOS is a
  // likely (not certain) next token everywhere and episode lengths — hence length-penalty rewards — vary.
  const emb = ckpt.get('model.embed_tokens.weight')!;
  const e = Float32Array.from(emb.toFloat32());
  for (let v = 0; v < cfg.vocabSize; v++) e[v * cfg.dim] = e[v * cfg.dim]! + EOS_SHIFT;
  ckpt.set('model.embed_tokens.weight', fromArray(e, emb.shape, { dtype: 'f32' }));
  const head = ckpt.get('lm_head.weight')!;
  const w = Float32Array.from(head.toFloat32());
  for (let d = 0; d < cfg.dim; d++) w[eos * cfg.dim + d] = d === 0 ? EOS_GAIN : 0;
  ckpt.set('lm_head.weight', fromArray(w, head.shape, { dtype: 'f32' }));
  saveSharded(modelDir, ckpt, { maxShardBytes: 64 * 1024 * 1024 });
  writeFileSync(join(modelDir, 'config.json'), JSON.stringify(raw, null, 2));
  writeFileSync(join(modelDir, 'tokenizer.json'), JSON.stringify(files.tokenizerJson));
  writeFileSync(join(modelDir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
  const envDir = join(root, 'ci');
  generateCodeInterpreter({ seed: 3, tasks: 2, outDir: envDir });
  return { root, modelDir, envDir };
}

/** A run of a few seconds: 1 task × G = 2 episodes of one short turn, split into 2 minibatches. */
export function tinyRlConfig(f: RlFixture, out: string, over: Partial<RlConfigInput> = {}): RlConfigInput {
  return {
    model: f.modelDir,
    env: { path: f.envDir, max_steps: 1 },
    n_samples_per_prompt: 2,
    tasks_per_step: 1,
    num_minibatches: 2,
    steps: 2,
    lr: 1e-2,
    kl_loss_coef: 0.05,
    opsm_delta: 0.1,
    rollout_top_k: 8,
    rollout_max_response_len: 6,
    rollout_max_context_len: 4096,
    // the length penalty is the reward that varies between a random model's episodes (see rlFixture)
    reward: { outcome: 1, format: 0, language: 0, length: { weight: 1, maxTokens: 6, buffer: 5 } },
    engine: { max_num_seqs: 2 },
    out,
    save_every: 1,
    seed: 11,
    ...over,
  };
}
