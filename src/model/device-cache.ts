// Device-resident decode caches of the device-generic forward (model.md §5, the reference's buffers),
// one set per layer, preallocated [B, capacity, ·] on the device and filled by narrow views +
// backend.copy, so neither prefill nor decode moves cache data through the host:
//   kv [B, cap, kv_lora_rank]  f32      the MLA latent after kv_norm and its FP8 round trip
//   pe [B, cap, qk_rope_head_dim] f32   the rotated shared RoPE key (not quantised)
//   k8 [B, cap, index_head_dim] f8e4m3  the indexer key's e4m3 values
//   ks [B, cap, 1] f32                  their act_quant scale (index_head_dim is one 128-block)
// The indexer keys stay FP8 + scale rather than dequantised f32: the reference scores
// k_s[t]·Σ_h relu(q8·k8[t])·w, i.e. the scale multiplies after the relu and head sum. Keeping the
// factors apart reproduces that order exactly (a pre-multiplied k8·k_s only agrees when the scale is a
// power of two) and holds a quarter of the bytes; the cast to f32 happens per step on the device.
// All rows of a batch share one length. Capacity grows by doubling, with a device-side copy.
import { DsvError } from '../errors.js';
import { Tensor, empty } from '../tensor/tensor.js';
import { narrow } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';

export class DeviceCacheError extends DsvError {}

export interface DeviceLayerCache {
  kv: Tensor;
  pe: Tensor;
  k8: Tensor;
  ks: Tensor;
}

/** dst[:, start:start+S, ...] ← src [B, S, ...] on the device (src may be any strided view). */
export function writeRows(dst: Tensor, src: Tensor, start: number): void {
  const S = src.shape[1]!;
  const view = narrow(dst, 1, start, S);
  if (view.shape.length !== src.shape.length || view.shape.some((d, i) => d !== src.shape[i])) {
    throw new DeviceCacheError(`cache write: rows [${src.shape.join(', ')}] do not fit cache slice [${view.shape.join(', ')}]`);
  }
  dst.backend.copy(view, src);
}

export class DeviceCache {
  readonly layers: DeviceLayerCache[];
  /** positions 0..length-1 are filled */
  length = 0;
  private cap: number;

  constructor(
    readonly cfg: ModelConfig,
    readonly batch: number,
    readonly device: string,
    capacity: number,
    /** the DeviceForward whose weights wrote this cache (decode refuses a foreign one) */
    readonly owner: object,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new DeviceCacheError(`cache capacity must be a positive integer, got ${capacity}`);
    this.cap = capacity;
    this.layers = Array.from({ length: cfg.nLayers }, () => this.allocLayer(capacity));
  }

  get capacity(): number {
    return this.cap;
  }

  private allocLayer(cap: number): DeviceLayerCache {
    const cfg = this.cfg;
    const B = this.batch;
    const o = (dtype: 'f32' | 'f8e4m3') => ({ dtype, device: this.device });
    return {
      kv: empty([B, cap, cfg.kvLoraRank], o('f32')),
      pe: empty([B, cap, cfg.qkRopeHeadDim], o('f32')),
      k8: empty([B, cap, cfg.indexHeadDim], o('f8e4m3')),
      ks: empty([B, cap, 1], o('f32')),
    };
  }

  /** Make room for `len` positions, keeping the filled ones (device-side copies). */
  reserve(len: number): void {
    if (len <= this.cap) return;
    let c = this.cap;
    while (c < len) c *= 2;
    for (let l = 0; l < this.layers.length; l++) {
      const old = this.layers[l]!;
      const nw = this.allocLayer(c);
      if (this.length > 0) {
        for (const k of ['kv', 'pe', 'k8', 'ks'] as const) writeRows(nw[k], narrow(old[k], 1, 0, this.length), 0);
      }
      this.layers[l] = nw;
    }
    this.cap = c;
  }

  /** Device bytes per cached position per batch row (all layers). */
  bytesPerToken(): number {
    const cfg = this.cfg;
    return cfg.nLayers * (4 * (cfg.kvLoraRank + cfg.qkRopeHeadDim + 1) + cfg.indexHeadDim);
  }
}
