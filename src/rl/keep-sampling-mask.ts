// Keep Sampling Mask (DeepSeek-V3.2 §3.1, ../shared/docs/rl.md §1.6).
//
// Why: top-p / top-k / min-p truncation keeps the sampler away from extremely unlikely tokens, but it makes
// the action space of the sampling policy π_old (the truncated, renormalised distribution) differ from the
// trainer's π_θ (the full softmax). The importance ratio r = π_θ/π_old then compares distributions on
// different supports, which "violates the principles of importance sampling": even at θ = θ_old the ratio of
// a kept token is the kept mass Z = Σ_{v∈K} p_v < 1, not 1 (rl.md §6 inv. 6; TRL #6789 measured 0.896).
// Fix: record the kept set K_t at sampling and apply it to π_θ (and to a recomputed π_old) in training:
//
//   log π^K(v | ·) = z_v/τ − log Σ_{u∈K_t} exp(z_u/τ)   for v ∈ K_t,   −∞ otherwise     (τ = sampling temperature)
//
// so both policies live on the same action subspace and r ≡ 1 at θ = θ_old. The gradient is the masked
// softmax's: ∂ log π^K(y)/∂z_v = (1[v = y] − π^K(v))/τ for v ∈ K, and exactly 0 for v ∉ K.
//
// The mask (what a sampler records; the same rule as vLLM's --return-sampling-mask, CSR form):
//   p = softmax(z/τ) in f64 from the f32 logits. Order the vocabulary by p descending, ties → lower token
//   id (a total, deterministic order). Every filter keeps a PREFIX of that order, so the kept set is the
//   shortest of the prefixes, applied in vLLM V1's order (temperature → min-p → top-k → top-p):
//     min-p  keeps v iff p_v ≥ min_p · p_max                       (scale-free: renormalising changes nothing)
//     top-k  keeps the k first of the order (ties at the k-th value → lower ids win)
//     top-p  over the candidates left by min-p and top-k, RENORMALISED (vLLM's apply_top_k_top_p softmaxes
//            the top-k-masked logits before its cumulative sum), keeps the smallest prefix whose cumulative
//            mass ≥ top_p (the renormaliser, the candidates' total, summed in id order; the prefix's
//            mass in the order); equal probabilities at the boundary are cut by the id order, so lower ids stay.
//   We chose vLLM's order because the engine issue names vLLM's mask as the contract. SGLang's sampler differs
//   only in computing top-p on the un-renormalised probabilities (top-k and min-p masks are the same).
//   Disabled values: top_p ≥ 1, top_k ≤ 0 or ≥ V, min_p ≤ 0. At least the argmax is always kept.
//   CSR: indptr i32 [N + 1] (indptr[0] = 0, non-decreasing), indices i32 [nnz], row i's kept ids are
//   indices[indptr[i] .. indptr[i+1]), ascending here (any order of distinct ids is accepted as input).
//
// [interp] Whether π_ref in the KL term is masked too is not disclosed; these functions take any logits, so
// the caller decides (the trainer masks π_θ and π_old; π_ref is its choice).
import { DsvError } from '../errors.js';
import { Tensor, fromArray, fmtShape } from '../tensor/tensor.js';
import { isFloat, isInt } from '../tensor/dtype.js';
import { div, where } from '../tensor/ops/elementwise.js';
import { gather } from '../tensor/ops/indexing.js';
import { logSoftmax } from '../tensor/ops/softmax.js';
import { cast, reshape } from '../tensor/ops/view.js';

export interface SamplingParams {
  /** τ > 0 (greedy decoding is not a sampling policy; RL samples) */
  temperature: number;
  /** nucleus mass in (0, 1]; ≥ 1 disables (default 1) */
  topP?: number;
  /** k ≥ 1; ≤ 0 or ≥ V disables (default 0) */
  topK?: number;
  /** in [0, 1]; 0 disables (default 0) */
  minP?: number;
}

/** Kept token ids per row in CSR form (vLLM --return-sampling-mask). */
export interface SamplingMask {
  /** i32 [N + 1] */
  indptr: Int32Array;
  /** i32 [nnz] */
  indices: Int32Array;
}

function checkParams(p: SamplingParams): Required<SamplingParams> {
  const temperature = p.temperature;
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new DsvError(`temperature must be a finite number > 0, got ${temperature}`);
  const topP = p.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new DsvError(`topP must be in (0, 1], got ${topP}`);
  const topK = p.topK ?? 0;
  if (!Number.isInteger(topK)) throw new DsvError(`topK must be an integer (≤ 0 disables), got ${topK}`);
  const minP = p.minP ?? 0;
  if (!(minP >= 0 && minP <= 1)) throw new DsvError(`minP must be in [0, 1], got ${minP}`);
  return { temperature, topP, topK, minP };
}

