// The device-generic forward of DeepSeek-V3.2 (f32 numerics): the loaded model's weights are uploaded
// to one device ('cpu', 'cuda', ...) once; a prefill over a batch of token rows and, with a cache, a
// decode of one token per row compute the logits, each layer's indexer top-k and each MoE layer's
// routes with tensor ops only, so they run on whichever backend holds the weights. Same math as
// DeepseekV32.forward: prefill in MHA mode from a fresh cache, decode in absorbed MQA mode over the
// device-resident caches (device-cache.ts; see device-layers.ts for how sparse choices become masks).
//
// Host reads inside a step: the MoE routes, to build each expert's token list (deviceMoe says why).
// The outputs (logits tensor on the device, top-k and routes as host arrays) are read at the end.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { linear } from '../tensor/ops/matmul.js';
import { contiguous, narrow, reshape } from '../tensor/ops/view.js';
import { embedTokens } from './embedding.js';
import { causalMask, deviceMla, deviceMlp, deviceMoe, sortedSelection, type DeviceStep } from './device-layers.js';
import { DeviceWeights } from './device-weights.js';
import { DeviceCache } from './device-cache.js';

export { DeviceCache, DeviceCacheError } from './device-cache.js';
import type { Selection } from './indexer.js';
import { checkTokens, type DeepseekV32, TokenError } from './model.js';
import { addRmsNorm } from './norm.js';
import { layerPrefix } from './weights.js';

export class DeviceError extends DsvError {}

export interface DevicePrefillOptions {
  /** which logits to compute (default 'all') */
  logits?: 'all' | 'last' | 'none';
  /**
   * keep the prefill's latent, RoPE and indexer-key caches on the device for decode (result.cache).
   * true: capacity for the prompt plus DEFAULT_DECODE_ROOM positions; { capacity }: that many
   * positions (grown by doubling when a decode passes it).
   */
  cache?: boolean | { capacity: number };
}

/** Positions a `cache: true` prefill reserves beyond the prompt before the first growth. */
export const DEFAULT_DECODE_ROOM = 256;

export interface DevicePrefillResult {
  /** f32 on the device: [B, S, vocab] ('all'), [B, 1, vocab] ('last'), or null */
  logits: Tensor | null;
  /** per layer: indexer selections [B, S, width] ascending, −1 padded (the host model's layout) */
  topk: Selection[];
  /** per layer: routed experts [B·S, k] ascending; null for dense layers */
  routes: (Int32Array | null)[];
  /** the device caches after the prompt, when asked for with `cache` (else null) */
  cache: DeviceCache | null;
}

export interface DeviceDecodeResult {
  /** f32 on the device: [B, vocab], the logits at the decoded position */
  logits: Tensor;
  /** per layer: indexer selections [B, 1, width] ascending, −1 padded; width = min(index_topk, position+1) */
  topk: Selection[];
  /** per layer: routed experts [B, k] ascending; null for dense layers */
  routes: (Int32Array | null)[];
}

export class DeviceForward {
  readonly weights: DeviceWeights;
  readonly device: string;

