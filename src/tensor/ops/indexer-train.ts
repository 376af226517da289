// The DSA lightning indexer's training operations (issue 11 §5; paper §2.1, model.md §10): its float
// scores with gradients, and its KL loss against the main attention. Optional backend capabilities
// (Backend.indexerScores, indexerScoresBackward, indexerKlLoss); CPU references in
// src/backend/cpu/indexer-train.ts, CUDA kernels in kernels/indexer_train.cu (and, for bf16 inputs with
// indexerTrainTune.gemm on, the cuBLASLt paths of kernels/indexer_train_gemm.cu).
//
// Training runs the indexer UNQUANTISED: q, k in f32 or bf16 (no FP8 act_quant, no k scale), w in f32.
// The FP8 inference op is indexerLogits (src/tensor/ops/dsa-indexer.ts); with quantisation off the host
// model computes the same dense scores, and the CPU reference here reproduces them bit for bit.
//
//   indexerScores(q [Tq, H, D], k [Tk, D], w [Tq, H], sel) → scores
//     I[i, t] = Σ_h w[i, h]·relu(q[i, h]·k[t])                                  (paper Eq. 1)
//     sel = {start, end} (i32 [Tq]): dense, scores [Tq, Tk], t in [start[i], end[i]), −inf elsewhere
//           (dense warm-up: the causal range);
//     sel = {indices} (i32 [Tq, kSel], −1 holes): sparse, scores [Tq, kSel], column j scores key
//           indices[i, j], −inf at holes (sparse stage: the selected set).
//     Differentiable w.r.t. q, k and w (ReLU's derivative taken as 0 at 0):
//       dw[i,h] = Σ_t g[i,t]·relu(l),  dq[i,h] = Σ_{t: l>0} g[i,t]·w[i,h]·k[t],  dk[t] = Σ_{i,h: l>0} g[i,t]·w[i,h]·q[i,h]
//     with l = q[i, h]·k[t]. A backend op rather than a composition of existing ops: the composition
//     (matmul → relu → weighted head sum) materialises l as [Tq, H, Tk] (H = 64 times the scores) in the
//     forward and again in the backward, where the fused op recomputes l tile by tile and keeps only
//     [Tq, Tk] (the scores and their gradient).
//     Output f32 (f64 for f64 inputs); dq, dk, dw in q's, k's and w's dtypes.
//
//   indexerKlLoss(scores, {q, kv, lse, scale, dv}, sel) → scalar  Σ_i KL(p_i ‖ softmax(I_i))
//     p_i = the main attention's probabilities summed over heads and L1-normalised over the row's entries
//     (the same causal range or selected indices as `sel`), recomputed from the attention's own inputs as
//     p_{h,t} = exp(s_{h,t} − lse_h) (s = scale·(q_h·kv_t) with the forward's roundings, lse saved by the
//     forward: sparseMlaPrefill/sparseMlaPrefillTrain, or sparseMlaPrefill over all causal keys for the
//     dense warm-up; the model's dense warm-up uses causalMlaPrefillTrain, f32 scores), so no [Tq, H, T]
//     probability tensor is ever stored. The roundings of s: the CPU reference and the CUDA-core kernel round
//     the latent and RoPE halves to the inputs' dtype (the CUDA-core forward's); the CUDA bf16 GEMM path
//     rounds the whole score once to bf16 in sparse mode (the gemm forward's) and not at all in dense mode
//     (causalMlaPrefillTrain's), each matching the lse its forward saved. The target is detached: the loss
//     is differentiable w.r.t. the scores only (dL/dI = softmax(I) − p on the entries, 0 elsewhere), and
//     q, kv, lse receive nothing — with the indexer's input detached (its q, k, w computed from
//     detach(x)), the loss reaches only the indexer's own parameters, never the main model (paper §2.1).
//     Per-row conventions: a row with no entry, or with zero target mass, contributes 0. scores f32 or f64;
//     q, kv f32/bf16 (f64 on the CPU); lse f32 (or f64).
//     Dense mode: scores [Tq, Tk] with Tk = kv rows (column t is kv row t); sparse: scores [Tq, kSel]
//     aligned with indices (what indexerScores(…, {indices}) returns).
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { mul } from './elementwise.js';
import { sum } from './reduce.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous } from './view.js';

