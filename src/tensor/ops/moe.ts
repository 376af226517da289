// Mixture-of-experts operations with no host read inside a step (issue 12): routing, dispatch (a counting
// sort of the (token, slot) pairs by expert), grouped GEMM over the expert segments, and combine. Optional
// backend capabilities (Backend.moeRoute, moeDispatch, groupedMatmul, moeCombine); CPU reference
// src/backend/cpu/moe.ts (bit-identical to the host model's src/model/gate.ts and moe.ts), CUDA kernels
// kernels/moe.cu.
//
// One MoE layer composed from them (T tokens, E experts, k per token, D model dims, F expert dims):
//   s        = gate scores [T, E] f32 (sigmoid or softmax of x·Wgᵀ, as Gate.scores)
//   experts  = moeRoute(s, {bias, groups, topkGroups, k[, forced]})          i32 [T, k], ascending per token
//   w        = moeRouteWeights(s, experts, {normalize, scale})              [T, k] f32, differentiable in s
//   d        = moeDispatch(experts, E)      pairs / rows / tokens i32 [T·k], offsets i32 [E + 1]
//   xs       = indexSelect(x, 0, d.tokens)                                  [T·k, D] sorted by expert
//   g, u     = groupedMatmul(xs, Wgate, d.offsets), groupedMatmul(xs, Wup, d.offsets)     [T·k, F]
//   h        = cast(silu(g.f32)·u.f32, act dtype)
//   ys       = groupedMatmul(h, Wdown, d.offsets)                           [T·k, D]
//   y        = moeCombine(ys, w, d.rows, {shared: sharedExpert(x), dtype})  [T, D]
//
// moeRoute (the reference's Gate, model.md §6): sel = fround(s + bias) (bias only steers the choice); with
//   G > 1 groups of E/G experts, a group's score is the sum of its top-2 sel (with bias) or its max (without),
//   the topkGroups best groups are kept (ties → lower group) and the other groups' sel become −inf; the k
//   best sel win (ties → lower expert id); out lists them ascending. `forced` [T, k] (route replay, Keep
//   Routing) replaces the choice: each row is sorted ascending and must hold distinct ids in [0, E).
//   Validation of forced routes: a host Int32Array is checked here (no device read); a tensor is checked by
//   the backend where it lives: the CPU throws at once, CUDA raises the device error word (read by the
//   eager check after the launch, or at the next synchronize while a graph is being captured).
// moeRouteWeights: w = s[t, experts[t, j]] (a gather, with a gradient to s), divided by its row sum when
//   `normalize` (sigmoid scoring), times `scale` (routed_scaling_factor): the same tensor ops as gate.ts, so
//   the same bits (gate.ts's one-hot product sums one score and zeros, which is exactly the gathered score).
// moeDispatch: position p of the sorted order holds pair pairs[p] = t·k + j, token tokens[p] = t; rows is
//   the inverse (rows[t·k + j] = p); offsets[e] is the first position of expert e, offsets[E] = T·k. Stable:
//   ascending pair index within an expert (moe.ts's loop order). Ids outside [0, E): CPU throws, CUDA
//   raises the device error word (such pairs get no position; the outputs are then unspecified).
// groupedMatmul: out[p, :] = x[p, :]·W[e]ᵀ for p in [offsets[e], offsets[e+1]), W [E, N, K] in nn.Linear
//   layout; f32 accumulation rounded once to x's dtype (F.linear); rows in no segment are 0. f32/bf16 x and
//   W (f64 on the CPU, for gradcheck). Backward (training with replayed routes), on the device with no host
//   read (Backend.groupedMatmulBackward): dX[p] = g[p]·W[e], dW[e] = Σ_{p in segment e} g[p]ᵀ·x[p].
// groupedMatmulFp8: the same over FP8 weights, W[e] = e4m3 codes w8 [E, N, K] with 128×128 block scales
//   wScale [E, ⌈N/128⌉, ⌈K/128⌉] (the checkpoint's weight_scale_inv per expert): x is quantised per row and
//   128 columns (actQuant, ue8m0 scales by default), and each segment is fp8Linear's math
//   (src/tensor/ops/fp8-linear.ts: per 128-wide K block an f32 product promoted into an f32 accumulator with
//   both scales; w8 may be the codes' decoded f32 values where fp8Linear takes them). The CPU is the host
//   applyLinear FP8 loop per expert bit for bit. Backward: dx only,
//   straight through the quantisation with the dequantised weights (FP8 weights are frozen), as fp8Linear.
// moeCombine: y[t] = Σ_j w[t, j]·ys[rows[t·k + j]] accumulated in f32 in slot order (= ascending expert id,
//   the reference's order): acc = fround(acc + fround(ys·w)); then acc = fround(acc + shared[t]); rounded to
//   `dtype` (default ys's). Backward: dw[t, j] = Σ_d g[t, d]·ys[rows[t·k+j], d], dys[rows[t·k+j]] = w[t, j]·g[t],
//   dshared = g.
import { DsvError } from '../../errors.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import type { Backend } from '../backend.js';
import { type DType, isInt } from '../dtype.js';
import { ShapeError, Tensor, fmtShape, fromArray } from '../tensor.js';
import { div, mul, muls } from './elementwise.js';
import { gather, indexAdd, indexSelect, stack } from './indexing.js';
import { actQuant, weightDequant } from './quant.js';
import { fp8WeightDtype } from './fp8-linear.js';
import { sum } from './reduce.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous, narrow, reshape, unsqueeze } from './view.js';

