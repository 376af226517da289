// The GRPO trainer of `dsv32 rl` (issue 14; DeepSeek-V3.2 §3.1, ../shared/docs/rl.md §1.2–1.6). One RL step:
//
//   1. rollouts   tasks_per_step tasks × G episodes on a fresh in-process engine over the CURRENT weights
//                 (rollout.ts), with a per-step sampling seed (seed, step) so the step is reproducible;
//   2. rewards    the episodes' R_i (rewards.ts), Â = R − mean over the group (grpo.ts, no std division);
//   3. collate    batch.ts; the advantages are centred over whole groups BEFORE the split below, so a
//                 minibatch that holds part of a group still trains on the group-relative Â;
//   4. minibatches the rollout batch is split into num_minibatches optimiser steps. Only the first runs at
//                 θ = θ_old; the later ones see a θ that has already moved, so they are off-policy — the
//                 staleness OPSM (rl.md §1.4) and the clip are there for;
//   5. per minibatch  trainForward with the engine's routes forced (Keep Routing, keep-routing.ts) at every
//                 recorded position: sampled tokens' rows and, from each turn's prompt routes, the prompt and
//                 tool-output rows (rollout.ts); only positions with no recording (none in practice but
//                 padding) take the trainer's own current routes, R2-style, batch.ts overlayRoutes),
//                 log π_θ over the recorded kept set at the sampling temperature
//                 (Keep Sampling Mask, keep-sampling-mask.ts), the composed loss (policy-loss.ts: clipped
//                 ratio against the engine's π_old, OPSM with δ, β·unbiased KL to π_ref), backward, global
//                 gradient-norm clip, AdamW, weights.update().
//                 With use_indexer_replay the rollouts also record the indexer's key selections at every
//                 position (rollout.ts) and rows longer than index_topk run sparse attention over the
//                 engine's selections (indexer-replay.ts; unrecorded positions, i.e. padding, take the
//                 trainer's own), so the attention support of π_θ is that of π_old, as Keep Routing makes
//                 its experts.
//
// π_ref is the frozen initial policy: the `model` directory opened a second time (never trained), scored with
// the same forced routes and the same kept sets as π_θ, so KL(π_θ‖π_ref) is exactly 0 at θ = θ_ref [interp:
// the paper does not say whether π_ref is masked, rl.md §1.6].
//
// Serving the updated weights: the optimiser updates the master tensors in place and weights.update() bumps
// ModelWeights.generation, which makes the weight-derived inference caches (moe.ts stacked experts, mla.ts
// absorbed wkv_b) rebuild. The engine's KV/prefix cache, however, holds activations of the OLD weights, so
// every step builds a new engine: a cached prefix from step k−1 would otherwise be served as if computed by
// θ_k.
//
// Data parallel (issue 16; a collective of N ranks: `dsv32 launch --gpus N`, or hooks.collective): rank r rolls
// out the step's tasks [r·T/N, (r+1)·T/N) of T = tasks_per_step (T must divide by N) on its own engine, with
// the seeds a 1-rank run gives those tasks (a group's seeds depend on the step and the task, not on the other
// groups), so the ranks' rollouts together are the 1-rank rollouts. Groups never span ranks, so Â is local.
// Each rank splits its sequences into num_minibatches; minibatch m is the union of the ranks' m-th shares
// (with num_minibatches 1, the 1-rank minibatch; otherwise a 1-rank minibatch of other sequences). The loss
// is seq-mean-token-mean, L = (1/S) Σ_i mean_t ℓ_{i,t} over the minibatch's S sequences: each rank divides
// its own Σ_i by the GLOBAL S (the ranks' counts are gathered once per step), so Σ_r L_r = L and the
// gradients are SUMMED over ranks (GradAverager 'sum', launched during the last micro-batch's backward)
// before the clip and AdamW: every rank applies the 1-rank update. The logged numbers are global (sums and
// counts reduced, per-sequence lists gathered in rank order); rank 0 alone writes logs, evaluations and
// checkpoints; every rank resumes from <out>/latest. World size 1 moves nothing: today's logs and checkpoints.
// A rollout server needs world size 1.
//
// Resume: checkpoints (src/train/checkpoint.ts: f32 master weights, AdamW moments, the step) every save_every
// steps, at the end, and when max_seconds of this invocation are spent; a run started again with the same
// config continues from <out>/latest. The rollout seed, the task choice and the minibatch split are functions
// of the step, and a fresh engine starts from an empty cache, so the resumed run repeats the uninterrupted one
// bit for bit (given deterministic environments: the engine's batch composition follows request arrival,
// which tool latency could change).
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { loadTokenizer, type DeepSeekTokenizer } from '../chat/tokenizer.js';
import { CudaError, resolveDevice } from '../backend/cuda/index.js';
import { CUDA_ERROR_OUT_OF_MEMORY } from '../backend/cuda/cuda-consts.js';
import { LLMEngine } from '../engine/engine.js';
import { loadEnvironment, type Environment } from '../envs/load.js';
import { type Collective, openCollective } from '../dist/collective.js';
import { anyRank, concatScalars, gatherScalars, GradAverager, reduceScalars } from '../dist/data-parallel.js';
import { DsvError } from '../errors.js';
import { DeepseekV32 } from '../model/model.js';
import { getBackend } from '../tensor/backend.js';
import { backwardReleasing, releaseDeadTensors } from '../tensor/memory.js';
import { type Tensor, detach, fromArray, gather, logSoftmax, mul, muls, noGrad, sum, reshape, softmax, unsqueeze, where } from '../tensor/index.js';
import { latestCheckpoint, OPTIMIZER_FILE, saveCheckpoint } from '../train/checkpoint.js';
import { clipGradNorm, gradNorm as gradNormOf } from '../train/clip.js';
import { AdamW } from '../train/optim.js';
import { type RlBatch, type RolloutRecord, collateRollouts, overlayRoutes } from './batch.js';
import type { RlConfig } from './config.js';
import { forcedTopkFromRecorded, indexerDisagreement, type HostSelection } from './indexer-replay.js';
import { type RecordedRoutes, forcedRoutesFromRecorded, recordRoutes, routingDisagreement } from './keep-routing.js';
import { maskedTokenLogProbs } from './keep-sampling-mask.js';
import { policyLoss } from './policy-loss.js';
import { GenerativeRewardModel } from './rewards.js';
import { EngineSampler, type GroupRollout, HttpSampler, type RolloutOptions, groupRecords, rolloutGroup } from './rollout.js';
import { sendPolicy } from './weight-sync.js';

