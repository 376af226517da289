// LLMEngine: the serving loop over one model and one cache pool.
//
//   loop: schedule (scheduler.ts) → one ragged model step → sample / verify drafts (sampler.ts,
//         speculative.ts) → emit events, stop checks (stop.ts) → MTP proposals for the next step
//
// The loop yields to the event loop between steps (setImmediate), so HTTP I/O, aborts and new requests
// are handled between two steps; a step itself is synchronous. Each request's n sequences stream
// TokenEvents and a FinishEvent each; the stream ends after the last FinishEvent.
//
// What a TokenEvent records comes from the batch row whose logits the token was sampled from, i.e. the
// forward of the token one position before it: its routed experts (int16, per MoE layer in order, the k
// ascending ids) and its indexer selection per layer. Over a completion these are the rows a Keep
// Routing / trainer forward over prompt + completion computes the completion's logits at.
//
// With returnRoutedExperts the request also records the routes of its prompt rows 0 .. P − 2 (the rows
// that produce prompt tokens 1 .. P − 1; row P − 1 produces the first generated token and is that token's
// routedExperts) in a PromptRoutes shared by its n sequences, written by position from whichever step
// computes them (chunked prefill spreads them over steps; preemption recomputes overwrite them), and
// sent once per sequence on its first TokenEvent. Prompt rows + generated rows = every input position of
// the trainer's forward, so Keep Routing can force routes everywhere. The scheduler keeps such a request
// from skipping unrecorded prompt rows through prefix-cache hits (scheduler.ts).
//
// returnIndexerTopk records the prompt rows' indexer selections the same way (PromptIndexerTopk, sent as
// promptIndexerTopk), so the trainer can replay the sparse attention's key sets at every position too.
//
// MTP (speculativeTokens k ≥ 1, model with MTP layers): after each step the MTP module runs on the same
// batch (main hidden h_i and token t_{i+1} at every row, filling its own cache), and for each decoding
// sequence its row at the last valid position proposes draft 1; drafts 2..k chain the MTP on its own
// output hidden (one MTP layer reused, as vLLM and SGLang do for V3). The next step feeds the drafts as
// extra rows of the sequence's chunk and speculative.ts accepts a prefix. The MTP caches of shared
// prefix blocks may have been written with a different next token at a block's last position; that
// only costs acceptance, never correctness.
//
// Graph decode (cudaGraphs, on by default where the device can capture): a step whose chunks are all
// one-token decodes (with MTP: all the last token and `spec` drafts), with no indexer selections
// recorded, replays the CUDA graph of its batch-size bucket (src/model/decode-graph.ts) instead of running
// model.step, routed experts included (RL rollouts record them at every token); a speculative step's
// first MTP pass replays a graph too. Everything else runs eagerly. The padded
// rows of a bucket write into block numBlocks of the cache pool, one past the blocks the block pool
// hands out, so no sequence, live, finished or preempted, ever owns it.
import { randomInt } from 'node:crypto';
import { DsvError } from '../errors.js';
import type { RaggedBatch, SequenceChunk } from '../model/batch.js';
import { CachePool, type StepLayout } from '../model/cache.js';
import type { ModelConfig } from '../model/config.js';
import type { DecodeGraphOptions, DecodeGraphStats, DecodeRunner, GraphCapture } from '../model/decode-graph.js';
import type { Selection } from '../model/indexer.js';
import { Rng } from '../tensor/random.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';
import { indexSelect } from '../tensor/ops/indexing.js';
import { keptIds, pickTokens } from '../tensor/ops/pick.js';
import { topk } from '../tensor/ops/topk.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { BLOCK_TOKENS, BlockPool } from './block-pool.js';
import { EventStream } from './event-stream.js';
import { type ScheduledChunk, Scheduler } from './scheduler.js';
import { type Distribution, checkFilterParams, distribution, drawFrom, everyId, unfiltered } from './sampler.js';
import { releaseEvery } from '../tensor/memory.js';
import { SamplerPool, defaultSamplerThreads, resultOf, sampleOne, type SampleJob, type SampleResult } from './sampler-pool.js';
import { PromptIndexerTopk, PromptRoutes, Sequence } from './sequence.js';
import { verifyDrafts } from './speculative.js';
import { type Detokenize, StopChecker, type StopResult } from './stop.js';
import { type Engine, type EngineEvent, EngineRequestError, type EngineStats, type GenerateRequest, type SamplingParams, type TokenEvent } from './types.js';

/** What the engine needs of a model (DeepseekV32 satisfies it). */
export interface EngineModel<P extends { readonly blocks: number }> {
  readonly cfg: ModelConfig;
  /** where the model's tensors live (the engine gives dead ones' device memory back between steps) */
  readonly device?: string;
  newPool(opts: { blocks: number; format?: MlaCacheFormat }): P;
  step(batch: RaggedBatch, pool: P, opts?: { numerics?: 'f32' | 'bf16'; mode?: 'auto' | 'mha' | 'mqa'; dense?: boolean; record?: { topk?: boolean } }): { logits: Tensor | null; hidden: Tensor; topk: Selection[]; routes: (Tensor | null)[]; layout?: StepLayout };
  mtpStep?(batch: RaggedBatch, hidden: Tensor, nextIds: Int32Array, pool: P, opts?: { numerics?: 'f32' | 'bf16'; mode?: 'auto' | 'mha' | 'mqa'; dense?: boolean; layout?: StepLayout }): { logits: Tensor; hidden: Tensor };
  /** whether the model's device can capture graphs (CUDA) */
  readonly canCaptureGraphs?: boolean;
  /** a graph runner of plain decode steps over `pool` (src/model/decode-graph.ts), null where the device cannot capture */
  decodeGraphs?(pool: P, opts: DecodeGraphOptions): DecodeRunner | null;
}