function need<K extends keyof Backend>(b: Backend, op: K): NonNullable<Backend[K]> {
  const f = b[op];
  if (typeof f !== 'function') throw new DsvError(`${op}: the '${b.name}' backend does not implement it`);
  return (f as (...a: unknown[]) => unknown).bind(b) as NonNullable<Backend[K]>;
}

const i32 = (t: Tensor): Tensor => contiguous(t.dtype === 'i32' ? t : cast(t, 'i32'));

function requireIndexTensor(op: string, name: string, t: Tensor): void {
  if (!isInt(t.dtype) || t.dtype === 'bool' || t.dtype === 'u8') throw new DsvError(`${op}: ${name} must be i32 (or i64), got ${t.dtype}`);
}

export interface MoeRouteOptions {
  /** e_score_correction_bias [E] (steers the choice only); null/undefined: none */
  bias?: Tensor | null;
  /** expert groups G (n_group); E must be a multiple. Default 1. */
  groups?: number;
  /** groups kept per token (topk_group); default G */
  topkGroups?: number;
  /** experts per token (num_experts_per_tok) */
  k: number;
  /** replayed routes [T, k] (any order within a row); replaces the selection */
  forced?: Tensor | Int32Array | null;
}

/** Check forced routes held in host memory (the same rule and messages as Gate.route). */
function checkForcedHost(forced: Int32Array, T: number, E: number, k: number): void {
  if (forced.length !== T * k) throw new DsvError(`moeRoute: forced routes hold ${forced.length} ids, expected ${T}·${k}`);
  for (let t = 0; t < T; t++) {
    const row = Array.from(forced.subarray(t * k, (t + 1) * k)).sort((a, b) => a - b);
    for (let j = 0; j < k; j++) {
      const e = row[j]!;
      if (e < 0 || e >= E) throw new DsvError(`moeRoute: forced route of token ${t} has expert id ${e}, expected 0..${E - 1}`);
      if (j > 0 && row[j - 1] === e) throw new DsvError(`moeRoute: forced route of token ${t} repeats expert ${e}`);
    }
  }
}