function checkLogits2d(name: string, logits: Tensor): [number, number] {
  if (!isFloat(logits.dtype)) throw new DsvError(`${name}: logits must be a float tensor, got ${logits.dtype}`);
  if (logits.rank !== 2) throw new DsvError(`${name}: logits must be [N, V], got ${fmtShape(logits.shape)}`);
  return logits.shape as [number, number];
}

/** Kept ids of one row of f32 logits (ascending), by the rule in the file header. */
export function keptTokens(row: ArrayLike<number>, params: SamplingParams): Int32Array {
  const { temperature, topP, topK, minP } = checkParams(params);
  const V = row.length;
  if (V === 0) throw new DsvError('keptTokens: the logits row is empty');
  let zmax = -Infinity;
  for (let v = 0; v < V; v++) {
    const z = row[v]!;
    if (Number.isNaN(z)) throw new DsvError(`keptTokens: logit of token ${v} is NaN`);
    zmax = Math.max(zmax, z / temperature);
  }
  if (zmax === -Infinity) throw new DsvError('keptTokens: every logit is −∞');
  const e = new Float64Array(V);
  for (let v = 0; v < V; v++) e[v] = Math.exp(row[v]! / temperature - zmax);
  const order = Array.from({ length: V }, (_, v) => v).sort((a, b) => e[b]! - e[a]! || a - b);
  // min-p then top-k: both prefixes of `order`
  let n = V;
  if (minP > 0) {
    const thr = minP * e[order[0]!]!;
    let m = 0;
    while (m < V && e[order[m]!]! >= thr) m++;
    n = Math.min(n, m);
  }
  if (topK > 0 && topK < V) n = Math.min(n, topK);
  // top-p over the renormalised candidates
  if (topP < 1) {
    // the candidates' total summed in id order (as the engine's sampler sums it), the prefix in its order
    const isCand = new Uint8Array(V);
    for (let i = 0; i < n; i++) isCand[order[i]!] = 1;
    let cand = 0;
    for (let v = 0; v < V; v++) if (isCand[v]) cand += e[v]!;
    let cum = 0;
    let m = 0;
    while (m < n) {
      cum += e[order[m]!]!;
      m++;
      if (cum / cand >= topP) break;
    }
    n = m;
  }
  n = Math.max(n, 1);
  return Int32Array.from(order.slice(0, n)).sort();
}

/** The sampler's mask for logits [N, V] (any float dtype, read as f32 values), CSR. */
export function samplingMask(logits: Tensor, params: SamplingParams): SamplingMask {
  const [N, V] = checkLogits2d('samplingMask', logits);
  checkParams(params);
  const x = logits.toFloat32();
  const rows: Int32Array[] = [];
  const indptr = new Int32Array(N + 1);
  for (let i = 0; i < N; i++) {
    const k = keptTokens(x.subarray(i * V, (i + 1) * V), params);
    rows.push(k);
    indptr[i + 1] = indptr[i]! + k.length;
  }
  const indices = new Int32Array(indptr[N]!);
  rows.forEach((r, i) => indices.set(r, indptr[i]!));
  return { indptr, indices };
}

/**
 * maskedTokenLogProbs gathers the kept logits when the longest kept set is at most V / GATHER_RATIO, else
 * masks the whole vocabulary: past that the gathered path's i32 ids and f32 copy ([N, kmax], 8 bytes an
 * entry) outweigh the dense path's byte mask and in-place passes.
 */
export const GATHER_RATIO = 8;

/** Validate a CSR mask for N rows over a vocabulary of V (clear errors naming the field). */
export function checkSamplingMask(mask: SamplingMask, N: number, V: number, name = 'mask'): void {
  const { indptr, indices } = mask;
  if (!(indptr instanceof Int32Array) || !(indices instanceof Int32Array)) throw new DsvError(`${name}: indptr and indices must be Int32Array`);
  if (indptr.length !== N + 1) throw new DsvError(`${name}.indptr has ${indptr.length} entries, expected N + 1 = ${N + 1}`);
  if (indptr[0] !== 0) throw new DsvError(`${name}.indptr[0] must be 0, got ${indptr[0]}`);
  if (indptr[N] !== indices.length) throw new DsvError(`${name}.indptr[${N}] = ${indptr[N]} must equal the number of indices ${indices.length}`);
  const seen = new Int32Array(V).fill(-1);
  for (let i = 0; i < N; i++) {
    const a = indptr[i]!;
    const b = indptr[i + 1]!;
    if (b < a) throw new DsvError(`${name}.indptr decreases at row ${i} (${a} → ${b}); it must be non-decreasing`);
    for (let j = a; j < b; j++) {
      const v = indices[j]!;
      if (!(v >= 0 && v < V)) throw new DsvError(`${name}.indices: row ${i} keeps token ${v}, expected an id in [0, ${V})`);
      if (seen[v] === i) throw new DsvError(`${name}.indices: row ${i} keeps token ${v} twice`);
      seen[v] = i;
    }
  }
}