export interface EngineOptions {
  /** cache blocks of 64 tokens (default: from cacheBytes, else maxNumSeqs sequences of min(maxModelLen, 4096) tokens) */
  numBlocks?: number;
  /** a memory budget for the cache pool: numBlocks = ⌊cacheBytes / CachePool.bytesPerBlock(cfg, cacheFormat)⌋ */
  cacheBytes?: number;
  cacheFormat?: MlaCacheFormat;
  numerics?: 'f32' | 'bf16';
  /** default 64 */
  maxNumSeqs?: number;
  /** rows per step (default 2048) */
  maxBatchTokens?: number;
  /** default the model's max_position_embeddings */
  maxModelLen?: number;
  detokenize?: Detokenize;
  /** default the config's eos_token_id(s) */
  eosTokenIds?: number[];
  /** MTP draft tokens per step, 0..3 (default 0); needs MTP layers */
  speculativeTokens?: number;
  /**
   * 'auto' (default): the reference's choice, MHA for prefill chunks and absorbed MQA for decode; 'mqa':
   * every chunk in the absorbed form, which is the training forward's (RL rollouts: the policy sampled is
   * then the one trained, instead of one that differs by MHA-vs-MQA rounding, which the FP8 round trips
   * and the indexer's top-k can amplify)
   */
  attention?: 'auto' | 'mqa';
  /**
   * Dense attention: every query attends to every causal key and the lightning indexer does not run
   * (model.ts StepOptions.dense) — the dense baseline DSA is compared against, on the same weights and
   * kernels. Default false (DSA). Requests cannot ask for the indexer's top-k then.
   */
  denseAttention?: boolean;
  modelName?: string;
  /**
   * Plain decode steps (every chunk one token, no drafts, no routes or indexer selections recorded, at
   * most maxNumSeqs sequences) replay a CUDA graph per batch-size bucket (src/model/decode-graph.ts).
   * Default true; it takes effect where the model's device can capture graphs (CUDA), and costs one
   * cache block beyond numBlocks (the padded rows' scratch block) and each captured bucket's activations.
   */
  cudaGraphs?: boolean;
  /** the capture to use instead of the device's (tests on the CPU pass a stand-in that re-runs the function) */
  graphCapture?: GraphCapture;
  /**
   * Worker threads that sample a step's rows beside the engine's thread (sampler-pool.ts; results bit for
   * bit the inline sampler's). Default (defaultSamplerThreads): none below an 8 192-token vocabulary, else
   * up to 7, one fewer than the cores.
   */
  samplerThreads?: number;
  /**
   * Sample where the logits are (pickTokens, src/tensor/ops/pick.ts): a step without drafts reads back a
   * token and a logprob per row instead of the rows — greedy, any temperature, top-k/top-p/min-p rows (a
   * filtered row's sampling mask, where asked, comes back as bits) and top logprobs (the topk op's ids).
   * Default: on when the model's device is not the CPU (where the logits already are on the host, and
   * the sampler pool spreads the rows over threads). Greedy tokens are the host sampler's; a drawn token
   * or a kept set differs from it only on a tie within rounding, logprobs agree to rounding (the op's
   * header).
   */
  deviceSampling?: boolean;
}

/** The engine does not take requests any more (draining or closed). */
export class EngineClosedError extends DsvError {}

const DEFAULTS: Omit<SamplingParams, 'maxTokens'> = {
  temperature: 1, topP: 1, topK: 0, minP: 0, stop: [], stopTokenIds: [], ignoreEos: false, n: 1, logprobs: 0,
  returnSamplingMask: false, returnRoutedExperts: false, returnIndexerTopk: false,
};
const MAX_LOGPROBS = 20;

interface RequestState {
  req: GenerateRequest;
  params: SamplingParams;
  stream: EventStream<EngineEvent>;
  seqs: Sequence[];
  open: number;
  detach: () => void;
}

interface SeqState {
  request: RequestState;
  index: number;
  rng: Rng | null;
  stop: StopChecker;
  /** proposal distributions of the current drafts (sampling only) */
  draftDists: (Distribution | null)[];
  /** the prompt's routes went out (on this sequence's first TokenEvent) */
  promptRoutesSent: boolean;
  /** the prompt's indexer selections went out likewise */
  promptTopkSent: boolean;
}

