// RMSNorm as the reference's RMSNorm module, op by op in f32:
//   var = x.pow(2).mean(-1);  x = x · rsqrt(var + eps);  y = (weight · x) → activation dtype
// Each op's result is an f32 tensor there, so each is rounded to f32 here too:
// - the squares are f32 values and their sum is accumulated in f32, as a tree of partial sums (the
//   shape of torch's vectorised CPU and CUDA reductions; halving the row, element j + n/2 onto j);
// - torch's f32 rsqrt is ATen's 1 / sqrt(v): the square root rounded to f32, then the reciprocal
//   rounded to f32 (Vectorized<float>::rsqrt on every CPU ISA, as in the README's CPU replay). That is
//   not always the correctly rounded v^-½. In bf16 runs an output on a bf16 midpoint then rounds the
//   other way, and an FP8 act_quant downstream amplifies it: in tiny-fp8 (row 0, token 45, layer 0's
//   attention input, column 176) a correctly rounded rsqrt puts the f32 value exactly on the bf16
//   midpoint 0.17919921875 (→ 0.1797 by ties-to-even); 1/sqrt puts it one f32 ulp below (→ 0.1787, the
//   reference's), one e4m3 step apart after act_quant, which moved logits 45–47 by 0.24.
// The two go together: this rsqrt on a double-precision sum of squares was 13× further from the
// tiny-f32 golden (7e-5) than on the f32 tree sum (6e-6). The ÷ D is exact for power-of-two widths.
// The fused form adds the residual first, in f32, and hands back the sum rounded to the activation
// dtype as the new residual (the reference rounds the residual stream to bf16 after every add in bf16
// runs).
// All of the above is the backends' rmsNorm and rmsNormResidual ops (src/tensor/ops/norm.ts; the CPU loop
// and the CUDA kernel kernels/norm.cu rmsnorm_tree compute the same tree and the same roundings, and each
// equals the op-by-op form bit for bit on its device). Composed from elementwise ops a norm took ~20
// launches (~25 with the residual), about half of a decode step's launches (mid config); now one.
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { addRmsNorm as addRmsNormOp, rmsNorm } from '../tensor/ops/norm.js';
import { cast } from '../tensor/ops/view.js';
import { wideDtype } from './numerics.js';

/** norm(x) in the reference's f32 (f64) math, rounded to dt; a bf16 x is read as is (widening is exact). */
export function rmsNormTo(x: Tensor, w: Tensor, eps: number, dt: DType): Tensor {
  const f = wideDtype(dt);
  const xin = x.dtype === 'bf16' && f === 'f32' ? x : cast(x, f);
  return rmsNorm(xin, cast(w, f), eps, dt);
}

/** (norm(x + residual), x + residual); with no residual yet: (norm(x), x). */
export function addRmsNorm(x: Tensor, residual: Tensor | null, w: Tensor, eps: number, dt: DType): { out: Tensor; residual: Tensor } {
  if (residual === null) return { out: rmsNormTo(x, w, eps, dt), residual: x };
  return addRmsNormOp(x, residual, cast(w, wideDtype(dt)), eps, dt);
}