/** Which keys a query row covers: a causal range (dense warm-up) or selected indices with −1 holes (sparse stage). */
export type IndexerSelection = { start: Tensor; end: Tensor } | { indices: Tensor };

/** The main attention whose head-summed distribution is the indexer's target. */
export interface AttentionTarget {
  /** [Tq, H, D] absorbed queries (latent then RoPE), as given to sparse MLA */
  q: Tensor;
  /** [Tk, D] latent + RoPE key rows */
  kv: Tensor;
  /** [Tq, H] natural-log lse of the scaled scores over the same entries (from the forward) */
  lse: Tensor;
  /** softmax scale of the scores */
  scale: number;
  /** latent dims (the score is rounded per part, as the forward does); default 512 */
  dv?: number;
}

type Cap = 'indexerScores' | 'indexerScoresBackward' | 'indexerKlLoss';
function need<K extends Cap>(op: K, t: Tensor): NonNullable<Tensor['backend'][K]> {
  const f = t.backend[op];
  if (!f) throw new DsvError(`${op} is not implemented on device '${t.device}'`);
  return f.bind(t.backend) as NonNullable<Tensor['backend'][K]>;
}

const FLOAT = new Set(['f32', 'bf16', 'f64']);

function checkFloat(op: string, name: string, t: Tensor, allowed = FLOAT): void {
  if (!allowed.has(t.dtype)) throw new DsvError(`${op}: ${name} must be ${[...allowed].join(', ')}, got ${t.dtype}`);
  if (t.dtype === 'f64' && t.device !== 'cpu') throw new DsvError(`${op}: f64 (the gradcheck dtype) runs on the CPU only, got ${name} on '${t.device}'`);
}

function i32(t: Tensor): Tensor {
  return noGrad(() => contiguous(t.dtype === 'i32' ? t : cast(t, 'i32')));
}

/** The selection's i32 views: dense start/end [Tq], or indices [Tq, kSel]; and the row width N. */
function selection(op: string, sel: IndexerSelection, Tq: number, Tk: number): { start: Tensor | null; end: Tensor | null; indices: Tensor | null; N: number } {
  const isInt = (t: Tensor): boolean => t.dtype === 'i32' || t.dtype === 'i64';
  if ('indices' in sel) {
    const ix = sel.indices;
    if (!isInt(ix)) throw new DsvError(`${op}: indices must be i32 (or i64), got ${ix.dtype}`);
    if (ix.rank !== 2 || ix.shape[0] !== Tq) throw new ShapeError(`${op}: indices ${fmtShape(ix.shape)} must be [${Tq}, k]`);
    return { start: null, end: null, indices: i32(ix), N: ix.shape[1]! };
  }
  for (const [name, t] of [['start', sel.start], ['end', sel.end]] as const) {
    if (!isInt(t)) throw new DsvError(`${op}: ${name} must be i32 (or i64), got ${t.dtype}`);
    if (t.rank !== 1 || t.shape[0] !== Tq) throw new ShapeError(`${op}: ${name} ${fmtShape(t.shape)} must be [${Tq}]`);
  }
  return { start: i32(sel.start), end: i32(sel.end), indices: null, N: Tk };
}

function selTensors(sel: IndexerSelection): Tensor[] {
  return 'indices' in sel ? [sel.indices] : [sel.start, sel.end];
}

/**
 * Float lightning-indexer scores Σ_h w·relu(q·k) over a causal range or selected indices (see the
 * header), on the autograd tape: differentiable w.r.t. q, k and w.
 */
