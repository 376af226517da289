// Multi-rank inference: rank 0 runs the engine and its scheduler; every other rank only repeats rank 0's
// model calls, told what to run through the collective's broadcast.
//
// Why: a model sharded over N ranks (tensor / expert parallel) all-reduces inside its step, so every rank
// must call model.step with the same batch, in the same order. Scheduling, sampling, stop rules and the
// HTTP server depend on wall-clock arrival of requests and on sampled tokens; running them once, on rank
// 0, and shipping only the resulting model calls keeps the followers trivially in step (no replicated
// scheduler that could diverge) and costs two small broadcasts per step (a fixed header, then the payload).
//
// Protocol (root 0, every word an Int32 on the model's device; a command with an empty payload sends the
// header only):
//   header  [MAGIC, cmd, payloadWords, seq]   seq counts commands from 0 on both sides (a lost or extra
//                                             broadcast is caught at the next header, not as a wrong step)
//   POOL    payload [blocks, format]          format: 0 absent, 1 'f32', 2 'bf16', 3 'fp8'
//   STEP    payload, in order:
//             T, C, L                         token rows, chunks, logit rows (L = −1: batch.logitRows absent)
//             numerics                        0 absent, 1 'f32', 2 'bf16'
//             mode                            0 absent, 1 'auto', 2 'mha', 3 'mqa'
//             record                          0 absent, 1 {}, 2 { topk: false }, 3 { topk: true }
//             logitsWanted                    0 absent, 1 false, 2 true
//             dense                           0 absent, 1 false, 2 true (dense attention)
//             ids[T]
//             C × (offset, len, start, nBlocks, blocks[nBlocks])
//             logitRows[L]
//   STOP    no payload: the follower returns
// Decoding is the exact inverse of encoding (blocks come back as plain arrays) and rejects any word that
// does not fit: a desynchronised or corrupted stream fails loudly at the first command it garbles.
//
// Forced top-k / routes (RL replay) and a prebuilt layout are not shipped: the engine never passes them,
// and a step given them is rejected rather than run differently on rank 0 than on the followers. MTP
// speculative decoding and CUDA graphs are not offered (no mtpStep / decodeGraphs here): the engine then
// rejects speculativeTokens > 0 with its own error and runs every step eagerly.
//
// Failure model: rank 0 checks a batch (checkBatch) before broadcasting it, so a bad batch fails there
// alone. A model step that throws on a follower is reported and the follower goes on, as the engine on
// rank 0 fails that batch's requests and goes on: an error every rank raises at the same point (the usual
// kind: deterministic in the batch) leaves all ranks in step. An error on one rank only breaks the next
// collective whichever way the follower reacts; the collective (or `dsv32 launch`) then ends the run.
//
// Between requests a follower waits inside the header's broadcast for as long as rank 0 is idle: NCCL
// waits without limit; a collective with a wait timeout (ThreadCollective's timeoutMs) must be given one
// longer than the longest idle time.
import { DsvError } from '../errors.js';
import { checkBatch, type RaggedBatch, type SequenceChunk } from '../model/batch.js';
import type { Collective } from '../dist/collective.js';
import type { ModelConfig } from '../model/config.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { BLOCK_TOKENS } from './block-pool.js';
import type { EngineModel } from './engine.js';
import { releaseEvery } from '../tensor/memory.js';

export class StepBroadcastError extends DsvError {}

/** 'dsv3' in ASCII: a header that does not start with it is not ours. */
export const MAGIC = 0x64737633;
export const HEADER_WORDS = 4;
/** Largest payload a follower accepts (2²⁶ words, 256 MiB): a corrupted length must not allocate the machine. */
export const MAX_PAYLOAD_WORDS = 1 << 26;
export const Cmd = { POOL: 1, STEP: 2, STOP: 3 } as const;
type Cmd = (typeof Cmd)[keyof typeof Cmd];
const CMD_NAME: Record<number, string> = { [Cmd.POOL]: 'POOL', [Cmd.STEP]: 'STEP', [Cmd.STOP]: 'STOP' };

const FORMATS: readonly MlaCacheFormat[] = ['f32', 'bf16', 'fp8'];
const NUMERICS = ['f32', 'bf16'] as const;
const MODES = ['auto', 'mha', 'mqa'] as const;

/** The step options a broadcast step carries (EngineModel's, plus the model's logitsWanted). */
export interface BroadcastStepOptions {
  numerics?: 'f32' | 'bf16';
  mode?: 'auto' | 'mha' | 'mqa';
  record?: { topk?: boolean };
  logitsWanted?: boolean;
  dense?: boolean;
}
const STEP_KEYS = new Set(['numerics', 'mode', 'record', 'logitsWanted', 'dense']);

