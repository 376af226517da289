// The training loop of dsv32 train (stages: src/train/config.ts): one optimizer step per batch,
//   phase(step) → which weights train and which losses form (pretrain / warm-up / sparse / sft)
//   loss = objective(batch)                       (src/train/objective.ts)
//   backward; clip the global gradient norm; AdamW at lr(step); weights.update()
// a JSONL log line per step (<out>/train.jsonl), a progress callback, and checkpoints (checkpoint.ts)
// every saveEvery steps, at the end, and when maxSeconds of wall time are spent (the GPU machine runs
// one command for at most 10 minutes: a stage that needs longer resumes in the next command).
// Resume: when <out>/latest names a checkpoint, the model, the optimizer and the step come from it and
// the log keeps only the lines of the steps before it, so a killed and resumed run produces the same
// weights, moments and log as one that never stopped.
//
// Data parallel (a collective of N ranks: `dsv32 launch --gpus N`, or a ThreadCollective in tests), as
// PyTorch's DDP with a DistributedSampler: data.batchSize B is the GLOBAL batch, the same B rows a
// 1-rank run takes at that step, and rank r takes its rows [r·B/N, (r+1)·B/N) (B must divide by N). Each
// rank's loss is the mean over its rows; the gradients are averaged over the ranks in buckets during the
// backward (src/dist/data-parallel.ts) before clipping and AdamW, so every rank applies the same update.
// With every row holding the same number of targets (pretraining, the dsa stage) the average of the
// ranks' means is the 1-rank mean, so N ranks equal 1 rank up to float rounding; with an SFT loss mask
// the ranks' target counts differ and, as in DDP, each rank's mean weighs 1/N. The logged losses are
// the ranks' average, the grad norm is that of the averaged gradient, the routing biases move on the
// loads of all ranks' tokens, and only rank 0 writes the log and the checkpoints. World size 1 takes the
// same path with no communication: its log and checkpoints are those of a run without a collective.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { resolveDevice } from '../backend/cuda/index.js';
import { type Collective, openCollective } from '../dist/collective.js';
import { anyRank, averageScalars, GradAverager } from '../dist/data-parallel.js';
import { DsvError } from '../errors.js';
import { DeepseekV32 } from '../model/model.js';
import { parseConfig } from '../model/config.js';
import { randomCheckpoint } from '../model/random-weights.js';
import { mapSource } from '../model/weights.js';
import { MoE } from '../model/moe.js';
import { noGrad } from '../tensor/autograd.js';
import { contiguous } from '../tensor/ops/view.js';
import { getBackend } from '../tensor/backend.js';
import { backwardReleasing, releaseDeadTensors } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { clipGradNorm } from './clip.js';
import { type Stage, type TrainConfig } from './config.js';
import { Batches, loadTokens } from './data.js';
import { latestCheckpoint, OPTIMIZER_FILE, saveCheckpoint } from './checkpoint.js';
import { type ObjectiveOptions, objective } from './objective.js';
import { AdamW } from './optim.js';
import { lrSchedule } from './schedule.js';
import { trainFlopsPerToken } from '../model/flops.js';

export class TrainError extends DsvError {}

export const LOG_FILE = 'train.jsonl';

export type Phase = 'pretrain' | 'warmup' | 'sparse' | 'sft';

export interface StepLog {
  step: number;
  phase: Phase;
  loss: number;
  lm: number | null;
  mtp: number[];
  indexer: number | null;
  lr: number;
  grad_norm: number;
  tokens: number;
  ms: number;
  tokens_per_s: number;
  /** model TFLOP/s of the step (src/model/flops.ts: the architecture's products, forward + backward) */
  tflops: number;
  /** on a GPU: device memory held by tensors after the step, and the most during it (GiB) */
  mem_gib?: number;
  peak_mem_gib?: number;
}

export interface EvalLog {
  step: number;
  phase: 'eval';
  /** mean over the eval batches; null when the phase forms no such loss */
  val_lm: number | null;
  val_indexer: number | null;
}

export interface TrainResult {
  /** steps completed (== config.steps unless stopped by maxSeconds or stopAfter) */
  step: number;
  resumedFrom: number | null;
  checkpoint: string | null;
  done: boolean;
  model: DeepseekV32;
}

export interface TrainHooks {
  onStart?: (info: { startStep: number; steps: number; params: number; rows: number; device: string; rank: number; worldSize: number; model: DeepseekV32 }) => void;
  onStep?: (log: StepLog) => void;
  onEval?: (log: EvalLog) => void;
  onCheckpoint?: (dir: string) => void;
  /** stop after this many steps of this invocation (tests) */
  stopAfter?: number;
  /** this process's rank and world (default: openCollective() from the DSV32_* environment of dsv32 launch) */
  collective?: Collective;
}