export function indexerScores(q: Tensor, k: Tensor, w: Tensor, sel: IndexerSelection): Tensor {
  const op = 'indexerScores';
  sameDevice(op, q, k, w, ...selTensors(sel));
  checkFloat(op, 'q', q);
  checkFloat(op, 'w', w);
  if (q.rank !== 3) throw new ShapeError(`${op}: q must be [Tq, H, D], got ${fmtShape(q.shape)}`);
  const [Tq, H, D] = q.shape as [number, number, number];
  if (k.rank !== 2 || k.shape[1] !== D) throw new ShapeError(`${op}: k ${fmtShape(k.shape)} must be [Tk, ${D}] for q ${fmtShape(q.shape)}`);
  if (k.dtype !== q.dtype) throw new DsvError(`${op}: k (${k.dtype}) must have q's dtype (${q.dtype})`);
  if (w.rank !== 2 || w.shape[0] !== Tq || w.shape[1] !== H) throw new ShapeError(`${op}: w ${fmtShape(w.shape)} must be [${Tq}, ${H}]`);
  const Tk = k.shape[0]!;
  const s = selection(op, sel, Tq, Tk);
  const f64 = q.dtype === 'f64';
  const odt = f64 ? 'f64' : 'f32';
  // layout and the weights' dtype (f32; f64 for f64) through taped ops, so their gradients flow back
  const qc = contiguous(q);
  const kc = contiguous(k);
  const wc = contiguous(w.dtype === odt ? w : cast(w, odt));
  const out = noGrad(() => {
    const o = alloc(q.backend, [Tq, s.N], odt);
    if (o.numel) {
      if (H === 0 || Tk === 0) q.backend.fill(o, -Infinity);
      else need(op, q)(o, qc, kc, wc, s.start, s.end, s.indices);
    }
    return o;
  });
  return record(out, op, [qc, kc, wc], (g) => {
    const dq = alloc(q.backend, [Tq, H, D], q.dtype);
    const dk = alloc(q.backend, [Tk, D], odt);
    const dw = alloc(q.backend, [Tq, H], odt);
    if (out.numel && dq.numel && dk.numel) need('indexerScoresBackward', q)(dq, dk, dw, contiguous(cast(g, odt)), qc, kc, wc, s.start, s.end, s.indices);
    else for (const t of [dq, dk, dw]) if (t.numel) q.backend.fill(t, 0);
    return [dq, dk.dtype === k.dtype ? dk : cast(dk, k.dtype), dw];
  });
}

/**
 * The indexer's KL loss Σ_i KL(p_i ‖ softmax(scores_i)) against the head-summed, L1-normalised main
 * attention (see the header): a scalar in the scores' dtype, differentiable w.r.t. the scores only.
 */
export function indexerKlLoss(scores: Tensor, attn: AttentionTarget, sel: IndexerSelection): Tensor {
  const op = 'indexerKlLoss';
  const { q, kv, lse, scale } = attn;
  const dv = attn.dv ?? 512;
  sameDevice(op, scores, q, kv, lse, ...selTensors(sel));
  checkFloat(op, 'scores', scores, new Set(['f32', 'f64']));
  checkFloat(op, 'q', q);
  checkFloat(op, 'lse', lse, new Set(['f32', 'f64']));
  if (q.rank !== 3) throw new ShapeError(`${op}: q must be [Tq, H, D], got ${fmtShape(q.shape)}`);
  const [Tq, H, D] = q.shape as [number, number, number];
  if (!(Number.isInteger(dv) && dv > 0 && dv <= D)) throw new ShapeError(`${op}: dv ${dv} must be in [1, ${D}] (q's last dim)`);
  if (kv.rank !== 2 || kv.shape[1] !== D) throw new ShapeError(`${op}: kv ${fmtShape(kv.shape)} must be [Tk, ${D}] for q ${fmtShape(q.shape)}`);
  if (kv.dtype !== q.dtype) throw new DsvError(`${op}: kv (${kv.dtype}) must have q's dtype (${q.dtype})`);
  if (lse.rank !== 2 || lse.shape[0] !== Tq || lse.shape[1] !== H) throw new ShapeError(`${op}: lse ${fmtShape(lse.shape)} must be [${Tq}, ${H}]`);
  const Tk = kv.shape[0]!;
  const s = selection(op, sel, Tq, Tk);
  if (scores.rank !== 2 || scores.shape[0] !== Tq || scores.shape[1] !== s.N) {
    throw new ShapeError(`${op}: scores ${fmtShape(scores.shape)} must be [${Tq}, ${s.N}] (${'indices' in sel ? 'one column per index' : 'one column per kv row'})`);
  }
  const sc = contiguous(scores);
  const { total, grad } = noGrad(() => {
    const rows = alloc(q.backend, [Tq], scores.dtype);
    const G = alloc(q.backend, [Tq, s.N], scores.dtype);
    if (G.numel && H > 0) need(op, q)(rows, G, sc, contiguous(q), contiguous(kv), contiguous(lse), s.start, s.end, s.indices, dv, scale);
    else {
      if (rows.numel) q.backend.fill(rows, 0);
      if (G.numel) q.backend.fill(G, 0);
    }
    return { total: sum(rows), grad: G };
  });
  return record(total, op, [sc], (g) => [mul(grad, g)]);
}
