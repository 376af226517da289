// Mixture of experts (the reference's MoE): route, run each chosen expert on its tokens, combine
//   y = Σ_j w_j · expert_{e_j}(x)  (f32, experts added in ascending id order as the reference loops)
//     + shared_expert(x)
// and round y to the activation dtype. When the routing weights carry a gradient (route replay under
// autograd) the combine is done with tensor ops so the gradient reaches the gate.
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { add, mul } from '../tensor/ops/elementwise.js';
import { indexSelect } from '../tensor/ops/indexing.js';
import { sum } from '../tensor/ops/reduce.js';
import { cast, unsqueeze } from '../tensor/ops/view.js';
import { noGrad } from '../tensor/autograd.js';
import type { ModelConfig } from './config.js';
import { Gate, type Routing } from './gate.js';
import { Mlp } from './mlp.js';
import type { ModelWeights } from './weights.js';

export class MoE {
  readonly gate: Gate;
  private readonly experts: Mlp[] = [];
  private readonly shared: Mlp | null;

  constructor(private readonly cfg: ModelConfig, weights: ModelWeights, readonly prefix: string, ue8m0: boolean) {
    this.gate = new Gate(cfg, weights, `${prefix}.gate`);
    for (let e = 0; e < cfg.nRoutedExperts; e++) this.experts.push(new Mlp(weights, `${prefix}.experts.${e}`, ue8m0));
    this.shared = cfg.nSharedExperts > 0 ? new Mlp(weights, `${prefix}.shared_experts`, ue8m0) : null;
  }

  /** x [T, dim] → y [T, dim] in dtype dt, with the routing used. */
  forward(x: Tensor, dt: DType, forced?: Int32Array | null): { y: Tensor; routing: Routing } {
    const T = x.shape[0]!;
    const D = x.shape[1]!;
    const k = this.cfg.nActivatedExperts;
    const routing = this.gate.route(x, forced);
    const { experts } = routing;
    // expert outputs per (token, slot), computed without a graph: only the weights are replayed
    const slotOut = new Float32Array(T * k * D);
    noGrad(() => {
      for (let e = 0; e < this.cfg.nRoutedExperts; e++) {
        const rows: number[] = [];
        const slots: number[] = [];
        for (let i = 0; i < T * k; i++) if (experts[i] === e) {
          rows.push(Math.floor(i / k));
          slots.push(i);
        }
        if (!rows.length) continue;
        const xe = indexSelect(x, 0, fromArray(Int32Array.from(rows), [rows.length], { dtype: 'i32', device: x.device }));
        const ye = this.experts[e]!.forward(xe, dt).toFloat32();
        for (let r = 0; r < rows.length; r++) slotOut.set(ye.subarray(r * D, (r + 1) * D), slots[r]! * D);
      }
    });
    const shared = this.shared ? noGrad(() => this.shared!.forward(x, dt)) : null;
    let y: Tensor;
    if (routing.weights.requiresGrad) {
      const o = fromArray(slotOut, [T, k, D], { device: x.device });
      y = sum(mul(o, unsqueeze(routing.weights, -1)), 1);
      if (shared) y = add(y, cast(shared, 'f32'));
    } else {
      // slots are in ascending expert order, so this is the reference's accumulation order
      const w = routing.weights.toFloat32();
      const acc = new Float32Array(T * D);
      for (let t = 0; t < T; t++) {
        for (let j = 0; j < k; j++) {
          const wj = w[t * k + j]!;
          const base = (t * k + j) * D;
          for (let d = 0; d < D; d++) acc[t * D + d] = Math.fround(acc[t * D + d]! + Math.fround(slotOut[base + d]! * wj));
        }
      }
      if (shared) {
        const sv = shared.toFloat32();
        for (let i = 0; i < acc.length; i++) acc[i] = Math.fround(acc[i]! + sv[i]!);
      }
      y = fromArray(acc, [T, D], { device: x.device });
    }
    return { y: cast(y, dt), routing };
  }
}
