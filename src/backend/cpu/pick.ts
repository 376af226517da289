// The CPU reference of pickTokens (the contract: src/tensor/ops/pick.ts), row by row on host arrays. The
// engine's host sampler (src/engine/sampler.ts, whose header states the filter rule) is built on the same
// functions (rowArgmax, partition, expWeights, keptSet, firstCrossing), so the tokens, logprobs and kept
// sets of this reference are the sampler's bit for bit.
import { kthLargest } from './topk-select.js';

/** The largest of x[off .. off + V) and its first index, and whether a NaN was seen (it compares false to everything). */
export function rowArgmax(x: ArrayLike<number>, off: number, V: number): { best: number; zBest: number; nan: boolean } {
  let best = 0;
  let zBest = x[off]!;
  let nan = zBest !== zBest;
  for (let v = 1; v < V; v++) {
    const z = x[off + v]!;
    if (z > zBest) {
      zBest = z;
      best = v;
    } else if (z !== z) nan = true;
  }
  return { best, zBest, nan };
}

/** Σ_v exp(x[off + v]/τ − zmax) over V logits, summed in id order in f64 (zmax = the row's max / τ). */
export function partition(x: ArrayLike<number>, off: number, V: number, tau: number, zmax: number): number {
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(x[off + v]! / tau - zmax);
  return sum;
}

/** e_v = exp(x[off + v]/τ − zmax) for the V logits (f64), and their sum in id order. */
export function expWeights(x: ArrayLike<number>, off: number, V: number, tau: number, zmax: number): { e: Float64Array; total: number } {
  const e = new Float64Array(V);
  let total = 0;
  for (let v = 0; v < V; v++) {
    const w = Math.exp(x[off + v]! / tau - zmax);
    e[v] = w;
    total += w;
  }
  return { e, total };
}

/**
 * The first j whose cumulative weight (summed in order) exceeds u·total, u ∈ [0, 1); when rounding leaves
 * none (u within rounding of 1), the last j of positive weight (0 if there is none).
 */
export function firstCrossing(w: ArrayLike<number>, total: number, u: number): number {
  const target = u * total;
  let cum = 0;
  for (let j = 0; j < w.length; j++) {
    cum += w[j]!;
    if (cum > target) return j;
  }
  for (let j = w.length - 1; j >= 0; j--) if (w[j]! > 0) return j;
  return 0;
}

/** One row's filters, as SamplingParams has them; disabled: topK ≤ 0 or ≥ V, topP ≥ 1, minP ≤ 0. */
export interface RowFilter {
  topK: number;
  topP: number;
  minP: number;
}

/** Whether a filter removes anything from a row of V logits. */
export function filtering(f: RowFilter, V: number): boolean {
  return (f.topK > 0 && f.topK < V) || f.topP < 1 || f.minP > 0;
}

/** A copy of a, sorted descending. */
function descending(a: Float64Array): Float64Array {
  return a.slice().sort().reverse();
}

/** How many values are > x. */
function countAbove(a: Float64Array, x: number): number {
  let c = 0;
  for (let i = 0; i < a.length; i++) if (a[i]! > x) c++;
  return c;
}

/**
 * The values of a (all in (0, 1]: e_v = exp(z_v/τ − max)) that can lie in the top-p prefix, sorted
 * descending: those whose coarse bucket (the double's exponent and top 4 mantissa bits, an order-keeping
 * key) lies above the bucket where the buckets' running mass, from the top, reaches `target`, plus that
 * bucket and the one below it (margin for the order of the buckets' sums). A row of V values costs one
 * pass and the sort of the prefix, not of the row: sorting all of them cost 3.6 ms a row at V = 32 000
 * and 16.9 ms at 129 280 on this repository's 2-core machine, where a trained model's prefix is a few
 * tokens.
 */
function topPrefix(a: Float64Array, target: number): Float64Array {
  const n = a.length;
  if (n <= 2048) return descending(a);
  const hi = new Uint32Array(a.buffer, a.byteOffset, 2 * n);
  const mass = new Float64Array(1 << 16);
  for (let i = 0; i < n; i++) mass[hi[2 * i + 1]! >>> 16]! += a[i]!;
  let cum = 0;
  let b = (1 << 16) - 1;
  for (; b > 0; b--) {
    cum += mass[b]!;
    if (cum >= target) break;
  }
  const lo = Math.max(0, b - 1);
  let k = 0;
  for (let i = 0; i < n; i++) if (hi[2 * i + 1]! >>> 16 >= lo) k++;
  const out = new Float64Array(k);
  for (let i = 0, j = 0; i < n; i++) if (hi[2 * i + 1]! >>> 16 >= lo) out[j++] = a[i]!;
  return out.sort().reverse();
}

/**
 * The shortest prefix of `sorted` (descending) whose running sum reaches topP·cand, at most n long; −1
 * when sorted ends before it does and holds fewer than n values (the caller sorts them all).
 */