export interface PoolOptions {
  blocks: number;
  format?: MlaCacheFormat;
}

/** What a follower's model must offer: EngineModel's cfg, newPool and step, and where it lives. */
export type StepModel<P extends { readonly blocks: number }> = Pick<EngineModel<P>, 'cfg' | 'newPool'> & {
  readonly device: string;
  step(batch: RaggedBatch, pool: P, opts?: BroadcastStepOptions): ReturnType<EngineModel<P>['step']>;
};

/** 0 for absent, else 1 + the value's index in `values`; `what` names the argument in the error. */
function code<T>(v: T | undefined, values: readonly T[], what: string): number {
  if (v === undefined) return 0;
  const i = values.indexOf(v);
  if (i < 0) throw new StepBroadcastError(`${what} must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${JSON.stringify(v)}`);
  return i + 1;
}

export function encodePool(opts: PoolOptions): Int32Array {
  if (!Number.isInteger(opts.blocks) || opts.blocks < 1 || opts.blocks > 0x7fffffff) throw new StepBroadcastError(`newPool: blocks must be a positive 32-bit integer, got ${opts.blocks}`);
  return Int32Array.of(opts.blocks, code(opts.format, FORMATS, 'newPool: format'));
}

export function decodePool(p: Int32Array): PoolOptions {
  if (p.length !== 2) throw new StepBroadcastError(`POOL payload must be 2 words [blocks, format], got ${p.length}`);
  const [blocks, f] = [p[0]!, p[1]!];
  if (blocks < 1) throw new StepBroadcastError(`POOL payload: blocks must be positive, got ${blocks}`);
  if (f < 0 || f > FORMATS.length) throw new StepBroadcastError(`POOL payload: format code must be in [0, ${FORMATS.length}], got ${f}`);
  return f === 0 ? { blocks } : { blocks, format: FORMATS[f - 1]! };
}

/** The flat STEP payload of a batch and its options (layout in the header comment). */
export function encodeStep(batch: RaggedBatch, opts: BroadcastStepOptions = {}): Int32Array {
  for (const k of Object.keys(opts)) {
    if (!STEP_KEYS.has(k) && (opts as Record<string, unknown>)[k] !== undefined) {
      throw new StepBroadcastError(`step: option '${k}' cannot be broadcast to the other ranks (supported: ${[...STEP_KEYS].join(', ')}); forced top-k / routes and prebuilt layouts are not supported with world size > 1`);
    }
  }
  const T = batch.ids.length;
  const C = batch.seqs.length;
  const L = batch.logitRows ? batch.logitRows.length : -1;
  const rec = opts.record === undefined ? 0 : opts.record.topk === undefined ? 1 : opts.record.topk ? 3 : 2;
  if (opts.logitsWanted !== undefined && typeof opts.logitsWanted !== 'boolean') throw new StepBroadcastError(`step: logitsWanted must be a boolean, got ${JSON.stringify(opts.logitsWanted)}`);
  if (opts.record?.topk !== undefined && typeof opts.record.topk !== 'boolean') throw new StepBroadcastError(`step: record.topk must be a boolean, got ${JSON.stringify(opts.record.topk)}`);
  if (opts.dense !== undefined && typeof opts.dense !== 'boolean') throw new StepBroadcastError(`step: dense must be a boolean, got ${JSON.stringify(opts.dense)}`);
  const flag = (b: boolean | undefined): number => (b === undefined ? 0 : b ? 2 : 1);
  const head = [T, C, L, code(opts.numerics, NUMERICS, 'step: numerics'), code(opts.mode, MODES, 'step: mode'), rec, flag(opts.logitsWanted), flag(opts.dense)];
  let n = head.length + T + Math.max(L, 0);
  for (const s of batch.seqs) n += 4 + s.blocks.length;
  const out = new Int32Array(n);
  out.set(head, 0);
  out.set(batch.ids, head.length);
  let w = head.length + T;
  for (const s of batch.seqs) {
    out[w++] = s.offset;
    out[w++] = s.len;
    out[w++] = s.start;
    out[w++] = s.blocks.length;
    for (let j = 0; j < s.blocks.length; j++) out[w++] = s.blocks[j]!;
  }
  if (batch.logitRows) out.set(batch.logitRows, w);
  return out;
}

