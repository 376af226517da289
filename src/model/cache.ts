// Decode caches, per layer, as device tensors in the paged layouts the DSA operations read (model.md §5,
// src/tensor/ops/sparse-mla.ts, src/tensor/ops/dsa-indexer.ts):
//   latent [blocks, 64, ·]  the MLA latent after kv_norm and its FP8 round trip, then the rotated RoPE key:
//                           'f32' rows (the f32 numerics: the reference keeps k_pe in f32), 'bf16' rows, or
//                           the FlashMLA FP8 layout (656 B/token at 671B dims) — each exact for the values
//                           the reference caches in its numerics (the FP8 round trip's values are e4m3·2^e,
//                           which bf16 and a second FP8 round trip hold exactly)
//   index  u8 [blocks, 64·(Dh+4)]  the indexer keys, e4m3 with one f32 scale each (DeepGEMM's layout)
// This cache serves the equal-length batch API (forward over B rows of S tokens): sequence b owns the
// blocks [b·mb, (b+1)·mb) of every layer, so its slots are b·cap + position and a per-sequence view of
// the cache is a plain slice. Capacity grows by doubling (each sequence's region is moved). The engine's
// block pool (src/engine/) hands out blocks to ragged sequences instead.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { INDEXER_PAGE, indexerCache } from '../tensor/ops/dsa-indexer.js';
import { type MlaCacheFormat, newMlaCache } from '../tensor/ops/sparse-mla.js';
import { narrow } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';

export const PAGE = INDEXER_PAGE;

export class LayerCache {
  latent: Tensor;
  index: Tensor;

  constructor(private readonly cfg: ModelConfig, readonly format: MlaCacheFormat, blocks: number, readonly device: string) {
    this.latent = newMlaCache(blocks, PAGE, { format, dv: cfg.kvLoraRank, dr: cfg.qkRopeHeadDim, device });
    this.index = indexerCache(blocks, cfg.indexHeadDim, getBackend(device));
  }

  /** Re-lay B sequences of `oldPer` blocks each into regions of `newPer` blocks. */
  regrow(B: number, oldPer: number, newPer: number): void {
    const move = (old: Tensor, fresh: Tensor): Tensor => {
      for (let b = 0; b < B; b++) fresh.backend.copy(narrow(fresh, 0, b * newPer, oldPer), narrow(old, 0, b * oldPer, oldPer));
      return fresh;
    };
    const cfg = this.cfg;
    this.latent = move(this.latent, newMlaCache(B * newPer, PAGE, { format: this.format, dv: cfg.kvLoraRank, dr: cfg.qkRopeHeadDim, device: this.device }));
    this.index = move(this.index, indexerCache(B * newPer, cfg.indexHeadDim, getBackend(this.device)));
  }

  /** The latent cache of sequence b (regions of `per` blocks) and its index cache. */
  sequence(b: number, per: number): { latent: Tensor; index: Tensor } {
    return { latent: narrow(this.latent, 0, b * per, per), index: narrow(this.index, 0, b * per, per) };
  }
}

/** A step's place in the caches (ModelCache.layout). */
export interface StepLayout {
  /** i32 [B·S]: the slot of every new token (sequence b's slots are b·capacity + position) */
  slots: Tensor;
  /** i32 [1, blocks]: a sequence region's block table (its own blocks 0.., relative to the region) */
  table: Tensor;
  /** i32 [1]: the context length after the step */
  contextLen: Tensor;
  /** i32 [S]: query i sees keys [0, start + i + 1) */
  rowEnd: Tensor;
}

/** Caches of every layer (and MTP layer) of B equal-length sequences, plus their shared length. */
export class ModelCache {
  readonly layers: LayerCache[];
  readonly mtp: LayerCache[];
  length = 0;
  /** Blocks per sequence. */
  private per: number;

  constructor(cfg: ModelConfig, readonly batch: number, readonly format: MlaCacheFormat, readonly device: string, capacity = PAGE) {
    if (!Number.isInteger(batch) || batch < 1) throw new DsvError(`cache: batch must be a positive integer, got ${batch}`);
    this.per = Math.max(1, Math.ceil(capacity / PAGE));
    const mk = (): LayerCache => new LayerCache(cfg, format, batch * this.per, device);
    this.layers = Array.from({ length: cfg.nLayers }, mk);
    this.mtp = Array.from({ length: cfg.nMtpLayers }, mk);
  }

  /** Positions each sequence can hold before the next growth. */
  get capacity(): number {
    return this.per * PAGE;
  }

  /** Blocks per sequence (the length of a sequence's region). */
  get blocksPerSequence(): number {
    return this.per;
  }

  /** Make room for `len` positions per sequence (keeps the contents). */
  reserve(len: number): void {
    if (len <= this.capacity) return;
    let per = this.per;
    while (per * PAGE < len) per *= 2;
    for (const l of [...this.layers, ...this.mtp]) l.regrow(this.batch, this.per, per);
    this.per = per;
  }

  /**
   * Where a step of S tokens per sequence at positions start.. lives in the caches, the same for every
   * layer (so a forward builds it once, after `reserve`), as i32 tensors on the cache's device.
   */
  layout(start: number, S: number): StepLayout {
    const end = start + S;
    const slots = new Int32Array(this.batch * S);
    for (let b = 0; b < this.batch; b++) for (let i = 0; i < S; i++) slots[b * S + i] = b * this.capacity + start + i;
    const i32 = (a: Int32Array, shape: number[]): Tensor => fromArray(a, shape, { dtype: 'i32', device: this.device });
    const blocks = Math.ceil(end / PAGE);
    return {
      slots: i32(slots, [this.batch * S]),
      table: i32(Int32Array.from({ length: blocks }, (_, j) => j), [1, blocks]),
      contextLen: i32(Int32Array.of(end), [1]),
      rowEnd: i32(Int32Array.from({ length: S }, (_, i) => start + i + 1), [S]),
    };
  }

  /** Bytes per token per sequence of every layer's latent and indexer caches together. */
  bytesPerToken(): number {
    const l = this.layers[0];
    if (!l) return 0;
    const per = (t: Tensor): number => (t.numel * (t.dtype === 'f32' ? 4 : t.dtype === 'bf16' ? 2 : 1)) / (t.shape[0]! * PAGE);
    return (this.layers.length + this.mtp.length) * (per(l.latent) + per(l.index));
  }
}
