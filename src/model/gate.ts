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
// Training keeps the experts balanced without an auxiliary loss (DeepSeek-V3 §2.1.2, "auxiliary-loss-
// free load balancing"): the bias only steers the discrete choice, so no gradient reaches it; after each
// step it moves by a fixed speed γ toward balance, b_e ← b_e + γ·sign(mean load − load_e).
import { DsvError } from '../errors.js';
import { noGrad } from '../tensor/autograd.js';
import { type Tensor, fromArray } from '../tensor/tensor.js';
import { sigmoid } from '../tensor/ops/elementwise.js';
import { linear } from '../tensor/ops/matmul.js';
import { moeRoute, moeRouteWeights } from '../tensor/ops/moe.js';
import { softmax } from '../tensor/ops/softmax.js';
import { cast } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';
import { wideDtype } from './numerics.js';
import type { ModelWeights } from './weights.js';

export class RouteError extends DsvError {}

export interface Routing {
  /** expert ids i32 [T, k] on the device, ascending within each token */
  experts: Tensor;
  /** routing weights [T, k] (f32), aligned with `experts` */
  weights: Tensor;
  /**
   * the gate's own choice i32 [T, k] on these inputs: `experts` itself when nothing is forced, else what the
   * router would have picked at this layer given the (replayed) history that reached it. Keep Routing's
   * router_drift compares a recording with it, so the trainer needs no second, unforced forward
   */
  own: Tensor;
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
    const logits = linear(cast(x, wideDtype(x.dtype)), this.weight);
    return this.cfg.scoreFunc === 'sigmoid' ? sigmoid(logits) : softmax(logits, -1);
  }

  /**
   * The balancing update after a training step (see the header): routes i32 [T, k] the step's chosen
   * experts. Writes the bias in place (a host read of the routes: once per layer per step).
   */
  balance(routes: Tensor, speed: number): void {
    const b = this.bias;
    if (!b || speed === 0) return;
    const E = this.cfg.nRoutedExperts;
    const ids = routes.toHost() as Int32Array;
    const load = new Float64Array(E);
    for (const e of ids) load[e]!++;
    const mean = ids.length / E;
    const v = b.toFloat64();
    for (let e = 0; e < E; e++) v[e] = v[e]! + speed * Math.sign(mean - load[e]!);
    noGrad(() => b.backend.copy(b, fromArray(v, b.shape, { dtype: b.dtype, device: b.device })));
  }

  /**
   * Route T tokens x [T, dim] on x's device (moeRoute: no host read). `forced` [T, k] (a host array or a
   * device tensor) replays given experts (any order, distinct, in range); the weights are always computed
   * from this gate's current scores, through tensor ops, so they are differentiable.
   */
  route(x: Tensor, forced?: Int32Array | Tensor | null): Routing {
    const cfg = this.cfg;
    const s = this.scores(x);
    let experts: Tensor;
    try {
      experts = moeRoute(s, { bias: this.bias, groups: cfg.nExpertGroups, topkGroups: cfg.nLimitedGroups, k: cfg.nActivatedExperts, forced: forced ?? undefined });
    } catch (e) {
      if (forced && e instanceof DsvError) throw new RouteError(`${this.prefix}: ${e.message}`, { cause: e });
      throw e;
    }
    const weights = moeRouteWeights(s, experts, { normalize: cfg.scoreFunc === 'sigmoid', scale: cfg.routeScale });
    const own = forced ? noGrad(() => moeRoute(s, { bias: this.bias, groups: cfg.nExpertGroups, topkGroups: cfg.nLimitedGroups, k: cfg.nActivatedExperts })) : experts;
    return { experts, weights, own };
  }
}
