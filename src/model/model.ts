// The DeepSeek-V3.2 transformer (the reference's Transformer): embedding → decoder layers → final
// RMSNorm → lm_head (f32 weight applied to the f32 hidden state). Unlike the reference, which returns
// the last position only, logits of every position of the step can be returned; by causality each
// position's logits are those of the prefix ending there (see test/model/golden.test.ts).
//
// A forward continues the given cache at position cache.length (a fresh cache starts at 0), so
// "prefill N, then decode one token at a time" is a sequence of forwards on one cache.
import path from 'node:path';
import '../tensor/index.js'; // registers the CPU backend
import { DsvError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { cast, reshape } from '../tensor/ops/view.js';
import { ropeTables } from '../tensor/ops/rope.js';
import type { RaggedBatch } from './batch.js';
import { CachePool, ModelCache, type StepLayout, stepLayout } from './cache.js';
import { type DecodeGraphOptions, DecodeGraphs, deviceCapture } from './decode-graph.js';
import { logitsAt } from './logits.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { type ModelConfig, loadConfig } from './config.js';
import { DecoderLayer } from './decoder-layer.js';
import { embedTokens } from './embedding.js';
import { Checkpoint } from '../tensor/safetensors.js';
import type { Selection } from './indexer.js';
import type { AttentionMode, AttentionStep, TrainStep } from './mla.js';
import { add } from '../tensor/ops/elementwise.js';
import { linear } from '../tensor/ops/matmul.js';
import { MtpModule, type MtpOutput } from './mtp.js';
import { addRmsNorm } from './norm.js';
import { type Numerics, actDtype, wideDtype } from './numerics.js';
import { RotaryTables } from './rope.js';
import { ModelWeights, type WeightOptions, type WeightSource } from './weights.js';
import type { Collective } from '../dist/collective.js';
import { ParallelError, TensorParallel } from './parallel.js';

export class TokenError extends DsvError {}

/** A layout handed to step/mtpStep is this batch's, and of the attention asked for. */
function checkLayout(op: string, layout: StepLayout, batch: RaggedBatch, opts: StepOptions): void {
  if (layout.T !== batch.ids.length) throw new DsvError(`${op}: the given layout is of a step of ${layout.T} rows, this batch has ${batch.ids.length}`);
  if (opts.dense !== undefined && opts.dense !== layout.dense) throw new DsvError(`${op}: dense is ${opts.dense}, the given layout was built for ${layout.dense ? 'dense' : 'sparse'} attention`);
  if (layout.dense && opts.forcedTopk?.some((f) => f)) throw new DsvError(`${op}: forcedTopk replaces the indexer's selection, which dense attention does not make`);
}

export interface ForwardOptions {
  /** cache to continue (default: a fresh one); the step's tokens go at positions cache.length.. */
  cache?: ModelCache;
  numerics?: Numerics;
  /** 'auto' (the reference: MQA for one-token steps, MHA otherwise), or force a mode */
  mode?: AttentionMode;
  /** per layer, [B, S, index_topk] key positions (−1 padded) replacing the indexer's choice */
  forcedTopk?: readonly (Int32Array | null | undefined)[];
  /** per layer, [B, S, experts_per_token] expert ids replacing the gate's choice (weights recomputed) */
  forcedRoutes?: readonly (Int32Array | null | undefined)[];
  /** which logits to compute (default 'all') */
  logits?: 'all' | 'last' | 'none';
  /** called after each decoder layer (progress of long prefills) */
  onLayer?: (layer: number) => void;
  /** return each layer's selection as `topk` (default true; false runs the step as the engine does, without the positions' top-k) */
  topk?: boolean;
  /** dense attention: every causal key, no indexer (StepOptions.dense) */
  dense?: boolean;
}

export interface StepOptions {
  numerics?: Numerics;
  /** 'auto' (the reference: MQA for one-token chunks, MHA otherwise), or force a mode */
  mode?: AttentionMode;
  /** per layer, [T, index_topk] key positions (−1 padded) replacing the indexer's choice */
  forcedTopk?: readonly (Int32Array | null | undefined)[];
  /** per layer, [T, experts_per_token] expert ids replacing the gate's choice (weights recomputed) */
  forcedRoutes?: readonly (Int32Array | null | undefined)[];
  /** return the selections (key positions) of every layer */
  record?: { topk?: boolean };
  /** false: skip the LM head */
  logitsWanted?: boolean;
  /** called after each decoder layer (progress of long prefills) */
  onLayer?: (layer: number) => void;
  /** the layout of this batch, already built (stepLayout; a shape-static one for graph decode) */
  layout?: StepLayout;
  /**
   * Dense attention (cache.ts LayoutOptions.dense): every query attends to every causal key and the
   * lightning indexer does not run — the dense baseline of DSA on the same weights, cache and kernels.
   * Default false; a given layout says it itself (it must agree).
   */
  dense?: boolean;
}

export interface StepResult {
  /** f32 [R, vocab] at layout.logitRows, or null */
  logits: Tensor | null;
  /** final hidden state after the last norm, activation dtype [T, dim] (the MTP module's input) */
  hidden: Tensor;
  /** per layer, when recorded: key positions [T, width] ascending, −1 padded */
  topk: Selection[];
  /** per layer: routed experts i32 [T, k] on the model's device, ascending per token; null for dense layers */
  routes: (Tensor | null)[];
  layout: StepLayout;
}

/**
 * The training forward (trainForward): B rows of S tokens from position 0, no cache, on the autograd
 * tape. Choices (selections, routes) are discrete; replayed ones are used as given (Keep Routing,
 * forced top-k), the routing weights and attention stay differentiable.
 */
export interface TrainForwardOptions {
  /** 'f32' (default; f32 master weights), 'bf16' (bf16 activations), 'f64' (gradient checks) */
  numerics?: Numerics;
  /** 'sparse' (default): the indexer's top-k (DSA); 'dense': every causal key (dense model, warm-up) */
  attention?: 'dense' | 'sparse';
  /** compute the indexer's KL loss (dense attention: the warm-up's; sparse: the sparse stage's) */
  indexerLoss?: boolean;
  /** simulate inference's FP8 round trips of the latent (straight through); default off */
  fp8?: boolean;
  /** per layer, [B·S, index_topk] key positions (−1 padded) replacing the indexer's choice */
  forcedTopk?: readonly (Int32Array | null | undefined)[];
  /** per layer, [B·S, experts_per_token] expert ids replacing the gate's choice (weights recomputed) */
  forcedRoutes?: readonly (Int32Array | null | undefined)[];
  /** the same per MTP module */
  mtpForcedTopk?: readonly (Int32Array | null | undefined)[];
  mtpForcedRoutes?: readonly (Int32Array | null | undefined)[];
  /** run the MTP modules (default: when the model has them) */
  mtp?: boolean;
}

export interface TrainForwardResult {
  /** [B·S, vocab] (f32; f64 in f64 numerics): row b·S + s predicts token s + 1 */
  logits: Tensor;
  /** per MTP module k (1-based depth): [B·S, vocab], row b·S + s predicts token s + k + 1 */
  mtpLogits: Tensor[];
  /** per layer: key positions [B·S, width] (−1 padded) */
  topk: Selection[];
  /** per layer: experts [B·S, k] or null (dense layer) */
  routes: (Tensor | null)[];
  /** per layer: the gate's own choice [B·S, k] on this forward's inputs (= routes where nothing was forced) */
  ownRoutes: (Tensor | null)[];
  mtpTopk: Selection[];
  mtpRoutes: (Tensor | null)[];
  /** Σ over layers (and MTP layers) and rows of the indexer's KL loss, when asked for */
  indexerLoss: Tensor | null;
}

export interface ForwardResult {
  /** f32 [B, S, vocab] ('all'), [B, 1, vocab] ('last'), or null */
  logits: Tensor | null;
  /** final hidden state after the last norm, activation dtype [B, S, dim] (the MTP module's input) */
  hidden: Tensor;
  /** per layer: indexer selections [B, S, width] ascending, −1 padded */
  topk: Selection[];
  /** per layer: routed experts i32 [B·S, k] on the model's device, ascending per token; null for dense layers */
  routes: (Tensor | null)[];
  cache: ModelCache;
}

/** Validate a batch of token id rows: non-empty, equal lengths, integer ids inside the vocabulary. */
export function checkTokens(tokens: readonly (readonly number[])[], vocab: number, where = 'tokens'): { ids: Int32Array; B: number; S: number } {
  if (!Array.isArray(tokens) || tokens.length === 0) throw new TokenError(`${where}: expected a non-empty batch of token rows`);
  const S = tokens[0]!.length;
  if (S === 0) throw new TokenError(`${where}: row 0 is empty`);
  const ids = new Int32Array(tokens.length * S);
  tokens.forEach((row, b) => {
    if (!Array.isArray(row)) throw new TokenError(`${where}: row ${b} is not an array`);
    if (row.length !== S) throw new TokenError(`${where}: ragged batch: row ${b} has ${row.length} tokens, row 0 has ${S} (rows must have equal length)`);
    row.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new TokenError(`${where}: token ${JSON.stringify(t)} at row ${b}, position ${i} is not an id in [0, ${vocab})`);
      ids[b * S + i] = t;
    });
  });
  return { ids, B: tokens.length, S };
}

