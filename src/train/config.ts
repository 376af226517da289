// The training run's configuration file (dsv32 train pretrain|dsa|sft --config FILE), validated with
// zod; an invalid file is rejected naming the field (e.g. "optim.lr: expected number").
//
// Stages (issue 15, paper §2.1):
//   pretrain  dense attention (every causal key), LM + λ·MTP loss, all weights;
//   dsa       DSA continued pre-training: for dsa.warmupSteps steps the dense warm-up (main model frozen,
//             only the indexers learn, KL to the head-summed attention over all causal keys, at
//             dsa.warmupLr), then the sparse stage (top-k attention; LM + λ·MTP for the main model, the
//             KL over the selected keys for the indexers, their input detached);
//   sft       sparse attention as the sparse stage, the loss on the data's masked tokens.
import { z } from 'zod';
import { DsvError, issuesText, readJsonFile } from '../errors.js';
import { lrScheduleSpec } from './schedule.js';

export class TrainConfigError extends DsvError {}

export const STAGES = ['pretrain', 'dsa', 'sft'] as const;
export type Stage = (typeof STAGES)[number];

export const trainConfigSchema = z.strictObject({
  /** where the weights come from: a checkpoint directory, or a config.json object drawn at random */
  model: z.union([
    z.strictObject({ init: z.string().min(1) }),
    z.strictObject({ config: z.record(z.string(), z.unknown()), seed: z.number().int().nonnegative().default(0) }),
  ]),
  data: z.strictObject({
    path: z.string().min(1),
    tokenizer: z.string().min(1).optional(),
    split: z.enum(['train', 'validation']).default('train'),
    seqLen: z.number().int().min(2),
    batchSize: z.number().int().positive(),
    seed: z.number().int().nonnegative().default(0),
  }),
  steps: z.number().int().positive(),
  /** held-out loss every `every` steps and at the end, over `batches` fixed batches of the eval data */
  eval: z.strictObject({
    /** default: data.path */
    path: z.string().min(1).optional(),
    split: z.enum(['train', 'validation']).default('validation'),
    every: z.number().int().positive(),
    batches: z.number().int().positive().default(4),
  }).optional(),
  optim: z.strictObject({
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.95]),
    eps: z.number().nonnegative().default(1e-8),
    weightDecay: z.number().nonnegative().default(0.1),
    /** global gradient-norm clip (0: off) */
    clip: z.number().nonnegative().default(1),
  }).default({ betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, clip: 1 }),
  schedule: lrScheduleSpec,
  /** λ of the MTP loss */
  mtpWeight: z.number().nonnegative().default(0.3),
  /** f64: f64 master weights and activations, for CPU tests (data-parallel equivalence) only: checkpoints
   *  of f64 weights do not load, so such a run cannot resume */
  numerics: z.enum(['f32', 'bf16', 'f64']).default('f32'),
  /** where the model trains: auto = cuda when a GPU is usable, else cpu */
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  dsa: z.strictObject({
    warmupSteps: z.number().int().nonnegative().default(0),
    warmupLr: z.number().positive().default(1e-3),
  }).default({ warmupSteps: 0, warmupLr: 1e-3 }),
  /** γ of the auxiliary-loss-free expert balancing (gate.ts balance; DeepSeek-V3: 0.001; 0: off) */
  balanceSpeed: z.number().nonnegative().default(0.001),
  /** sft/sparse stage: also train the indexers on their KL (default true) */
  indexerLoss: z.boolean().default(true),
  out: z.string().min(1),
  saveEvery: z.number().int().positive().default(100),
  /** data-parallel runs (dsv32 launch --gpus N): gradients are averaged in buckets of at most bucketMb MB
   *  (src/dist/data-parallel.ts; default 25, DDP's). Not part of the run's identity: it changes no number */
  dist: z.strictObject({ bucketMb: z.number().positive().optional() }).optional(),
  /** checkpoints kept (oldest removed first) */
  keep: z.number().int().positive().default(2),
  /** stop (checkpointed, resumable) after this many seconds of wall time: one GPU command's budget */
  maxSeconds: z.number().positive().optional(),
});

export type TrainConfig = z.infer<typeof trainConfigSchema>;

export function parseTrainConfig(raw: unknown, where = 'train config'): TrainConfig {
  const r = trainConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new TrainConfigError(`${where}: ${issuesText(r.error.issues)}`);
  }
  return r.data;
}

export function loadTrainConfig(file: string): TrainConfig {
  return parseTrainConfig(readJsonFile(file, TrainConfigError), file);
}