/** The inverse of encodeStep; any word out of place is an error naming it. */
export function decodeStep(p: Int32Array): { batch: RaggedBatch; opts: BroadcastStepOptions } {
  const bad = (msg: string): never => {
    throw new StepBroadcastError(`STEP payload (${p.length} words): ${msg}`);
  };
  if (p.length < 8) bad('shorter than its 8-word head');
  const [T, C, L, nu, mo, rec, lw, de] = Array.from(p.subarray(0, 8));
  if (T! < 1) bad(`T (token rows) must be positive, got ${T}`);
  if (C! < 1) bad(`C (chunks) must be positive, got ${C}`);
  if (L! < -1) bad(`L (logit rows) must be ≥ −1, got ${L}`);
  if (nu! < 0 || nu! > NUMERICS.length) bad(`numerics code must be in [0, ${NUMERICS.length}], got ${nu}`);
  if (mo! < 0 || mo! > MODES.length) bad(`mode code must be in [0, ${MODES.length}], got ${mo}`);
  if (rec! < 0 || rec! > 3) bad(`record code must be in [0, 3], got ${rec}`);
  if (lw! < 0 || lw! > 2) bad(`logitsWanted code must be in [0, 2], got ${lw}`);
  if (de! < 0 || de! > 2) bad(`dense code must be in [0, 2], got ${de}`);
  let r = 8;
  const take = (n: number, what: string): Int32Array => {
    if (n > p.length - r) bad(`${what} needs ${n} words at word ${r}, only ${p.length - r} left`);
    const s = p.subarray(r, r + n);
    r += n;
    return s;
  };
  const ids = Int32Array.from(take(T!, 'ids'));
  const seqs: SequenceChunk[] = [];
  for (let i = 0; i < C!; i++) {
    const [offset, len, start, nb] = Array.from(take(4, `chunk ${i}'s head`));
    if (nb! < 0) bad(`chunk ${i} lists ${nb} blocks`);
    seqs.push({ offset: offset!, len: len!, start: start!, blocks: Array.from(take(nb!, `chunk ${i}'s blocks`)) });
  }
  const logitRows = L! >= 0 ? Int32Array.from(take(L!, 'logitRows')) : undefined;
  if (r !== p.length) bad(`${p.length - r} words left over after the logit rows`);
  const opts: BroadcastStepOptions = {};
  if (nu) opts.numerics = NUMERICS[nu - 1]!;
  if (mo) opts.mode = MODES[mo - 1]!;
  if (rec) opts.record = rec === 1 ? {} : { topk: rec === 3 };
  if (lw) opts.logitsWanted = lw === 2;
  if (de) opts.dense = de === 2;
  return { batch: logitRows ? { ids, seqs, logitRows } : { ids, seqs }, opts };
}

/**
 * Rank 0's model for the engine: every pool and step is broadcast to the followers before it runs here.
 * close() sends STOP; call it once the engine is done (after drain / close).
 */
export class BroadcastModel<P extends { readonly blocks: number }> implements EngineModel<P> {
  private seq = 0;
  private closed = false;
  /** the last pool broadcast: the followers hold its twin, so steps must run on it */
  private pool: P | null = null;

  constructor(readonly model: StepModel<P>, readonly collective: Collective) {
    if (collective.rank !== 0) throw new StepBroadcastError(`BroadcastModel runs on rank 0 only (the engine's rank); rank ${collective.rank} runs followSteps`);
  }

  get cfg(): ModelConfig {
    return this.model.cfg;
  }

  get device(): string {
    return this.model.device;
  }

  newPool(opts: PoolOptions): P {
    this.open('newPool');
    this.send(Cmd.POOL, encodePool(opts));
    this.pool = this.model.newPool(opts);
    return this.pool;
  }

  step(batch: RaggedBatch, pool: P, opts: BroadcastStepOptions = {}): ReturnType<EngineModel<P>['step']> {
    this.open('step');
    if (pool !== this.pool) throw new StepBroadcastError("step: pool is not the last pool this BroadcastModel's newPool made (the followers hold that one's twin only)");
    const cfg = this.model.cfg;
    checkBatch(batch, BLOCK_TOKENS, pool.blocks, cfg.vocabSize, cfg.maxPositions);
    this.send(Cmd.STEP, encodeStep(batch, opts));
    return this.model.step(batch, pool, opts);
  }

  /** Sends STOP and waits until it is out (a process may exit right after). Idempotent. */
  close(): void {
    if (this.closed) return;
    // closed even if the send fails: a collective that failed once is out of step for good
    this.closed = true;
    this.pool = null;
    this.send(Cmd.STOP, new Int32Array(0));
  }

  private open(op: string): void {
    if (this.closed) throw new StepBroadcastError(`${op}: the broadcast model was closed (STOP sent)`);
  }

