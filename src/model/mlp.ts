// The SwiGLU feed-forward block used for the dense layers, every routed expert and the shared expert:
//   y = down( (silu(gate(x)).f32 · up(x).f32) → act dtype )
// (reference MLP/Expert: w2((F.silu(w1(x).float()) * w3(x).float()).type_as(x))).
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { swiglu } from '../tensor/ops/elementwise.js';
import { applyLinear } from './fp8-linear.js';
import type { ModelWeights } from './weights.js';

export class Mlp {
  constructor(private readonly weights: ModelWeights, readonly prefix: string, private readonly ue8m0: boolean) {}

  /** x [T, dim] → [T, dim] in `out` (default dt; a tensor-parallel rank's partial is wider, parallel.ts). */
  forward(x: Tensor, dt: DType, out: DType = dt): Tensor {
    const w = this.weights;
    const g = applyLinear(x, w.linear(`${this.prefix}.gate_proj.weight`), dt, this.ue8m0);
    const u = applyLinear(x, w.linear(`${this.prefix}.up_proj.weight`), dt, this.ue8m0);
    const h = swiglu(g, u);
    return applyLinear(h, w.linear(`${this.prefix}.down_proj.weight`), out, this.ue8m0);
  }
}
