// RMSNorm and LayerNorm over the last dim, fused in the backend (f32 math for every float dtype but
// f64; the output keeps x's dtype, or for rmsNorm f32 ↔ bf16). Backward passes are written with other ops, in the compute dtype,
// from the closed forms below, so they run on every backend.
import { DsvError } from '../../errors.js';
import { isGradEnabled, noGrad, record } from '../autograd.js';
import { type DType, computeDtype } from '../dtype.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { add, adds, mul, muls, rsqrt, square, sub } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { alloc, requireFloat, sameDevice } from './util.js';
import { cast, contiguous, reshape } from './view.js';

function checkNormArgs(op: string, x: Tensor, w: Tensor, b?: Tensor): number {
  requireFloat(op, x);
  requireFloat(op, w);
  sameDevice(op, x, w, ...(b ? [b] : []));
  if (x.rank === 0) throw new ShapeError(`${op}: input must have rank ≥ 1, got shape ${fmtShape(x.shape)}`);
  const D = x.shape[x.rank - 1]!;
  if (w.rank !== 1 || w.shape[0] !== D) {
    throw new ShapeError(`${op}: weight of shape ${fmtShape(w.shape)} does not match input ${fmtShape(x.shape)} (expected [${D}])`);
  }
  if (b && (b.rank !== 1 || b.shape[0] !== D)) {
    throw new ShapeError(`${op}: bias of shape ${fmtShape(b.shape)} does not match input ${fmtShape(x.shape)} (expected [${D}])`);
  }
  return D;
}

/** An RMSNorm's output dtype: x's, or f32 ↔ bf16 (the kernels' pairs). */
function checkNormOut(op: string, x: Tensor, dtype: DType): void {
  if (dtype !== x.dtype && !((x.dtype === 'bf16' && dtype === 'f32') || (x.dtype === 'f32' && dtype === 'bf16'))) {
    throw new DsvError(`${op}: output dtype ${dtype} for a ${x.dtype} input; expected ${x.dtype === 'f32' || x.dtype === 'bf16' ? 'f32 or bf16' : x.dtype}`);
  }
}

/** Sum a [..., D] tensor over every leading dim → [D] (the weight/bias gradient). */
function sumRows(t: Tensor, D: number): Tensor {
  return sum(reshape(t, [-1, D]), 0);
}

/**
 * y = x · rsqrt(mean(x², -1) + eps) · w, in the reference's order and roundings (the backends' rmsNorm: a
 * halving tree for the sum, ATen's 1/sqrt), in f32 for f32/bf16/f16 rows (f64 for f64), rounded once to
 * `dtype` (default x's; f32 ↔ bf16 may differ from x's).
 */
export function rmsNorm(x: Tensor, w: Tensor, eps: number, dtype: DType = x.dtype): Tensor {
  const D = checkNormArgs('rmsNorm', x, w);
  checkNormOut('rmsNorm', x, dtype);
  const xc = noGrad(() => contiguous(x)); // the node recorded below links to x itself
  const wc = noGrad(() => contiguous(w));
  const out = alloc(x.backend, x.shape, dtype);
  x.backend.rmsNorm(out, xc, wc, eps);
  return record(out, 'rmsNorm', [x, w], (g) => {
    // r = (mean(x²) + eps)^(−½), y_j = x_j·r·w_j:
    //   dw_j = Σ_rows g_j·x_j·r
    //   dx_i = r·(g_i·w_i) − x_i·r³·(1/D)·Σ_j g_j·w_j·x_j
    const ct = computeDtype(x.dtype);
    const xf = cast(xc, ct);
    const gf = cast(g, ct);
    const wf = cast(wc, ct);
    const r = rsqrt(adds(mean(square(xf), -1, true), eps));
    const gw = mul(gf, wf);
    const dot = sum(mul(gw, xf), -1, true);
    const dx = sub(mul(gw, r), mul(xf, muls(mul(mul(square(r), r), dot), 1 / D)));
    const dw = w.requiresGrad ? cast(sumRows(mul(gf, mul(xf, r)), D), w.dtype) : null;
    return [cast(dx, x.dtype), dw];
  });
}

/**
 * The pre-norm residual step (the reference's RMSNorm(x, residual)): h = x + residual in the compute dtype
 * (f32; f64 for f64), out = rmsNorm(h)·w of the unrounded h, both rounded to `dtype` (the new residual
 * stream is h in `dtype`). One backend launch for inference; when a gradient is wanted, or x and the
 * residual differ in dtype (a tensor-parallel rank's f32 partial sum), the same values from add and
 * rmsNorm, whose backward passes carry the gradient.
 */
export function addRmsNorm(x: Tensor, residual: Tensor, w: Tensor, eps: number, dtype: DType): { out: Tensor; residual: Tensor } {
  checkNormArgs('addRmsNorm', x, w);
  requireFloat('addRmsNorm', residual);
  sameDevice('addRmsNorm', x, residual, w);
  if (residual.shape.length !== x.shape.length || residual.shape.some((d, i) => d !== x.shape[i])) {
    throw new ShapeError(`addRmsNorm: residual ${fmtShape(residual.shape)} must have x's shape ${fmtShape(x.shape)}`);
  }
  checkNormOut('addRmsNorm', x, dtype);
  const ct = computeDtype(x.dtype);
  const grad = isGradEnabled() && (x.requiresGrad || residual.requiresGrad || w.requiresGrad);
  if (grad || x.dtype !== residual.dtype) {
    const h = add(cast(x, ct), cast(residual, ct));
    return { out: rmsNorm(h, w, eps, dtype), residual: cast(h, dtype) };
  }
  const out = alloc(x.backend, x.shape, dtype);
  const h = alloc(x.backend, x.shape, dtype);
  x.backend.rmsNormResidual(out, h, contiguous(x), contiguous(residual), contiguous(w), eps);
  return { out, residual: h };
}

/** y = (x − mean) · rsqrt(var + eps) · w + b over the last dim (biased variance, as torch). */
export function layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
  const D = checkNormArgs('layerNorm', x, w, b);
  requireFloat('layerNorm', b);
  const xc = noGrad(() => contiguous(x)); // the node recorded below links to x itself
  const wc = noGrad(() => contiguous(w));
  const bc = noGrad(() => contiguous(b));
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.layerNorm(out, xc, wc, bc, eps);
  return record(out, 'layerNorm', [x, w, b], (g) => {
    // x̂ = (x − μ)·r, y = x̂·w + b:
    //   db = Σ_rows g, dw = Σ_rows g·x̂
    //   dx = r·(g·w − mean(g·w) − x̂·mean(g·w·x̂))
    const ct = computeDtype(x.dtype);
    const xf = cast(xc, ct);
    const gf = cast(g, ct);
    const wf = cast(wc, ct);
    const mu = mean(xf, -1, true);
    const xm = sub(xf, mu);
    const r = rsqrt(adds(mean(square(xm), -1, true), eps));
    const xhat = mul(xm, r);
    const gw = mul(gf, wf);
    const dx = mul(r, sub(sub(gw, mean(gw, -1, true)), mul(xhat, mean(mul(gw, xhat), -1, true))));
    return [
      cast(dx, x.dtype),
      w.requiresGrad ? cast(sumRows(mul(gf, xhat), D), w.dtype) : null,
      b.requiresGrad ? cast(sumRows(gf, D), b.dtype) : null,
    ];
  });
}