/** CSR → dense bool mask [N, V] (true = kept). */
export function maskToDense(mask: SamplingMask, N: number, V: number, device?: string): Tensor {
  checkSamplingMask(mask, N, V);
  return fromArray(denseKeep(mask, N, V), [N, V], { dtype: 'bool', device });
}

/** The dense kept bytes of a checked mask; rows where `fullRow(i)` holds keep every id (a memset). */
function denseKeep(mask: SamplingMask, N: number, V: number, fullRow?: (i: number) => boolean): Uint8Array {
  const d = new Uint8Array(N * V);
  for (let i = 0; i < N; i++) {
    if (fullRow?.(i)) d.fill(1, i * V, (i + 1) * V);
    else for (let j = mask.indptr[i]!; j < mask.indptr[i + 1]!; j++) d[i * V + mask.indices[j]!] = 1;
  }
  return d;
}

/** log-softmax of logits/τ over the kept entries of `keep` (bool [N, V]), −∞ elsewhere; logits' shape. */
function logSoftmaxWhere(logits: Tensor, keep: Tensor, temperature: number): Tensor {
  const V = logits.shape[logits.rank - 1]!;
  const z = reshape(div(cast(logits, logits.dtype === 'f64' ? 'f64' : 'f32'), temperature), [logits.numel / V, V]);
  return reshape(logSoftmax(where(keep, z, -Infinity), -1), logits.shape);
}

/** Dense bool/integer mask [N, V] (non-zero = kept) → CSR, ids ascending. */
export function denseToMask(dense: Tensor): SamplingMask {
  if (!isInt(dense.dtype) || dense.rank !== 2) throw new DsvError(`denseToMask: dense must be a bool/integer [N, V] tensor, got ${dense.dtype} ${fmtShape(dense.shape)}`);
  const [N, V] = dense.shape as [number, number];
  const h = dense.toFloat64();
  const indptr = new Int32Array(N + 1);
  const idx: number[] = [];
  for (let i = 0; i < N; i++) {
    for (let v = 0; v < V; v++) if (h[i * V + v] !== 0) idx.push(v);
    indptr[i + 1] = idx.length;
  }
  return { indptr, indices: Int32Array.from(idx) };
}

/**
 * log π^K over the vocabulary: log-softmax of logits/τ over each row's kept set, −∞ elsewhere.
 * logits [N, V] (or [B, T, V] with mask rows in row-major order b·T + t); the result has logits' shape, in
 * f32 (f64 for f64 logits), differentiable w.r.t. the logits (zero gradient outside the mask).
 * Rows with an empty kept set (padding) are all −∞; use maskedTokenLogProbs with `valid` for those.
 */
export function maskedLogSoftmax(logits: Tensor, mask: SamplingMask, temperature: number): Tensor {
  if (!isFloat(logits.dtype) || logits.rank < 2) throw new DsvError(`maskedLogSoftmax: logits must be a float [..., V] tensor, got ${logits.dtype} ${fmtShape(logits.shape)}`);
  checkParams({ temperature });
  const V = logits.shape[logits.rank - 1]!;
  return logSoftmaxWhere(logits, maskToDense(mask, logits.numel / V, V, logits.device), temperature);
}

/**
 * The sampled tokens' masked log-probs, log π^K(y_t), for logits [B, T, V] (or [N, V]) and integer tokens
 * [B, T] (or [N]); mask rows in row-major order. `valid` (bool/integer [B, T], non-zero = a trained token)
 * marks padding: invalid positions give 0 with no gradient and may have empty mask rows. Each valid token
 * must be in its own kept set (a sampler cannot sample outside it) — violated, it is an error, since the
 * log-prob would be −∞. Returns [B, T] (or [N]), differentiable w.r.t. the logits.
 */