/** How a model is opened: its device, training masters, and the ranks it is split over. */
export interface OpenOptions {
  device?: string;
  master?: WeightOptions['master'];
  /**
   * Tensor- and expert-parallel inference (parallel.ts): this rank's collective; the weights hold this
   * rank's share, and every rank must run the same steps in the same order.
   */
  parallel?: Collective;
}

export class DeepseekV32 {
  readonly layers: DecoderLayer[];
  readonly mtp: MtpModule[];
  readonly rotary: RotaryTables;
  readonly ue8m0: boolean;
  /** the ranks the weights are split over (world size 1: the whole model, every collective the identity) */
  readonly tp: TensorParallel;

  constructor(readonly cfg: ModelConfig, readonly weights: ModelWeights, parallel: Collective | null = null) {
    this.tp = new TensorParallel(parallel);
    const s = weights.shard;
    if (s.rank !== this.tp.shard.rank || s.worldSize !== this.tp.shard.worldSize) {
      throw new ParallelError(`the weights are rank ${s.rank} of ${s.worldSize}'s share, the collective is rank ${this.tp.shard.rank} of ${this.tp.shard.worldSize}`);
    }
    this.ue8m0 = cfg.scaleFmt === 'ue8m0';
    this.layers = Array.from({ length: cfg.nLayers }, (_, l) => new DecoderLayer(cfg, weights, l, l >= cfg.nDenseLayers, this.ue8m0, this.tp));
    this.rotary = new RotaryTables(cfg);
    this.mtp = Array.from({ length: cfg.nMtpLayers }, (_, m) => new MtpModule(cfg, weights, cfg.nLayers + m, this.ue8m0, this.tp));
  }