/** Expert ids i32 [T, k], ascending per token (see the file header). Not differentiable. */
export function moeRoute(scores: Tensor, opts: MoeRouteOptions): Tensor {
  const op = 'moeRoute';
  if (scores.rank !== 2) throw new ShapeError(`${op}: scores must be [T, E], got ${fmtShape(scores.shape)}`);
  const [T, E] = scores.shape as [number, number];
  const G = opts.groups ?? 1;
  const TG = opts.topkGroups ?? G;
  const k = opts.k;
  if (!(Number.isInteger(G) && G >= 1 && E % G === 0)) throw new DsvError(`${op}: ${E} experts cannot be split into ${G} groups`);
  if (!(Number.isInteger(TG) && TG >= 1 && TG <= G)) throw new DsvError(`${op}: topkGroups ${TG} must be in [1, ${G}]`);
  if (!(Number.isInteger(k) && k >= 1 && k <= E)) throw new DsvError(`${op}: k ${k} must be in [1, ${E}]`);
  const bias = opts.bias ?? null;
  if (bias && (bias.rank !== 1 || bias.shape[0] !== E)) throw new ShapeError(`${op}: bias must be [${E}], got ${fmtShape(bias.shape)}`);
  // the host model would form a group score from an element that does not exist
  if (bias && G > 1 && E / G < 2) throw new DsvError(`${op}: groups of ${E / G} expert cannot give a top-2 group score`);
  let forced: Tensor | null = null;
  if (opts.forced instanceof Int32Array) {
    checkForcedHost(opts.forced, T, E, k);
    forced = fromArray(opts.forced, [T, k], { dtype: 'i32', device: scores.device });
  } else if (opts.forced) {
    forced = opts.forced;
    requireIndexTensor(op, 'forced', forced);
    if (forced.rank !== 2 || forced.shape[0] !== T || forced.shape[1] !== k) throw new ShapeError(`${op}: forced must be [${T}, ${k}], got ${fmtShape(forced.shape)}`);
  }
  sameDevice(op, ...[scores, bias, forced].filter((t): t is Tensor => t !== null));
  return noGrad(() => {
    const out = alloc(scores.backend, [T, k], 'i32');
    if (T > 0) {
      need(scores.backend, 'moeRoute')(out, contiguous(scores.dtype === 'f32' ? scores : cast(scores, 'f32')),
        bias ? contiguous(cast(bias, 'f32')) : null, forced ? i32(forced) : null, G, TG);
    }
    return out;
  });
}

/** w = s[experts] (/ Σ when normalize) · scale, [T, k] in s's dtype, differentiable in s. */
export function moeRouteWeights(scores: Tensor, experts: Tensor, opts: { normalize: boolean; scale: number }): Tensor {
  let w = gather(scores, 1, experts);
  if (opts.normalize) w = div(w, sum(w, -1, true));
  return muls(w, opts.scale);
}

export interface MoeDispatch {
  /** i32 [T·k]: the pair t·k + j at each sorted position */
  pairs: Tensor;
  /** i32 [T·k]: the sorted position of pair t·k + j (the inverse of pairs) */
  rows: Tensor;
  /** i32 [T·k]: the token of each sorted position (gather x with it) */
  tokens: Tensor;
  /** i32 [E + 1]: first sorted position of each expert, then T·k */
  offsets: Tensor;
}

/** Sort the (token, slot) pairs of experts [T, k] by expert id, stably (see the file header). */
export function moeDispatch(experts: Tensor, nExperts: number): MoeDispatch {
  const op = 'moeDispatch';
  requireIndexTensor(op, 'experts', experts);
  if (experts.rank !== 2) throw new ShapeError(`${op}: experts must be [T, k], got ${fmtShape(experts.shape)}`);
  if (!(Number.isInteger(nExperts) && nExperts >= 1)) throw new DsvError(`${op}: the expert count must be a positive integer, got ${nExperts}`);
  const n = experts.numel;
  return noGrad(() => {
    const b = experts.backend;
    const r: MoeDispatch = { pairs: alloc(b, [n], 'i32'), rows: alloc(b, [n], 'i32'), tokens: alloc(b, [n], 'i32'), offsets: alloc(b, [nExperts + 1], 'i32') };
    if (n === 0) b.fill(r.offsets, 0);
    else need(b, 'moeDispatch')(r.pairs, r.rows, r.tokens, r.offsets, i32(experts));
    return r;
  });
}

const GEMM_FLOAT = new Set<DType>(['f32', 'bf16', 'f64']);

/** x [M, K] · W[e]ᵀ per expert segment of offsets [E + 1] → [M, N] in x's dtype (see the file header). */
export function groupedMatmul(x: Tensor, w: Tensor, offsets: Tensor): Tensor {
  const op = 'groupedMatmul';
  sameDevice(op, x, w, offsets);
  if (x.rank !== 2) throw new ShapeError(`${op}: x must be [M, K], got ${fmtShape(x.shape)}`);
  if (w.rank !== 3 || w.shape[2] !== x.shape[1]) throw new ShapeError(`${op}: w must be [E, N, ${x.shape[1]}] for x ${fmtShape(x.shape)}, got ${fmtShape(w.shape)}`);
  if (!GEMM_FLOAT.has(x.dtype) || !GEMM_FLOAT.has(w.dtype)) throw new DsvError(`${op}: x and w must be f32 or bf16 (f64 on the CPU), got ${x.dtype} and ${w.dtype}`);
  requireIndexTensor(op, 'offsets', offsets);
  const [M] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number, number];
  if (offsets.rank !== 1 || offsets.shape[0] !== E + 1) throw new ShapeError(`${op}: offsets must be [${E + 1}], got ${fmtShape(offsets.shape)}`);
  const off = noGrad(() => i32(offsets));
  const out = noGrad(() => {
    const o = alloc(x.backend, [M, N], x.dtype);
    if (o.numel > 0) need(x.backend, 'groupedMatmul')(o, contiguous(x), contiguous(w), off);
    return o;
  });
  if (!needsGrad(x, w)) return out;
  return record(out, op, [x, w], (g) => groupedMatmulBackward(g, x, w, off, x.requiresGrad, w.requiresGrad));
}

