// The lightning indexer (model.md §4, the updated reference):
//   q = wq_b(qr) viewed [.., Hi, Dh], split [pe r, nope Dh−r] (rope FIRST), pe ← half-split RoPE
//   k = LayerNorm(wk(x)) (f32 math, eps 1e-6), split [pe, nope], pe ← half-split RoPE; one key/token
//   q, k ← Hadamard(·)·Dh^-½ (Sylvester order), then act_quant (e4m3, ue8m0 scales per 128)
//   w = weights_proj(x.f32)·Hi^-½ · q_scale · Dh^-½          (f32; may be negative)
//   I[t, s] = k_scale[s] · Σ_h relu(q8[t, h]·k8[s]) · w[t, h]  (f32)
//   selection = top-min(index_topk, end_pos) of I over the causal keys, ties → lowest position
// The FP8 keys and scales are cached for decode.
import { DsvError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { hadamard } from '../tensor/ops/hadamard.js';
import { cat } from '../tensor/ops/indexing.js';
import { linear } from '../tensor/ops/matmul.js';
import { mul, muls } from '../tensor/ops/elementwise.js';
import { indexerCacheWrite, indexerLogitsPaged, topkSelect } from '../tensor/ops/dsa-indexer.js';
import { layerNorm } from '../tensor/ops/norm.js';
import { rope } from '../tensor/ops/rope.js';
import { cast, narrow, reshape } from '../tensor/ops/view.js';
import type { LayerCache, StepLayout } from './cache.js';
import type { ModelConfig } from './config.js';
import { actQuant } from '../tensor/ops/quant.js';
import { QUANT_BLOCK } from './fp8.js';
import { applyLinear } from './fp8-linear.js';
import type { ModelWeights } from './weights.js';

export class ForcedSelectionError extends DsvError {}

/**
 * Per-layer selections of a forward: key positions i32 [B·S, width] on the model's device, ascending per
 * row, −1 padded; width = min(topk, end_pos).
 */
export interface Selection {
  width: number;
  idx: Tensor;
}

/** The positions of a selection on the host ([B·S·width], row-major). */
export function selectionIndices(sel: Selection): Int32Array {
  return sel.idx.toHost() as Int32Array;
}

/** Switches for tests of the indexer's invariants; the model always runs with both on. */
export interface IndexerOptions {
  /** FP8 act_quant of q and k (default true) */
  quantize?: boolean;
  /** Hadamard rotation of q and k (default true) */
  rotate?: boolean;
}

/** The indexer's per-token quantities for the T = B·S new tokens, as tensors on the model's device. */
export interface IndexerQK {
  /** q [T, Hi, Dh]: e4m3 when quantised, else the activation values */
  q: Tensor;
  /** k [T, Dh]: e4m3 when quantised, else the activation values */
  k: Tensor;
  /** k scales f32 [T] (1 when not quantised) */
  ks: Tensor;
  /** head weights f32 [T, Hi] with the q scale and Dh^-½ folded in */
  w: Tensor;
}

const LN_EPS = 1e-6;

export class Indexer {
  constructor(
    private readonly cfg: ModelConfig,
    private readonly weights: ModelWeights,
    readonly prefix: string,
    private readonly ue8m0: boolean,
  ) {}

  /** q, k and head weights of x2 [B·S, dim], qr [B·S, q_lora] (activation dtype dt). */
  project(x2: Tensor, qr: Tensor, B: number, S: number, rot: { cos: Tensor; sin: Tensor }, dt: DType, opts: IndexerOptions = {}): IndexerQK {
    const cfg = this.cfg;
    const w = this.weights;
    const Hi = cfg.indexNHeads;
    const Dh = cfg.indexHeadDim;
    const r = cfg.qkRopeHeadDim;
    const quantize = opts.quantize ?? true;
    const rotate = opts.rotate ?? true;
    let q = reshape(applyLinear(qr, w.linear(`${this.prefix}.wq_b.weight`), dt, this.ue8m0), [B, S, Hi, Dh]);
    q = cat([rope(narrow(q, 3, 0, r), rot.cos, rot.sin, false), narrow(q, 3, r, Dh - r)], 3);
    const kLin = applyLinear(x2, w.linear(`${this.prefix}.wk.weight`), dt, this.ue8m0);
    let k = cast(layerNorm(cast(kLin, 'f32'), w.float(`${this.prefix}.k_norm.weight`), w.float(`${this.prefix}.k_norm.bias`), LN_EPS), dt);
    const k4 = reshape(k, [B, S, 1, Dh]);
    k = reshape(cat([rope(narrow(k4, 3, 0, r), rot.cos, rot.sin, false), narrow(k4, 3, r, Dh - r)], 3), [B * S, Dh]);
    if (rotate) {
      q = hadamard(q, Dh ** -0.5);
      k = hadamard(k, Dh ** -0.5);
    }
    const T = B * S;
    const k2 = reshape(k, [T, Dh]);
    // w = weights_proj(x.f32)·Hi^-½·q_scale·Dh^-½, each product rounded to f32 as the reference's
    const wp = muls(linear(cast(x2, 'f32'), w.float(`${this.prefix}.weights_proj.weight`)), Hi ** -0.5);
    if (!quantize) {
      return { q: reshape(q, [T, Hi, Dh]), k: k2, ks: fromArray(new Float32Array(T).fill(1), [T], { device: x2.device }), w: muls(wp, cfg.indexSoftmaxScale) };
    }
    const qq = actQuant(reshape(q, [T, Hi, Dh]), QUANT_BLOCK, { ue8m0: this.ue8m0 });
    const kq = actQuant(k2, QUANT_BLOCK, { ue8m0: this.ue8m0 });
    if (qq.s.numel !== T * Hi || kq.s.numel !== T) throw new DsvError(`${this.prefix}: index_head_dim ${Dh} must be one 128-value quantisation block`);
    return { q: qq.q, k: kq.q, ks: reshape(kq.s, [T]), w: muls(mul(wp, reshape(qq.s, [T, Hi])), cfg.indexSoftmaxScale) };
  }

  /**
   * Selections for S new tokens of each of B sequences at positions start..start+S-1, writing their keys
   * into the layer's index cache at `slots` [B·S]. `forced` [B, S, index_topk] (−1 padded, golden layout)
   * replaces the choice. Scores and top-k run on the cache's device (indexerLogitsPaged, topkSelect),
   * one sequence at a time over its own region of the cache.
   */
  forward(
    x2: Tensor,
    qr: Tensor,
    B: number,
    S: number,
    start: number,
    rot: { cos: Tensor; sin: Tensor },
    cache: LayerCache,
    seq: (b: number) => { latent: Tensor; index: Tensor },
    layout: StepLayout,
    dt: DType,
    forced: Int32Array | null,
  ): Selection {
    const cfg = this.cfg;
    const Hi = cfg.indexNHeads;
    const Dh = cfg.indexHeadDim;
    const end = start + S;
    const width = Math.min(cfg.indexTopk, end);
    const qk = this.project(x2, qr, B, S, rot, dt);
    indexerCacheWrite(cache.index, qk.k, qk.ks, layout.slots);
    const dev = x2.device;
    if (forced) {
      const idx = new Int32Array(B * S * width);
      fillForced(forced, cfg.indexTopk, idx, width, B, S, start, this.prefix);
      return { width, idx: fromArray(idx, [B * S, width], { dtype: 'i32', device: dev }) };
    }
    const rows: Tensor[] = [];
    for (let b = 0; b < B; b++) {
      const q = reshape(narrow(qk.q, 0, b * S, S), [1, S, Hi, Dh]);
      const w = reshape(narrow(qk.w, 0, b * S, S), [1, S, Hi]);
      const logits = indexerLogitsPaged(q, seq(b).index, w, layout.table, layout.contextLen, end);
      rows.push(topkSelect(logits, width, { end: layout.rowEnd }));
    }
    return { width, idx: B === 1 ? rows[0]! : cat(rows, 0) };
  }
}

function fillForced(forced: Int32Array, topk: number, idx: Int32Array, width: number, B: number, S: number, start: number, where: string): void {
  if (forced.length !== B * S * topk) {
    throw new ForcedSelectionError(`${where}: forced top-k holds ${forced.length} entries, expected [${B}, ${S}, ${topk}]`);
  }
  for (let r = 0; r < B * S; r++) {
    const pos = start + (r % S);
    const row = [...new Set(Array.from(forced.subarray(r * topk, (r + 1) * topk)).filter((t) => t >= 0))].sort((a, b) => a - b);
    if (row.length > width) throw new ForcedSelectionError(`${where}: forced top-k row ${r} has ${row.length} keys, more than min(index_topk, end_pos) = ${width}`);
    for (const t of row) {
      if (!Number.isInteger(t) || t > pos) throw new ForcedSelectionError(`${where}: forced top-k row ${r} (query position ${pos}) selects key ${t}, which is not causally visible`);
    }
    for (let j = 0; j < width; j++) idx[r * width + j] = j < row.length ? row[j]! : -1;
  }
}