export function phaseOf(stage: Stage, step: number, cfg: TrainConfig): Phase {
  if (stage === 'pretrain') return 'pretrain';
  if (stage === 'sft') return 'sft';
  return step < cfg.dsa.warmupSteps ? 'warmup' : 'sparse';
}

/** config.device resolved: 'auto' is cuda when a GPU is usable, else cpu; 'cuda' without one is an error. */
function trainDevice(cfg: Pick<TrainConfig, 'device'>): string {
  try {
    return resolveDevice(cfg.device);
  } catch (e) {
    throw new TrainError(`device: ${(e as Error).message}`, { cause: e });
  }
}

/** The model's config.json text and a model with f32 master weights, per config.model. */
function initModel(cfg: TrainConfig, device: string): { model: DeepseekV32; configJson: string } {
  const master = masterOf(cfg);
  if ('init' in cfg.model) {
    // a checkpoint directory, or a run's out directory (its latest checkpoint: the previous stage)
    const run = existsSync(join(cfg.model.init, 'config.json')) ? null : latestCheckpoint(cfg.model.init);
    const dir = run ? run.dir : cfg.model.init;
    if (!existsSync(join(dir, 'config.json'))) throw new TrainError(`model.init: ${cfg.model.init} is neither a checkpoint (config.json) nor a run directory with a latest checkpoint`);
    const configJson = readFileSync(join(dir, 'config.json'), 'utf8');
    return { model: DeepseekV32.load(dir, { master, device }), configJson };
  }
  const mc = parseConfig(cfg.model.config, 'model.config');
  if (mc.fp8Weights) throw new TrainError('model.config: a quantization_config (FP8 weights) cannot be trained; drop it to train bf16/f32 weights');
  return { model: DeepseekV32.fromSource(mc, mapSource(randomCheckpoint(mc, cfg.model.seed)), { master, device }), configJson: JSON.stringify(cfg.model.config, null, 2) + '\n' };
}

/** f32 master weights, f64 ones for f64 numerics (CPU tests). */
function masterOf(cfg: TrainConfig): 'f32' | 'f64' {
  return cfg.numerics === 'f64' ? 'f64' : 'f32';
}

/** Rank r's rows [r·b, (r+1)·b) of a global batch of B = N·b rows of S tokens. */
function shard(batch: { ids: Int32Array; mask: Uint8Array | null }, c: Collective): { ids: Int32Array; mask: Uint8Array | undefined } {
  const n = batch.ids.length / c.worldSize;
  const at = c.rank * n;
  return { ids: batch.ids.subarray(at, at + n), mask: batch.mask?.subarray(at, at + n) };
}