/**
 * dx [M, K] = g·W[e] and dw [E, N, K] = g_segᵀ·x_seg per segment (Backend.groupedMatmulBackward: no host
 * read of the offsets). dx in x's dtype, dw in w's; the products accumulate in f32 (f64 for f64 tensors).
 */
function groupedMatmulBackward(g: Tensor, x: Tensor, w: Tensor, offsets: Tensor, wantX: boolean, wantW: boolean): [Tensor | null, Tensor | null] {
  const [M, K] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number, number];
  const dx = wantX ? alloc(x.backend, [M, K], x.dtype) : null;
  const dw = wantW ? alloc(x.backend, [E, N, K], w.dtype) : null;
  if ((dx && dx.numel) || (dw && dw.numel)) {
    need(x.backend, 'groupedMatmulBackward')(dx && dx.numel ? dx : null, dw && dw.numel ? dw : null, contiguous(cast(g, x.dtype)), contiguous(x), contiguous(w), offsets);
  }
  return [dx, dw];
}

const FP8_BLOCK = 128;

/**
 * x [M, K] (f32/bf16) · W[e]ᵀ per segment for FP8 weights w8 f8e4m3 [E, N, K] with block scales wScale
 * [E, ⌈N/128⌉, ⌈K/128⌉] → [M, N] in outDtype (default x's). See the file header.
 */
export function groupedMatmulFp8(x: Tensor, w8: Tensor, wScale: Tensor, offsets: Tensor, opts: { ue8m0?: boolean; outDtype?: DType } = {}): Tensor {
  const op = 'groupedMatmulFp8';
  sameDevice(op, x, w8, wScale, offsets);
  if (x.rank !== 2) throw new ShapeError(`${op}: x must be [M, K], got ${fmtShape(x.shape)}`);
  if (x.dtype !== 'f32' && x.dtype !== 'bf16') throw new DsvError(`${op}: x must be f32 or bf16, got ${x.dtype}`);
  fp8WeightDtype(op, w8);
  const [M, K] = x.shape as [number, number];
  if (w8.rank !== 3 || w8.shape[2] !== K) throw new ShapeError(`${op}: w8 must be [E, N, ${K}] for x ${fmtShape(x.shape)}, got ${fmtShape(w8.shape)}`);
  const [E, N] = w8.shape as [number, number, number];
  const nbN = Math.ceil(N / FP8_BLOCK);
  const nbK = Math.ceil(K / FP8_BLOCK);
  if (wScale.rank !== 3 || wScale.shape[0] !== E || wScale.shape[1] !== nbN || wScale.shape[2] !== nbK) {
    throw new ShapeError(`${op}: wScale must be [${E}, ${nbN}, ${nbK}] (one per 128×128 tile of each expert), got ${fmtShape(wScale.shape)}`);
  }
  requireIndexTensor(op, 'offsets', offsets);
  if (offsets.rank !== 1 || offsets.shape[0] !== E + 1) throw new ShapeError(`${op}: offsets must be [${E + 1}], got ${fmtShape(offsets.shape)}`);
  const outDtype = opts.outDtype ?? x.dtype;
  if (outDtype !== 'f32' && outDtype !== 'bf16') throw new DsvError(`${op}: outDtype must be f32 or bf16, got ${outDtype}`);
  const off = noGrad(() => i32(offsets));
  const sw = noGrad(() => contiguous(cast(wScale, 'f32')));
  const out = noGrad(() => {
    const o = alloc(x.backend, [M, N], outDtype);
    if (o.numel === 0) return o;
    if (K === 0) {
      o.backend.fill(o, 0);
      return o;
    }
    const { q, s } = actQuant(contiguous(x), FP8_BLOCK, { ue8m0: opts.ue8m0 ?? true });
    need(x.backend, 'groupedMatmulFp8')(o, contiguous(q), contiguous(s), contiguous(w8), sw, off);
    return o;
  });
  if (!needsGrad(x)) return out;
  return record(out, op, [x], (g) => {
    const wd = stack(Array.from({ length: E }, (_, e) => weightDequant(reshape(narrow(w8, 0, e, 1), [N, K]), reshape(narrow(sw, 0, e, 1), [nbN, nbK]))), 0);
    return [groupedMatmulBackward(g, x, wd, off, true, false)[0]];
  });
}

