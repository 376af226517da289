// Multi-head Latent Attention with DeepSeek Sparse Attention (model.md §3, the reference's MLA):
//   qr = q_norm(wq_a(x));  q = wq_b(qr) → [.., H, nope | rope], q_pe ← interleaved RoPE
//   [kv | k_pe] = wkv_a(x); kv = kv_norm(kv); k_pe ← interleaved RoPE (one shared head)
//   kv ← dequant(act_quant(kv)) (FP8 round trip before caching; k_pe is not quantised)
//   selection = indexer(x, qr)
//   MHA mode (prefill): k_nope, v = wkv_b(kv) per head; sparse softmax(q·k·scale)·v
//   MQA mode (decode):  q_abs = q_nope·W_UK[h]; sparse attention in the latent space over (kv, k_pe);
//                       o = o_lat·W_UV[h]ᵀ
//   out = wo(o)
// The reference picks MQA exactly when a forward has one token (no mask); `mode` can force either
// (they agree: the invariant test).
//
// Training (a TrainStep: B rows of S tokens, no cache, model.ts trainForward) runs the same projections,
// then attention in the MQA form over the step's own latent rows, which is what DSA trains (the paper
// implements DSA "based on the MQA mode of MLA"; sparseMlaPrefillTrain has the backward):
//   kv  = [kv_norm(c) | k_pe]                      [B·S, c + r]   (one shared key/value row per token)
//   q   = [q_nope·W_UK[h] | q_pe]                  [B·S, H, c + r] (W_UK, W_UV from wkv_b in the graph,
//                                                   so wkv_b gets its gradient through both)
//   o   = sparse softmax(q·kv·scale)·kv[:, :c]     over flat rows b·S + p of the selected positions p
//                                                   (every causal key, dense attention: the same math as
//                                                   GEMMs, causalMlaPrefillTrain)
//   out = wo(o·W_UV[h]ᵀ)
// The FP8 round trip of the latent is off unless step.fp8 (then straight through): the reference trains
// in bf16 with f32 master weights, and FP8 there is the inference cache's storage format, not part of the
// trained function; its straight-through gradient would train a different function from the one
// differentiated. The selection and the indexer's KL loss come from indexer.ts (trainSelect/trainLoss).
import { getBackend } from '../tensor/backend.js';
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { matmul } from '../tensor/ops/matmul.js';
import { add, ge, where } from '../tensor/ops/elementwise.js';
import { rope } from '../tensor/ops/rope.js';
import { cast, contiguous, expand, narrow, permute, reshape, transpose, unsqueeze } from '../tensor/ops/view.js';
import { DsvError } from '../errors.js';
import { cat, indexSelect } from '../tensor/ops/indexing.js';
import { fromArray } from '../tensor/tensor.js';
import { fp8RoundTrip } from '../tensor/ops/quant.js';
import { mlaCacheWrite, sparseMlaDecode } from '../tensor/ops/sparse-mla.js';
import { type LayerCache, PAGE, type StepLayout } from './cache.js';
import type { RaggedBatch } from './batch.js';
import type { ModelConfig } from './config.js';
import { QUANT_BLOCK } from './fp8.js';
import { applyLinear } from './fp8-linear.js';
import { Indexer, type Selection, type TrainSelection } from './indexer.js';
import { rmsNormTo } from './norm.js';
import type { Numerics } from './numerics.js';
import { actDtype, wideDtype } from './numerics.js';
import { isGradEnabled } from '../tensor/autograd.js';
import { causalMlaPrefillTrain, sparseMlaPrefillTrain } from '../tensor/ops/sparse-mla-train.js';
import { sparseMhaPrefill } from '../tensor/ops/sparse-mha.js';
import { localHeads, partialDtype } from './parallel.js';
import { dequantize, type ModelWeights } from './weights.js';

export type AttentionMode = 'auto' | 'mha' | 'mqa';

export interface AttentionStep {
  /** the step's batch: chunks and their block lists (src/model/batch.ts) */
  batch: RaggedBatch;
  /** cos/sin [T, r/2] at each token's position */
  rot: { cos: Tensor; sin: Tensor };
  numerics: Numerics;
  mode: AttentionMode;
  /** this layer's forced selection [T, index_topk] (positions), or null */
  forcedTopk: Int32Array | null;
  /** the step's place in the pool, built once per forward (stepLayout) */
  layout: StepLayout;
  /** return each layer's selection (key positions) */
  recordTopk: boolean;
}

