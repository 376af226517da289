// Token sampling from one row of f32 logits z, with what RL needs recorded (logprob, top logprobs, mask).
//
// Filter order (the same rule as src/rl/keep-sampling-mask.ts, vLLM V1's order, so the trainer's
// independent recomputation of the mask from the same logits gives the same set):
//   1. temperature  p = softmax(z/τ), computed in f64 as e_v = exp(z_v/τ − max z/τ)
//   2. min-p        keep v iff e_v ≥ min_p · e_max (= min_p: e_max = 1); scale-free, so the order
//                   against top-k/renormalisation does not matter
//   3. top-k        keep the k most likely of the survivors; ties at the k-th value → lower ids win
//   4. top-p        over the survivors RENORMALISED, keep the shortest prefix (by p descending, ties →
//                   lower id) whose mass ≥ top_p; the boundary tie is cut by id (the survivors' total is
//                   summed in id order, the prefix's mass in its order: keptTokens sums them alike)
// Each filter keeps a prefix of the order (p descending, id ascending), so the kept set K is the
// shortest prefix; the argmax is always kept. Disabled: top_p ≥ 1, top_k ≤ 0 or ≥ V, min_p ≤ 0.
// The token is drawn from p restricted to K and renormalised, with one uniform u ∈ [0, 1) of the
// sequence's own seeded RNG per token: the token is the first of K in id order whose cumulative mass
// exceeds u·Σ_K p (any fixed order samples exactly; id order needs no sort). One draw per token, from a
// per-sequence stream, is what makes a seeded request independent of the batch it ran in.
// Cost at V = 129K: two passes over the row (max, exp), a selection (top-k), for top-p a pass bucketing the
// survivors and the sort of those that can be in its prefix (topPrefix), and a pass collecting K; log Z
// is shared with the logprob. The filter code (keptSet) lives in src/backend/cpu/pick.ts, the CPU
// reference of the pickTokens op, which the engine runs on the GPU instead of this file.
// Temperature 0 is greedy: K = {argmax}, ties → lowest id, no draw.
//
// logprob = log-softmax(z/τ) at the token over the FULL vocabulary (before filtering), as the contract
// says; at τ = 0 the distribution is a point mass, so the logprobs are those of τ = 1 (the model's own).
// The sampling mask is K as ascending token ids; packMasks lays a list of them out in CSR.
import { DsvError } from '../errors.js';
import type { Rng } from '../tensor/random.js';
import { expWeights, filtering, firstCrossing, keptSet, partition, rowArgmax } from '../backend/cpu/pick.js';

export interface FilterParams {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
}

/**
 * The kept set K (ascending ids) with its probabilities, and log Σ_v exp(z_v/τ) over the vocabulary.
 * Held as unnormalised weights (the exp values) and their total, so the common unfiltered case keeps the
 * one vocabulary-sized array it computed and materialises ids / normalised probs only when asked.
 */
export class Distribution {
  private idsCache: Int32Array | null;
  private probsCache: Float64Array | null = null;

  constructor(
    readonly vocab: number,
    /** null: every id 0..V−1 (no filter removed anything) */
    ids: Int32Array | null,
    /** aligned with the ids (or with the vocabulary when ids is null) */
    readonly weights: Float64Array,
    readonly total: number,
    /** log-partition at τ (τ = 1 when greedy), so logprob(v) = z_v/τ − logZ */
    readonly logZ: number,
    readonly tau: number,
  ) {
    this.idsCache = ids;
  }

  get full(): boolean {
    return this.weights.length === this.vocab && this.idsCache === null;
  }

  get size(): number {
    return this.weights.length;
  }

  idAt(j: number): number {
    return this.idsCache ? this.idsCache[j]! : j;
  }

  /** K, ascending (the sampling mask) */
  get ids(): Int32Array {
    return (this.idsCache ??= everyId(this.weights.length));
  }

  /** renormalised probabilities aligned with ids */
  get probs(): Float64Array {
    return (this.probsCache ??= this.weights.map((w) => w / this.total));
  }

