// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_ semantics):
//   total = sqrt(Σ_p ||g_p||²) over every parameter that has a gradient
//   coef  = maxNorm / (total + 1e-6); if coef < 1 every gradient is scaled by coef
// Returns the norm before clipping. Each tensor's sum of squares is reduced on its device and the
// per-tensor sums are added on the host in f64, so the result does not depend on parameter order
// beyond f64 rounding.
import { DsvError } from '../errors.js';
import { noGrad } from '../tensor/autograd.js';
import { mul, muls } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { cast } from '../tensor/ops/view.js';
import type { Tensor } from '../tensor/tensor.js';

export class ClipError extends DsvError {}

export interface ClipOptions {
  /** throw when the norm is NaN or infinite instead of scaling gradients by NaN (torch's error_if_nonfinite) */
  errorIfNonfinite?: boolean;
}

/** Sum of squares of all gradients, sqrt'ed: the global L2 norm (0 when no parameter has a gradient). */
export function gradNorm(params: readonly Tensor[]): number {
  let total = 0;
  noGrad(() => {
    for (const p of params) {
      if (!p.grad || p.grad.numel === 0) continue;
      const g = p.grad.dtype === 'f64' ? p.grad : cast(p.grad, 'f32');
      total += sum(mul(g, g)).item();
    }
  });
  return Math.sqrt(total);
}

export function clipGradNorm(params: readonly Tensor[], maxNorm: number, opts: ClipOptions = {}): number {
  if (!(typeof maxNorm === 'number' && maxNorm > 0)) throw new ClipError(`clipGradNorm: maxNorm must be a positive number, got ${maxNorm}`);
  const total = gradNorm(params);
  if (!Number.isFinite(total) && opts.errorIfNonfinite) {
    throw new ClipError(`clipGradNorm: the total gradient norm is ${total}; a gradient holds NaN or infinity`);
  }
  const coef = maxNorm / (total + 1e-6);
  // NaN compares false here, so a NaN norm scales by NaN exactly as torch's clamp(coef, max=1) does.
  if (coef < 1 || Number.isNaN(coef)) {
    noGrad(() => {
      // A new tensor, not an in-place write: an accumulated gradient may be a broadcast (stride-0) view.
      for (const p of params) if (p.grad) p.grad = muls(p.grad, coef);
    });
  }
  return total;
}
