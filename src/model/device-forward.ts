// A device-generic prefill of DeepSeek-V3.2 (f32 numerics): the loaded model's weights are uploaded to
// one device ('cpu', 'cuda', ...) once, and a forward over a batch of token rows computes the logits of
// every position, each layer's indexer top-k and each MoE layer's routes with tensor ops only, so it
// runs on whichever backend holds the weights. Same math as DeepseekV32.forward in MHA mode from a fresh
// cache (see device-layers.ts for how the sparse choices become masks).
//
// Host reads inside the forward: the MoE routes, to build each expert's token list (deviceMoe says
// why). The outputs (logits tensor on the device, top-k and routes as host arrays) are read at the end.
// Decode and the KV caches stay with the host model for now.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { linear } from '../tensor/ops/matmul.js';
import { contiguous, narrow, reshape } from '../tensor/ops/view.js';
import { embedTokens } from './embedding.js';
import { causalMask, deviceMla, deviceMlp, deviceMoe, sortedSelection, type DeviceStep } from './device-layers.js';
import { DeviceWeights } from './device-weights.js';
import type { Selection } from './indexer.js';
import { checkTokens, type DeepseekV32, TokenError } from './model.js';
import { addRmsNorm } from './norm.js';
import { layerPrefix } from './weights.js';

export class DeviceError extends DsvError {}

export interface DevicePrefillOptions {
  /** which logits to compute (default 'all') */
  logits?: 'all' | 'last' | 'none';
}

export interface DevicePrefillResult {
  /** f32 on the device: [B, S, vocab] ('all'), [B, 1, vocab] ('last'), or null */
  logits: Tensor | null;
  /** per layer: indexer selections [B, S, width] ascending, −1 padded (the host model's layout) */
  topk: Selection[];
  /** per layer: routed experts [B·S, k] ascending; null for dense layers */
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
    const dw = this.weights;
    const dev = this.device;
    const st: DeviceStep = { B, S, rot: this.model.rotary.at(0, S, dev), causal: causalMask(S, dev), ue8m0: this.model.ue8m0 };
    let h = embedTokens(dw.float('model.embed_tokens.weight'), ids, B, S, 'f32');
    let residual: Tensor | null = null;
    const topk: Selection[] = [];
    const routes: (Int32Array | null)[] = [];
    for (let l = 0; l < cfg.nLayers; l++) {
      const p = layerPrefix(l);
      const n1 = addRmsNorm(h, residual, dw.float(`${p}.input_layernorm.weight`), cfg.normEps, 'f32');
      const a = deviceMla(cfg, dw, `${p}.self_attn`, n1.out, st);
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
      topk.push({ width: a.idx.shape[2]!, idx: sortedSelection(a.idx, S).toHost() as Int32Array });
    }
    const hidden = addRmsNorm(h, residual, dw.float('model.norm.weight'), cfg.normEps, 'f32').out;
    const want = opts.logits ?? 'all';
    let logits: Tensor | null = null;
    if (want !== 'none') {
      const n = want === 'all' ? S : 1;
      const hs = reshape(want === 'all' ? hidden : contiguous(narrow(hidden, 1, S - 1, 1)), [B * n, cfg.dim]);
      logits = reshape(linear(hs, dw.float('lm_head.weight')), [B, n, cfg.vocabSize]);
    }
    return { logits, topk, routes };
  }
}
