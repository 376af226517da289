// The configuration of a GRPO run (`dsv32 rl --config FILE`, src/rl/trainer.ts), validated with zod; an
// invalid file is rejected naming the field ("opsm_delta: expected number"). Names follow slime / verl /
// TRL where one exists (../shared/docs/rl.md §3); docs/rl.md has the mapping table.
//
// The stabilizer switches exist for the ablation of issue 14 (each of the paper's stabilizers off in turn,
// rl.md §1.3–1.6):
//   use_kl_loss                   the −β·D_KL term of Eq. 5 (β = kl_loss_coef)
//   use_unbiased_kl               Eq. 7's r·k3 (true) or plain k3 (false)
//   use_opsm                      Off-Policy Sequence Masking with δ = opsm_delta (Eq. 8–9)
//   use_rollout_routing_replay    Keep Routing: the engine's routes forced in the training forward
//   use_sampling_mask             Keep Sampling Mask: π_θ and π_old renormalised over the kept set
//   use_indexer_replay            the engine's DSA indexer selections forced in the training forward (off by
//                                 default: an extension, not one of the paper's stabilizers)
// The paper discloses none of G, ε, β, δ, top-p, the learning rate or the mini-batch count (rl.md §1.1),
// so the defaults below are ours (δ from TRL's example, ε the usual 0.2).
import { z } from 'zod';
import { DsvError, issuesText, readJsonFile } from '../errors.js';
import { rewardConfigSchema } from './rewards.js';

export class RlConfigError extends DsvError {}