export interface MoeCombineOptions {
  /** the shared expert's output [T, D], added after the routed experts */
  shared?: Tensor | null;
  /** output dtype; default ySlots's */
  dtype?: DType;
}

/** y [T, D] = Σ_j w[t, j]·ySlots[rows[t·k + j]] (+ shared), f32 accumulation (see the file header). */
export function moeCombine(ySlots: Tensor, weights: Tensor, rows: Tensor, opts: MoeCombineOptions = {}): Tensor {
  const op = 'moeCombine';
  const shared = opts.shared ?? null;
  sameDevice(op, ...[ySlots, weights, rows, shared].filter((t): t is Tensor => t !== null));
  if (weights.rank !== 2) throw new ShapeError(`${op}: weights must be [T, k], got ${fmtShape(weights.shape)}`);
  const [T, k] = weights.shape as [number, number];
  if (ySlots.rank !== 2 || ySlots.shape[0] !== T * k) throw new ShapeError(`${op}: ySlots must be [${T * k}, D] for weights ${fmtShape(weights.shape)}, got ${fmtShape(ySlots.shape)}`);
  const D = ySlots.shape[1]!;
  requireIndexTensor(op, 'rows', rows);
  if (rows.rank !== 1 || rows.shape[0] !== T * k) throw new ShapeError(`${op}: rows must be [${T * k}], got ${fmtShape(rows.shape)}`);
  if (shared && (shared.rank !== 2 || shared.shape[0] !== T || shared.shape[1] !== D)) throw new ShapeError(`${op}: shared must be [${T}, ${D}], got ${fmtShape(shared.shape)}`);
  for (const [n, t] of [['ySlots', ySlots], ['weights', weights], ['shared', shared]] as const) {
    if (t && !GEMM_FLOAT.has(t.dtype)) throw new DsvError(`${op}: ${n} must be f32 or bf16 (f64 on the CPU), got ${t.dtype}`);
  }
  const dtype = opts.dtype ?? ySlots.dtype;
  const rw = noGrad(() => i32(rows));
  const out = noGrad(() => {
    const o = alloc(ySlots.backend, [T, D], dtype);
    // weights reach the backend as f32 (f64 stays f64 for gradcheck): the accumulation multiplies f32 values
    const wf = weights.dtype === 'f64' ? weights : cast(weights, 'f32');
    if (o.numel > 0) need(ySlots.backend, 'moeCombine')(o, contiguous(ySlots), contiguous(wf), rw, shared ? contiguous(shared) : null);
    return o;
  });
  return record(out, op, [ySlots, weights, shared], (g) => {
    const ct: DType = [ySlots.dtype, weights.dtype, g.dtype].includes('f64') ? 'f64' : 'f32';
    const gc = cast(g, ct);
    const ys = cast(ySlots, ct);
    const wc = cast(weights, ct);
    // ys in pair order [T, k, D]: dw = Σ_d g·ys
    const dw = weights.requiresGrad ? cast(sum(mul(reshape(indexSelect(ys, 0, rw), [T, k, D]), unsqueeze(gc, 1)), -1), weights.dtype) : null;
    let dys: Tensor | null = null;
    if (ySlots.requiresGrad) {
      const byPair = reshape(mul(unsqueeze(gc, 1), unsqueeze(wc, -1)), [T * k, D]);
      const z = alloc(ySlots.backend, [T * k, D], ct);
      if (z.numel) z.backend.fill(z, 0);
      dys = cast(indexAdd(z, 0, rw, byPair), ySlots.dtype);
    }
    return [dys, dw, shared?.requiresGrad ? cast(g, shared.dtype) : null];
  });
}
