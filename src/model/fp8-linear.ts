// Linear layers over dense or FP8 weights.
//
// Dense: y = x·Wᵀ accumulated in f32 and rounded once to the activation dtype (torch F.linear).
// FP8 (the reference's `linear` → act_quant + fp8_gemm): the fp8Linear operation (src/tensor/ops/
// fp8-linear.ts) — the input quantised per token and per 128 input channels, each 128-wide K block of
// e4m3 products promoted into an f32 accumulator with both scales; the weight stays e4m3 with its
// 128×128 scales on the device.
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { fp8Linear } from '../tensor/ops/fp8-linear.js';
import { linear as denseLinear } from '../tensor/ops/matmul.js';
import { cast } from '../tensor/ops/view.js';
import type { LinearWeight } from './weights.js';

/** y = x·Wᵀ with x [..., in]; the result has dtype `dt`. */
export function applyLinear(x: Tensor, lw: LinearWeight, dt: DType, ue8m0: boolean): Tensor {
  if (lw.kind === 'dense') return cast(denseLinear(x, lw.w), dt);
  return fp8Linear(x, lw.w8, lw.scale, { ue8m0, outDtype: dt });
}
