// Token sampling from one row of f32 logits z, with what RL needs recorded (logprob, top logprobs, mask).
//
// Filter order (the same rule as src/rl/keep-sampling-mask.ts, vLLM V1's order, so the trainer's
// independent recomputation of the mask from the same logits gives the same set):
//   1. temperature  p = softmax(z/τ), computed in f64 as e_v = exp(z_v/τ − max z/τ)
//   2. min-p        keep v iff e_v ≥ min_p · e_max (= min_p: e_max = 1); scale-free, so the order
//                   against top-k/renormalisation does not matter
//   3. top-k        keep the k most likely of the survivors; ties at the k-th value → lower ids win
//   4. top-p        over the survivors RENORMALISED, keep the shortest prefix (by p descending, ties →
//                   lower id) whose mass ≥ top_p; the boundary tie is cut by id
// Each filter keeps a prefix of the order (p descending, id ascending), so the kept set K is the
// shortest prefix; the argmax is always kept. Disabled: top_p ≥ 1, top_k ≤ 0 or ≥ V, min_p ≤ 0.
// The token is drawn from p restricted to K and renormalised, with one uniform u ∈ [0, 1) of the
// sequence's own seeded RNG per token: the token is the first of K (in the order above, or id order
// when no filter is active) whose cumulative mass exceeds u·Σ_K p. One draw per token, from a per-
// sequence stream, is what makes a seeded request independent of the batch it ran in.
// Temperature 0 is greedy: K = {argmax}, ties → lowest id, no draw.
//
// logprob = log-softmax(z/τ) at the token over the FULL vocabulary (before filtering), as the contract
// says; at τ = 0 the distribution is a point mass, so the logprobs are those of τ = 1 (the model's own).
// The sampling mask is K as ascending token ids; packMasks lays a list of them out in CSR.
import { DsvError } from '../errors.js';
import type { Rng } from '../tensor/random.js';

export interface FilterParams {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
}

/** The kept set K with its renormalised probabilities, in sampling order. */
export interface Distribution {
  ids: Int32Array;
  probs: Float64Array;
}

export interface Sampled {
  token: number;
  logprob: number;
  topLogprobs?: [number, number][];
  /** K, ascending ids */
  mask?: Int32Array;
}

export class SamplerError extends DsvError {}

function scaled(row: ArrayLike<number>, tau: number): { e: Float64Array; zmax: number; sum: number } {
  const V = row.length;
  let zmax = -Infinity;
  for (let v = 0; v < V; v++) {
    const z = row[v]!;
    if (Number.isNaN(z)) throw new SamplerError(`sampler: logit of token ${v} is NaN`);
    const s = z / tau;
    if (s > zmax) zmax = s;
  }
  if (zmax === -Infinity) throw new SamplerError('sampler: every logit is −∞');
  const e = new Float64Array(V);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += e[v] = Math.exp(row[v]! / tau - zmax);
  return { e, zmax, sum };
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
  return best;
}

/** K and its renormalised probabilities for one logits row (see the header for the rule). */
export function distribution(row: ArrayLike<number>, params: FilterParams): Distribution {
  const V = row.length;
  if (V === 0) throw new SamplerError('sampler: the logits row is empty');
  if (params.temperature === 0) return { ids: Int32Array.of(argmax(row)), probs: Float64Array.of(1) };
  const { e } = scaled(row, params.temperature);
  const topK = params.topK > 0 && params.topK < V ? params.topK : 0;
  const topP = params.topP < 1 ? params.topP : 1;
  const minP = params.minP > 0 ? params.minP : 0;
  if (!topK && topP === 1 && !minP) {
    let s = 0;
    for (let v = 0; v < V; v++) s += e[v]!;
    return { ids: Int32Array.from({ length: V }, (_, v) => v), probs: e.map((x) => x / s) };
  }
  // Survivors of min-p; their values sorted descending (natively) give every prefix length and the
  // boundary value, then the kept ids are those above the boundary plus the lowest-id ties at it.
  let cands = 0;
  for (let v = 0; v < V; v++) if (e[v]! >= minP) cands++;
  const vals = new Float64Array(cands);
  for (let v = 0, j = 0; v < V; v++) if (e[v]! >= minP) vals[j++] = e[v]!;
  vals.sort().reverse();
  let n = topK ? Math.min(cands, topK) : cands;
  if (topP < 1) {
    // summed in the order (descending), as the reference rule does, so the boundary matches bit for bit
    let cand = 0;
    for (let i = 0; i < n; i++) cand += vals[i]!;
    let cum = 0;
    let m = 0;
    while (m < n) {
      cum += vals[m]!;
      m++;
      if (cum / cand >= topP) break;
    }
    n = m;
  }
  n = Math.max(n, 1);
  const edge = vals[n - 1]!;
  let above = 0;
  while (above < n && vals[above]! > edge) above++;
  const ids = new Int32Array(n);
  let j = 0;
  let ties = n - above;
  for (let v = 0; v < V; v++) {
    if (e[v]! > edge) ids[j++] = v;
    else if (e[v] === edge && ties > 0) {
      ids[j++] = v;
      ties--;
    }
  }
  // sampling order: p descending, ties → lower id
  const order = Array.from(ids).sort((a, b) => e[b]! - e[a]! || a - b);
  let s = 0;
  for (const v of order) s += e[v]!;
  return { ids: Int32Array.from(order), probs: Float64Array.from(order, (v) => e[v]! / s) };
}