export function maskedTokenLogProbs(logits: Tensor, tokens: Tensor, mask: SamplingMask, temperature: number, valid?: Tensor): Tensor {
  const op = 'maskedTokenLogProbs';
  if (!isFloat(logits.dtype) || logits.rank < 2) throw new DsvError(`${op}: logits must be a float [..., V] tensor, got ${logits.dtype} ${fmtShape(logits.shape)}`);
  if (!isInt(tokens.dtype) || tokens.dtype === 'bool' || tokens.rank !== logits.rank - 1 || tokens.shape.some((d, i) => d !== logits.shape[i])) {
    throw new DsvError(`${op}: tokens must be integer ${fmtShape(logits.shape.slice(0, -1))} (logits' shape without V), got ${tokens.dtype} ${fmtShape(tokens.shape)}`);
  }
  if (valid && (valid.rank !== tokens.rank || valid.shape.some((d, i) => d !== tokens.shape[i]))) {
    throw new DsvError(`${op}: valid must be ${fmtShape(tokens.shape)} like tokens, got ${fmtShape(valid.shape)}`);
  }
  checkParams({ temperature });
  const V = logits.shape[logits.rank - 1]!;
  const N = tokens.numel;
  checkSamplingMask(mask, N, V);
  const tok = tokens.toFloat64();
  const ok = valid ? valid.toFloat64() : null;
  const padding = (i: number): boolean => ok !== null && ok[i] === 0;
  // col[i]: where y_i sits in row i's kept ids; kmax: the longest kept set of a trained row
  const col = new Int32Array(N);
  let kmax = 1;
  for (let i = 0; i < N; i++) {
    if (padding(i)) continue;
    const row = mask.indices.subarray(mask.indptr[i]!, mask.indptr[i + 1]!);
    const t = tok[i]!;
    if (!(t >= 0 && t < V)) throw new DsvError(`${op}: token ${t} at row ${i} is not an id in [0, ${V})`);
    col[i] = row.indexOf(t);
    if (col[i]! < 0) throw new DsvError(`${op}: token ${t} at row ${i} is outside its sampling mask (${row.length} kept ids); the sampler cannot have drawn it`);
    kmax = Math.max(kmax, row.length);
  }
  const lp2 = reshape(logits, [N, V]);
  const dev = logits.device;
  // Two exact evaluations of the same log π^K(y); they differ only in f32 summation order.
  //  - gathered (kept sets much smaller than V, e.g. top-k 20 of 8192): the kept logits of each row,
  //    [N, kmax] by index (padding columns repeat an id and are −∞), log-softmaxed; y is column col[i]. Cost
  //    and memory O(N·kmax), no [N, V] mask; the gradient scatters back into the kept logits only.
  //  - dense (top-p alone can keep most of V): a bool [N, V] mask, log-softmax over the vocabulary.
  //    Padding rows keep every id (no −∞ rows, so no NaN anywhere in the graph) and are zeroed at the end;
  //    the dense mask is built directly, a memset per padding row.
  // On the GPU, the dense path's host-built [N, V] mask was most of a training step: runs with the mask
  // trained in 22–30 s a step against 4–9 s without it (docs/rl.md, 2026-12-05); bench/keep-sampling-mask.ts
  // times both paths against the unmasked log-probs
  let picked: Tensor;
  if (kmax * GATHER_RATIO <= V) {
    const ids = new Int32Array(N * kmax);
    const kept = new Uint8Array(N * kmax);
    for (let i = 0; i < N; i++) {
      if (padding(i)) {
        kept[i * kmax] = 1; // one live column (id 0): a finite row, zeroed below
        continue;
      }
      const a = mask.indptr[i]!;
      const n = mask.indptr[i + 1]! - a;
      for (let j = 0; j < kmax; j++) ids[i * kmax + j] = mask.indices[a + Math.min(j, n - 1)]!;
      kept.fill(1, i * kmax, i * kmax + n);
    }
    const z = gather(lp2, 1, fromArray(ids, [N, kmax], { dtype: 'i32', device: dev }));
    const lp = logSoftmaxWhere(z, fromArray(kept, [N, kmax], { dtype: 'bool', device: dev }), temperature);
    picked = reshape(gather(lp, 1, fromArray(col, [N, 1], { dtype: 'i32', device: dev })), [N]);
  } else {
    const keep = fromArray(denseKeep(mask, N, V, padding), [N, V], { dtype: 'bool', device: dev });
    const lp = logSoftmaxWhere(lp2, keep, temperature);
    const safeTok = Float64Array.from(tok, (t, i) => (padding(i) ? 0 : t));
    picked = reshape(gather(lp, 1, fromArray(safeTok, [N, 1], { dtype: 'i32', device: dev })), [N]);
  }
  const out = ok ? where(fromArray(Uint8Array.from(ok, (v) => (v !== 0 ? 1 : 0)), [N], { dtype: 'bool', device: dev }), picked, 0) : picked;
  return reshape(out, tokens.shape);
}