/**
 * The training forward's step (model.ts trainForward): B rows of S tokens at positions 0..S−1, no cache.
 *   attention 'dense': every causal key (the dense model; the indexer's warm-up);
 *             'sparse': the indexer's top-min(index_topk, S) (DSA);
 *   indexerLoss: add each layer's KL(p ‖ softmax(I)) to `indexerLosses` — over all causal keys with
 *             dense attention (warm-up), over the selected keys with sparse attention (sparse stage).
 */
export interface TrainStep {
  kind: 'train';
  B: number;
  S: number;
  /** cos/sin [B·S, r/2]: row b·S + s at position s */
  rot: { cos: Tensor; sin: Tensor };
  numerics: Numerics;
  attention: 'dense' | 'sparse';
  indexerLoss: boolean;
  /** simulate the inference FP8 round trips (straight through); off for training, on for parity tests */
  fp8: boolean;
  /** this layer's forced selection [B·S, index_topk] (positions, −1 padded), or null */
  forcedTopk: Int32Array | null;
  /** per layer, the indexer's KL loss Σ over the step's rows (filled when indexerLoss) */
  indexerLosses: Tensor[];
}

export function isTrainStep(s: AttentionStep | TrainStep): s is TrainStep {
  return (s as TrainStep).kind === 'train';
}

export class MLA {
  readonly indexer: Indexer;
  /** the heads this rank computes: all of them, or its share under tensor parallelism (parallel.ts) */
  readonly heads: number;
  private wkvbCache: { dt: DType; gen: number; uk: Tensor; uv: Tensor } | null = null;

  constructor(
    private readonly cfg: ModelConfig,
    private readonly weights: ModelWeights,
    readonly prefix: string,
    private readonly ue8m0: boolean,
  ) {
    this.indexer = new Indexer(cfg, weights, `${prefix}.indexer`, ue8m0);
    this.heads = localHeads(cfg, weights.shard);
  }

  private lin(name: string) {
    return this.weights.linear(`${this.prefix}.${name}.weight`);
  }

  /**
   * x [T, dim] → [T, dim] for the step's T new tokens (on a tensor-parallel rank, its heads' part of o_proj's
   * product, in the wide dtype: the decoder layer sums the ranks' parts); writes their latent, RoPE key and indexer key
   * into the layer's pool at the step's slots. Attention runs per chunk group: MQA over the pool
   * (sparseMlaDecode with slot indices) or, per chunk, MHA over the sequence's gathered rows.
   */
  forward(x: Tensor, step: AttentionStep | TrainStep, cache: LayerCache | null): { out: Tensor; selection: Selection | null } {
    if (isTrainStep(step)) return this.trainForward(x, step);
    if (!cache) throw new DsvError(`${this.prefix}: an inference step needs the layer's cache`);
    const cfg = this.cfg;
    const { layout } = step;
    const W = layout.width;
    const dt = actDtype(step.numerics);
    const H = this.heads;
    const nope = cfg.qkNopeHeadDim;
    const r = cfg.qkRopeHeadDim;
    const c = cfg.kvLoraRank;
    const dv = cfg.vHeadDim;

    const { qr, qNope, qPe, kvn, kPe } = this.project(x, step.rot, dt);
    // the cached latent is the FP8 round trip's values (exact in every cache format, see cache.ts)
    const kvRt = fp8RoundTrip(kvn, QUANT_BLOCK, { ue8m0: this.ue8m0 });
    mlaCacheWrite(cache.latent, kvRt, kPe, layout.slots);

    // the reference picks MQA exactly for one-token forwards; per group here (a group's chunks share N)
    const mha = (g: number): boolean => (step.mode === 'auto' ? layout.groups[g]!.N > 1 : step.mode === 'mha');
    const blocks = (seq: number): ArrayLike<number> => step.batch.seqs[seq]!.blocks;
    const sel = this.indexer.forward(x, qr, step.rot, cache, layout, blocks, dt, step.forcedTopk, (g) => ({ positions: mha(g) || step.recordTopk, slots: !mha(g) }));
    if (layout.groups.some((_, g) => mha(g)) && cache.format === 'fp8') {
      throw new DsvError(`${this.prefix}: MHA attention reads the latent rows, which the FP8 cache does not hold in the clear; use an f32 or bf16 latent cache, or mode 'mqa'`);
    }
    const outs: Tensor[] = []; // per group [rows, H·dv]
    layout.groups.forEach((g, gi) => {
      if (mha(gi)) {
        // q [rows, H, nope + r] per head: [q_nope | q_pe], the reference's concatenation
        const qg = cat([narrow(qNope, 0, g.row, g.rows), narrow(qPe, 0, g.row, g.rows)], 2);
        const pos = sel[gi]!.positions!;
        const latentRows = reshape(cache.latent, [cache.latent.shape[0]! * PAGE, c + r]);
        for (let k = 0; k < g.G; k++) {
          const s = step.batch.seqs[g.seqs[k]!]!;
          const end = s.start + s.len;
          // the sequence's cached rows [end, c + r] (latent, then the rotated RoPE key), gathered by slot
          const rows = indexSelect(latentRows, 0, layout.contextSlots(g.seqs[k]!));
          // per-head keys [k_nope(h) | k_pe] and values of every cached position: wkv_b(latent)
          const kvB = reshape(applyLinear(cast(narrow(rows, 1, 0, c), dt), this.lin('kv_b_proj'), dt, this.ue8m0), [end, H, nope + dv]);
          const kPeH = expand(unsqueeze(cast(narrow(rows, 1, c, r), dt), 1), [end, H, r]);
          const kh = cat([narrow(kvB, 2, 0, nope), kPeH], 2);
          const o = sparseMhaPrefill(narrow(qg, 0, k * g.N, g.N), kh, narrow(kvB, 2, nope, dv), narrow(pos, 0, k * g.N, g.N), cfg.softmaxScale).out;
          outs.push(reshape(o, [g.N, H * dv]));
        }
      } else {
        const { uk, uv } = this.absorbedWeights(dt, x.device);
        const qg = cat([absorbQuery(narrow(qNope, 0, g.row, g.rows), uk, dt), cast(narrow(qPe, 0, g.row, g.rows), dt)], 2);
        const lat = sparseMlaDecode(reshape(qg, [1, g.rows, H, c + r]), cache.latent, reshape(sel[gi]!.slots!, [1, g.rows, W]), cfg.softmaxScale, { dv: c }).out;
        outs.push(expandOutput(reshape(lat, [g.rows, H, c]), uv, dt));
      }
    });
    const o = outs.length === 1 ? outs[0]! : cat(outs, 0);
    const out = applyLinear(o, this.lin('o_proj'), partialDtype(dt, this.weights.shard), this.ue8m0);
    const positions = step.recordTopk ? sel.map((g) => g.positions!) : null;
    return { out, selection: positions ? { width: W, idx: positions.length === 1 ? positions[0]! : cat(positions, 0) } : null };
  }

