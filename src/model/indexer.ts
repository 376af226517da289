// The lightning indexer (model.md §4, the updated reference):
//   q = wq_b(qr) viewed [.., Hi, Dh], split [pe r, nope Dh−r] (rope FIRST), pe ← half-split RoPE
//   k = LayerNorm(wk(x)) (f32 math, eps 1e-6), split [pe, nope], pe ← half-split RoPE; one key/token
//   q, k ← Hadamard(·)·Dh^-½ (Sylvester order), then act_quant (e4m3, ue8m0 scales per 128)
//   w = weights_proj(x.f32)·Hi^-½ · q_scale · Dh^-½          (f32; may be negative)
//   I[t, s] = k_scale[s] · Σ_h relu(q8[t, h]·k8[s]) · w[t, h]  (f32)
//   selection = top-min(index_topk, end_pos) of I over the causal keys, ties → lowest position
// The FP8 keys and scales are cached for decode.
import { DsvError } from '../errors.js';
import { e4m3BitsToF32, type DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { hadamard } from '../tensor/ops/hadamard.js';
import { cat } from '../tensor/ops/indexing.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { layerNorm } from '../tensor/ops/norm.js';
import { rope } from '../tensor/ops/rope.js';
import { cast, narrow, reshape, transpose } from '../tensor/ops/view.js';
import type { LayerCache } from './cache.js';
import type { ModelConfig } from './config.js';
import { actQuant } from '../tensor/ops/quant.js';
import { QUANT_BLOCK } from './fp8.js';
import { applyLinear } from './fp8-linear.js';
import type { SelectionRows } from './sparse-attention.js';
import { selectTopkRow } from './topk-select.js';
import type { ModelWeights } from './weights.js';

export class ForcedSelectionError extends DsvError {}

/** Per-layer selections of a forward: [B, S, width] ascending, −1 padded; width = min(topk, end_pos). */
export interface Selection {
  width: number;
  idx: Int32Array;
}

/** Switches for tests of the indexer's invariants; the model always runs with both on. */
export interface IndexerOptions {
  /** FP8 act_quant of q and k (default true) */
  quantize?: boolean;
  /** Hadamard rotation of q and k (default true) */
  rotate?: boolean;
}

/** The indexer's per-token quantities for S new tokens of B rows. */
export interface IndexerQK {
  /** q values (e4m3 decoded when quantised) [B·S, Hi, Dh] */
  q: Float32Array;
  /** k values [B·S, Dh] */
  k: Float32Array;
  /** e4m3 bits of k when quantised [B·S, Dh] */
  k8: Uint8Array | null;
  /** k scales [B·S] (1 when not quantised) */
  ks: Float32Array;
  /** head weights with the q scale and Dh^-½ folded in [B·S, Hi] */
  w: Float32Array;
}

const LN_EPS = 1e-6;
/** Query rows per score block, bounded so a block's logits stay a few MiB. */
const SCORE_BLOCK_ELEMS = 1 << 22;

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
    let qv: Float32Array;
    let qs: Float32Array;
    let kv: Float32Array;
    let ks: Float32Array;
    let k8: Uint8Array | null = null;
    if (quantize) {
      const qq = actQuant(q, QUANT_BLOCK, { ue8m0: this.ue8m0 });
      qv = cast(qq.q, 'f32').toFloat32();
      qs = qq.s.toFloat32();
      const kq = actQuant(k, QUANT_BLOCK, { ue8m0: this.ue8m0 });
      k8 = kq.q.toHost() as Uint8Array;
      kv = cast(kq.q, 'f32').toFloat32();
      ks = kq.s.toFloat32();
      if (qs.length !== T * Hi || ks.length !== T) throw new Error('internal: index_head_dim must be one 128-block');
    } else {
      qv = q.toFloat32();
      kv = k.toFloat32();
      qs = new Float32Array(T * Hi).fill(1);
      ks = new Float32Array(T).fill(1);
    }
    const wp = linear(cast(x2, 'f32'), w.float(`${this.prefix}.weights_proj.weight`)).toFloat32();
    const f = Math.fround;
    const hs = Hi ** -0.5;
    const sc = cfg.indexSoftmaxScale;
    for (let i = 0; i < wp.length; i++) wp[i] = f(f(f(wp[i]! * hs) * qs[i]!) * sc);
    return { q: qv, k: kv, k8, ks, w: wp };
  }

  /**
   * Selections for S new tokens at positions start..start+S-1, appending their keys to the cache.
   * `forced` [B, S, index_topk] (−1 padded, golden layout) replaces the choice.
   */
  forward(
    x2: Tensor,
    qr: Tensor,
    B: number,
    S: number,
    start: number,
    rot: { cos: Tensor; sin: Tensor },
    cache: LayerCache,
    dt: DType,
    forced: Int32Array | null,
  ): Selection {
    const cfg = this.cfg;
    const Dh = cfg.indexHeadDim;
    const end = start + S;
    const width = Math.min(cfg.indexTopk, end);
    const qk = this.project(x2, qr, B, S, rot, dt);
    cache.reserve(end);
    for (let b = 0; b < B; b++) {
      cache.k8[b]!.set(qk.k8!.subarray(b * S * Dh, (b + 1) * S * Dh), start * Dh);
      cache.ks[b]!.set(qk.ks.subarray(b * S, (b + 1) * S), start);
    }
    const idx = new Int32Array(B * S * width);
    if (forced) {
      fillForced(forced, cfg.indexTopk, idx, width, B, S, start, this.prefix);
      return { width, idx };
    }
    const Hi = cfg.indexNHeads;
    for (let b = 0; b < B; b++) {
      const keys = new Float32Array(end * Dh);
      const bits = cache.k8[b]!;
      for (let i = 0; i < end * Dh; i++) keys[i] = e4m3BitsToF32(bits[i]!);
      const qb = qk.q.subarray(b * S * Hi * Dh, (b + 1) * S * Hi * Dh);
      const wb = qk.w.subarray(b * S * Hi, (b + 1) * S * Hi);
      selectRows(qb, wb, keys, cache.ks[b]!.subarray(0, end), S, Hi, Dh, start, cfg.indexTopk, idx, b * S * width, width);
    }
    return { width, idx };
  }
}

