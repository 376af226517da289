// Numerically stable softmax and log-softmax over one dim (max-subtracted; fused in the backend).
import { isGradEnabled, record } from '../autograd.js';
import { Tensor, normAxis } from '../tensor.js';
import { exp, mul, sub } from './elementwise.js';
import { sum } from './reduce.js';
import { alloc, requireFloat } from './util.js';
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

function softmaxBackward(y: Tensor, g: Tensor): Tensor {
  const be = y.backend;
  // composed where the backend has no fused pass, and when the backward itself is being recorded
  if (!be.softmaxBackward || isGradEnabled() || g.dtype !== y.dtype) return mul(y, sub(g, sum(mul(g, y), -1, true)));
  const gc = contiguous(g);
  const dx = alloc(be, y.shape, y.dtype);
  be.softmaxBackward(dx, y, gc);
  return dx;
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
