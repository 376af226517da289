// The CPU reference of pickTokens (the contract: src/tensor/ops/pick.ts), row by row on host arrays. The
// engine's host sampler (src/engine/sampler.ts) is built on the same functions (rowArgmax, partition,
// expWeights, firstCrossing), so the tokens and logprobs of this reference are the sampler's bit for bit.

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

/**
 * One row's token and logprob: τ = 0 greedy (the first argmax; logprob at τ = 1), else the draw of
 * firstCrossing over the row's exp weights. Token −1 (logprob NaN) where a logit is NaN or all are −∞.
 */
export function pickRow(x: ArrayLike<number>, off: number, V: number, temperature: number, u: number): { token: number; logprob: number } {
  const tau = temperature === 0 ? 1 : temperature;
  const { best, zBest, nan } = rowArgmax(x, off, V);
  const zmax = zBest / tau;
  if (nan || zmax === -Infinity) return { token: -1, logprob: NaN };
  if (temperature === 0) return { token: best, logprob: x[off + best]! / tau - (zmax + Math.log(partition(x, off, V, tau, zmax))) };
  const { e, total } = expWeights(x, off, V, tau, zmax);
  const token = firstCrossing(e, total, u);
  return { token, logprob: x[off + token]! / tau - (zmax + Math.log(total)) };
}