  private send(cmd: Cmd, payload: Int32Array): void {
    const device = this.model.device;
    const header = fromArray(Int32Array.of(MAGIC, cmd, payload.length, this.seq++), [HEADER_WORDS], { dtype: 'i32', device });
    this.collective.broadcast(header, 0);
    if (payload.length) this.collective.broadcast(fromArray(payload, [payload.length], { dtype: 'i32', device }), 0);
    // STOP: reading the header back waits for the broadcast to complete on an asynchronous collective
    if (cmd === Cmd.STOP) header.toHost();
  }
}

export interface FollowOptions {
  /** a model step that threw (default: one line on stderr); the follower goes on with the next command */
  onStepError?: (error: unknown, step: number) => void;
}

export interface FollowSummary {
  commands: number;
  steps: number;
  failedSteps: number;
}

/**
 * A follower rank's loop: receive commands from rank 0, make the pool (POOL), run the model step (STEP),
 * return on STOP. A malformed command throws a StepBroadcastError naming the rank and the command.
 */
export function followSteps<P extends { readonly blocks: number }>(model: StepModel<P>, collective: Collective, opts: FollowOptions = {}): Promise<FollowSummary> {
  if (collective.rank === 0) throw new StepBroadcastError('followSteps runs on ranks ≠ 0; rank 0 runs the engine over a BroadcastModel');
  return follow(model, collective, opts);
}

/**
 * followSteps' loop. It yields to the event loop after each step and gives dead tensors' device memory
 * back as the engine does between its steps (releaseEvery): a follower that never ended its job could
 * never reclaim anything made in it (src/tensor/memory.ts), and would run its device out of memory.
 */
async function follow<P extends { readonly blocks: number }>(model: StepModel<P>, collective: Collective, opts: FollowOptions): Promise<FollowSummary> {
  const rank = collective.rank;
  const releaseMemory = releaseEvery(model.device);
  const device = model.device;
  const cfg = model.cfg;
  const onStepError = opts.onStepError ?? ((e: unknown, step: number) => process.stderr.write(`rank ${rank}: model step ${step} failed, going on with the next command (rank 0 fails that batch's requests): ${(e as Error)?.message ?? String(e)}\n`));
  const sum: FollowSummary = { commands: 0, steps: 0, failedSteps: 0 };
  let pool: P | null = null;
  for (;;) {
    const where = `rank ${rank}, command ${sum.commands}`;
    const fail = (msg: string): never => {
      throw new StepBroadcastError(`followSteps (${where}): ${msg}`);
    };
    const ht = fromArray(new Int32Array(HEADER_WORDS), [HEADER_WORDS], { dtype: 'i32', device });
    collective.broadcast(ht, 0);
    const h = ht.toHost() as Int32Array;
    if (h[0] !== MAGIC) fail(`the header [${Array.from(h).join(', ')}] does not start with the magic word ${MAGIC} (not a step command: the ranks are out of step or something else broadcast)`);
    const [cmd, n, seq] = [h[1]!, h[2]!, h[3]!];
    if (seq !== sum.commands) fail(`the header's sequence number is ${seq}, expected ${sum.commands} (a command was lost or repeated)`);
    if (!(cmd in CMD_NAME)) fail(`unknown command ${cmd} (expected 1 POOL, 2 STEP or 3 STOP)`);
    if (n < 0 || n > MAX_PAYLOAD_WORDS) fail(`${CMD_NAME[cmd]} payload length ${n} is not in [0, ${MAX_PAYLOAD_WORDS}]`);
    let payload: Int32Array = new Int32Array(0);
    if (n > 0) {
      const pt: Tensor = fromArray(new Int32Array(n), [n], { dtype: 'i32', device });
      collective.broadcast(pt, 0);
      payload = pt.toHost() as Int32Array;
    }
    sum.commands++;
    const decoded = <T>(f: () => T): T => {
      try {
        return f();
      } catch (e) {
        return fail((e as Error).message);
      }
    };
    if (cmd === Cmd.STOP) {
      if (n !== 0) fail(`STOP carries ${n} payload words, expected none`);
      return sum;
    }
    if (cmd === Cmd.POOL) {
      pool = model.newPool(decoded(() => decodePool(payload)));
      continue;
    }
    const { batch, opts: stepOpts } = decoded(() => decodeStep(payload));
    if (!pool) fail('STEP before any POOL (no cache pool to run it on)');
    // rank 0 checked this batch against the same pool size: a batch that fails here was garbled on the way
    decoded(() => checkBatch(batch, BLOCK_TOKENS, pool!.blocks, cfg.vocabSize, cfg.maxPositions));
    const step = sum.steps++;
    try {
      model.step(batch, pool!, stepOpts);
    } catch (e) {
      sum.failedSteps++;
      onStepError(e, step);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
    await releaseMemory();
  }
}
