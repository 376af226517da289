// The CPU reference of pickTokens (the contract: src/tensor/ops/pick.ts), row by row on host arrays. The
// engine's host sampler (src/engine/sampler.ts) runs rowArgmax and logPartition itself, and its unfiltered
// draw (drawFrom over the full vocabulary) is the cumulative scan below, so the tokens and logprobs of
// this reference are the sampler's bit for bit.

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

/**
 * One row's token and logprob: τ = 0 greedy (the first argmax; logprob at τ = 1), else the first id whose
 * cumulative mass (id order) exceeds u·Σ, u ∈ [0, 1), the last id of positive mass if rounding leaves none.
 * Token −1 (logprob NaN) where a logit is NaN or all are −∞.
 */
export function pickRow(x: ArrayLike<number>, off: number, V: number, temperature: number, u: number): { token: number; logprob: number } {
  const tau = temperature === 0 ? 1 : temperature;
  const { best, zBest, nan } = rowArgmax(x, off, V);
  const zmax = zBest / tau;
  if (nan || zmax === -Infinity) return { token: -1, logprob: NaN };
  const total = partition(x, off, V, tau, zmax);
  const logZ = zmax + Math.log(total);
  let token = best;
  if (temperature !== 0) {
    const target = u * total;
    let cum = 0;
    token = -1;
    let lastPositive = 0;
    for (let v = 0; v < V; v++) {
      const e = Math.exp(x[off + v]! / tau - zmax);
      cum += e;
      if (cum > target) {
        token = v;
        break;
      }
      if (e > 0) lastPositive = v;
    }
    if (token < 0) token = lastPositive;
  }
  return { token, logprob: x[off + token]! / tau - logZ };
}