  /**
   * Open a Hugging Face checkpoint directory (config.json + safetensors, sharded or not). `master`
   * opens it for training (owned master weights in that dtype, see ModelWeights.parameters); `parallel`
   * opens this rank's share for tensor-parallel inference.
   */
  static load(dir: string, opts: OpenOptions = {}): DeepseekV32 {
    const cfg = loadConfig(path.join(dir, 'config.json'));
    return DeepseekV32.fromSource(cfg, Checkpoint.open(dir), opts);
  }

  static fromSource(cfg: ModelConfig, source: WeightSource, opts: OpenOptions = {}): DeepseekV32 {
    const p = opts.parallel ?? null;
    const shard = p ? { rank: p.rank, worldSize: p.worldSize } : undefined;
    return new DeepseekV32(cfg, ModelWeights.open(cfg, source, opts.device, { master: opts.master, shard }), p);
  }

  /**
   * Caches for `batch` equal-length sequences. The latent cache format: 'f32' (default; exact for both
   * numerics modes), 'bf16' (exact for bf16 numerics), or the FP8 layout (exact for bf16 numerics, MQA
   * attention only). Capacity grows as positions are added.
   */
  newCache(batch: number, opts: { format?: MlaCacheFormat; capacity?: number } = {}): ModelCache {
    return new ModelCache(this.cfg, batch, opts.format ?? 'f32', this.device, opts.capacity);
  }

  /** A pool of cache blocks for ragged steps (the engine's; see step). */
  newPool(opts: { blocks: number; format?: MlaCacheFormat }): CachePool {
    return new CachePool(this.cfg, { blocks: opts.blocks, format: opts.format ?? 'f32', device: this.device });
  }