export class RlTrainError extends DsvError {}

export const RL_LOG_FILE = 'rl.jsonl';
export const RL_EVAL_FILE = 'eval.jsonl';
const STAGE = 'rl';
/** the engine returns at most 20 top logprobs; the kept mass is derivable when they cover the kept set */
const MAX_TOP_LOGPROBS = 20;

/** Per optimiser step (minibatch) of an RL step. */
export interface MinibatchLog {
  sequences: number;
  tokens: number;
  loss: number;
  grad_norm: number;
  /** mean and max over trained tokens of |r − 1|, r = π_θ/π_old before this minibatch's update */
  ratio_mean_abs_dev: number;
  ratio_max_abs_dev: number;
  clip_fraction: number;
  /** sequences OPSM removed from the policy term */
  opsm_masked_fraction: number;
  /** per sequence: Â and OPSM's statistic mean(log π_old − log π_θ) (Eq. 9), for checking the mask */
  advantages: number[];
  opsm_statistic: number[];
  /** mean log π_θ of the trained tokens (over the kept set with Keep Sampling Mask, the full vocabulary without) */
  logp_mean: number;
  /** mean unbiased KL estimate r·k3 (0 when use_kl_loss is off) */
  kl: number;
  /** mean entropy of softmax(logits/τ) over the full vocabulary at trained positions */
  entropy: number;
  /** mean |log π_θ − log π_rollout| over trained tokens */
  logprob_mismatch: number;
  /** (token, MoE layer) pairs at engine-routed positions where the training forward's experts differ */
  routing_disagreement: number;
  /** the same for the gate's own choice at the current θ, layer by layer on the replayed history (what Keep Routing overrides) */
  router_drift: number;
  /** use_indexer_replay: recorded selected keys the trainer's own unforced selection does not select (indexer-replay.ts) */
  indexer_disagreement?: number;
}

export interface RlStepLog {
  step: number;
  reward: number;
  /** episodes whose verifier score is 1 */
  pass_rate: number;
  outcome: number;
  episodes: number;
  sequences: number;
  trained_tokens: number;
  /** trained tokens whose kept mass the engine's top logprobs did not cover (their π_old is unmasked) */
  unmasked_tokens: number;
  /** means over the step's minibatches */
  kl: number;
  entropy: number;
  clip_fraction: number;
  opsm_masked_fraction: number;
  /** the first minibatch's: θ = θ_old there, so this is the pure rollout/train numerics mismatch */
  logprob_mismatch: number;
  routing_disagreement: number;
  router_drift: number;
  /** use_indexer_replay only */
  indexer_disagreement?: number;
  minibatches: MinibatchLog[];
  rollout_s: number;
  train_s: number;
}

/** A held-out evaluation (config `eval`): every task `samples` times with the policy at `step`. */
export interface RlEvalLog {
  step: number;
  tasks: number;
  samples: number;
  /** mean over tasks of (correct samples / samples): the unbiased pass@1 */
  pass_at_1: number;
  /** share of tasks with at least one correct sample: pass@samples */
  pass_at_k: number;
  /** mean episode reward (verifier outcome plus the format, language and length terms) */
  reward: number;
  seconds: number;
}

export interface RlHooks {
  onStart?: (info: { startStep: number; steps: number; params: number; tasks: number; device: string; rank: number; worldSize: number; model: DeepseekV32 }) => void;
  onStep?: (log: RlStepLog) => void;
  onCheckpoint?: (dir: string) => void;
  onEval?: (log: RlEvalLog) => void;
  /** stop after this many steps of this invocation (tests: a simulated kill after a checkpoint) */
  stopAfter?: number;
  /** the step's rollout records before collation (inspection and tests; a test may alter a recording) */
  onRecords?: (records: RolloutRecord[], step: number) => void;
  /** use_indexer_replay, rows longer than index_topk: the selections a minibatch's forward is forced to, per layer [S·T, index_topk] */
  onForcedTopk?: (info: { batch: RlBatch; forced: readonly Int32Array[]; T: number }) => void;
  /** this process's rank and world (default: openCollective() from the DSV32_* environment of dsv32 launch) */
  collective?: Collective;
}

export interface RlResult {
  step: number;
  resumedFrom: number | null;
  checkpoint: string | null;
  done: boolean;
  model: DeepseekV32;
}

