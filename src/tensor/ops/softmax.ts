// Numerically stable softmax and log-softmax over one dim (max-subtracted; fused in the backend).
import { isGradEnabled, record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape, normAxis } from '../tensor.js';
import { exp, mul, muls, sub } from './elementwise.js';
import { sum } from './reduce.js';
import { alloc, requireFloat, sameDevice } from './util.js';
import { contiguous, transpose } from './view.js';

function lastDim(x: Tensor, axis: number, f: (x: Tensor) => Tensor): Tensor {
  const a = normAxis(axis, x.rank, 'softmax');
  if (a === x.rank - 1) return f(x);
  return transpose(f(contiguous(transpose(x, a, -1))), a, -1);
}

export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('softmax', x);
  return lastDim(x, axis, (xc) => {
    const c = contiguous(xc);
    const out = alloc(c.backend, c.shape, c.dtype);
    c.backend.softmax(out, c, false);
    // dx = y ⊙ (g − Σ g⊙y): one backend pass where it has one, else composed
    return record(out, 'softmax', [c], (g) => [softmaxBackward(out, g)]);
  });
}

function softmaxBackward(y: Tensor, g: Tensor, scale = 1): Tensor {
  const be = y.backend;
  // composed where the backend has no fused pass, and when the backward itself is being recorded
  if (!be.softmaxBackward || isGradEnabled() || g.dtype !== y.dtype) {
    const dx = mul(y, sub(g, sum(mul(g, y), -1, true)));
    return scale === 1 ? dx : muls(dx, scale);
  }
  const gc = contiguous(g);
  const dx = alloc(be, y.shape, y.dtype);
  be.softmaxBackward(dx, y, gc, scale);
  return dx;
}

/**
 * Attention's softmax over the last dim of x [..., D] in one backend pass: p = softmax(z) with
 * z = scale · x, −∞ where `mask` is false, and lse = log Σ exp(z) per row (detached; f32, f64 for f64).
 * mask: bool [..., D] matching x's trailing dims (its rows repeat over x's leading ones), e.g. a causal
 * [S·H, S] pattern shared by every sequence of a [B, S·H, S] block. Differentiable in x through p:
 * dx = scale · p ⊙ (g − Σ g⊙p), zero where masked. A fully masked row gives NaN (as torch) and lse −∞.
 */
export function maskedSoftmax(x: Tensor, scale: number, mask: Tensor | null): { p: Tensor; lse: Tensor } {
  requireFloat('maskedSoftmax', x);
  const D = x.shape[x.rank - 1] ?? 1;
  if (mask) {
    sameDevice('maskedSoftmax', x, mask);
    const tail = x.shape.slice(x.rank - mask.rank);
    if (mask.dtype !== 'bool' || mask.rank < 1 || mask.rank > x.rank || tail.some((d, i) => d !== mask.shape[i])) {
      throw new ShapeError(`maskedSoftmax: mask must be bool with x's trailing dims ${fmtShape(x.shape.slice(-Math.max(1, mask.rank)))}, got ${mask.dtype} ${fmtShape(mask.shape)}`);
    }
  }
  const c = contiguous(x);
  const out = alloc(c.backend, c.shape, c.dtype);
  const lse = alloc(c.backend, c.shape.slice(0, -1), c.dtype === 'f64' ? 'f64' : 'f32');
  if (out.numel > 0 && D > 0) c.backend.softmax(out, c, false, { scale, mask: mask ? contiguous(mask) : undefined, lse });
  return { p: record(out, 'maskedSoftmax', [c], (g) => [softmaxBackward(out, g, scale)]), lse };
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('logSoftmax', x);
  return lastDim(x, axis, (xc) => {
    const c = contiguous(xc);
    const out = alloc(c.backend, c.shape, c.dtype);
    c.backend.softmax(out, c, true);
    // dx = g − softmax(x)·Σ g
    return record(out, 'logSoftmax', [c], (g) => [sub(g, mul(exp(out), sum(g, -1, true)))]);
  });
}
