// Test oracle: the model's former host loop for the MoE gate's group-limited top-k selection (the
// reference's Gate), kept as the independent reference moeRoute (src/tensor/ops/moe.ts) is checked against.
import type { ModelConfig } from '../../src/model/config.js';

/** Larger first; ties by lower index (a strict total order on indices). */
function better(v: Float32Array, a: number, b: number): boolean {
  const x = v[a]!;
  const y = v[b]!;
  return x > y || (x === y && a < b);
}

/** Indices of the k best entries of vals[off .. off+n) (relative), in descending order. */
function topkRow(vals: Float32Array, n: number, k: number): number[] {
  const best: number[] = [];
  for (let j = 0; j < n; j++) {
    if (best.length === k && !better(vals, j, best[k - 1]!)) continue;
    let p = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(j);
    while (p > 0 && better(vals, j, best[p - 1]!)) {
      best[p] = best[p - 1]!;
      p--;
    }
    best[p] = j;
  }
  return best;
}

/** Group-limited top-k selection of the reference (host side; not differentiable). */
export function selectExperts(scores: Float32Array, bias: Float32Array | null, T: number, cfg: ModelConfig): Int32Array {
  const E = cfg.nRoutedExperts;
  const G = cfg.nExpertGroups;
  const per = E / G;
  const k = cfg.nActivatedExperts;
  const out = new Int32Array(T * k);
  const sel = new Float32Array(E);
  const gs = new Float32Array(G);
  const tmp = new Float32Array(per);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) sel[e] = bias ? Math.fround(scores[t * E + e]! + bias[e]!) : scores[t * E + e]!;
    if (G > 1) {
      for (let g = 0; g < G; g++) {
        for (let j = 0; j < per; j++) tmp[j] = sel[g * per + j]!;
        const top = topkRow(tmp, per, bias ? 2 : 1);
        gs[g] = bias ? Math.fround(tmp[top[0]!]! + tmp[top[1]!]!) : tmp[top[0]!]!;
      }
      const keep = new Set(topkRow(gs, G, cfg.nLimitedGroups));
      for (let g = 0; g < G; g++) if (!keep.has(g)) for (let j = 0; j < per; j++) sel[g * per + j] = -Infinity;
    }
    const chosen = topkRow(sel, E, k).sort((a, b) => a - b);
    out.set(chosen, t * k);
  }
  return out;
}