/** The configuration's fingerprint, without what may change between a run and its resume. */
export function rlConfigHash(cfg: RlConfig): string {
  // neither are the device, the micro-batch size, the rollout server (execution, not the algorithm) and the
  // evaluation (it only reads the policy): a run checkpointed on one device resumes on another
  const { steps: _s, out: _o, keep: _k, save_every: _e, max_seconds: _m, device: _d, micro_batch_size: _b, eval: _v, rollout_server: _r, use_indexer_replay: ir, ...base } = cfg;
  // off, the flag is left out so runs checkpointed before it existed keep their fingerprint
  const rest = ir ? { ...base, use_indexer_replay: ir } : base;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}

/** The step's sampling seed: distinct per (run seed, step), the same when the step is repeated. */
export function rolloutSeed(seed: number, step: number): number {
  return ((seed * 2654435761 + step * 40503 + 1) >>> 0) % 2147483647;
}

/** The tasks of step `step`: tasks_per_step ids taken round-robin from the task list. */
export function stepTasks(tasks: readonly string[], perStep: number, step: number): string[] {
  return Array.from({ length: perStep }, (_, i) => tasks[(step * perStep + i) % tasks.length]!);
}

/** Contiguous, nearly equal index ranges [a, b) splitting n items into k parts. */
export function splitRanges(n: number, k: number): [number, number][] {
  return Array.from({ length: k }, (_, i) => [Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k)] as [number, number]);
}

/** log softmax(logits/τ)(target) over the full vocabulary (Keep Sampling Mask off); 0 at invalid tokens. */
function fullTokenLogProbs(logits: Tensor, target: Tensor, temperature: number, valid: Tensor): Tensor {
  const [S, T] = target.shape as [number, number];
  const V = logits.shape[logits.rank - 1]!;
  const lp = logSoftmax(muls(reshape(logits, [S * T, V]), 1 / temperature), -1);
  const picked = reshape(gather(lp, 1, unsqueeze(reshape(target, [S * T]), 1)), [S, T]);
  return where(valid, picked, 0);
}

/** Mean over valid rows of −Σ_v p log p of softmax(logits/τ); no gradient. Reduced over V on the device. */
function meanEntropy(logits: Tensor, temperature: number, valid: Tensor): number {
  return noGrad(() => {
    const V = logits.shape[logits.rank - 1]!;
    const z = muls(reshape(detach(logits), [-1, V]), 1 / temperature);
    const h = sum(mul(softmax(z, -1), logSoftmax(z, -1)), 1).toFloat64();
    const ok = valid.toFloat64();
    let s = 0;
    let n = 0;
    for (let i = 0; i < ok.length; i++) {
      if (!ok[i]) continue;
      s -= h[i]!;
      n++;
    }
    return n ? s / n : 0;
  });
}

/** The routes of `a` and `b` restricted to the engine-routed positions of each sequence (routed [S, T]). */
function atRouted(a: readonly RecordedRoutes[], b: readonly RecordedRoutes[], routed: Float64Array, T: number): [RecordedRoutes[], RecordedRoutes[]] {
  const pick = (r: RecordedRoutes, s: number): RecordedRoutes => {
    const per = r.layers * r.k;
    const pos = Array.from({ length: T }, (_, j) => j).filter((j) => routed[s * T + j]);
    const data = new Int16Array(pos.length * per);
    pos.forEach((j, i) => data.set(r.data.subarray(j * per, (j + 1) * per), i * per));
    return { data, tokens: pos.length, layers: r.layers, k: r.k };
  };
  return [a.map(pick), b.map(pick)];
}

/**
 * Whether some sequence has an input position the engine did not route (routed [S, T]) at or before its last
 * trained target (valid [S, T]); positions after it reach no trained log-prob.
 */
export function unroutedBeforeLastTarget(valid: Float64Array, routed: Float64Array, S: number, T: number): boolean {
  for (let s = 0; s < S; s++) {
    let last = -1;
    for (let j = 0; j < T; j++) if (valid[s * T + j]) last = j;
    for (let j = 0; j <= last; j++) if (!routed[s * T + j]) return true;
  }
  return false;
}

/** Drop the log lines of steps after `step` (a killed run's steps past its last checkpoint). */
function truncateLog(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8').split('\n').filter((l) => {
    try {
      return l !== '' && (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false; // a line cut by the kill
    }
  });
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}

/** The steps a JSONL log has lines for. */
function loggedSteps(path: string): Set<number> {
  if (!existsSync(path)) return new Set();
  return new Set(readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { step: number }).step));
}

const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export interface RlInputs {
  /** default: loadEnvironment(cfg.env.path) */
  env?: Environment;
  /** default: loadTokenizer(cfg.tokenizer ?? cfg.model) */
  tokenizer?: DeepSeekTokenizer;
}

