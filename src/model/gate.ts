// The MoE gate (model.md §6, the reference's Gate):
//   s   = sigmoid(x.f32 · Wgᵀ)                     (softmax for scoring_func "softmax")
//   sel = s + bias                                  (bias only steers the choice)
//   groups: sel viewed [T, G, E/G]; group score = sum of its top-2 (with bias) or max (no bias);
//           keep the topk_group best groups, the others' experts become −inf
//   experts = top-k(sel)                            (ties → lowest index, deterministic)
//   w = s[experts] / Σ s[experts] · routed_scaling_factor   (from the UNBIASED scores; sigmoid only
//                                                    normalises, as the reference)
// Route replay (Keep Routing): with forced experts the selection is skipped but the weights are
// recomputed from the current scores, through tensor ops, so they are differentiable w.r.t. the gate
// weight (and x) when autograd records.
import { DsvError } from '../errors.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { div, muls, sigmoid } from '../tensor/ops/elementwise.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { sum } from '../tensor/ops/reduce.js';
import { softmax } from '../tensor/ops/softmax.js';
import { cast, squeeze, unsqueeze } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';
import type { ModelWeights } from './weights.js';

export class RouteError extends DsvError {}

export interface Routing {
  /** expert ids [T, k], ascending within each token */
  experts: Int32Array;
  /** routing weights [T, k] (f32), aligned with `experts` */
  weights: Tensor;
}

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

export class Gate {
  constructor(
    private readonly cfg: ModelConfig,
    private readonly weights: ModelWeights,
    readonly prefix: string,
  ) {}

  get weight(): Tensor {
    return this.weights.float(`${this.prefix}.weight`);
  }
  get bias(): Tensor | null {
    const n = `${this.prefix}.e_score_correction_bias`;
    return this.weights.has(n) ? this.weights.float(n) : null;
  }

  /** Gate scores [T, E] in f32. */
  scores(x: Tensor): Tensor {
    const logits = linear(cast(x, 'f32'), this.weight);
    return this.cfg.scoreFunc === 'sigmoid' ? sigmoid(logits) : softmax(logits, -1);
  }

  /**
   * Route T tokens x [T, dim]. `forced` [T, k] replays given experts (any order, distinct, in range);
   * the weights are always computed from this gate's current scores.
   */
  route(x: Tensor, forced?: Int32Array | null): Routing {
    const cfg = this.cfg;
    const T = x.shape[0]!;
    const E = cfg.nRoutedExperts;
    const k = cfg.nActivatedExperts;
    const s = this.scores(x);
    let experts: Int32Array;
    if (forced) {
      if (forced.length !== T * k) throw new RouteError(`${this.prefix}: forced routes hold ${forced.length} ids, expected ${T}·${k}`);
      experts = new Int32Array(T * k);
      for (let t = 0; t < T; t++) {
        const row = Array.from(forced.subarray(t * k, (t + 1) * k)).sort((a, b) => a - b);
        for (let j = 0; j < k; j++) {
          const e = row[j]!;
          if (!Number.isInteger(e) || e < 0 || e >= E) throw new RouteError(`${this.prefix}: forced route of token ${t} has expert id ${e}, expected 0..${E - 1}`);
          if (j > 0 && row[j - 1] === e) throw new RouteError(`${this.prefix}: forced route of token ${t} repeats expert ${e}`);
        }
        experts.set(row, t * k);
      }
    } else {
      const b = this.bias;
      experts = selectExperts(s.toFloat32(), b ? b.toFloat32() : null, T, cfg);
    }
    // w[t, j] = s[t, experts[t, j]] as a product with a one-hot matrix, so the gather is an op with a
    // gradient (exact: each output sums one score and zeros).
    const onehot = new Float32Array(T * k * E);
    for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) onehot[(t * k + j) * E + experts[t * k + j]!] = 1;
    let w = squeeze(matmul(fromArray(onehot, [T, k, E], { device: x.device }), unsqueeze(s, -1)), -1);
    if (cfg.scoreFunc === 'sigmoid') w = div(w, sum(w, -1, true));
    w = muls(w, cfg.routeScale);
    return { experts, weights: w };
  }
}
