// RMSNorm as the reference's RMSNorm module: f32 math (x·rsqrt(mean(x²)+eps)·w with an f32 weight),
// output rounded to the activation dtype. The fused form adds the residual first, in f32, and hands
// back the sum rounded to the activation dtype as the new residual (the reference rounds the residual
// stream to bf16 after every add in bf16 runs).
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { add } from '../tensor/ops/elementwise.js';
import { rmsNorm } from '../tensor/ops/norm.js';
import { cast } from '../tensor/ops/view.js';

export function rmsNormTo(x: Tensor, w: Tensor, eps: number, dt: DType): Tensor {
  return cast(rmsNorm(cast(x, 'f32'), w, eps), dt);
}

/** (norm(x + residual), x + residual); with no residual yet: (norm(x), x). */
export function addRmsNorm(x: Tensor, residual: Tensor | null, w: Tensor, eps: number, dt: DType): { out: Tensor; residual: Tensor } {
  if (residual === null) return { out: rmsNormTo(x, w, eps, dt), residual: x };
  const sum = add(cast(x, 'f32'), cast(residual, 'f32'));
  return { out: cast(rmsNorm(sum, w, eps), dt), residual: cast(sum, dt) };
}