function prefixLength(sorted: Float64Array, n: number, cand: number, topP: number): number {
  let cum = 0;
  const end = Math.min(n, sorted.length);
  for (let m = 0; m < end; ) {
    cum += sorted[m]!;
    m++;
    if (cum / cand >= topP) return m;
  }
  return end === n ? n : -1;
}

/**
 * K of a filtered row (the rule of src/engine/sampler.ts's header) from its exp weights e (e_max = 1):
 * its ids ascending, their weights, and their sum in id order. min-p keeps e_v ≥ min_p; top-k the k
 * largest of those (ties → lower ids); top-p, over the survivors renormalised (their total summed in id
 * order), the shortest prefix by (e descending, id ascending) whose mass, summed in that order, ≥ top_p.
 */
export function keptSet(e: Float64Array, f: RowFilter): { ids: Int32Array; weights: Float64Array; total: number } {
  const V = e.length;
  const topK = f.topK > 0 && f.topK < V ? f.topK : 0;
  const topP = f.topP < 1 ? f.topP : 1;
  const minP = f.minP > 0 ? f.minP : 0;
  // Survivors of min-p (e_max = 1, so the threshold is min_p itself), then the top k of them by value
  // (ties → lower ids): the n candidates.
  let cands = 0;
  for (let v = 0; v < V; v++) if (e[v]! >= minP) cands++;
  let vals = new Float64Array(cands);
  for (let v = 0, j = 0; v < V; v++) if (e[v]! >= minP) vals[j++] = e[v]!;
  let n = cands;
  // the n-th largest candidate: the last value K keeps unless top-p cuts deeper
  let edge: number;
  if (topK && topK < cands) {
    edge = kthLargest(vals.slice(), cands, topK);
    vals = vals.filter((x) => x >= edge);
    n = topK;
  } else {
    edge = Infinity;
    for (let i = 0; i < cands; i++) if (vals[i]! < edge) edge = vals[i]!;
  }
  if (topP < 1) {
    // The renormaliser: the candidates' total, summed in id order (keep-sampling-mask.ts keptTokens sums
    // it alike). Then the shortest prefix of the values in descending order whose mass (summed in that
    // order) ≥ top_p of it; only the values that can be in it are sorted (topPrefix).
    let cand = 0;
    let ties = n - countAbove(vals, edge);
    for (let v = 0; v < V; v++) {
      const x = e[v]!;
      if (x > edge || (x === edge && ties-- > 0)) cand += x;
    }
    let sorted = topPrefix(vals, topP * cand);
    let m = prefixLength(sorted, n, cand, topP);
    if (m < 0) {
      // the guess held too few values (rounding at its boundary): all of them
      sorted = descending(vals);
      m = prefixLength(sorted, n, cand, topP);
    }
    n = m;
    edge = sorted[n - 1]!;
  }
  n = Math.max(n, 1);
  // K = ids above the boundary value, plus the lowest-id ties at it
  let ties = n - countAbove(vals, edge);
  const ids = new Int32Array(n);
  const weights = new Float64Array(n);
  let total = 0;
  for (let v = 0, j = 0; v < V && j < n; v++) {
    const x = e[v]!;
    if (x > edge || (x === edge && ties-- > 0)) {
      ids[j] = v;
      weights[j++] = x;
      total += x;
    }
  }
  return { ids, weights, total };
}

/**
 * One row's token, logprob, log-partition and kept set K: τ = 0 greedy (K = the first argmax; logprob at τ = 1), else
 * the draw of firstCrossing over K's exp weights (every id when no filter is on: kept null). Token −1
 * (logprob NaN, kept null) where a logit is NaN or all are −∞.
 */
export function pickRow(x: ArrayLike<number>, off: number, V: number, temperature: number, u: number, filter?: RowFilter): { token: number; logprob: number; logZ: number; kept: Int32Array | null } {
  const tau = temperature === 0 ? 1 : temperature;
  const { best, zBest, nan } = rowArgmax(x, off, V);
  const zmax = zBest / tau;
  if (nan || zmax === -Infinity) return { token: -1, logprob: NaN, logZ: NaN, kept: null };
  if (temperature === 0) {
    const logZ = zmax + Math.log(partition(x, off, V, tau, zmax));
    return { token: best, logprob: x[off + best]! / tau - logZ, logZ, kept: Int32Array.of(best) };
  }
  const { e, total } = expWeights(x, off, V, tau, zmax);
  const logZ = zmax + Math.log(total);
  if (!filter || !filtering(filter, V)) {
    const token = firstCrossing(e, total, u);
    return { token, logprob: x[off + token]! / tau - logZ, logZ, kept: null };
  }
  const k = keptSet(e, filter);
  const token = k.ids[firstCrossing(k.weights, k.total, u)]!;
  return { token, logprob: x[off + token]! / tau - logZ, logZ, kept: k.ids };
}