  /** Whether the model's device can capture CUDA graphs (decodeGraphs). */
  get canCaptureGraphs(): boolean {
    // a tensor-parallel step's embedding maps ids on the host, and its collectives are not captured
    return !this.tp.sharded && deviceCapture(this.device) !== null;
  }

  /**
   * A CUDA-graph runner of decode steps over `pool` (decode-graph.ts), or null where the device cannot
   * capture graphs and no `capture` stand-in is given.
   */
  decodeGraphs(pool: CachePool, opts: DecodeGraphOptions): DecodeGraphs | null {
    if (this.tp.sharded) return null;
    if (!opts.capture && !deviceCapture(pool.device)) return null;
    return new DecodeGraphs(this, pool, opts);
  }

  /** The device the weights (and so every activation and cache) live on. */
  get device(): string {
    return this.weights.device;
  }

  /** One step over token rows tokens [B][S] (validated against the vocabulary). */
  forward(tokens: readonly (readonly number[])[], opts: ForwardOptions = {}): ForwardResult {
    const { ids, B, S } = checkTokens(tokens, this.cfg.vocabSize);
    return this.forwardIds(ids, B, S, opts);
  }

  /** The equal-length API: B sequences of S new tokens each, continuing `opts.cache` (one ragged step). */
  forwardIds(ids: Int32Array, B: number, S: number, opts: ForwardOptions = {}): ForwardResult {
    const cfg = this.cfg;
    const cache = opts.cache ?? this.newCache(B);
    if (cache.batch !== B) throw new DsvError(`forward: the cache holds ${cache.batch} rows but the step has ${B}`);
    const start = cache.length;
    if (start + S > cfg.maxPositions) {
      throw new TokenError(`forward: positions up to ${start + S - 1} exceed max_position_embeddings (${cfg.maxPositions})`);
    }
    cache.reserve(start + S);
    const want = opts.logits ?? 'all';
    const rows = want === 'all' ? Int32Array.from({ length: B * S }, (_, i) => i) : want === 'last' ? Int32Array.from({ length: B }, (_, b) => b * S + S - 1) : new Int32Array(0);
    const r = this.step(cache.batchOf(ids, S, rows), cache.pool, { ...opts, record: { topk: opts.topk ?? true }, logitsWanted: want !== 'none' });
    cache.length = start + S;
    return {
      logits: r.logits ? reshape(r.logits, [B, want === 'all' ? S : 1, cfg.vocabSize]) : null,
      hidden: reshape(r.hidden, [B, S, cfg.dim]),
      topk: r.topk,
      routes: r.routes,
      cache,
    };
  }

  /**
   * One engine-shaped step (src/model/batch.ts): the ragged batch's new tokens run through every layer,
   * their keys are written into `pool` at their slots, and the logits of batch.logitRows (default the
   * last row of each chunk) come back, with the routes (and, when recorded, the selections) as device
   * tensors. Forced selections / routes are per layer, [T, index_topk] positions / [T, k] experts.
   */
  step(batch: RaggedBatch, pool: CachePool, opts: StepOptions = {}): StepResult {
    const cfg = this.cfg;
    const numerics = opts.numerics ?? 'f32';
    const dt = actDtype(numerics);
    if (pool.cfg !== cfg && (pool.cfg.nLayers !== cfg.nLayers || pool.cfg.kvLoraRank !== cfg.kvLoraRank)) throw new DsvError('step: the cache pool was made for another model');
    if (pool.device !== this.device) throw new DsvError(`step: the cache pool is on '${pool.device}', the model on '${this.device}'`);
    for (const [name, list] of [['forcedTopk', opts.forcedTopk], ['forcedRoutes', opts.forcedRoutes]] as const) {
      if (list && list.length !== cfg.nLayers) throw new DsvError(`step: ${name} has ${list.length} layers, the model has ${cfg.nLayers}`);
    }
    const layout = opts.layout ?? stepLayout(batch, pool, cfg.indexTopk, { dense: opts.dense });
    checkLayout('step', layout, batch, opts);
    const step: AttentionStep = {
      batch, layout, numerics, mode: opts.mode ?? 'auto', forcedTopk: null, recordTopk: opts.record?.topk ?? false,
      rot: this.rotary.gather(layout.positionsT, layout.maxPosition),
    };
    // the ids come from the layout's device copy: a replayed step (decode-graph.ts) reads them there; a
    // tensor-parallel rank maps them to its vocabulary rows on the host
    let h = this.tp.embed(this.weights.float('model.embed_tokens.weight'), this.tp.sharded ? batch.ids : layout.ids, dt, cfg);
    let residual: Tensor | null = null;
    const topk: Selection[] = [];
    const routes: (Tensor | null)[] = [];
    this.layers.forEach((layer, l) => {
      step.forcedTopk = opts.forcedTopk?.[l] ?? null;
      const forcedR = layer.isMoE ? (opts.forcedRoutes?.[l] ?? null) : null;
      const o = layer.forward(h, residual, step, pool.layers[l]!, forcedR);
      h = o.h;
      residual = o.residual;
      if (o.selection) topk.push(o.selection);
      routes.push(o.routes);
      opts.onLayer?.(l);
    });
    const hidden = addRmsNorm(h, residual, this.weights.float('model.norm.weight'), cfg.normEps, dt).out;
    const logits = opts.logitsWanted === false ? null : this.tp.gatherVocab(logitsAt(hidden, layout.logitRows, this.weights.float('lm_head.weight')));
    return { logits, hidden, topk, routes, layout };
  }

