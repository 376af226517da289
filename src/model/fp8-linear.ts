// Linear layers over dense or FP8 weights.
//
// Dense: y = x·Wᵀ accumulated in f32 and rounded once to the activation dtype (torch F.linear).
// FP8 (the reference's `linear` → act_quant + fp8_gemm): the fp8Linear operation (src/tensor/ops/
// fp8-linear.ts) — the input quantised per token and per 128 input channels, each 128-wide K block of
// e4m3 products promoted into an f32 accumulator with both scales; the weight stays e4m3 with its
// 128×128 scales on the device.
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { fp8Linear } from '../tensor/ops/fp8-linear.js';
import { linear as denseLinear } from '../tensor/ops/matmul.js';
import { cast } from '../tensor/ops/view.js';
import type { LinearWeight } from './weights.js';

/**
 * y = x·Wᵀ with x [..., in]; the result has dtype `dt`. In training, a bf16 input meets the f32 master
 * weights as the reference's bf16 weights meet it: through their bf16 copy (torch autocast's rule), so the
 * product is one bf16 GEMM with f32 accumulation and the cast's backward carries the gradient to the
 * master. Inference weights (no gradient: the checkpoint's exact values, f32 on the CPU and bf16 where the
 * backend keepsBf16Weights) meet the input as they are, with no per-call cast of every weight: the product
 * of the same values, and on the CPU bit for bit the host loops its tests compare with.
 */
export function applyLinear(x: Tensor, lw: LinearWeight, dt: DType, ue8m0: boolean): Tensor {
  if (lw.kind === 'dense') {
    const train = lw.w.requiresGrad;
    // an f32 result of a bf16 input is the f32 accumulator itself, not its bf16 rounding widened: a
    // tensor-parallel rank's partial product (parallel.ts), rounded once after the ranks' sum
    if (x.dtype === 'bf16' && dt === 'f32' && !train) return denseLinear(cast(x, 'f32'), lw.w);
    return cast(denseLinear(x, x.dtype === 'bf16' && lw.w.dtype === 'f32' && train ? cast(lw.w, 'bf16') : lw.w), dt);
  }
  return fp8Linear(x, fp8Codes(lw.w8), lw.scale, { ue8m0, outDtype: dt });
}

const decoded = new WeakMap<Tensor, Tensor>();

/**
 * An FP8 weight's operand for the FP8 products: its e4m3 codes, or on a backend that widensFp8Weights (the
 * CPU) their decoded f32 values, decoded once per weight tensor instead of once per product (4× the codes'
 * bytes, held while the weight is). FP8 weights are frozen (the checkpoint's codes: training reads them
 * dequantised into master weights, and new weights are new tensors), so a weight's decoded values never
 * go stale.
 */
export function fp8Codes(w8: Tensor): Tensor {
  if (!w8.backend.widensFp8Weights) return w8;
  let d = decoded.get(w8);
  if (!d) decoded.set(w8, (d = noGrad(() => cast(w8, 'f32'))));
  return d;
}