export async function rlTrain(cfg: RlConfig, hooks: RlHooks = {}, inputs: RlInputs = {}): Promise<RlResult> {
  const configHash = rlConfigHash(cfg);
  const tokPath = cfg.tokenizer ?? cfg.model;
  const tok = inputs.tokenizer ?? loadTokenizer(tokPath);
  const env = inputs.env ?? loadEnvironment(cfg.env.path);
  const tasks = (cfg.env.tasks ?? env.tasks.map((t) => t.id)).slice(0, cfg.env.max_tasks);
  for (const [i, t] of tasks.entries()) if (!env.taskById.has(t)) throw new RlTrainError(`env.tasks[${i}]: environment ${env.manifest.id} has no task "${t}"`);

  const evalEnv = cfg.eval ? (cfg.eval.path === cfg.env.path ? env : loadEnvironment(cfg.eval.path)) : null;
  const evalTasks = cfg.eval && evalEnv ? (cfg.eval.tasks ?? evalEnv.tasks.map((t) => t.id)).slice(cfg.eval.first_task, cfg.eval.max_tasks === undefined ? undefined : cfg.eval.first_task + cfg.eval.max_tasks) : [];
  if (cfg.eval && !evalTasks.length) throw new RlTrainError(`eval.first_task: ${cfg.eval.first_task} skips every one of the ${(cfg.eval.tasks ?? evalEnv!.tasks).length} evaluation tasks`);
  for (const [i, t] of evalTasks.entries()) if (!evalEnv!.taskById.has(t)) throw new RlTrainError(`eval.tasks[${i}]: environment ${evalEnv!.manifest.id} has no task "${t}"`);

  const resume = latestCheckpoint(cfg.out);
  if (resume && (resume.state.configHash !== configHash || resume.state.stage !== STAGE)) {
    throw new RlTrainError(`out: ${cfg.out} holds a checkpoint of another run (stage ${resume.state.stage}, config ${resume.state.configHash}; this run: ${STAGE}, ${configHash}); use a fresh out directory`);
  }
  let device: string;
  try {
    device = resolveDevice(cfg.device);
  } catch (e) {
    throw new RlTrainError(`device: ${(e as Error).message}`, { cause: e });
  }
  const dp = hooks.collective ?? (await openCollective(getBackend(device)));
  const N = dp.worldSize;
  const lead = dp.rank === 0;
  if (cfg.tasks_per_step % N !== 0) {
    throw new RlTrainError(`tasks_per_step ${cfg.tasks_per_step} is not divisible by the world size ${N}: each rank rolls out tasks_per_step/${N} of the step's tasks`);
  }
  // every rank would push its own copy of the policy to the one server, and the server's batch would mix the ranks' requests
  if (cfg.rollout_server && N > 1) throw new RlTrainError(`rollout_server: rollouts through a server need world size 1 (this run has ${N} ranks); drop rollout_server to roll out on each rank's own engine`);
  // checkpoints hold f32 masters: an FP8 source's quantization_config would describe them wrongly
  const { quantization_config: _q, ...srcConfig } = JSON.parse(readFileSync(join(cfg.model, 'config.json'), 'utf8')) as Record<string, unknown>;
  const configJson = JSON.stringify(srcConfig, null, 2) + '\n';
  const model = DeepseekV32.load(resume ? resume.dir : cfg.model, { master: 'f32', device });
  const ref = cfg.use_kl_loss && cfg.kl_loss_coef > 0 ? DeepseekV32.load(cfg.model, { device }) : null;
  const mc = model.cfg;
  if (tok.vocabSize > mc.vocabSize) throw new RlTrainError(`tokenizer: ${tok.vocabSize} tokens, more than the model's vocab_size ${mc.vocabSize}`);
  const params = model.weights.parameters();
  const decay = (n: string, p: Tensor): boolean => p.rank >= 2 && !n.endsWith('embed_tokens.weight');
  const opt = resume
    ? AdamW.load(join(resume.dir, OPTIMIZER_FILE), params, { decay })
    : new AdamW(params, { lr: cfg.lr, betas: cfg.betas as [number, number], eps: 1e-8, weightDecay: cfg.weight_decay, decay });
  opt.lr = cfg.lr;
  const start = resume ? resume.state.step : 0;
  mkdirSync(cfg.out, { recursive: true });
  const logPath = join(cfg.out, RL_LOG_FILE);
  const evalPath = join(cfg.out, RL_EVAL_FILE);
  if (lead) {
    truncateLog(logPath, start);
    truncateLog(evalPath, start);
  }
  hooks.onStart?.({ startStep: start, steps: cfg.steps, params: params.reduce((a, [, p]) => a + p.numel, 0), tasks: tasks.length, device, rank: dp.rank, worldSize: N, model });

  const moeLayers = mc.nLayers - mc.nDenseLayers;
  const routeShape = moeLayers > 0 ? { layers: moeLayers, k: mc.nActivatedExperts } : undefined;
  const sampling = { temperature: cfg.rollout_temperature, topP: cfg.rollout_top_p, topK: cfg.rollout_top_k, minP: cfg.rollout_min_p, maxTokens: cfg.rollout_max_response_len };
  const topLogprobs = cfg.use_sampling_mask && (cfg.rollout_top_p < 1 || cfg.rollout_top_k > 0 || cfg.rollout_min_p > 0) ? MAX_TOP_LOGPROBS : 0;
  const tokenizerFile = existsSync(join(tokPath, 'tokenizer.json')) ? join(tokPath, 'tokenizer.json') : existsSync(tokPath) && tokPath.endsWith('.json') ? tokPath : undefined;

  const genrm = cfg.reward.genrm ? new GenerativeRewardModel(cfg.reward.genrm) : undefined;
  const padId = tok.special.eos;
  const logpOldMode = cfg.use_sampling_mask ? 'masked' : 'full';
  const tStart = Date.now();
  let step = start;
  let last: string | null = null;
  let ran = 0;
  const save = (): void => {
    if (!lead) return;
    last = saveCheckpoint(cfg.out, { configJson, weights: model.weights.stateTensors(), optimizer: opt, state: { step, stage: STAGE, configHash }, keep: cfg.keep, tokenizer: tokenizerFile });
    hooks.onCheckpoint?.(last);
  };

  const server = cfg.rollout_server;
  const http = server
    ? new HttpSampler({
        baseUrl: server.base_url,
        model: server.model,
        ...(server.api_key ? { apiKey: server.api_key } : {}),
        ...(server.request_timeout_ms !== undefined ? { requestTimeoutMs: server.request_timeout_ms } : {}),
        ...(server.max_retries !== undefined ? { maxRetries: server.max_retries } : {}),
        tokenText: (id) => tok.decode([id]),
      })
    : null;
  // the step whose policy the rollout server holds (none yet: it was started on some checkpoint)
  let served = -1;
  /** The rollout server is given the current policy, unless it has it. */
  const syncServer = async (): Promise<void> => {
    if (!server || served === step) return;
    try {
      await sendPolicy(server, model.weights.stateTensors(), configJson, join(cfg.out, 'rollout-weights'), `step ${step}`);
    } catch (e) {
      throw new RlTrainError(`rollout_server: ${(e as Error).message}`, { cause: e });
    }
    served = step;
  };
  /**
   * Episodes of the tasks `ids` of `e`, groups of `o.groupSize`, on a fresh engine over the current weights (or the rollout server, given them first):
   * every episode of every group at once (the engine batches their turns); groups in task order. Running out
   * of GPU memory is reported as what to lower.
   */
  const rollouts = async (what: string, e: Environment, ids: readonly string[], o: Pick<RolloutOptions, 'sampling' | 'groupSize' | 'seed' | 'topLogprobs' | 'routes' | 'indexer'>): Promise<GroupRollout[]> => {
    await syncServer();
    const engine = http ? null : new LLMEngine(model, { maxNumSeqs: cfg.engine.max_num_seqs, maxModelLen: cfg.rollout_max_context_len, numerics: cfg.numerics, attention: 'mqa', ...(cfg.engine.num_blocks ? { numBlocks: cfg.engine.num_blocks } : {}) });
    try {
      const ro: RolloutOptions = {
        sampler: http ?? new EngineSampler(engine!),
        tokenizer: tok,
        mode: cfg.thinking ? 'thinking' : 'chat',
        stopTokenIds: [tok.special.eos],
        vocabSize: mc.vocabSize,
        maxContextTokens: cfg.rollout_max_context_len,
        maxSteps: cfg.env.max_steps,
        reward: cfg.reward,
        ...(genrm ? { genrm } : {}),
        ...o,
      };
      return await Promise.all(ids.map((t) => rolloutGroup(e, t, ro)));
    } catch (err) {
      const oom = err instanceof CudaError ? err : err instanceof Error && err.cause instanceof CudaError ? err.cause : null;
      if (oom?.code !== CUDA_ERROR_OUT_OF_MEMORY) throw err;
      throw new RlTrainError(`${what}: the GPU ran out of memory (engine.max_num_seqs ${cfg.engine.max_num_seqs}); lower engine.max_num_seqs or engine.num_blocks (${oom.message})`, { cause: err });
    } finally {
      engine?.close();
    }
  };
  /** The held-out evaluation of the policy at `step` (config eval), appended to eval.jsonl. */
  const evaluate = async (): Promise<void> => {
    const e = cfg.eval!;
    const t = Date.now();
    const sampling = { temperature: e.temperature ?? cfg.rollout_temperature, topP: 1, topK: 0, minP: 0, maxTokens: cfg.rollout_max_response_len };
    const groups = await rollouts(`the evaluation at step ${step}`, evalEnv!, evalTasks, { sampling, groupSize: e.samples, seed: e.seed, topLogprobs: 0 });
    const solved = groups.map((g) => g.episodes.filter((x) => x.verdict.score >= 1).length / g.episodes.length);
    const log: RlEvalLog = {
      step,
      tasks: groups.length,
      samples: e.samples,
      pass_at_1: mean(solved),
      pass_at_k: mean(solved.map((p) => (p > 0 ? 1 : 0))),
      reward: mean(groups.flatMap((g) => g.episodes.map((x) => x.reward.reward))),
      seconds: (Date.now() - t) / 1000,
    };
    appendFileSync(evalPath, JSON.stringify(log) + '\n');
    hooks.onEval?.(log);
  };
  // rank 0 alone evaluates (it reads the policy, which every rank holds alike)
  const evalDue = (): boolean => lead && cfg.eval !== undefined && (step % cfg.eval.every === 0 || step === cfg.steps);
  // the starting policy (a new run), or an evaluation a kill interrupted after its step's checkpoint
  if (evalDue() && !loggedSteps(evalPath).has(step)) await evaluate();

  while (step < cfg.steps) {
    // ---- 1–2. rollouts and rewards on a fresh engine over the current weights
    const t0 = Date.now();
    // this rank's share of the step's tasks: [r·T/N, (r+1)·T/N)
    const share = cfg.tasks_per_step / N;
    const groups = await rollouts(`step ${step + 1}'s rollouts`, env, stepTasks(tasks, cfg.tasks_per_step, step).slice(dp.rank * share, (dp.rank + 1) * share), {
      sampling,
      // recorded even without Keep Routing: the routing disagreement is measured against them
      ...(routeShape ? { routes: routeShape } : {}),
      ...(cfg.use_indexer_replay ? { indexer: { layers: mc.nLayers, topk: mc.indexTopk } } : {}),
      topLogprobs,
      groupSize: cfg.n_samples_per_prompt,
      seed: rolloutSeed(cfg.seed, step),
    });
    const records = groupRecords(groups);
    hooks.onRecords?.(records, step);
    // every rank's sequence count per minibatch [rank][minibatch]: a minibatch is the union of the ranks' shares
    const parts = splitRanges(records.length, cfg.num_minibatches);
    const shares = gatherScalars(dp, parts.map(([a, b]) => b - a), device);
    const sequences = shares.flat().reduce((x, y) => x + y, 0);
    if (!sequences) throw new RlTrainError(`step ${step}: the rollouts produced no sampled token to train on`);
    const episodes = groups.flatMap((g) => g.episodes);
    const rolloutS = (Date.now() - t0) / 1000;

    // ---- 3. collate once for the group-relative advantages of the whole batch
    const t1 = Date.now();
    // on the host: only the advantages and a count are read from it (the minibatches collate their own)
    // (none on a rank whose episodes gave no sequence: it still joins every minibatch's collectives)
    const full = records.length ? collateRollouts(records, { padId, logpOld: logpOldMode }) : null;
    const advAll = full ? full.advantages.toFloat64() : new Float64Array(0);

    // ---- 4–5. minibatch updates
    const mbs: MinibatchLog[] = [];
    for (const [m, [a, b]] of parts.entries()) {
      const counts = shares.map((r) => r[m]!);
      // a minibatch empty on every rank is skipped on every rank; one empty here only still joins the collectives
      if (counts.some((c) => c > 0)) mbs.push(await minibatchStep(records.slice(a, b), advAll.subarray(a, b), counts));
    }
    step++;
    ran++;
    // the step's episodes over all ranks: sums and counts, reduced, then divided
    const total = (xs: number[]): number => xs.reduce((x, y) => x + y, 0);
    const [rewardSum, passSum, outcomeSum, nEpisodes, unmasked] = reduceScalars(dp, [
      total(episodes.map((e) => e.reward.reward)), total(episodes.map((e) => (e.verdict.score >= 1 ? 1 : 0))), total(episodes.map((e) => e.reward.outcome)), episodes.length, full?.unmaskedTokens ?? 0,
    ], device, 'sum') as [number, number, number, number, number];
    const perEpisode = (x: number): number => (nEpisodes ? x / nEpisodes : 0);
    const log: RlStepLog = {
      step,
      reward: perEpisode(rewardSum),
      pass_rate: perEpisode(passSum),
      outcome: perEpisode(outcomeSum),
      episodes: nEpisodes,
      sequences,
      trained_tokens: mbs.reduce((s, m) => s + m.tokens, 0),
      unmasked_tokens: unmasked,
      kl: mean(mbs.map((m) => m.kl)),
      entropy: mean(mbs.map((m) => m.entropy)),
      clip_fraction: mean(mbs.map((m) => m.clip_fraction)),
      opsm_masked_fraction: mean(mbs.map((m) => m.opsm_masked_fraction)),
      logprob_mismatch: mbs[0]!.logprob_mismatch,
      routing_disagreement: mean(mbs.map((m) => m.routing_disagreement)),
      router_drift: mean(mbs.map((m) => m.router_drift)),
      ...(cfg.use_indexer_replay ? { indexer_disagreement: mean(mbs.map((m) => m.indexer_disagreement ?? 0)) } : {}),
      minibatches: mbs,
      rollout_s: rolloutS,
      train_s: (Date.now() - t1) / 1000,
    };
    if (lead) appendFileSync(logPath, JSON.stringify(log) + '\n');
    hooks.onStep?.(log);
    const outOfTime = cfg.max_seconds !== undefined && anyRank(dp, (Date.now() - tStart) / 1000 >= cfg.max_seconds, device);
    const stopping = step >= cfg.steps || outOfTime || (hooks.stopAfter !== undefined && ran >= hooks.stopAfter);
    if (step % cfg.save_every === 0 || stopping) save();
    // after the checkpoint: an evaluation only reads the policy, so a kill during it loses no training
    if (evalDue()) await evaluate();
    if (stopping) break;
  }
  if (!hooks.collective) dp.close();
  return { step, resumedFrom: resume ? start : null, checkpoint: last, done: step >= cfg.steps, model };

  /**
   * One optimiser step on a minibatch (records with their advantages, centred over the whole rollout batch):
   * its micro-batches of micro_batch_size sequences each run forward and backward in turn, their gradients
   * summing in the parameters' .grad (each micro-batch's loss is divided by the MINIBATCH's sequence count over
   * all ranks, so the sum over micro-batches and ranks is the minibatch's seq-mean-token-mean loss), the ranks'
   * gradients summed, then one clip and one AdamW step. `counts`: every rank's sequences of this minibatch.
   */
  async function minibatchStep(recs: readonly RolloutRecord[], adv: Float64Array, counts: readonly number[]): Promise<MinibatchLog> {
    const S = recs.length;
    const SAll = counts.reduce((x, y) => x + y, 0);
    const acc = { n: 0, loss: 0, devSum: 0, devMax: 0, lpSum: 0, mis: 0, clipped: 0, masked: 0, klSum: 0, entSum: 0, differing: 0, drifting: 0, compared: 0, idxDis: 0, idxN: 0 };
    const advantages: number[] = [];
    const opsmStatistic: number[] = [];
    opt.zeroGrad();
    const avg = new GradAverager(dp, params.filter(([, p]) => p.requiresGrad).map(([, p]) => p), undefined, 'sum');
    const micro = S ? splitRanges(S, Math.ceil(S / Math.min(cfg.micro_batch_size ?? S, S))) : [];
    for (const [k, [a, b]] of micro.entries()) {
      const mb = collateRollouts(recs.slice(a, b), { padId, logpOld: logpOldMode, device });
      let m: Awaited<ReturnType<typeof microStep>>;
      try {
        // the gradients are final only in the last micro-batch's backward: its leaves launch the all-reduce
        m = await microStep(mb, fromArray(adv.subarray(a, b), [b - a], { dtype: 'f32', device }), SAll, k === micro.length - 1 ? avg.ready : undefined);
      } catch (e) {
        if (!(e instanceof CudaError && e.code === CUDA_ERROR_OUT_OF_MEMORY)) throw e;
        throw new RlTrainError(`step ${step + 1}: the GPU ran out of memory training ${b - a} sequences × ${mb.input[0]!.length} tokens at once; set micro_batch_size below ${b - a} (${e.message})`, { cause: e });
      }
      acc.n += m.n;
      acc.loss += m.loss;
      acc.devSum += m.devSum;
      acc.devMax = Math.max(acc.devMax, m.devMax);
      acc.lpSum += m.lpSum;
      acc.mis += m.mis;
      acc.clipped += m.clipFraction * Math.max(1, m.n);
      acc.masked += m.maskedFraction * (b - a);
      acc.klSum += m.klMean * Math.max(1, m.n);
      acc.entSum += m.entropy * m.n;
      acc.differing += m.routing.differing;
      acc.drifting += m.routing.drifting;
      acc.compared += m.routing.compared;
      if (m.indexerDis !== undefined) {
        acc.idxDis += m.indexerDis * m.n;
        acc.idxN += m.n;
      }
      advantages.push(...m.advantages);
      opsmStatistic.push(...m.opsmStatistic);
      await releaseDeadTensors(model.device);
    }
    avg.finish();
    const live = params.filter(([, p]) => p.grad).map(([, p]) => p);
    const gradNorm = cfg.clip_grad > 0 ? clipGradNorm(live, cfg.clip_grad) : gradNormOf(live);
    opt.step();
    model.weights.update();
    // the minibatch's numbers over all ranks: sums of the counts and sums, the largest deviation, the per-sequence lists in rank order
    [acc.n, acc.loss, acc.devSum, acc.lpSum, acc.mis, acc.clipped, acc.masked, acc.klSum, acc.entSum, acc.differing, acc.drifting, acc.compared, acc.idxDis, acc.idxN] = reduceScalars(dp,
      [acc.n, acc.loss, acc.devSum, acc.lpSum, acc.mis, acc.clipped, acc.masked, acc.klSum, acc.entSum, acc.differing, acc.drifting, acc.compared, acc.idxDis, acc.idxN], device, 'sum') as number[];
    acc.devMax = reduceScalars(dp, [acc.devMax], device, 'max')[0]!;
    const advantagesAll = concatScalars(dp, advantages, counts, device);
    const opsmAll = concatScalars(dp, opsmStatistic, counts, device);
    const n = acc.n;
    // token-weighted means over the micro-batches (routing: over their (token, layer) pairs)
    const tokMean = (x: number): number => (n ? x / n : 0);
    return {
      sequences: SAll,
      tokens: n,
      loss: acc.loss,
      grad_norm: gradNorm,
      ratio_mean_abs_dev: tokMean(acc.devSum),
      ratio_max_abs_dev: acc.devMax,
      clip_fraction: tokMean(acc.clipped),
      opsm_masked_fraction: acc.masked / SAll,
      advantages: advantagesAll,
      opsm_statistic: opsmAll,
      logp_mean: tokMean(acc.lpSum),
      kl: tokMean(acc.klSum),
      entropy: tokMean(acc.entSum),
      logprob_mismatch: tokMean(acc.mis),
      routing_disagreement: acc.compared ? acc.differing / acc.compared : 0,
      router_drift: acc.compared ? acc.drifting / acc.compared : 0,
      ...(cfg.use_indexer_replay ? { indexer_disagreement: acc.idxN ? acc.idxDis / acc.idxN : 0 } : {}),
    };
  }

  /** Forward and backward of one micro-batch; its loss is divided by `minibatchSequences`; sums for the log. onLeafGrad: the backward's hook (GradAverager.ready). */
  async function microStep(mb: RlBatch, advantages: Tensor, minibatchSequences: number, onLeafGrad?: (leaf: Tensor) => void) {
    const S = mb.input.length;
    const T = mb.input[0]!.length;
    const ids = Int32Array.from(mb.input.flat());
    // fp8: the engine's forward round-trips the latent (and the indexer's inputs) through FP8 as the reference
    // inference does; the training forward simulates the same rounding (straight-through gradient), so at
    // θ = θ_old π_θ equals the engine's π_old up to f32 summation order instead of differing by the FP8 error
    // attention: rows no longer than index_topk select every causal key, so DSA's sparse attention IS dense
    // attention there and the dense kernel computes it faster; longer rows take the indexer's top-k: the
    // engine's recorded one with use_indexer_replay (below), else the trainer's own
    const sparse = T > mc.indexTopk;
    const fwdOpts = { numerics: cfg.numerics, mtp: false, fp8: true, attention: sparse ? 'sparse' : 'dense' } as const;
    const replayTopk = cfg.use_indexer_replay && mb.indexerTopk && mb.selected ? { rec: mb.indexerTopk, sel: mb.selected } : null;
    const host = (sels: readonly { width: number; idx: Tensor }[]): HostSelection[] => sels.map((x) => ({ width: x.width, idx: x.idx.toHost() as Int32Array }));
    // Keep Routing: the engine's routes at every recorded position (prompts included). A position the engine
    // did not record takes the trainer's own route from a free (unforced, current θ) forward, but only where
    // it can matter: at or before the sequence's last trained target (attention is causal and MoE per token,
    // so later positions, padding included, reach no trained log-prob). The engine records every position
    // but the last (rollout.ts), so that forward normally does not run: two forwards per micro-batch, not
    // three. routing_disagreement compares the recording with the forced forward's routes (0 unless replay
    // failed); router_drift with the gate's own choice in that forward, layer by layer on the replayed
    // history (Routing.own: what Keep Routing overrode), both over all recorded positions.
    // Indexer replay: likewise the engine's selections where recorded, the trainer's own (an unforced
    // forward) elsewhere; indexer_disagreement compares the recording with that own selection. Short rows
    // stay dense: every causal key is what any recording there holds
    const valid = mb.valid.toFloat64();
    const replayRoutes = !!(routeShape && mb.routes && mb.routed && cfg.use_rollout_routing_replay);
    const routed = mb.routed ? mb.routed.toFloat64() : null;
    const fillRoutes = replayRoutes && unroutedBeforeLastTarget(valid, routed!, S, T);
    let forced: (Int32Array | null)[] | undefined;
    let forcedTopk: Int32Array[] | undefined;
    let ownTopk: HostSelection[] | null = null;
    const freeFwd = fillRoutes || (replayTopk && sparse) ? noGrad(() => {
      const f = model.trainForward(ids, S, T, fwdOpts);
      return { routes: fillRoutes ? recordRoutes(mc, f.routes, S) : null, topk: replayTopk && sparse ? host(f.topk) : null };
    }) : null;
    if (replayRoutes) forced = forcedRoutesFromRecorded(mc, fillRoutes ? overlayRoutes(mb, freeFwd!.routes!) : mb.routes!, T);
    if (replayTopk && sparse) {
      ownTopk = freeFwd!.topk!;
      forcedTopk = forcedTopkFromRecorded(replayTopk.rec, replayTopk.sel, ownTopk, T);
      hooks.onForcedTopk?.({ batch: mb, forced: forcedTopk, T });
    }
    const forcing = { ...(forced ? { forcedRoutes: forced } : {}), ...(forcedTopk ? { forcedTopk } : {}) };
    const fwd = model.trainForward(ids, S, T, { ...fwdOpts, ...forcing });
    // dense rows: the forward's own selection (every causal key) is the unforced one
    const indexerDis = replayTopk ? indexerDisagreement(replayTopk.rec, replayTopk.sel, ownTopk ?? host(fwd.topk), T) : undefined;
    const logits = reshape(fwd.logits, [S, T, mc.vocabSize]);
    const tau = cfg.rollout_temperature;
    const scored = (lg: Tensor): Tensor => (cfg.use_sampling_mask ? maskedTokenLogProbs(lg, mb.target, mb.samplingMask, tau, mb.valid) : fullTokenLogProbs(lg, mb.target, tau, mb.valid));
    const logp = scored(logits);
    const logpRef = ref
      ? noGrad(() => scored(reshape(ref.trainForward(ids, S, T, { ...fwdOpts, ...forcing }).logits, [S, T, mc.vocabSize])))
      : undefined;
    const out = policyLoss(
      { logp, logpOld: mb.logpOld, advantages, mask: mb.valid, ...(logpRef ? { logpRef } : {}) },
      {
        eps: cfg.eps_clip,
        ...(cfg.eps_clip_high !== undefined ? { epsHigh: cfg.eps_clip_high } : {}),
        beta: ref ? cfg.kl_loss_coef : 0,
        ...(cfg.use_opsm ? { opsmDelta: cfg.opsm_delta } : {}),
        unbiasedKl: cfg.use_unbiased_kl,
        numSequences: minibatchSequences,
      },
    );
    const loss = out.loss.item();
    if (!Number.isFinite(loss)) throw new RlTrainError(`step ${step}: the loss is ${loss}; lower lr or check the rollouts`);
    // measurements before the update (θ as the minibatch saw it)
    const lpv = logp.toFloat64();
    const old = mb.logpOld.toFloat64();
    let n = 0;
    let lpSum = 0;
    let devSum = 0;
    let devMax = 0;
    for (let i = 0; i < valid.length; i++) {
      if (!valid[i]) continue;
      const d = Math.abs(Math.exp(lpv[i]! - old[i]!) - 1);
      devSum += d;
      devMax = Math.max(devMax, d);
      lpSum += lpv[i]!;
      n++;
    }
    let mis = 0;
    for (let i = 0; i < valid.length; i++) if (valid[i]) mis += Math.abs(lpv[i]! - old[i]!);
    const routing = { differing: 0, drifting: 0, compared: 0 };
    if (routeShape && mb.routes && routed) {
      const used = recordRoutes(mc, fwd.routes, S);
      const d = routingDisagreement(mc, ...atRouted(mb.routes, used, routed, T));
      // without Keep Routing the training forward's routes ARE the gate's own choice
      const f = forced ? routingDisagreement(mc, ...atRouted(mb.routes, recordRoutes(mc, fwd.ownRoutes, S), routed, T)) : d;
      Object.assign(routing, { differing: d.differing, drifting: f.differing, compared: d.compared });
    }
    const entropy = meanEntropy(logits, tau, mb.valid);
    await backwardReleasing(out.loss, model.device, onLeafGrad ? { onLeafGrad } : undefined);
    return {
      n,
      loss,
      devSum,
      devMax,
      lpSum,
      mis,
      clipFraction: out.stats.clipFraction,
      maskedFraction: out.stats.maskedSequenceFraction,
      klMean: out.stats.klMean,
      entropy,
      routing,
      advantages: Array.from(advantages.toFloat64()),
      opsmStatistic: Array.from(out.opsmStatistic.toFloat64()),
      indexerDis,
    };
  }
}