  /**
   * The training forward over token rows ids [B·S] (row-major, validated against the vocabulary): every
   * layer's train branch (mla.ts TrainStep), the final norm and head on every row, then the MTP modules
   * chained as DeepSeek-V3's sequential MTP: module k takes the previous depth's hidden states (the main
   * model's final hidden for k = 1) and the embedding of the token k positions ahead. Rows whose token
   * k ahead lies past the end get a placeholder id 0; their targets are past the end too, so the loss
   * ignores them, and causality keeps them from touching earlier rows.
   */
  trainForward(ids: Int32Array, B: number, S: number, opts: TrainForwardOptions = {}): TrainForwardResult {
    this.weights.requireWhole('trainForward');
    const cfg = this.cfg;
    const T = B * S;
    if (!(Number.isInteger(B) && B >= 1 && Number.isInteger(S) && S >= 1) || ids.length !== T) {
      throw new TokenError(`trainForward: ${ids.length} token ids do not form ${B} rows of ${S}`);
    }
    if (S > cfg.maxPositions) throw new TokenError(`trainForward: rows of ${S} tokens exceed max_position_embeddings (${cfg.maxPositions})`);
    for (let i = 0; i < T; i++) {
      const t = ids[i]!;
      if (!(t >= 0 && t < cfg.vocabSize)) throw new TokenError(`trainForward: token ${t} at row ${Math.floor(i / S)}, position ${i % S} is not an id in [0, ${cfg.vocabSize})`);
    }
    const numerics = opts.numerics ?? 'f32';
    const dt = actDtype(numerics);
    for (const [name, list, n] of [['forcedTopk', opts.forcedTopk, cfg.nLayers], ['forcedRoutes', opts.forcedRoutes, cfg.nLayers], ['mtpForcedTopk', opts.mtpForcedTopk, cfg.nMtpLayers], ['mtpForcedRoutes', opts.mtpForcedRoutes, cfg.nMtpLayers]] as const) {
      if (list && list.length !== n) throw new DsvError(`trainForward: ${name} has ${list.length} entries, the model has ${n}`);
    }
    const step: TrainStep = {
      kind: 'train', B, S, numerics, attention: opts.attention ?? 'sparse', indexerLoss: opts.indexerLoss ?? false, fp8: opts.fp8 ?? false,
      forcedTopk: null, indexerLosses: [],
      rot: ropeTables(Array.from({ length: T }, (_, i) => i % S), this.rotary.freqs, this.device),
    };
    let h = reshape(embedTokens(this.weights.float('model.embed_tokens.weight'), ids, 1, T, dt), [T, cfg.dim]);
    let residual: Tensor | null = null;
    const topk: Selection[] = [];
    const routes: (Tensor | null)[] = [];
    const ownRoutes: (Tensor | null)[] = [];
    this.layers.forEach((layer, l) => {
      step.forcedTopk = opts.forcedTopk?.[l] ?? null;
      const o = layer.forward(h, residual, step, null, layer.isMoE ? (opts.forcedRoutes?.[l] ?? null) : null);
      h = o.h;
      residual = o.residual;
      topk.push(o.selection!);
      routes.push(o.routes);
      ownRoutes.push(o.ownRoutes);
    });
    let hidden = addRmsNorm(h, residual, this.weights.float('model.norm.weight'), cfg.normEps, dt).out;
    const logits = linear(cast(hidden, wideDtype(dt)), this.weights.float('lm_head.weight'));
    const mtpLogits: Tensor[] = [];
    const mtpTopk: Selection[] = [];
    const mtpRoutes: (Tensor | null)[] = [];
    if (opts.mtp ?? true) {
      this.mtp.forEach((m, k) => {
        const ahead = new Int32Array(T);
        for (let i = 0; i < T; i++) ahead[i] = i % S + k + 1 < S ? ids[i + k + 1]! : 0;
        step.forcedTopk = opts.mtpForcedTopk?.[k] ?? null;
        const o = m.forward(hidden, ahead, step, null, opts.mtpForcedRoutes?.[k] ?? null);
        mtpLogits.push(o.logits);
        mtpTopk.push(o.selection!);
        mtpRoutes.push(o.routes);
        hidden = o.hidden;
      });
    }
    const il = step.indexerLosses;
    const indexerLoss = il.length ? il.slice(1).reduce((a, b) => add(a, b), il[0]!) : null;
    return { logits, mtpLogits, topk, routes, ownRoutes, mtpTopk, mtpRoutes, indexerLoss };
  }