export class LLMEngine<P extends { readonly blocks: number }> implements Engine {
  readonly info: Engine['info'];
  readonly blockPool: BlockPool;
  /** the model's cache tensors; dropped by close() so their memory can be reclaimed */
  private cachePool: P | null;
  readonly capacity: number;
  private readonly scheduler: Scheduler;
  private readonly requests = new Map<string, RequestState>();
  private readonly seqState = new Map<Sequence, SeqState>();
  private readonly eos: number[];
  private readonly spec: number;
  /**
   * numerics, and the attention mode: the FP8 latent cache does not hold the latent rows in the clear,
   * which MHA (the reference's prefill path) reads, so with it every chunk runs absorbed MQA
   */
  private readonly stepOpts: { numerics?: 'f32' | 'bf16'; mode: 'auto' | 'mqa'; dense: boolean };
  private nextKey = 0;
  private generated = 0;
  private draftProposed = 0;
  private draftAccepted = 0;
  private draining = false;
  private closed = false;
  private wake: (() => void) | null = null;
  private idle: (() => void)[] = [];
  private loopDone: Promise<void>;
  /** the decode graph runner, when graphs are on and the device can capture */
  private graphs: DecodeRunner | null = null;
  private readonly samplers: SamplerPool | null;
  private readonly deviceSampling: boolean;
  private deviceSampledSteps = 0;
  /** between steps: the dead tensors' device memory back to the allocator's cache (releaseEvery) */
  private readonly releaseMemory: () => Promise<void>;

  constructor(readonly model: EngineModel<P>, private readonly opts: EngineOptions = {}) {
    const cfg = model.cfg;
    const bad = (field: string, what: string, v: unknown): never => {
      throw new DsvError(`engine: ${field} must be ${what}, got ${v}`);
    };
    const maxNumSeqs = opts.maxNumSeqs ?? 64;
    if (!Number.isInteger(maxNumSeqs) || maxNumSeqs < 1) bad('maxNumSeqs', 'a positive integer', maxNumSeqs);
    const maxBatchTokens = opts.maxBatchTokens ?? 2048;
    if (!Number.isInteger(maxBatchTokens) || maxBatchTokens < 1) bad('maxBatchTokens', 'a positive integer', maxBatchTokens);
    const maxModelLen = opts.maxModelLen ?? cfg.maxPositions;
    if (!Number.isInteger(maxModelLen) || maxModelLen < 2 || maxModelLen > cfg.maxPositions) bad('maxModelLen', `an integer in [2, ${cfg.maxPositions}] (max_position_embeddings)`, maxModelLen);
    if (opts.cacheBytes !== undefined && !(opts.cacheBytes > 0)) bad('cacheBytes', 'a positive number of bytes', opts.cacheBytes);
    const fromBytes = opts.cacheBytes === undefined ? undefined : Math.floor(opts.cacheBytes / CachePool.bytesPerBlock(cfg, opts.cacheFormat ?? 'f32'));
    if (fromBytes === 0) bad('cacheBytes', `at least one block (${CachePool.bytesPerBlock(cfg, opts.cacheFormat ?? 'f32')} B)`, opts.cacheBytes);
    const numBlocks = opts.numBlocks ?? fromBytes ?? maxNumSeqs * Math.ceil(Math.min(maxModelLen, 4096) / BLOCK_TOKENS);
    if (!Number.isInteger(numBlocks) || numBlocks < 1) bad('numBlocks', 'a positive integer', numBlocks);
    this.spec = opts.speculativeTokens ?? 0;
    if (!Number.isInteger(this.spec) || this.spec < 0 || this.spec > 3) bad('speculativeTokens', 'an integer in [0, 3]', this.spec);
    if (this.spec > 0 && (cfg.nMtpLayers < 1 || !model.mtpStep)) bad('speculativeTokens', '0 for a model without MTP layers', this.spec);
    if (opts.attention !== undefined && opts.attention !== 'auto' && opts.attention !== 'mqa') bad('attention', "'auto' or 'mqa'", opts.attention);
    if (opts.denseAttention !== undefined && typeof opts.denseAttention !== 'boolean') bad('denseAttention', 'a boolean', opts.denseAttention);
    this.stepOpts = { numerics: opts.numerics, mode: opts.cacheFormat === 'fp8' ? 'mqa' : (opts.attention ?? 'auto'), dense: opts.denseAttention ?? false };
    this.capacity = Math.min(maxModelLen, numBlocks * BLOCK_TOKENS);
    this.blockPool = new BlockPool(numBlocks);
    // graph decode pads its batches with rows that write into a block no sequence owns: one more block in
    // the cache pool than the block pool hands out (block numBlocks), so scheduling, capacity and the
    // cache statistics are those of an engine without graphs
    const graphs = (opts.cudaGraphs ?? true) && model.decodeGraphs !== undefined && (opts.graphCapture !== undefined || model.canCaptureGraphs === true);
    this.cachePool = model.newPool({ blocks: numBlocks + (graphs ? 1 : 0), format: opts.cacheFormat });
    if (graphs) {
      this.graphs = model.decodeGraphs!(this.cachePool, {
        maxLen: this.capacity, scratchBlock: numBlocks, maxSeqs: maxNumSeqs, numerics: this.stepOpts.numerics, mode: this.stepOpts.mode, dense: this.stepOpts.dense,
        // speculative engines graph their verification steps (the last token and `spec` drafts per row)
        // and the first MTP pass after them; plain ones their one-token decode steps
        ...(this.spec > 0 ? { rowTokens: 1 + this.spec, mtp: true } : {}),
        ...(opts.graphCapture ? { capture: opts.graphCapture } : {}),
        onFallback: (bucket, context, reason) => process.emitWarning(`engine: the CUDA graph of decode bucket ${bucket} (contexts ≤ ${context}) could not be captured; those steps run eagerly: ${reason}`),
      });
    }
    const threads = opts.samplerThreads ?? defaultSamplerThreads(cfg.vocabSize);
    if (!Number.isInteger(threads) || threads < 0 || threads > 64) bad('samplerThreads', 'an integer in [0, 64]', threads);
    this.samplers = threads > 0 ? new SamplerPool(threads) : null;
    this.deviceSampling = opts.deviceSampling ?? (model.device !== undefined && model.device !== 'cpu');
    this.releaseMemory = model.device ? releaseEvery(model.device) : async () => {};
    this.scheduler = new Scheduler(this.blockPool, { maxNumSeqs, maxBatchTokens });
    this.eos = opts.eosTokenIds ?? cfg.eosTokenIds;
    this.info = { modelName: opts.modelName ?? 'dsv32', vocabSize: cfg.vocabSize, maxModelLen, eosTokenId: this.eos[0] ?? null, indexTopk: cfg.indexTopk };
    this.loopDone = this.loop();
  }

  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    if (this.closed || this.draining) throw new EngineClosedError(`engine: ${this.closed ? 'closed' : 'draining'}, not taking requests`);
    const params = this.check(req);
    if (signal?.aborted) throw new EngineRequestError('request was aborted before it started', 'signal');
    const state: RequestState = { req, params, stream: new EventStream(() => this.abort(state)), seqs: [], open: params.n, detach: () => {} };
    const seed = params.seed ?? randomInt(2 ** 32);
    const cfg = this.model.cfg;
    const promptRoutes = params.returnRoutedExperts ? new PromptRoutes(req.promptIds.length, cfg.nLayers - cfg.nDenseLayers, cfg.nActivatedExperts) : null;
    const promptTopk = params.returnIndexerTopk ? new PromptIndexerTopk(req.promptIds.length, cfg.nLayers, cfg.indexTopk) : null;
    for (let i = 0; i < params.n; i++) {
      const seq = new Sequence(this.nextKey++, req.promptIds, req.promptIds.length);
      seq.promptRoutes = promptRoutes;
      seq.promptTopk = promptTopk;
      if (i > 0) seq.leader = state.seqs[0]!;
      state.seqs.push(seq);
      this.seqState.set(seq, {
        request: state, index: i, draftDists: [], promptRoutesSent: false, promptTopkSent: false,
        // one stream per sequence: (seed, index) → a 32-bit seed through a golden-ratio step
        rng: params.temperature > 0 ? new Rng((seed + Math.imul(i, 0x9e3779b9)) >>> 0) : null,
        stop: new StopChecker({ ...params, eosTokenIds: this.eos }, this.opts.detokenize ?? null),
      });
      this.scheduler.add(seq);
    }
    this.requests.set(req.id, state);
    if (signal) {
      const onAbort = (): void => this.abort(state);
      signal.addEventListener('abort', onAbort, { once: true });
      state.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.wake?.();
    return state.stream;
  }

