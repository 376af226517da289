// The lightning indexer (model.md §4, the updated reference):
//   q = wq_b(qr) viewed [.., Hi, Dh], split [pe r, nope Dh−r] (rope FIRST), pe ← half-split RoPE
//   k = LayerNorm(wk(x)) (f32 math, eps 1e-6), split [pe, nope], pe ← half-split RoPE; one key/token
//   q, k ← Hadamard(·)·Dh^-½ (Sylvester order), then act_quant (e4m3, ue8m0 scales per 128)
//   w = weights_proj(x.f32)·Hi^-½ · q_scale · Dh^-½          (f32; may be negative)
//   I[t, s] = k_scale[s] · Σ_h relu(q8[t, h]·k8[s]) · w[t, h]  (f32)
//   selection = top-min(index_topk, end_pos) of I over the causal keys, ties → lowest position
// The FP8 keys and scales are cached for decode.
//
// Training (trainSelect/trainLoss, a TrainStep of B rows of S tokens; paper §2.1, model.md §10): the
// indexer runs unquantised (FP8 act_quant is the inference cache's format; indexerScores is the float
// Eq. 1 with its backward) on DETACHED x and qr, so the only gradient it ever gets is its KL loss and
// the LM loss never reaches it (nor its loss the main model):
//   I[t, s] = Σ_h w[t, h]·relu(q[t, h]·k[s])       (w with Hi^-½·Dh^-½ folded in, as inference)
//   selection: dense attention → every causal key; sparse → top-min(index_topk, S) of I over s ≤ t
//   loss (per layer, Σ over rows t):  KL(p_t ‖ softmax(I_t)) with p_t = Σ_h attention_h(t, ·), L1-normalised,
//     over all s ≤ t (dense warm-up) or over the selected S_t (sparse stage) — indexerKlLoss, whose target
//     (the main attention's q, kv, lse) is detached.
import { DsvError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { hadamard } from '../tensor/ops/hadamard.js';
import { cat } from '../tensor/ops/indexing.js';
import { linear } from '../tensor/ops/matmul.js';
import { add, mul, muls } from '../tensor/ops/elementwise.js';
import { causalSelect, indexerCacheWrite, indexerLogits, indexerLogitsPaged, topkSelect } from '../tensor/ops/dsa-indexer.js';
import { layerNorm } from '../tensor/ops/norm.js';
import { rope } from '../tensor/ops/rope.js';
import { cast, narrow, reshape } from '../tensor/ops/view.js';
import { type LayerCache, type StepLayout, slotOf } from './cache.js';
import type { ModelConfig } from './config.js';
import { actQuant } from '../tensor/ops/quant.js';
import { QUANT_BLOCK } from './fp8.js';
import { applyLinear } from './fp8-linear.js';
import { actDtype, wideDtype } from './numerics.js';
import { detach, noGrad } from '../tensor/autograd.js';
import { type AttentionTarget, type IndexerSelection, indexerKlLoss, indexerScores } from '../tensor/ops/indexer-train.js';
import type { TrainStep } from './mla.js';
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

/** A training step's selection: key positions [B·S, width] within each sequence (−1 holes). */
export interface TrainSelection {
  width: number;
  /**
   * [B·S, width] i32 on the step's device: each row's key positions within its own sequence, −1 padded.
   * It stays on the device (a host copy of the mid config's selection is 32 MiB a sequence and a layer,
   * and reading it back waits for the device: ~0.3 s of a 1.8 s sparse-stage step on an H100, 2026-12-07).
   * Dense attention builds it only when read (attention itself takes every causal key without it).
   */
  readonly positions: Tensor;
  /** true when every query takes every causal key (dense attention): positions are a function of B, S */
  dense: boolean;
  /** the indexer's float q [B·S, Hi, Dh], k [B·S, Dh], w [B·S, Hi] from detached inputs (when computed) */
  qk: IndexerQK | null;
}

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
    let k = cast(layerNorm(cast(kLin, wideDtype(dt)), w.float(`${this.prefix}.k_norm.weight`), w.float(`${this.prefix}.k_norm.bias`), LN_EPS), dt);
    const k4 = reshape(k, [B, S, 1, Dh]);
    k = reshape(cat([rope(narrow(k4, 3, 0, r), rot.cos, rot.sin, false), narrow(k4, 3, r, Dh - r)], 3), [B * S, Dh]);
    if (rotate) {
      q = hadamard(q, Dh ** -0.5);
      k = hadamard(k, Dh ** -0.5);
    }
    const T = B * S;
    const k2 = reshape(k, [T, Dh]);
    // w = weights_proj(x.f32)·Hi^-½·q_scale·Dh^-½, each product rounded to f32 as the reference's
    const wp = muls(linear(cast(x2, wideDtype(dt)), w.float(`${this.prefix}.weights_proj.weight`)), Hi ** -0.5);
    if (!quantize) {
      return { q: reshape(q, [T, Hi, Dh]), k: k2, ks: fromArray(new Float32Array(T).fill(1), [T], { device: x2.device }), w: muls(wp, cfg.indexSoftmaxScale) };
    }
    const qq = actQuant(reshape(q, [T, Hi, Dh]), QUANT_BLOCK, { ue8m0: this.ue8m0 });
    const kq = actQuant(k2, QUANT_BLOCK, { ue8m0: this.ue8m0 });
    if (qq.s.numel !== T * Hi || kq.s.numel !== T) throw new DsvError(`${this.prefix}: index_head_dim ${Dh} must be one 128-value quantisation block`);
    return { q: qq.q, k: kq.q, ks: reshape(kq.s, [T]), w: muls(mul(wp, reshape(qq.s, [T, Hi])), cfg.indexSoftmaxScale) };
  }

  /**
   * Selections for the step's T new tokens (x2 [T, dim], qr [T, q_lora], rot over their positions),
   * writing their keys into the layer's index cache at layout.slots. Per chunk group (cache.ts), one
   * batched logits call over the pool (indexerLogitsPaged: q [G, N, Hi, Dh], the groups' block tables)
   * and a top-k of width layout.width, as key positions and/or as pool slots (`want(g)` says which
   * group needs which: MHA attention reads positions, MQA attention reads slots, a recorded selection
   * is positions). `forced` [T, index_topk] (positions, −1 padded, golden layout) replaces the choice.
   * A dense layout (layout.dense) selects every causal key (causalSelect) and runs nothing of the
   * indexer: no projection, no logits, and no key written to its cache (a dense model has no indexer).
   */
  forward(
    x2: Tensor,
    qr: Tensor,
    rot: { cos: Tensor; sin: Tensor },
    cache: LayerCache,
    layout: StepLayout,
    blocks: (seq: number) => ArrayLike<number>,
    dt: DType,
    forced: Int32Array | null,
    want: (g: number) => { positions: boolean; slots: boolean },
  ): GroupSelection[] {
    const cfg = this.cfg;
    const Hi = cfg.indexNHeads;
    const Dh = cfg.indexHeadDim;
    const W = layout.width;
    const T = layout.T;
    if (layout.dense) {
      if (forced) throw new ForcedSelectionError(`${this.prefix}: a forced selection replaces the indexer's, which dense attention does not run`);
      return layout.groups.map((g, gi) => {
        const w = want(gi);
        return {
          positions: w.positions ? causalSelect(g.rowEnd, W) : null,
          slots: w.slots ? causalSelect(g.rowEnd, W, { blockTable: g.table, rowsPerSeq: g.N }) : null,
        };
      });
    }
    const qk = this.project(x2, qr, 1, T, rot, dt);
    indexerCacheWrite(cache.index, qk.k, qk.ks, layout.slots);
    const dev = x2.device;
    const i32 = (a: Int32Array, rows: number): Tensor => fromArray(a, [rows, W], { dtype: 'i32', device: dev });
    if (forced) {
      const pos = new Int32Array(T * W);
      fillForced(forced, cfg.indexTopk, pos, W, layout.positions, this.prefix);
      return layout.groups.map((g, gi) => {
        const w = want(gi);
        const p = pos.subarray(g.row * W, (g.row + g.rows) * W);
        let sl: Tensor | null = null;
        if (w.slots) {
          const s = new Int32Array(p.length);
          for (let c = 0; c < g.G; c++) {
            const bl = blocks(g.seqs[c]!);
            for (let j = c * g.N * W; j < (c + 1) * g.N * W; j++) s[j] = p[j]! < 0 ? -1 : slotOf(bl, p[j]!);
          }
          sl = i32(s, g.rows);
        }
        return { positions: w.positions ? i32(p.slice(), g.rows) : null, slots: sl };
      });
    }
    return layout.groups.map((g, gi) => {
      const w = want(gi);
      const q = reshape(narrow(qk.q, 0, g.row, g.rows), [g.G, g.N, Hi, Dh]);
      const hw = reshape(narrow(qk.w, 0, g.row, g.rows), [g.G, g.N, Hi]);
      const logits = indexerLogitsPaged(q, cache.index, hw, g.table, g.contextLen, g.maxCtx);
      return {
        positions: w.positions ? topkSelect(logits, W, { end: g.rowEnd }) : null,
        slots: w.slots ? topkSelect(logits, W, { end: g.rowEnd, blockTable: g.table, rowsPerSeq: g.N }) : null,
      };
    });
  }

  /**
   * The training selection for x, qr [B·S, ·] (see the file header): forced, all causal keys (dense
   * attention), or the top-k of the float scores per sequence (sparse). The float q/k/w come back when
   * the loss needs them.
   */
  trainSelect(x: Tensor, qr: Tensor, step: TrainStep): TrainSelection {
    const { B, S } = step;
    const T = B * S;
    const dt = actDtype(step.numerics);
    const dense = step.attention === 'dense';
    const W = dense ? S : Math.min(this.cfg.indexTopk, S);
    const needScores = step.indexerLoss || (!dense && !step.forcedTopk && !step.fp8);
    const proj = (): IndexerQK => this.project(detach(x), detach(qr), 1, T, step.rot, dt, { quantize: false });
    const qk = needScores ? (step.indexerLoss ? proj() : noGrad(proj)) : null;
    const dev = x.device;
    // dense: attention does not read the positions (causalMlaPrefillTrain); built only if a caller does
    if (dense && !step.forcedTopk) {
      let p: Tensor | null = null;
      const ends = (): Tensor => fromArray(Int32Array.from({ length: T }, (_, i) => (i % S) + 1), [T], { dtype: 'i32', device: dev });
      return { width: W, get positions(): Tensor { return (p ??= causalSelect(ends(), W)); }, qk, dense: true };
    }
    let positions: Tensor;
    if (step.forcedTopk) {
      const pos = Int32Array.from({ length: T }, (_, i) => i % S);
      const host = new Int32Array(T * W);
      fillForced(step.forcedTopk, this.cfg.indexTopk, host, W, pos, this.prefix);
      positions = fromArray(host, [T, W], { dtype: 'i32', device: dev });
    } else {
      // per sequence, on the device: its rows' top-W of the causal scores
      const seqs: Tensor[] = [];
      noGrad(() => {
        // with the inference round trips on (RL: the trainer must choose what the engine chose), the choice
        // is the inference indexer's: FP8 q/k with their scales (indexerLogits over the sequence's own keys
        // equals the engine's paged logits), then the same top-k
        const q8 = step.fp8 ? this.project(x, qr, 1, T, step.rot, dt) : null;
        for (let b = 0; b < B; b++) {
          const c = causal(S, dev);
          let scores: Tensor;
          if (q8) {
            const rows = (t: Tensor): Tensor => narrow(t, 0, b * S, S);
            scores = indexerLogits(rows(q8.q), rows(q8.k), rows(q8.ks), rows(q8.w), c.start, c.end);
          } else {
            const seq = this.seqOf(qk!, b, S);
            scores = indexerScores(seq.q, seq.k, seq.w, c);
          }
          seqs.push(topkSelect(scores, W, { end: c.end }));
        }
      });
      positions = seqs.length === 1 ? seqs[0]! : cat(seqs, 0);
    }
    return { width: W, positions, qk, dense: false };
  }

  /** Σ over the step's rows of KL(p ‖ softmax(I)) for this layer (see the file header). */
  trainLoss(sel: TrainSelection, attn: AttentionTarget, step: TrainStep): Tensor {
    const { B, S } = step;
    const dev = attn.q.device;
    let total: Tensor | null = null;
    for (let b = 0; b < B; b++) {
      const seq = this.seqOf(sel.qk!, b, S);
      const target: AttentionTarget = { ...attn, q: narrow(attn.q, 0, b * S, S), kv: narrow(attn.kv, 0, b * S, S), lse: narrow(attn.lse, 0, b * S, S) };
      // dense attention: the warm-up's KL over every causal key; sparse: over the selected keys only
      const range: IndexerSelection = step.attention === 'dense'
        ? causal(S, dev)
        : { indices: narrow(sel.positions, 0, b * S, S) };
      const l = indexerKlLoss(indexerScores(seq.q, seq.k, seq.w, range), target, range);
      total = total ? add(total, l) : l;
    }
    return total!;
  }

  private seqOf(qk: IndexerQK, b: number, S: number): { q: Tensor; k: Tensor; w: Tensor } {
    return { q: narrow(qk.q, 0, b * S, S), k: narrow(qk.k, 0, b * S, S), w: narrow(qk.w, 0, b * S, S) };
  }
}

