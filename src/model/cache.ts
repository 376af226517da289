// Decode caches, per layer and per batch row (model.md §5, the reference's buffers):
//   kv  [len, kv_lora_rank]  the MLA latent after kv_norm and its FP8 round trip (activation values)
//   pe  [len, qk_rope_head_dim] the rotated shared RoPE key (not quantised)
//   k8  [len, index_head_dim] the indexer key as e4m3 bits, ks [len, index_head_dim/128] its f32 scales
// Capacity grows by doubling; all rows of a batch share one length (equal-length sequences).
import type { ModelConfig } from './config.js';
import { QUANT_BLOCK } from './fp8.js';

export class LayerCache {
  kv: Float32Array[];
  pe: Float32Array[];
  k8: Uint8Array[];
  ks: Float32Array[];
  private cap: number;
  readonly kvDim: number;
  readonly peDim: number;
  readonly kDim: number;
  readonly ksDim: number;

  constructor(cfg: ModelConfig, readonly batch: number, capacity = 64) {
    this.kvDim = cfg.kvLoraRank;
    this.peDim = cfg.qkRopeHeadDim;
    this.kDim = cfg.indexHeadDim;
    this.ksDim = Math.ceil(cfg.indexHeadDim / QUANT_BLOCK);
    this.cap = capacity;
    const mk = <A>(f: (n: number) => A, d: number): A[] => Array.from({ length: batch }, () => f(capacity * d));
    this.kv = mk((n) => new Float32Array(n), this.kvDim);
    this.pe = mk((n) => new Float32Array(n), this.peDim);
    this.k8 = mk((n) => new Uint8Array(n), this.kDim);
    this.ks = mk((n) => new Float32Array(n), this.ksDim);
  }

  get capacity(): number {
    return this.cap;
  }

  /** Make room for `len` positions (keeps the contents). */
  reserve(len: number): void {
    if (len <= this.cap) return;
    let c = this.cap;
    while (c < len) c *= 2;
    const grow = <A extends Float32Array | Uint8Array>(arr: A[], d: number, mk: (n: number) => A): A[] =>
      arr.map((a) => {
        const n = mk(c * d);
        n.set(a);
        return n;
      });
    this.kv = grow(this.kv, this.kvDim, (n) => new Float32Array(n));
    this.pe = grow(this.pe, this.peDim, (n) => new Float32Array(n));
    this.k8 = grow(this.k8, this.kDim, (n) => new Uint8Array(n));
    this.ks = grow(this.ks, this.ksDim, (n) => new Float32Array(n));
    this.cap = c;
  }

  /** Bytes held per token per batch row (f32 host storage of the latent and RoPE part). */
  bytesPerToken(): number {
    return 4 * (this.kvDim + this.peDim + this.ksDim) + this.kDim;
  }
}

/** Caches of every layer (and MTP layer) plus the shared sequence length. */
export class ModelCache {
  readonly layers: LayerCache[];
  readonly mtp: LayerCache[];
  length = 0;

  constructor(cfg: ModelConfig, readonly batch: number) {
    this.layers = Array.from({ length: cfg.nLayers }, () => new LayerCache(cfg, batch));
    this.mtp = Array.from({ length: cfg.nMtpLayers }, () => new LayerCache(cfg, batch));
  }
}