  stats(): EngineStats {
    let waiting = 0;
    for (const r of this.requests.values()) if (r.seqs.every((s) => s.status === 'waiting')) waiting++;
    return {
      waiting,
      running: this.scheduler.running.length,
      preempted: this.scheduler.preemptions,
      cacheUsage: this.blockPool.numUsed / this.blockPool.numBlocks,
      totalBlocks: this.blockPool.numBlocks,
      prefixHitTokens: this.scheduler.prefixHitTokens,
      draftProposed: this.draftProposed,
      draftAccepted: this.draftAccepted,
      generatedTokens: this.generated,
      deviceSampledSteps: this.deviceSampledSteps,
    };
  }

  drain(): Promise<void> {
    this.draining = true;
    if (!this.scheduler.hasWork) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of [...this.requests.values()]) this.abort(r);
    this.cachePool = null;
    this.graphs?.destroy();
    this.graphs = null;
    this.samplers?.close();
    this.wake?.();
    for (const f of this.idle.splice(0)) f();
  }

  /** Counters of the decode graph runner (null when graphs are off or the device cannot capture). */
  graphStats(): DecodeGraphStats | null {
    return this.graphs ? structuredClone(this.graphs.stats) : null;
  }

  /** Resolves when the loop has exited (after close). */
  get stopped(): Promise<void> {
    return this.loopDone;
  }

  private check(req: GenerateRequest): SamplingParams {
    const fail = (msg: string, field: string): EngineRequestError => new EngineRequestError(msg, field);
    if (typeof req.id !== 'string' || req.id === '') throw fail('id must be a non-empty string', 'id');
    if (this.requests.has(req.id)) throw fail(`id ${JSON.stringify(req.id)} is already running; ids must be unique among running requests`, 'id');
    const V = this.model.cfg.vocabSize;
    const ids = req.promptIds;
    if (!Array.isArray(ids) || ids.length === 0) throw fail('promptIds must be a non-empty array of token ids', 'promptIds');
    ids.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw fail(`promptIds[${i}] = ${t} is not a token id in [0, ${V})`, 'promptIds');
    });
    if (ids.length > this.capacity) {
      throw fail(`promptIds has ${ids.length} tokens; at most ${this.capacity} fit (maxModelLen ${this.info.maxModelLen}, cache pool ${this.blockPool.numBlocks} blocks of ${BLOCK_TOKENS})`, 'promptIds');
    }
    // undefined fields take the defaults (the caller's object is not touched)
    const given = Object.fromEntries(Object.entries(req.params ?? {}).filter(([, v]) => v !== undefined)) as Partial<SamplingParams>;
    const p: SamplingParams = { ...DEFAULTS, maxTokens: this.capacity, ...given };
    checkFilterParams(p, fail);
    const int = (field: keyof SamplingParams, lo: number, hi: number): void => {
      const v = p[field];
      if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) throw fail(`${field} must be an integer in [${lo}, ${hi}], got ${v}`, field);
    };
    int('maxTokens', 1, Number.MAX_SAFE_INTEGER);
    int('n', 1, this.scheduler.limits.maxNumSeqs);
    int('logprobs', 0, MAX_LOGPROBS);
    if (p.seed !== undefined && !Number.isInteger(p.seed)) throw fail(`seed must be an integer, got ${p.seed}`, 'seed');
    if (!Array.isArray(p.stop) || p.stop.some((s) => typeof s !== 'string' || s === '')) throw fail('stop must be an array of non-empty strings', 'stop');
    if (p.stop.length && !this.opts.detokenize) throw fail('stop strings need a tokenizer; this engine has no detokenizer (use stopTokenIds)', 'stop');
    if (!Array.isArray(p.stopTokenIds) || p.stopTokenIds.some((t) => !Number.isInteger(t) || t < 0 || t >= V)) throw fail(`stopTokenIds must be token ids in [0, ${V})`, 'stopTokenIds');
    for (const f of ['ignoreEos', 'returnSamplingMask', 'returnRoutedExperts', 'returnIndexerTopk'] as const) {
      if (typeof p[f] !== 'boolean') throw fail(`${f} must be a boolean, got ${p[f]}`, f);
    }
    if (p.returnIndexerTopk && this.stepOpts.dense) throw fail('the indexer top-k cannot be returned: this engine runs dense attention (every causal key), and the indexer makes no selection', 'returnIndexerTopk');
    return p;
  }

  private abort(state: RequestState): void {
    for (const seq of state.seqs) if (seq.status !== 'finished') this.finish(seq, { reason: 'abort' });
  }

  private finish(seq: Sequence, why: StopResult): void {
    const st = this.seqState.get(seq)!;
    this.scheduler.remove(seq);
    this.seqState.delete(seq);
    const r = st.request;
    r.stream.push({ type: 'finish', requestId: r.req.id, index: st.index, reason: why.reason, ...(why.stoppedBy !== undefined ? { stoppedBy: why.stoppedBy } : {}), promptTokens: seq.promptLen, completionTokens: seq.numCompletion });
    if (--r.open === 0) {
      r.detach();
      r.stream.end();
      this.requests.delete(r.req.id);
    }
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (!this.scheduler.hasWork) {
        for (const f of this.idle.splice(0)) f();
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      try {
        this.step();
      } catch (e) {
        // a bug outside the model step (which fails only its own batch): fail everything rather than hang
        this.fail([...this.scheduler.running, ...this.scheduler.waiting], e);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
      await this.releaseMemory();
    }
  }

  /** One schedule → model step → sample round. A model error fails the requests of that batch only. */
  private step(): void {
    const chunks = this.scheduler.schedule();
    if (chunks.length === 0) {
      // nothing fits although sequences wait: cannot happen with the admission rules (an idle pool fits
      // any accepted prompt); fail the head of the queue rather than spin
      const seq = this.scheduler.waiting[0];
      if (seq) this.fail([seq], new DsvError('engine: a waiting sequence could not be scheduled in an empty pool'));
      return;
    }
    try {
      this.run(chunks);
    } catch (e) {
      this.fail(chunks.map((c) => c.seq), e);
    }
  }

  private fail(seqs: Sequence[], error: unknown): void {
    const reqs = new Set<RequestState>();
    for (const s of seqs) {
      const st = this.seqState.get(s);
      if (st) reqs.add(st.request);
    }
    for (const r of reqs) {
      for (const s of r.seqs) {
        if (s.status !== 'finished') {
          this.scheduler.remove(s);
          this.seqState.delete(s);
        }
      }
      r.detach();
      r.stream.end(error);
      this.requests.delete(r.req.id);
    }
  }

  private run(chunks: ScheduledChunk[]): void {
    const cfg = this.model.cfg;
    const V = cfg.vocabSize;
    const T = chunks.reduce((n, c) => n + c.len, 0);
    const ids = new Int32Array(T);
    const seqs: SequenceChunk[] = [];
    const rows: number[] = [];
    /** first logit row of each chunk that samples */
    const firstRow = new Map<ScheduledChunk, number>();
    const offsetOf = new Map<ScheduledChunk, number>();
    let off = 0;
    let wantTopk = false;
    let wantRoutes = false;
    for (const c of chunks) {
      ids.set(c.ids, off);
      seqs.push({ offset: off, len: c.len, start: c.start, blocks: c.seq.blocks });
      offsetOf.set(c, off);
      const pr = c.seq.promptRoutes;
      if (pr && c.start < pr.rows) wantRoutes = true;
      const pt = c.seq.promptTopk;
      if (pt && c.start < pt.rows) wantTopk = true;
      if (c.sample) {
        firstRow.set(c, rows.length);
        for (let i = c.len - 1 - c.drafts; i < c.len; i++) rows.push(off + i);
        const p = this.seqState.get(c.seq)!.request.params;
        wantTopk ||= p.returnIndexerTopk;
        wantRoutes ||= p.returnRoutedExperts;
      }
      off += c.len;
    }
    // a step of prefill chunks only still needs one logit row for the model; it is ignored
    const batch: RaggedBatch = { ids, seqs, logitRows: Int32Array.from(rows.length ? rows : [T - 1]) };
    // a decode step replays its bucket's graph (null: no bucket holds this many sequences), routes recorded
    // or not (the graph writes them to static tensors): one-token chunks in a plain engine, and in a
    // speculative one chunks of the last token and `spec` drafts each (its first MTP pass replays too,
    // in propose). Steps with other chunks (prefill, fewer drafts near capacity) and steps recording
    // indexer selections run eagerly
    const graphable = this.graphs !== null && !wantTopk && chunks.every((c) => c.len === 1 + this.spec && c.sample && c.drafts === this.spec);
    const graphed = graphable ? this.graphs!.step(batch) : null;
    const out = graphed ? null : this.model.step(batch, this.cachePool!, { ...this.stepOpts, record: { topk: wantTopk } });
    if (out && !out.logits) throw new DsvError('engine: the model step returned no logits');
    const logitsT = graphed?.logits ?? out!.logits!;
    let hostLogits: Float32Array | null = null;
    const logits = (): Float32Array => (hostLogits ??= logitsT.toFloat32());
    const routes = wantRoutes ? (graphed?.routes ?? out!.routes).map((r) => (r ? (r.toHost() as Int32Array) : null)) : null;
    const topk = wantTopk ? out!.topk.map((s) => ({ width: s.width, idx: s.idx.toHost() as Int32Array })) : null;
    const row = (r: number): Float32Array => logits().subarray(r * V, (r + 1) * V);
    // prompt rows this step computed, by position (chunk row i is position start + i)
    const promptRows = (c: ScheduledChunk, rec: { rows: number } | null, put: (p: number, flat: number) => void): void => {
      if (!rec) return;
      const off0 = offsetOf.get(c)!;
      for (let p = c.start; p < Math.min(c.start + c.len, rec.rows); p++) put(p, off0 + p - c.start);
    };
    if (routes) {
      const moe = routes.filter((r): r is Int32Array => r !== null);
      for (const c of chunks) {
        const pr = c.seq.promptRoutes;
        if (pr && c.start < pr.rows && moe.length !== pr.layers) throw new DsvError(`engine: the model step returned routes for ${moe.length} MoE layers, the config has ${pr.layers}`);
        promptRows(c, pr, (p, flat) => pr!.record(p, moe, flat));
      }
    }
    if (topk) {
      for (const c of chunks) {
        const pt = c.seq.promptTopk;
        if (pt && c.start < pt.rows && topk.length !== pt.layers) throw new DsvError(`engine: the model step returned indexer selections for ${topk.length} layers, the config has ${pt.layers}`);
        promptRows(c, pt, (p, flat) => pt!.record(p, topk, flat));
      }
    }

    // the chunks without drafts sample one row each: all of them at once (on the sampler pool's threads
    // where it has any), each sequence's uniform drawn here in its usual order (one per token)
    const plain = chunks.filter((c) => c.sample && c.drafts === 0);
    const jobs: SampleJob[] = plain.map((c) => {
      const st = this.seqState.get(c.seq)!;
      const p = st.request.params;
      return { row: firstRow.get(c)!, params: p, u: p.temperature === 0 ? null : st.rng!.uniform(), logprobs: p.logprobs, mask: p.returnSamplingMask };
    });
    const plainResults = this.pickOnDevice(logitsT, chunks, jobs) ??
      (this.samplers?.usable && jobs.length > 1 ? this.samplers.sample(logits(), V, jobs) : jobs.map((j) => sampleOne(row(j.row), j)));
    const sampled = new Map(plain.map((c, i) => [c, plainResults[i]!]));

    // per chunk: the flat row of every emitted token's logits, for the MTP pass below
    const proposeFrom: { c: ScheduledChunk; row: number }[] = [];
    for (const c of chunks) {
      const seq = c.seq;
      if (!c.sample) {
        this.scheduler.advance(c, c.len);
        continue;
      }
      const st = this.seqState.get(seq)!;
      const p = st.request.params;
      const r0 = firstRow.get(c)!;
      const flat0 = offsetOf.get(c)!;
      let emitted: number[];
      let results: SampleResult[];
      if (c.drafts === 0) {
        const r = sampled.get(c)!;
        emitted = [r.token];
        results = [r];
      } else {
        const v = verifyDrafts((i) => row(r0 + i), seq.drafts.slice(0, c.drafts), st.draftDists, p, st.rng);
        emitted = v.tokens;
        results = v.tokens.map((tok, i) => resultOf(row(r0 + i), v.dists[i]!, tok, { logprobs: p.logprobs, mask: p.returnSamplingMask }));
        this.draftProposed += c.drafts;
        this.draftAccepted += v.accepted;
      }
      seq.drafts = [];
      st.draftDists = [];
      let stopped = false;
      for (let i = 0; i < emitted.length && !stopped; i++) {
        const tok = emitted[i]!;
        const flat = flat0 + c.len - 1 - c.drafts + i;
        this.emitToken(st, results[i]!, flat, routes, topk);
        seq.tokens.push(tok);
        this.generated++;
        const why = st.stop.check(seq.tokens, seq.promptLen, seq.tokens.length - 1 < this.capacity);
        if (why) {
          this.finish(seq, why);
          stopped = true;
        }
      }
      if (stopped) continue;
      // x and the accepted drafts have valid keys: positions start .. start + (len − 1 − drafts) + accepted
      this.scheduler.advance(c, c.len - c.drafts + emitted.length - 1);
      if (this.spec > 0) proposeFrom.push({ c, row: flat0 + c.len - 1 - c.drafts + emitted.length - 1 });
    }
    if (this.spec > 0) this.propose(batch, out, chunks, proposeFrom);
  }

  /**
   * The step's samples from pickTokens on the logits' device, when no sampling row of the step has
   * drafts; null otherwise, and when a row has no token (a NaN or all −∞): the host sampler then takes
   * the whole step and names the bad logit. Rows without a job (a graph bucket's padding) are picked
   * greedy and ignored. The filters travel per row; a mask asked for comes back as bits (⌈V/32⌉ words a
   * row) only when a filtered row asks for one (an unfiltered row's is every id). Top logprobs: the
   * step's largest count of the most likely ids by the topk op (ties → lower id, as the host's list)
   * and each row's logZ from the op, so an id's logprob is z/τ − logZ as the host computes it.
   */
  private pickOnDevice(logits: Tensor, chunks: ScheduledChunk[], jobs: SampleJob[]): SampleResult[] | null {
    // f64 logits (an f64 model) stay with the host sampler, which reads them at full width
    if (!this.deviceSampling || logits.dtype !== 'f32' || jobs.length === 0 || chunks.some((c) => c.sample && c.drafts > 0)) return null;
    const [R, V] = logits.shape as [number, number];
    const tau = new Float64Array(R);
    const u = new Float64Array(R);
    const topK = new Float64Array(R);
    const topP = new Float64Array(R).fill(1);
    const minP = new Float64Array(R);
    let filtered = false;
    let bits = false;
    for (const j of jobs) {
      tau[j.row] = j.params.temperature;
      u[j.row] = j.u ?? 0;
      if (j.params.temperature > 0 && !unfiltered(j.params, V)) {
        filtered = true;
        bits ||= j.mask;
        topK[j.row] = j.params.topK;
        topP[j.row] = j.params.topP;
        minP[j.row] = j.params.minP;
      }
    }
    const top = Math.min(V, Math.max(...jobs.map((j) => j.logprobs)));
    const g = pickTokens(logits, tau, u, { ...(filtered ? { filters: { topK, topP, minP } } : {}), mask: bits, logZ: top > 0 });
    const best = top > 0 ? topk(logits, top) : null;
    const token = g.token.toHost() as Int32Array;
    const logprob = g.logprob.toHost() as Float64Array;
    if (jobs.some((j) => token[j.row]! < 0)) return null;
    const words = g.mask ? (g.mask.toHost() as Int32Array) : null;
    const logZ = g.logZ ? (g.logZ.toHost() as Float64Array) : null;
    const bestZ = best ? best.values.toFloat32() : null;
    const bestIds = best ? (best.indices.toHost() as BigInt64Array) : null;
    const topOf = (j: SampleJob): [number, number][] => {
      const t = j.params.temperature === 0 ? 1 : j.params.temperature;
      return Array.from({ length: Math.min(j.logprobs, top) }, (_, i): [number, number] => [Number(bestIds![j.row * top + i]!), bestZ![j.row * top + i]! / t - logZ![j.row]!]);
    };
    this.deviceSampledSteps++;
    // a greedy row's mask is its token, an unfiltered one's the whole vocabulary (the host's
    // Distribution.ids: RL rollouts at top_p 1 record every id), a filtered one's its bits
    const maskOf = (j: SampleJob): Int32Array => {
      if (j.params.temperature === 0) return Int32Array.of(token[j.row]!);
      if (unfiltered(j.params, V)) return everyId(V);
      return keptIds(words!, j.row, V);
    };
    return jobs.map((j) => ({ token: token[j.row]!, logprob: logprob[j.row]!, ...(j.logprobs > 0 ? { topLogprobs: topOf(j) } : {}), ...(j.mask ? { mask: maskOf(j) } : {}) }));
  }

  private emitToken(st: SeqState, res: SampleResult, flat: number, routes: (Int32Array | null)[] | null, topk: { width: number; idx: Int32Array }[] | null): void {
    const p = st.request.params;
    const ev: TokenEvent = { type: 'token', requestId: st.request.req.id, index: st.index, tokenId: res.token, logprob: res.logprob };
    if (p.logprobs > 0) ev.topLogprobs = res.topLogprobs;
    if (p.returnSamplingMask) ev.samplingMask = res.mask;
    if (p.returnRoutedExperts && routes) {
      const k = this.model.cfg.nActivatedExperts;
      const moe = routes.filter((r): r is Int32Array => r !== null);
      const e = new Int16Array(moe.length * k);
      moe.forEach((r, l) => e.set(r.subarray(flat * k, (flat + 1) * k), l * k));
      ev.routedExperts = e;
    }
    const pr = st.request.seqs[st.index]!.promptRoutes;
    if (pr && !st.promptRoutesSent) {
      // every prompt row was computed by this request (hits only cover recorded rows) before any sequence samples
      if (!pr.complete) throw new DsvError(`engine: request ${st.request.req.id} samples with ${pr.covered} of ${pr.rows} prompt rows' routes recorded`);
      ev.promptRoutedExperts = pr.data.slice();
      st.promptRoutesSent = true;
    }
    const pt = st.request.seqs[st.index]!.promptTopk;
    if (pt && !st.promptTopkSent) {
      if (!pt.complete) throw new DsvError(`engine: request ${st.request.req.id} samples with ${pt.covered} of ${pt.rows} prompt rows' indexer selections recorded`);
      ev.promptIndexerTopk = pt.data.slice();
      st.promptTopkSent = true;
    }
    if (p.returnIndexerTopk && topk) ev.indexerTopk = topk.map((s) => s.idx.slice(flat * s.width, (flat + 1) * s.width).filter((x) => x >= 0));
    st.request.stream.push(ev);
  }

  /**
   * MTP pass: fill the MTP caches for every row of the step and propose drafts for the sequences in
   * `from` (row = the flat row of the last valid position, whose next token was just emitted). `out` is
   * the eager step's result, null when the step replayed a graph (whose runner then runs the MTP pass).
   */
  private propose(batch: RaggedBatch, out: { hidden: Tensor; layout?: StepLayout } | null, chunks: ScheduledChunk[], from: { c: ScheduledChunk; row: number }[]): void {
    const mtpStep = this.model.mtpStep!.bind(this.model);
    const T = batch.ids.length;
    // next token of every row: the sequence's token one position ahead (rows of rejected drafts get
    // their own id: any valid id will do, those MTP cache slots are rewritten before they are read)
    const nextIds = new Int32Array(T);
    let off = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.len; i++) {
        const pos = c.start + i + 1;
        nextIds[off + i] = pos < c.seq.tokens.length ? c.seq.tokens[pos]! : batch.ids[off + i]!;
      }
      off += c.len;
    }
    const live = from.filter((f) => f.c.seq.status === 'running');
    const rows = live.map((f) => f.row);
    // the same rows as the main step: its layout (slots, block tables, context slots) is reused, not rebuilt.
    // After a graph step the graph's MTP pass gives every row's logits; the proposing rows are picked here
    const m = out
      ? mtpStep({ ...batch, logitRows: Int32Array.from(rows.length ? rows : [T - 1]) }, out.hidden, nextIds, this.cachePool!, { ...this.stepOpts, ...(out.layout ? { layout: out.layout } : {}) })
      : this.graphs!.propose!(nextIds);
    if (!live.length) return;
    const V = this.model.cfg.vocabSize;
    const rowsT = fromArray(Int32Array.from(rows), [rows.length], { dtype: 'i32', device: m.hidden.device });
    let logits = (out ? m.logits : indexSelect(m.logits, 0, rowsT)).toFloat32();
    // hidden of each proposing row, for chaining (the MTP's own output stands in for the main model's)
    let h = indexSelect(m.hidden, 0, rowsT);
    let active = live.map((f, j) => ({ seq: f.c.seq, j }));
    for (let d = 0; d < this.spec && active.length; d++) {
      for (const a of active) {
        const st = this.seqState.get(a.seq)!;
        const p = st.request.params;
        const dist = distribution(logits.subarray(a.j * V, (a.j + 1) * V), p);
        a.seq.drafts.push(p.temperature === 0 ? dist.idAt(0) : drawFrom(dist, st.rng!.uniform()));
        st.draftDists.push(p.temperature === 0 ? null : dist);
      }
      if (d + 1 === this.spec) break;
      // chain: draft d at position L − 1 + d predicts the next one; only where the verification step
      // will fit under capacity and a block for the position is at hand
      const next = active.filter((a) => {
        const pos = a.seq.tokens.length - 1 + d;
        if (pos + 2 > this.capacity - 1) return false;
        if (pos >= a.seq.blocks.length * BLOCK_TOKENS) {
          const b = this.blockPool.allocate();
          if (b < 0) return false;
          a.seq.blocks.push(b);
        }
        return true;
      });
      if (!next.length) break;
      const cb: RaggedBatch = {
        ids: Int32Array.from(next, (a) => (d === 0 ? a.seq.tokens[a.seq.tokens.length - 1]! : a.seq.drafts[d - 1]!)),
        seqs: next.map((a, i) => ({ offset: i, len: 1, start: a.seq.tokens.length - 1 + d, blocks: a.seq.blocks })),
      };
      const hs = indexSelect(h, 0, fromArray(Int32Array.from(next, (a) => a.j), [next.length], { dtype: 'i32', device: h.device }));
      const o = mtpStep(cb, hs, Int32Array.from(next, (a) => a.seq.drafts[d]!), this.cachePool!, this.stepOpts);
      logits = o.logits.toFloat32();
      h = o.hidden;
      active = next.map((a, i) => ({ seq: a.seq, j: i }));
    }
    // drafts may not run the verification step past capacity
    for (const f of live) {
      const room = this.capacity - f.c.seq.tokens.length;
      if (f.c.seq.drafts.length > room) {
        f.c.seq.drafts.length = Math.max(0, room);
        this.seqState.get(f.c.seq)!.draftDists.length = f.c.seq.drafts.length;
      }
    }
  }
}
