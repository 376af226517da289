// The CPU reference of greedy decoding's pick (the contract: src/tensor/ops/greedy.ts), row by row on host
// arrays. The engine's host sampler (src/engine/sampler.ts) runs these same functions, so its greedy tokens
// and logprobs are the CPU backend's bit for bit.

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

/** log Σ_v exp(x[off + v] − zmax) + zmax over V logits, summed in id order in f64 (zmax = the row's max). */
export function logPartition(x: ArrayLike<number>, off: number, V: number, zmax: number): number {
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(x[off + v]! - zmax);
  return zmax + Math.log(sum);
}

/** The greedy pick of one row (the CPU reference of every backend's greedyPick). */
export function greedyRow(x: ArrayLike<number>, off: number, V: number): { token: number; logprob: number } {
  const { best, zBest, nan } = rowArgmax(x, off, V);
  if (nan || zBest === -Infinity) return { token: -1, logprob: NaN };
  return { token: best, logprob: zBest - logPartition(x, off, V, zBest) };
}