/** Index into dist drawn with uniform u ∈ [0, 1): first whose cumulative mass exceeds u. */
export function drawFrom(dist: Distribution, u: number): number {
  let cum = 0;
  for (let i = 0; i < dist.ids.length; i++) {
    cum += dist.probs[i]!;
    if (cum > u) return dist.ids[i]!;
  }
  // u within rounding of 1: the last id with positive mass
  for (let i = dist.ids.length - 1; i >= 0; i--) if (dist.probs[i]! > 0) return dist.ids[i]!;
  return dist.ids[0]!;
}

/** log-softmax(z/τ) over the full vocabulary at `token`, and the `top` most likely [id, logprob] (τ = 0 → 1). */
export function logprobs(row: ArrayLike<number>, temperature: number, token: number, top: number): { logprob: number; topLogprobs?: [number, number][] } {
  const tau = temperature === 0 ? 1 : temperature;
  const { zmax, sum } = scaled(row, tau);
  const logZ = zmax + Math.log(sum);
  const lp = (v: number): number => row[v]! / tau - logZ;
  if (top <= 0) return { logprob: lp(token) };
  // a small sorted buffer of the best `top` ids (descending value, ties → lower id)
  const best: number[] = [];
  for (let v = 0; v < row.length; v++) {
    const z = row[v]!;
    if (best.length === top && !(z > row[best[top - 1]!]!)) continue;
    let i = best.length;
    while (i > 0 && z > row[best[i - 1]!]!) i--;
    best.splice(i, 0, v);
    if (best.length > top) best.pop();
  }
  return { logprob: lp(token), topLogprobs: best.map((v) => [v, lp(v)]) };
}

/** Sample one token from a logits row; `rng` is needed unless temperature is 0. */
export function sampleRow(row: ArrayLike<number>, params: FilterParams, rng: Rng | null, want: { logprobs: number; mask: boolean }): Sampled {
  const dist = distribution(row, params);
  let token: number;
  if (params.temperature === 0) token = dist.ids[0]!;
  else {
    if (!rng) throw new SamplerError('sampler: a random number generator is needed at temperature > 0');
    token = drawFrom(dist, rng.uniform());
  }
  return { token, ...logprobs(row, params.temperature, token, want.logprobs), ...(want.mask ? { mask: Int32Array.from(dist.ids).sort() } : {}) };
}

/** Masks (ascending id lists) in CSR: row i is indices[indptr[i] .. indptr[i+1]). */
export function packMasks(masks: readonly ArrayLike<number>[]): { indptr: Int32Array; indices: Int32Array } {
  const indptr = new Int32Array(masks.length + 1);
  masks.forEach((m, i) => (indptr[i + 1] = indptr[i]! + m.length));
  const indices = new Int32Array(indptr[masks.length]!);
  masks.forEach((m, i) => indices.set(m, indptr[i]!));
  return { indptr, indices };
}

/** Check a parameter set: the field names are SamplingParams'. */
export function checkFilterParams(p: FilterParams, fail: (msg: string, field: string) => Error): void {
  if (!(Number.isFinite(p.temperature) && p.temperature >= 0)) throw fail(`temperature must be a finite number ≥ 0 (0 = greedy), got ${p.temperature}`, 'temperature');
  if (!(p.topP > 0 && p.topP <= 1)) throw fail(`topP must be in (0, 1], got ${p.topP}`, 'topP');
  if (!Number.isInteger(p.topK) || p.topK < -1) throw fail(`topK must be an integer ≥ −1 (0 or −1 = all), got ${p.topK}`, 'topK');
  if (!(p.minP >= 0 && p.minP <= 1)) throw fail(`minP must be in [0, 1], got ${p.minP}`, 'minP');
}
