// Test oracle: the model's former host MoE (gate selection on the host, one expert at a time over its
// token list, the f32 combine loop), kept as the independent reference the MoE operations and the
// model's MoE (src/tensor/ops/moe.ts, src/model/moe.ts) are checked against bit for bit.
import type { DType } from '../../src/tensor/dtype.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Mlp } from '../../src/model/mlp.js';
import type { ModelWeights } from '../../src/model/weights.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { Tensor, fromArray } from '../../src/tensor/tensor.js';
import { div, muls, sigmoid } from '../../src/tensor/ops/elementwise.js';
import { indexSelect } from '../../src/tensor/ops/indexing.js';
import { linear, matmul } from '../../src/tensor/ops/matmul.js';
import { sum } from '../../src/tensor/ops/reduce.js';
import { softmax } from '../../src/tensor/ops/softmax.js';
import { cast, squeeze, unsqueeze } from '../../src/tensor/ops/view.js';
import { selectExperts } from './gate.js';

/** y [T, D] in dt and the experts [T·k] of the former host MoE of the layer at `prefix` (…mlp). */
export function hostMoe(cfg: ModelConfig, weights: ModelWeights, prefix: string, ue8m0: boolean, x: Tensor, dt: DType, forced?: Int32Array | null): { y: Tensor; experts: Int32Array; weights: Tensor } {
  const T = x.shape[0]!;
  const D = x.shape[1]!;
  const E = cfg.nRoutedExperts;
  const k = cfg.nActivatedExperts;
  const logits = linear(cast(x, 'f32'), weights.float(`${prefix}.gate.weight`));
  const s = cfg.scoreFunc === 'sigmoid' ? sigmoid(logits) : softmax(logits, -1);
  const biasName = `${prefix}.gate.e_score_correction_bias`;
  let experts: Int32Array;
  if (forced) {
    experts = new Int32Array(T * k);
    for (let t = 0; t < T; t++) experts.set(Array.from(forced.subarray(t * k, (t + 1) * k)).sort((a, b) => a - b), t * k);
  } else {
    experts = selectExperts(s.toFloat32(), weights.has(biasName) ? weights.float(biasName).toFloat32() : null, T, cfg);
  }
  // w[t, j] = s[t, experts[t, j]] as a product with a one-hot matrix
  const onehot = new Float32Array(T * k * E);
  for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) onehot[(t * k + j) * E + experts[t * k + j]!] = 1;
  let w = squeeze(matmul(fromArray(onehot, [T, k, E], { device: x.device }), unsqueeze(s, -1)), -1);
  if (cfg.scoreFunc === 'sigmoid') w = div(w, sum(w, -1, true));
  w = muls(w, cfg.routeScale);
  const slotOut = new Float32Array(T * k * D);
  noGrad(() => {
    for (let e = 0; e < E; e++) {
      const rows: number[] = [];
      const slots: number[] = [];
      for (let i = 0; i < T * k; i++) if (experts[i] === e) {
        rows.push(Math.floor(i / k));
        slots.push(i);
      }
      if (!rows.length) continue;
      const xe = indexSelect(x, 0, fromArray(Int32Array.from(rows), [rows.length], { dtype: 'i32', device: x.device }));
      const ye = new Mlp(weights, `${prefix}.experts.${e}`, ue8m0).forward(xe, dt).toFloat32();
      for (let r = 0; r < rows.length; r++) slotOut.set(ye.subarray(r * D, (r + 1) * D), slots[r]! * D);
    }
  });
  const shared = cfg.nSharedExperts > 0 ? noGrad(() => new Mlp(weights, `${prefix}.shared_experts`, ue8m0).forward(x, dt)) : null;
  // slots are in ascending expert order: the reference's accumulation order
  const wv = w.toFloat32();
  const acc = new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const wj = wv[t * k + j]!;
      const base = (t * k + j) * D;
      for (let d = 0; d < D; d++) acc[t * D + d] = Math.fround(acc[t * D + d]! + Math.fround(slotOut[base + d]! * wj));
    }
  }
  if (shared) {
    const sv = shared.toFloat32();
    for (let i = 0; i < acc.length; i++) acc[i] = Math.fround(acc[i]! + sv[i]!);
  }
  return { y: cast(fromArray(acc, [T, D], { device: x.device }), dt), experts, weights: w };
}