  /**
   * The projections of x [T, dim] (rot over the T tokens' positions): qr [T, q_lora] (shared with the
   * indexer), q_nope [T, H, nope], rotated q_pe [T, H, r], the normalised latent kvn [T, c] and the
   * rotated RoPE key k_pe [T, r].
   */
  private project(x: Tensor, rot: { cos: Tensor; sin: Tensor }, dt: DType): { qr: Tensor; qNope: Tensor; qPe: Tensor; kvn: Tensor; kPe: Tensor } {
    const cfg = this.cfg;
    const T = x.shape[0]!;
    const H = this.heads;
    const nope = cfg.qkNopeHeadDim;
    const r = cfg.qkRopeHeadDim;
    const c = cfg.kvLoraRank;
    const eps = cfg.normEps;
    const qr = rmsNormTo(applyLinear(x, this.lin('q_a_proj'), dt, this.ue8m0), this.weights.float(`${this.prefix}.q_a_layernorm.weight`), eps, dt);
    const q = reshape(applyLinear(qr, this.lin('q_b_proj'), dt, this.ue8m0), [1, T, H, nope + r]);
    const qNope = reshape(narrow(q, 3, 0, nope), [T, H, nope]);
    const qPe = reshape(rope(narrow(q, 3, nope, r), rot.cos, rot.sin, true), [T, H, r]);
    const kvA = applyLinear(x, this.lin('kv_a_proj_with_mqa'), dt, this.ue8m0);
    const kvn = rmsNormTo(narrow(kvA, 1, 0, c), this.weights.float(`${this.prefix}.kv_a_layernorm.weight`), eps, dt);
    const kPe = reshape(rope(reshape(narrow(kvA, 1, c, r), [1, T, 1, r]), rot.cos, rot.sin, true), [T, r]);
    return { qr, qNope, qPe, kvn, kPe };
  }