/**
 * Index scores of queries q [nq, Hi, Dh] (weights w [nq, Hi]) against keys [T, Dh] (scales ks [T]),
 * for query positions pos0..pos0+nq-1: [nq, T] with −inf at keys after the query (the causal mask).
 */
export function indexScores(q: Float32Array, w: Float32Array, keys: Float32Array, ks: Float32Array, nq: number, Hi: number, Dh: number, T: number, pos0: number): Float32Array {
  const out = new Float32Array(nq * T);
  const K = fromArray(keys.subarray(0, T * Dh), [T, Dh]);
  const rowsPerBlock = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, Hi * T)));
  for (let i0 = 0; i0 < nq; i0 += rowsPerBlock) {
    const n = Math.min(rowsPerBlock, nq - i0);
    // keys visible to the block's last query
    const tv = Math.min(T, pos0 + i0 + n);
    const Q = fromArray(q.subarray(i0 * Hi * Dh, (i0 + n) * Hi * Dh), [n * Hi, Dh]);
    const logits = matmul(Q, transpose(narrow(K, 0, 0, tv))).toFloat32(); // [n·Hi, tv]
    for (let i = 0; i < n; i++) {
      const pos = pos0 + i0 + i;
      const row = (i0 + i) * T;
      for (let t = 0; t < T; t++) {
        if (t > pos || t >= tv) {
          out[row + t] = -Infinity;
          continue;
        }
        let acc = 0;
        for (let h = 0; h < Hi; h++) {
          const l = logits[(i * Hi + h) * tv + t]!;
          if (l > 0) acc += l * w[(i0 + i) * Hi + h]!;
        }
        out[row + t] = Math.fround(Math.fround(acc) * ks[t]!);
      }
    }
  }
  return out;
}

function selectRows(q: Float32Array, w: Float32Array, keys: Float32Array, ks: Float32Array, S: number, Hi: number, Dh: number, start: number, topk: number, out: Int32Array, outOff: number, width: number): void {
  const T = start + S;
  const scratch = new Float32Array(T);
  // score in blocks of queries so the [rows, T] score matrix stays bounded at long context
  const rows = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, T)));
  for (let i0 = 0; i0 < S; i0 += rows) {
    const n = Math.min(rows, S - i0);
    const sc = indexScores(q.subarray(i0 * Hi * Dh), w.subarray(i0 * Hi), keys, ks, n, Hi, Dh, T, start + i0);
    for (let i = 0; i < n; i++) {
      const pos = start + i0 + i;
      selectTopkRow(sc, i * T, pos + 1, Math.min(topk, T), out, outOff + (i0 + i) * width, width, scratch);
    }
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

export function selectionRows(sel: Selection, b: number, S: number): SelectionRows {
  return { idx: sel.idx, off: b * S * sel.width, width: sel.width };
}