  /** Upload `model`'s weights to `device`; throws a DeviceError naming the device when it is unusable. */
  constructor(readonly model: DeepseekV32, device: string) {
    try {
      getBackend(device);
    } catch (e) {
      throw new DeviceError(`device '${device}' is not available: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    this.device = device;
    this.weights = new DeviceWeights(model.cfg, model.weights, device);
  }

  /** Prefill of token rows tokens [B][S] (equal lengths, ids inside the vocabulary) from position 0. */
  prefill(tokens: readonly (readonly number[])[], opts: DevicePrefillOptions = {}): DevicePrefillResult {
    const cfg = this.model.cfg;
    const { ids, B, S } = checkTokens(tokens, cfg.vocabSize);
    if (S > cfg.maxPositions) throw new TokenError(`prefill: ${S} tokens exceed max_position_embeddings (${cfg.maxPositions})`);
    let cache: DeviceCache | null = null;
    if (opts.cache) {
      const capacity = opts.cache === true ? Math.min(cfg.maxPositions, S + DEFAULT_DECODE_ROOM) : opts.cache.capacity;
      if (!Number.isInteger(capacity) || capacity < S) throw new DeviceError(`prefill: cache capacity ${capacity} must be an integer ≥ the ${S} prompt tokens`);
      cache = new DeviceCache(cfg, B, this.device, capacity, this);
    }
    const r = this.step(ids, B, S, 0, cache, 'mha', opts.logits ?? 'all');
    if (cache) cache.length = S;
    return { ...r, cache };
  }

  /**
   * One decode step: next [B] tokens at position cache.length, in absorbed MQA mode over the device
   * caches, which it extends by that position.
   */
  decode(cache: DeviceCache, next: readonly number[]): DeviceDecodeResult {
    const cfg = this.model.cfg;
    if (!(cache instanceof DeviceCache) || cache.owner !== this) throw new DeviceError('decode: the cache was not made by this DeviceForward (run prefill(tokens, { cache: true }) on it first)');
    if (!Array.isArray(next) || next.length !== cache.batch) throw new TokenError(`decode: expected ${cache.batch} next tokens (one per cached row), got ${Array.isArray(next) ? next.length : typeof next}`);
    const { ids, B } = checkTokens(next.map((t) => [t]), cfg.vocabSize, 'decode tokens');
    const p = cache.length;
    if (p + 1 > cfg.maxPositions) throw new TokenError(`decode: position ${p} exceeds max_position_embeddings (${cfg.maxPositions})`);
    cache.reserve(p + 1);
    const r = this.step(ids, B, 1, p, cache, 'mqa', 'last');
    cache.length = p + 1;
    return { logits: reshape(r.logits!, [B, cfg.vocabSize]), topk: r.topk, routes: r.routes };
  }

  private step(ids: Int32Array, B: number, S: number, start: number, cache: DeviceCache | null, mode: 'mha' | 'mqa', want: 'all' | 'last' | 'none'): Omit<DevicePrefillResult, 'cache'> {
    const cfg = this.model.cfg;
    const dw = this.weights;
    const dev = this.device;
    const st: DeviceStep = { B, S, start, T: start + S, rot: this.model.rotary.at(start, S, dev), causal: causalMask(S, dev, start), ue8m0: this.model.ue8m0 };
    let h = embedTokens(dw.float('model.embed_tokens.weight'), ids, B, S, 'f32');
    let residual: Tensor | null = null;
    const topk: Selection[] = [];
    const routes: (Int32Array | null)[] = [];
    for (let l = 0; l < cfg.nLayers; l++) {
      const p = layerPrefix(l);
      const n1 = addRmsNorm(h, residual, dw.float(`${p}.input_layernorm.weight`), cfg.normEps, 'f32');
      const a = deviceMla(cfg, dw, `${p}.self_attn`, n1.out, st, cache?.layers[l] ?? null, mode);
      const n2 = addRmsNorm(a.out, n1.residual, dw.float(`${p}.post_attention_layernorm.weight`), cfg.normEps, 'f32');
      const x2 = reshape(n2.out, [B * S, cfg.dim]);
      let y: Tensor;
      if (l >= cfg.nDenseLayers) {
        const m = deviceMoe(cfg, dw, `${p}.mlp`, x2, st.ue8m0);
        y = m.y;
        routes.push(m.routes);
      } else {
        y = deviceMlp(dw, `${p}.mlp`, x2, st.ue8m0);
        routes.push(null);
      }
      h = reshape(y, [B, S, cfg.dim]);
      residual = n2.residual;
      // output read: the layer's selection, sorted into the host model's layout on the device first
      topk.push({ width: a.idx.shape[2]!, idx: sortedSelection(a.idx, S, start).toHost() as Int32Array });
    }
    const hidden = addRmsNorm(h, residual, dw.float('model.norm.weight'), cfg.normEps, 'f32').out;
    let logits: Tensor | null = null;
    if (want !== 'none') {
      const n = want === 'all' ? S : 1;
      const hs = reshape(want === 'all' ? hidden : contiguous(narrow(hidden, 1, S - 1, 1)), [B * n, cfg.dim]);
      logits = reshape(linear(hs, dw.float('lm_head.weight')), [B, n, cfg.vocabSize]);
    }
    return { logits, topk, routes };
  }
}