export const rlConfigSchema = z.strictObject({
  /** the policy's starting point (a Hugging Face directory, bf16/f32 weights); also the frozen π_ref */
  model: z.string().min(1),
  /** tokenizer.json (default: the model directory's) */
  tokenizer: z.string().min(1).optional(),
  env: z.strictObject({
    /** an environment directory (src/envs, e.g. one written by `dsv32 env generate`) */
    path: z.string().min(1),
    /** the task ids trained on (default: all, in the environment's order) */
    tasks: z.array(z.string().min(1)).min(1).optional(),
    /** only the first this many of them (the rest can be the held-out evaluation's: eval.first_task) */
    max_tasks: z.number().int().positive().optional(),
    /** model calls per episode at most */
    max_steps: z.number().int().positive().default(8),
  }),
  /** G: episodes per task (the GRPO group) */
  n_samples_per_prompt: z.number().int().min(2),
  /** tasks per RL step (the rollout batch holds tasks_per_step · G episodes) */
  tasks_per_step: z.number().int().positive(),
  /** optimiser steps the rollout batch is split into; the 2nd and later are off-policy (rl.md §1.4) */
  num_minibatches: z.number().int().positive().default(1),
  /** sequences per forward/backward inside a minibatch (default: the whole minibatch); the micro-batches'
   *  gradients sum before the minibatch's one optimiser step, so this lowers peak memory and changes the
   *  update only by float summation order */
  micro_batch_size: z.number().int().positive().optional(),
  steps: z.number().int().positive(),
  lr: z.number().positive(),
  weight_decay: z.number().nonnegative().default(0),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  /** global gradient-norm clip (0: off) */
  clip_grad: z.number().nonnegative().default(1),
  /** ε of the clipped surrogate; eps_clip_high (DAPO clip-higher) defaults to it */
  eps_clip: z.number().gt(0).lt(1).default(0.2),
  eps_clip_high: z.number().gt(0).lt(1).optional(),
  use_kl_loss: z.boolean().default(true),
  /** β */
  kl_loss_coef: z.number().nonnegative().default(0.001),
  use_unbiased_kl: z.boolean().default(true),
  use_opsm: z.boolean().default(true),
  /** δ ≥ 0 */
  opsm_delta: z.number().nonnegative().default(0.5),
  use_rollout_routing_replay: z.boolean().default(true),
  use_sampling_mask: z.boolean().default(true),
  /** replay the rollout's indexer top-k selections in the training forward (indexer-replay.ts) */
  use_indexer_replay: z.boolean().default(false),
  rollout_temperature: z.number().positive().default(1),
  rollout_top_p: z.number().gt(0).max(1).default(1),
  rollout_top_k: z.number().int().default(0),
  rollout_min_p: z.number().min(0).max(1).default(0),
  /** new tokens per model turn */
  rollout_max_response_len: z.number().int().positive(),
  /** longest sequence (prompt + generation) */
  rollout_max_context_len: z.number().int().min(2).default(4096),
  thinking: z.boolean().default(true),
  reward: rewardConfigSchema.default(() => rewardConfigSchema.parse({})),
  /** engine: sequences decoded together, cache blocks of 64 tokens */
  engine: z.strictObject({
    max_num_seqs: z.number().int().positive().default(16),
    num_blocks: z.number().int().positive().optional(),
  }).default({ max_num_seqs: 16 }),
  /** rollouts through a running `dsv32 serve --enable-weight-updates` instead of the in-process engine: before
   *  each step's rollouts (and each evaluation) the server is given the policy. Not part of the run's identity */
  rollout_server: z.strictObject({
    /** with the version prefix, e.g. http://127.0.0.1:8000/v1 */
    base_url: z.string().url(),
    /** the name the server serves (its --served-model-name) */
    model: z.string().min(1),
    api_key: z.string().min(1).optional(),
    /** silence from the server before a try is given up, and the tries after a failure */
    request_timeout_ms: z.number().int().positive().optional(),
    max_retries: z.number().int().nonnegative().optional(),
    /** how the policy reaches the server: 'tensor' sends it as one safetensors file in the body of
     *  POST /update_weights_from_tensor (any machine that can reach the URL); 'disk' writes it to
     *  <out>/rollout-weights and has the server read it (POST /update_weights_from_disk: a shared file system) */
    weight_transfer: z.enum(['tensor', 'disk']).default('tensor'),
  }).optional(),
  numerics: z.enum(['f32', 'bf16']).default('f32'),
  /** where the policy, π_ref and the engine run: auto is cuda when a GPU is usable, else cpu */
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** held-out evaluation while training (verl's test_freq): each task `samples` times at step 0, every
   *  `every` steps and at the end, into <out>/eval.jsonl (pass@1 and pass@samples). Not part of the run's
   *  identity: it reads the policy and changes nothing */
  eval: z.strictObject({
    /** an environment directory, usually held out from env.path's tasks */
    path: z.string().min(1),
    /** task ids (default: all, in the environment's order) */
    tasks: z.array(z.string().min(1)).min(1).optional(),
    /** skip this many of them, then take at most max_tasks */
    first_task: z.number().int().nonnegative().default(0),
    max_tasks: z.number().int().positive().optional(),
    every: z.number().int().positive().default(10),
    samples: z.number().int().positive().default(4),
    /** default: rollout_temperature; the other filters are off (top-p 1, top-k 0, min-p 0) */
    temperature: z.number().positive().optional(),
    /** the same seed at every evaluation: evaluations differ only by the policy */
    seed: z.number().int().nonnegative().default(12345),
  }).optional(),
  out: z.string().min(1),
  save_every: z.number().int().positive().default(10),
  /** wall-time budget of one invocation: after the step that spends it, checkpoint and stop (a later run
   *  resumes). The GPU machine runs a command for at most 10 minutes */
  max_seconds: z.number().positive().optional(),
  keep: z.number().int().positive().default(2),
  seed: z.number().int().nonnegative().default(0),
});

export type RlConfig = z.output<typeof rlConfigSchema>;
export type RlConfigInput = z.input<typeof rlConfigSchema>;

export function parseRlConfig(raw: unknown, where = 'rl config'): RlConfig {
  const r = rlConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new RlConfigError(`${where}: ${issuesText(r.error.issues)}`);
  }
  const c = r.data;
  if (c.rollout_max_response_len >= c.rollout_max_context_len) {
    throw new RlConfigError(`${where}: rollout_max_response_len (${c.rollout_max_response_len}) must be below rollout_max_context_len (${c.rollout_max_context_len})`);
  }
  if (c.num_minibatches > c.tasks_per_step * c.n_samples_per_prompt) {
    throw new RlConfigError(`${where}: num_minibatches (${c.num_minibatches}) exceeds the episodes per step (tasks_per_step · n_samples_per_prompt = ${c.tasks_per_step * c.n_samples_per_prompt})`);
  }
  return c;
}

export function loadRlConfig(file: string): RlConfig {
  return parseRlConfig(readJsonFile(file, RlConfigError), file);
}
