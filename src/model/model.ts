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
import { reshape } from '../tensor/ops/view.js';
import { ropeTables } from '../tensor/ops/rope.js';
import type { RaggedBatch } from './batch.js';
import { CachePool, ModelCache, type StepLayout, stepLayout } from './cache.js';
import { logitsAt } from './logits.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { type ModelConfig, loadConfig } from './config.js';
import { DecoderLayer } from './decoder-layer.js';
import { embedTokens } from './embedding.js';
import type { Selection } from './indexer.js';
import type { AttentionMode, AttentionStep } from './mla.js';
import { MtpModule, type MtpOutput } from './mtp.js';
import { addRmsNorm } from './norm.js';
import { type Numerics, actDtype } from './numerics.js';
import { RotaryTables } from './rope.js';
import { ModelWeights, type WeightSource } from './weights.js';

export class TokenError extends DsvError {}

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

export class DeepseekV32 {
  readonly layers: DecoderLayer[];
  readonly mtp: MtpModule[];
  readonly rotary: RotaryTables;
  readonly ue8m0: boolean;

  constructor(readonly cfg: ModelConfig, readonly weights: ModelWeights) {
    this.ue8m0 = cfg.scaleFmt === 'ue8m0';
    this.layers = Array.from({ length: cfg.nLayers }, (_, l) => new DecoderLayer(cfg, weights, l, l >= cfg.nDenseLayers, this.ue8m0));
    this.rotary = new RotaryTables(cfg);
    this.mtp = Array.from({ length: cfg.nMtpLayers }, (_, m) => new MtpModule(cfg, weights, cfg.nLayers + m, this.ue8m0));
  }

  /** Open a Hugging Face checkpoint directory (config.json + safetensors, sharded or not). */
  static load(dir: string, opts: { device?: string } = {}): DeepseekV32 {
    const cfg = loadConfig(path.join(dir, 'config.json'));
    return new DeepseekV32(cfg, ModelWeights.openDir(cfg, dir, opts.device));
  }

  static fromSource(cfg: ModelConfig, source: WeightSource, opts: { device?: string } = {}): DeepseekV32 {
    return new DeepseekV32(cfg, ModelWeights.open(cfg, source, opts.device));
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
    const r = this.step(cache.batchOf(ids, S, rows), cache.pool, { ...opts, record: { topk: true }, logitsWanted: want !== 'none' });
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
    const layout = stepLayout(batch, pool, cfg.indexTopk);
    const T = layout.T;
    const step: AttentionStep = {
      batch, layout, numerics, mode: opts.mode ?? 'auto', forcedTopk: null, recordTopk: opts.record?.topk ?? false,
      rot: ropeTables(Array.from(layout.positions), this.rotary.freqs, this.device),
    };
    let h = reshape(embedTokens(this.weights.float('model.embed_tokens.weight'), batch.ids, 1, T, dt), [T, cfg.dim]);
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
    const logits = opts.logitsWanted === false ? null : logitsAt(hidden, layout.logitRows, this.weights.float('lm_head.weight'));
    return { logits, hidden, topk, routes, layout };
  }

  /**
   * The MTP module m (default 0) on a ragged step that the main model has just run: hidden [T, dim] its
   * final hidden states, nextIds [T] the tokens one position ahead. Writes the MTP layer's own caches.
   */
  mtpStep(batch: RaggedBatch, hidden: Tensor, nextIds: Int32Array, pool: CachePool, opts: StepOptions & { module?: number } = {}): MtpOutput {
    const m = this.mtp[opts.module ?? 0];
    if (!m) throw new DsvError(`mtp: the model has ${this.mtp.length} MTP modules, asked for module ${opts.module ?? 0}`);
    const layout = stepLayout(batch, pool, this.cfg.indexTopk);
    const step: AttentionStep = {
      batch, layout, numerics: opts.numerics ?? 'f32', mode: opts.mode ?? 'auto', forcedTopk: null, recordTopk: opts.record?.topk ?? false,
      rot: ropeTables(Array.from(layout.positions), this.rotary.freqs, this.device),
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