export async function train(stage: Stage, cfg: TrainConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  // the device is not part of the run's identity: a run checkpointed on one device resumes on another;
  // nor is the bucket size, or the world size (the global batch is data.batchSize on any number of ranks)
  const configHash = createHash('sha256').update(JSON.stringify({ stage, cfg: { ...cfg, steps: undefined, maxSeconds: undefined, out: undefined, keep: undefined, saveEvery: undefined, device: undefined, dist: undefined } })).digest('hex').slice(0, 16);
  const device = trainDevice(cfg);
  const dp = hooks.collective ?? (await openCollective(getBackend(device)));
  const N = dp.worldSize;
  if (cfg.data.batchSize % N !== 0) {
    throw new TrainError(`data.batchSize ${cfg.data.batchSize} is not divisible by the world size ${N}: it is the global batch, and each rank takes batchSize/${N} of its rows`);
  }
  const rows = cfg.data.batchSize / N;
  const lead = dp.rank === 0;
  const resume = latestCheckpoint(cfg.out);
  let model: DeepseekV32;
  let configJson: string;
  let start = 0;
  if (resume) {
    if (resume.state.configHash !== configHash || resume.state.stage !== stage) {
      throw new TrainError(`out: ${cfg.out} holds a checkpoint of another run (stage ${resume.state.stage}, config ${resume.state.configHash}; this run: ${stage}, ${configHash}); use a fresh out directory`);
    }
    configJson = readFileSync(join(resume.dir, 'config.json'), 'utf8');
    model = DeepseekV32.load(resume.dir, { master: masterOf(cfg), device });
    start = resume.state.step;
  } else ({ model, configJson } = initModel(cfg, device));
  const mc = model.cfg;
  const eos = mc.eosTokenIds[0] ?? 1;
  const batches = new Batches(loadTokens({ ...cfg.data, packMask: stage === 'sft' }, eos, mc.vocabSize), cfg.data.batchSize, cfg.data.seqLen, cfg.data.seed);
  const params = model.weights.parameters();
  // decay the matrices, not the norms' gains, biases or the embedding (the usual AdamW practice)
  const decay = (n: string, p: Tensor): boolean => p.rank >= 2 && !n.endsWith('embed_tokens.weight');
  const hyper = { lr: 0, betas: cfg.optim.betas as [number, number], eps: cfg.optim.eps, weightDecay: cfg.optim.weightDecay, decay };
  const opt = resume ? AdamW.load(join(resume.dir, OPTIMIZER_FILE), params, { decay }) : new AdamW(params, hyper);
  const schedule = lrSchedule(cfg.schedule);
  const S = cfg.data.seqLen;
  const flopsPerToken: Record<Phase, number> = {
    pretrain: trainFlopsPerToken(mc, S, 'dense'), warmup: trainFlopsPerToken(mc, S, 'warmup'),
    sparse: trainFlopsPerToken(mc, S, 'sparse'), sft: trainFlopsPerToken(mc, S, 'sparse'),
  };
  mkdirSync(cfg.out, { recursive: true });
  const logPath = join(cfg.out, LOG_FILE);
  const log = (l: StepLog | EvalLog): void => {
    if (lead) appendFileSync(logPath, JSON.stringify(l) + '\n');
  };
  if (lead) keepLogBefore(logPath, start);
  hooks.onStart?.({ startStep: start, steps: cfg.steps, params: params.reduce((a, [, p]) => a + p.numel, 0), rows: batches.rows, device, rank: dp.rank, worldSize: N, model });

  const evalBatches = cfg.eval
    ? new Batches(loadTokens({ path: cfg.eval.path ?? cfg.data.path, tokenizer: cfg.data.tokenizer, split: cfg.eval.split, packMask: stage === 'sft' }, eos, mc.vocabSize), cfg.data.batchSize, cfg.data.seqLen, cfg.data.seed)
    : null;
  const forwardOpts = (phase: Phase, mask?: Uint8Array): ObjectiveOptions => ({
    numerics: cfg.numerics,
    attention: phase === 'pretrain' || phase === 'warmup' ? 'dense' : 'sparse',
    indexerLoss: phase === 'warmup' || ((phase === 'sparse' || phase === 'sft') && cfg.indexerLoss),
    lm: phase !== 'warmup',
    mtpWeight: cfg.mtpWeight,
    lossMask: mask,
  });
  /** The held-out losses of the model as it is after `done` steps (phase of the step just taken). */
  const evaluate = async (done: number): Promise<void> => {
    if (!evalBatches || !cfg.eval) return;
    const phase = phaseOf(stage, Math.max(done - 1, 0), cfg);
    let lm = 0;
    let ix = 0;
    const n = cfg.eval.batches;
    for (let i = 0; i < n; i++) {
      const b = shard(evalBatches.at(i), dp);
      const r = noGrad(() => objective(model, b.ids, rows, cfg.data.seqLen, forwardOpts(phase, b.mask)));
      lm += r.lm ?? 0;
      ix += r.indexer ?? 0;
      // each batch's forward is garbage now; without a release 4 batches held 72 GB of an H100 (2026-12-05)
      await releaseDeadTensors(device);
    }
    const o = forwardOpts(phase);
    [lm, ix] = averageScalars(dp, [lm, ix], device);
    const e: EvalLog = { step: done, phase: 'eval', val_lm: o.lm ? lm! / n : null, val_indexer: o.indexerLoss ? ix! / n : null };
    log(e);
    hooks.onEval?.(e);
  };
  const t0 = Date.now();
  let step = start;
  let last: string | null = null;
  // the checkpoints' tokenizer: the configured one, else the one a packed corpus carries (dsv32 data pack)
  const packTokenizer = join(cfg.data.path, 'tokenizer.json');
  const checkpointTokenizer = cfg.data.tokenizer ?? (existsSync(join(cfg.data.path, 'pack.json')) && existsSync(packTokenizer) ? packTokenizer : undefined);
  const save = (): void => {
    if (!lead) return;
    last = saveCheckpoint(cfg.out, { configJson, weights: model.weights.stateTensors(), optimizer: opt, state: { step, stage, configHash }, keep: cfg.keep, tokenizer: checkpointTokenizer });
    hooks.onCheckpoint?.(last);
  };
  let ran = 0;
  /** One optimizer step; its tensors are unreachable once it returns (see releaseDeadTensors). */
  const runStep = async (phase: Phase): Promise<StepLog> => {
    // the warm-up trains the indexers only: the main model's weights are frozen (no gradient, no update)
    for (const [n, p] of params) p.requiresGrad = phase !== 'warmup' || n.includes('.indexer.');
    const lr = phase === 'warmup' ? cfg.dsa.warmupLr : schedule(step);
    const b = shard(batches.at(step), dp);
    const ts = Date.now();
    const r = objective(model, b.ids, rows, cfg.data.seqLen, forwardOpts(phase, b.mask));
    // the ranks' means, in a fixed layout every rank shares: [loss, lm?, ...mtp, indexer?]
    const means = averageScalars(dp, [r.loss.item(), ...(r.lm === null ? [] : [r.lm]), ...r.mtp, ...(r.indexer === null ? [] : [r.indexer])], device);
    const loss = means[0]!;
    const lm = r.lm === null ? null : means[1]!;
    const mtp = means.slice(r.lm === null ? 1 : 2, (r.lm === null ? 1 : 2) + r.mtp.length);
    const indexer = r.indexer === null ? null : means[means.length - 1]!;
    // the average is NaN when any rank's loss is, so every rank stops here together
    if (!Number.isFinite(loss)) throw new TrainError(`step ${step}: the loss is ${loss}; lower the learning rate (schedule.lr) or check the data`);
    // the forward's temporaries that the tape does not keep are garbage now: free them before the backward
    await releaseDeadTensors(device);
    opt.zeroGrad();
    const avg = new GradAverager(dp, params.filter(([, p]) => p.requiresGrad).map(([, p]) => p), cfg.dist?.bucketMb);
    await backwardReleasing(r.loss, device, { onLeafGrad: avg.ready });
    avg.finish();
    const live = params.filter(([, p]) => p.grad).map(([, p]) => p);
    const gradNorm = cfg.optim.clip > 0 ? clipGradNorm(live, cfg.optim.clip) : Math.sqrt(live.reduce((a, p) => a + sq(p.grad!), 0));
    opt.lr = lr;
    opt.step();
    // the main model's routing biases move toward balance (frozen in the warm-up, as the rest of it)
    if (phase !== 'warmup' && cfg.balanceSpeed > 0) {
      const moes = [...model.layers, ...model.mtp.map((m) => m.block)];
      [...r.forward.routes, ...r.forward.mtpRoutes].forEach((routes, i) => {
        const f = moes[i]!.ffn;
        // every rank's tokens count toward the loads, so the biases move alike on every rank
        if (routes && f instanceof MoE) f.gate.balance(N > 1 ? dp.allGather(contiguous(routes)) : routes, cfg.balanceSpeed);
      });
    }
    model.weights.update();
    const ms = Date.now() - ts;
    const tokens = cfg.data.batchSize * cfg.data.seqLen;
    const log: StepLog = { step: step + 1, phase, loss, lm, mtp, indexer, lr, grad_norm: gradNorm, tokens, ms, tokens_per_s: (tokens * 1000) / Math.max(ms, 1), tflops: 0 };
    log.tflops = (log.tokens_per_s * flopsPerToken[phase]) / 1e12;
    const be = params[0]![1].backend;
    const mem = be.memoryStats?.();
    if (mem) {
      log.mem_gib = mem.allocated / 2 ** 30;
      log.peak_mem_gib = mem.peak / 2 ** 30;
      be.resetPeakMemory?.();
    }
    return log;
  };
  while (step < cfg.steps) {
    const l = await runStep(phaseOf(stage, step, cfg));
    step++;
    ran++;
    log(l);
    hooks.onStep?.(l);
    const outOfTime = cfg.maxSeconds !== undefined && anyRank(dp, (Date.now() - t0) / 1000 >= cfg.maxSeconds, device);
    const stopping = step >= cfg.steps || outOfTime || (hooks.stopAfter !== undefined && ran >= hooks.stopAfter);
    if (cfg.eval && (step % cfg.eval.every === 0 || step >= cfg.steps)) await evaluate(step);
    if (step % cfg.saveEvery === 0 || stopping) save();
    if (stopping) break;
    // the step's tensors (activations, gradients, temporaries) are unreachable here
    await releaseDeadTensors(device);
  }
  if (!hooks.collective) dp.close();
  return { step, resumedFrom: resume ? start : null, checkpoint: last, done: step >= cfg.steps, model };
}

function sq(g: Tensor): number {
  const v = g.toFloat64();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return s;
}

/** Drop the log lines of steps after `step` (a killed run's steps past its last checkpoint). */
function keepLogBefore(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8').split('\n').filter((l) => {
    if (!l) return false;
    try {
      return (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false; // a line cut by the kill
    }
  });
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}