  /** probability of token v (0 outside K) */
  prob(v: number): number {
    const ids = this.idsCache;
    if (!ids) return v >= 0 && v < this.weights.length ? this.weights[v]! / this.total : 0;
    let lo = 0;
    let hi = ids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (ids[mid] === v) return this.weights[mid]! / this.total;
      if (ids[mid]! < v) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }
}

export interface Sampled {
  token: number;
  logprob: number;
  topLogprobs?: [number, number][];
  /** K, ascending ids */
  mask?: Int32Array;
}

export class SamplerError extends DsvError {}

/** 0 .. V − 1 (a fresh array): the sampling mask of a row no filter cut. */
export function everyId(V: number): Int32Array {
  const ids = new Int32Array(V);
  for (let v = 0; v < V; v++) ids[v] = v;
  return ids;
}

/** Whether no filter removes anything (K = the vocabulary of V ids): top-k ≤ 0 or ≥ V, top-p ≥ 1, min-p ≤ 0. */
export function unfiltered(p: FilterParams, V: number): boolean {
  return !filtering(p, V);
}

/** K and its renormalised probabilities for one logits row (see the header for the rule). */
export function distribution(row: ArrayLike<number>, params: FilterParams): Distribution {
  const V = row.length;
  if (V === 0) throw new SamplerError('sampler: the logits row is empty');
  const greedy = params.temperature === 0;
  const tau = greedy ? 1 : params.temperature;
  // max z and its first index in one pass (a NaN fails every comparison, so it is checked once after);
  // z/τ is monotone in z for τ > 0, so max(z/τ) = (max z)/τ — the same double as the per-element
  // division gives at the maximum
  const { best, zBest, nan } = rowArgmax(row, 0, V);
  if (nan) {
    for (let v = 0; v < V; v++) if (Number.isNaN(row[v]!)) throw new SamplerError(`sampler: logit of token ${v} is NaN`);
  }
  const zmax = zBest / tau;
  if (zmax === -Infinity) throw new SamplerError('sampler: every logit is −∞');
  // greedy: the log-partition alone (for the logprob), without keeping the terms: with a V-wide array per
  // row, a CPU profile of 64-row greedy engine steps at V = 32 000 (this repository's 2-core machine)
  // spent 0.6 s in the garbage collector for every 1.16 s in this function. The same functions as the
  // pickTokens op's CPU reference (src/backend/cpu/pick.ts), so a row picked on the device agrees.
  if (greedy) return new Distribution(V, Int32Array.of(best), Float64Array.of(1), 1, zmax + Math.log(partition(row, 0, V, tau, zmax)), tau);
  const { e, total: sum } = expWeights(row, 0, V, tau, zmax);
  const logZ = zmax + Math.log(sum);
  if (unfiltered(params, V)) return new Distribution(V, null, e, sum, logZ, tau);
  const k = keptSet(e, params);
  return new Distribution(V, k.ids, k.weights, k.total, logZ, tau);
}

/** The token drawn with uniform u ∈ [0, 1): the first of K (id order) whose cumulative mass exceeds u. */
export function drawFrom(dist: Distribution, u: number): number {
  return dist.idAt(firstCrossing(dist.weights, dist.total, u));
}

/**
 * log-softmax(z/τ) over the full vocabulary at `token`, and the `top` most likely [id, logprob]
 * (descending, ties → lower id), from the distribution's log-partition (τ = 0 → 1).
 */
export function logprobs(row: ArrayLike<number>, dist: { logZ: number; tau: number }, token: number, top: number): { logprob: number; topLogprobs?: [number, number][] } {
  const lp = (v: number): number => row[v]! / dist.tau - dist.logZ;
  if (top <= 0) return { logprob: lp(token) };
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
export function sampleRow(row: ArrayLike<number>, params: FilterParams, rng: Rng | null, want: { logprobs: number; mask: boolean }): Sampled & { dist: Distribution } {
  const dist = distribution(row, params);
  let token: number;
  if (params.temperature === 0) token = dist.ids[0]!;
  else {
    if (!rng) throw new SamplerError('sampler: a random number generator is needed at temperature > 0');
    token = drawFrom(dist, rng.uniform());
  }
  return { token, dist, ...logprobs(row, dist, token, want.logprobs), ...(want.mask ? { mask: dist.ids } : {}) };
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