  /**
   * The MTP module m (default 0) on a ragged step that the main model has just run: hidden [T, dim] its
   * final hidden states, nextIds [T] the tokens one position ahead. Writes the MTP layer's own caches.
   */
  mtpStep(batch: RaggedBatch, hidden: Tensor, nextIds: Int32Array | Tensor, pool: CachePool, opts: StepOptions & { module?: number; layout?: StepLayout } = {}): MtpOutput {
    const m = this.mtp[opts.module ?? 0];
    if (!m) throw new DsvError(`mtp: the model has ${this.mtp.length} MTP modules, asked for module ${opts.module ?? 0}`);
    // `layout`: the one step() built for these same rows (only the logit rows may differ), so the slots,
    // block tables and context slots are not built and uploaded a second time
    const layout = opts.layout ? { ...opts.layout, logitRows: batch.logitRows ?? opts.layout.logitRows } : stepLayout(batch, pool, this.cfg.indexTopk, { dense: opts.dense });
    checkLayout('mtp', layout, batch, opts);
    const step: AttentionStep = {
      batch, layout, numerics: opts.numerics ?? 'f32', mode: opts.mode ?? 'auto', forcedTopk: null, recordTopk: opts.record?.topk ?? false,
      rot: this.rotary.gather(layout.positionsT, layout.maxPosition),
    };
    return m.forward(hidden, nextIds, step, pool.mtp[opts.module ?? 0]!);
  }

  /**
   * The equal-length API's MTP: hidden [B, S, dim] from forward() on `cache` at the positions of that
   * forward (cache.length − S ..), nextIds [B·S]; logits f32 [B, S, vocab].
   */
  mtpForward(hidden: Tensor, nextIds: Int32Array, cache: ModelCache, opts: { numerics?: Numerics; mode?: AttentionMode; module?: number } = {}): MtpOutput {
    const [B, S] = hidden.shape as [number, number, number];
    if (B !== cache.batch) throw new DsvError(`mtp: hidden holds ${B} rows, the cache ${cache.batch}`);
    if (cache.length < S) throw new DsvError(`mtp: the cache holds ${cache.length} positions, fewer than the ${S} of hidden`);
    const saved = cache.length;
    cache.length -= S;
    const batch = cache.batchOf(new Int32Array(B * S), S, Int32Array.from({ length: B * S }, (_, i) => i));
    cache.length = saved;
    const o = this.mtpStep(batch, reshape(hidden, [B * S, this.cfg.dim]), nextIds, cache.pool, opts);
    return { ...o, logits: reshape(o.logits, [B, S, this.cfg.vocabSize]), hidden: reshape(o.hidden, [B, S, this.cfg.dim]) };
  }
}