  /** The training forward (see the file header): x [B·S, dim] → [B·S, dim], no cache. */
  private trainForward(x: Tensor, step: TrainStep): { out: Tensor; selection: Selection } {
    const cfg = this.cfg;
    const { B, S } = step;
    const dt = actDtype(step.numerics);
    const c = cfg.kvLoraRank;
    const { qr, qNope, qPe, kvn, kPe } = this.project(x, step.rot, dt);
    const lat = step.fp8 ? fp8RoundTrip(kvn, QUANT_BLOCK, { ue8m0: this.ue8m0 }) : kvn;
    const kv = cat([lat, kPe], 1); // [T, c + r]
    const { uk, uv } = this.absorbedWeights(dt, x.device);
    const q = cat([absorbQuery(qNope, uk, dt), qPe], 2); // [T, H, c + r]
    const sel = this.indexer.trainSelect(x, qr, step);
    const W = sel.width;
    // every causal key (dense attention) as GEMMs; a selection through the sparse op
    const a = sel.dense
      ? causalMlaPrefillTrain(q, kv, B, S, cfg.softmaxScale, { dv: c })
      : sparseMlaPrefillTrain(q, kv, flatRows(sel, B, S, x.device), cfg.softmaxScale, { dv: c });
    if (step.indexerLoss) step.indexerLosses.push(this.indexer.trainLoss(sel, { q, kv, lse: a.lse, scale: cfg.softmaxScale, dv: c }, step));
    const out = applyLinear(expandOutput(a.out, uv, dt), this.lin('o_proj'), dt, this.ue8m0);
    // dense: built only if a caller reads it (RL's indexer replay, tests); the training step does not
    return { out, selection: { width: W, get idx(): Tensor { return sel.positions; } } };
  }

  /**
   * wkv_b viewed [H, nope+dv, c] (FP8 dequantised as the reference's weight_dequant), split UK/UV. Cached
   * for inference (until the weights' generation moves), in the activations' dtype: absorbQuery's and
   * expandOutput's products are then one GEMM each in that dtype, f32-accumulated and rounded once —
   * the same values as the wide product rounded (every element of w is a dt value), without the f32
   * copies of q_abs and o_lat (mid config, 16K-token prefill on an H100: ~14 ms of widening and narrowing
   * casts, call 1's profile). Built on the tape, in the wide dtype, when wkv_b is being trained, so its
   * gradient accumulates in f32.
   */
  private absorbedWeights(dt: DType, device: string): { uk: Tensor; uv: Tensor } {
    const lw = this.lin('kv_b_proj');
    const taped = lw.kind === 'dense' && lw.w.requiresGrad && isGradEnabled();
    const gen = this.weights.generation;
    const cached = this.wkvbCache;
    if (!taped && cached && cached.dt === dt && cached.gen === gen && cached.uk.device === device) return cached;
    const cfg = this.cfg;
    const H = this.heads;
    const nope = cfg.qkNopeHeadDim;
    const dv = cfg.vHeadDim;
    const c = cfg.kvLoraRank;
    const w = cast(reshape(dequantize(lw), [H, nope + dv, c]), dt);
    // kept wide where the backend widens a bf16 operand on every product anyway (the CPU: the same f32
    // values, so the same bits, without converting [H, nope, c] on each call — 0.36 ms a call at
    // dsv32-mini's 8 × 64 × 256, five calls a decode step)
    const wt = taped || !getBackend(device).keepsBf16Weights ? wideDtype(dt) : dt;
    const uk = cast(contiguous(narrow(w, 1, 0, nope)), wt);
    const uv = cast(contiguous(narrow(w, 1, nope, dv)), wt);
    if (taped) return { uk, uv };
    this.wkvbCache = { dt, gen, uk, uv };
    return this.wkvbCache;
  }
}

/** q_abs[t, h, :] = q_nope[t, h, :] · W_UK[h]: [T, H, nope] · [H, nope, c] → [T, H, c] in dt. */
function absorbQuery(qNope: Tensor, uk: Tensor, dt: DType): Tensor {
  return permute(cast(matmul(permute(qNope, [1, 0, 2]), uk), dt), [1, 0, 2]);
}

/** o[t, h, :] = o_lat[t, h, :] · W_UV[h]ᵀ: [T, H, c] · [H, dv, c]ᵀ → [T, H·dv] in dt (o_proj's input). */
function expandOutput(lat: Tensor, uv: Tensor, dt: DType): Tensor {
  const [T, H] = lat.shape as [number, number];
  const oh = cast(matmul(cast(permute(lat, [1, 0, 2]), uv.dtype), transpose(uv)), dt); // [H, T, dv]
  return reshape(contiguous(permute(oh, [1, 0, 2])), [T, H * uv.shape[1]!]);
}

/** A training selection's key positions p of sequence b as flat kv rows b·S + p, holes staying −1: [B·S, width] i32, on the device. */
function flatRows(sel: TrainSelection, B: number, S: number, device: string): Tensor {
  const p = sel.positions;
  if (B === 1) return p;
  const base = fromArray(Int32Array.from({ length: B * S }, (_, i) => i - (i % S)), [B * S, 1], { dtype: 'i32', device });
  return where(ge(p, 0), add(p, base), p);
}
