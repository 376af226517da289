// Mixture of experts (the reference's MoE), on the device with no host read (src/tensor/ops/moe.ts):
//   experts, w = gate.route(x)                   (group-limited top-k; replayed routes for Keep Routing)
//   d  = moeDispatch(experts)                    (the T·k (token, slot) pairs sorted by expert, stably)
//   ys = expert_e(x[d.tokens]) per segment       (grouped GEMMs over the stacked expert weights)
//   y  = Σ_j w_j · ys[t, j] + shared_expert(x)   (moeCombine: f32, slots in ascending expert id order,
//                                                 the reference's accumulation order; rounded to dt)
// The combine is differentiable in w (the gradient reaches the gate when routes are replayed under
// autograd) and in the expert outputs.
// Training: the stacked expert weights [E, N, K] are the tape's stack of the per-expert parameters
// (the checkpoint keeps one tensor per expert; in bf16 numerics its bf16 copy), rebuilt every forward
// that records gradients, so groupedMatmul's dW reaches each expert's own master weight; inference caches the stack until the
// weights' generation moves (an optimizer step).
// Expert parallel (parallel.ts): a rank stacks only its experts [first, first + count) and runs the grouped
// GEMMs over their segments of the full dispatch (offsets[first .. first + count]); the other pairs' rows
// stay 0, so the combine adds exact zeros for them; the layer's output is the sum of the ranks' parts.
import { isGradEnabled } from '../tensor/autograd.js';
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, swiglu } from '../tensor/ops/elementwise.js';
import { cat, indexSelect, stack } from '../tensor/ops/indexing.js';
import { groupedMatmul, groupedMatmulFp8, moeCombine, moeDispatch } from '../tensor/ops/moe.js';
import { cast, narrow } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';
import { Gate, type Routing } from './gate.js';
import { Mlp } from './mlp.js';
import { wideDtype } from './numerics.js';
import { localExperts, TensorParallel } from './parallel.js';
import { dequantize, type LinearWeight, type ModelWeights } from './weights.js';
import { fp8Codes } from './fp8-linear.js';

type Proj = 'gate_proj' | 'up_proj' | 'down_proj';
/** One projection of every routed expert, stacked [E, N, K]: dense f32, or e4m3 codes with scales. */
type Stacked = { kind: 'dense'; w: Tensor } | { kind: 'fp8'; w8: Tensor; scale: Tensor };

export class MoE {
  readonly gate: Gate;
  private readonly shared: Mlp | null;
  private readonly stacked = new Map<Proj, Stacked>();
  private stackedAt = -1;
  /** this rank's routed experts [first, first + count): all of them on one rank */
  private readonly local: { first: number; count: number };

  constructor(private readonly cfg: ModelConfig, private readonly weights: ModelWeights, readonly prefix: string, private readonly ue8m0: boolean, private readonly tp: TensorParallel = new TensorParallel(null)) {
    this.gate = new Gate(cfg, weights, `${prefix}.gate`);
    this.shared = cfg.nSharedExperts > 0 ? new Mlp(weights, `${prefix}.shared_experts`, ue8m0) : null;
    this.local = localExperts(cfg, weights.shard);
  }

  /**
   * One projection of this rank's experts. Training (on the tape, not cached): the stack of the master
   * weights; a bf16 input meets it through its bf16 copy, autocast's rule as applyLinear (fp8-linear.ts)
   * has it for every other linear, so the grouped GEMMs are bf16 × bf16 on the tensor cores and the cast's
   * backward carries dW (rounded once to bf16, as a dense linear's) to the f32 masters.
   */
  private experts(p: Proj, act: DType): Stacked {
    const { first, count } = this.local;
    const lws: LinearWeight[] = Array.from({ length: count }, (_, e) => this.weights.linear(`${this.prefix}.experts.${first + e}.${p}.weight`));
    if (isGradEnabled() && lws.some((l) => l.kind === 'dense' && l.w.requiresGrad)) {
      const w = stack(lws.map(dequantize));
      return { kind: 'dense', w: act === 'bf16' && w.dtype === 'f32' ? cast(w, 'bf16') : w };
    }
    if (this.stackedAt !== this.weights.generation) {
      this.stacked.clear();
      this.stackedAt = this.weights.generation;
    }
    let s = this.stacked.get(p);
    if (!s) {
      const fp8 = lws.filter((l): l is Extract<LinearWeight, { kind: 'fp8' }> => l.kind === 'fp8');
      if (fp8.length === lws.length) s = { kind: 'fp8', w8: stack(fp8.map((l) => l.w8)), scale: stack(fp8.map((l) => l.scale)) };
      // a mix of dense and FP8 experts runs dense, on the FP8 ones' exact dequantised values
      else s = { kind: 'dense', w: stack(lws.map(dequantize)) };
      this.stacked.set(p, s);
    }
    return s;
  }

  /** Rows of x sorted by expert → one projection of each row's expert, in dtype dt. */
  private project(p: Proj, x: Tensor, offsets: Tensor, dt: DType): Tensor {
    const s = this.experts(p, x.dtype);
    return s.kind === 'dense' ? cast(groupedMatmul(x, s.w, offsets), dt) : groupedMatmulFp8(x, fp8Codes(s.w8), s.scale, offsets, { ue8m0: this.ue8m0, outDtype: dt });
  }

  /**
   * x [T, dim] → y [T, dim] in dtype dt, with the routing used; `forced` [T, k] replays routes. On an
   * expert-parallel rank, y is already the sum over the ranks.
   */
  forward(x: Tensor, dt: DType, forced?: Int32Array | Tensor | null): { y: Tensor; routing: Routing } {
    const routing = this.gate.route(x, forced);
    const d = moeDispatch(routing.experts, this.cfg.nRoutedExperts);
    const offsets = this.local.count === this.cfg.nRoutedExperts ? d.offsets : narrow(d.offsets, 0, this.local.first, this.local.count + 1);
    const xs = indexSelect(x, 0, d.tokens);
    // the SwiGLU expert (mlp.ts): down((silu(gate(x)).f32 · up(x).f32) → dt)
    const g = this.project('gate_proj', xs, offsets, dt);
    const u = this.project('up_proj', xs, offsets, dt);
    const h = swiglu(g, u);
    const ys = this.project('down_proj', h, offsets, dt);
    if (!this.tp.sharded) {
      const y = moeCombine(ys, routing.weights, d.rows, { shared: this.shared ? this.shared.forward(x, dt) : null, dtype: dt });
      return { y, routing };
    }
    // Expert parallel: the routed part and the shared expert's part, both f32, are summed over the ranks
    // in one all-reduce of [T, 2·dim]; then, as on one rank, the shared expert's output is rounded to dt
    // before it joins the routed sum in f32, and the total is rounded once. (Measured on a random model of
    // the tiny fixtures' size in bf16: rounding the shared part on each rank, or never, moved the logits
    // by up to 2e-2; this way 2 ranks stay within ~1e-6 of one rank wherever no bf16 rounding falls on a
    // midpoint, with and without a shared expert: test/dist/tensor-parallel.test.ts.)
    const wide = wideDtype(dt);
    const routed = moeCombine(ys, routing.weights, d.rows, { shared: null, dtype: wide });
    const D = this.cfg.dim;
    const both = this.tp.reduce(this.shared ? cat([routed, this.shared.forward(x, dt, wide)], 1) : routed, wide);
    if (!this.shared) return { y: cast(both, dt), routing };
    const y = cast(add(narrow(both, 1, 0, D), cast(cast(narrow(both, 1, D, D), dt), wide)), dt);
    return { y, routing };
  }
}