/** Causal key ranges [0, s + 1) of the S rows of one sequence. */
function causal(S: number, device: string): { start: Tensor; end: Tensor } {
  return {
    start: fromArray(new Int32Array(S), [S], { dtype: 'i32', device }),
    end: fromArray(Int32Array.from({ length: S }, (_, s) => s + 1), [S], { dtype: 'i32', device }),
  };
}

/** One chunk group's selections [rows, width]: key positions and/or pool slots (−1 padded). */
export interface GroupSelection {
  positions: Tensor | null;
  slots: Tensor | null;
}

function fillForced(forced: Int32Array, topk: number, idx: Int32Array, width: number, positions: Int32Array, where: string): void {
  const T = positions.length;
  if (forced.length !== T * topk) {
    throw new ForcedSelectionError(`${where}: forced top-k holds ${forced.length} entries, expected [${T} tokens, ${topk}]`);
  }
  for (let r = 0; r < T; r++) {
    const pos = positions[r]!;
    const row = [...new Set(Array.from(forced.subarray(r * topk, (r + 1) * topk)).filter((t) => t >= 0))].sort((a, b) => a - b);
    if (row.length > Math.min(topk, pos + 1)) throw new ForcedSelectionError(`${where}: forced top-k row ${r} has ${row.length} keys, more than min(index_topk, end_pos) = ${Math.min(topk, pos + 1)}`);
    for (const t of row) {
      if (!Number.isInteger(t) || t > pos) throw new ForcedSelectionError(`${where}: forced top-k row ${r} (query position ${pos}) selects key ${t}, which is not causally visible`);
    }
    for (let j = 0; j < width; j++) idx[r * width + j] = j < row.length ? row[j]! : -1;
  }
}
