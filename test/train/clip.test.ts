import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { ClipError, clipGradNorm, gradNorm } from '../../src/train/clip.js';

function withGrad(values: number[], grad: number[] | null, dtype: T.DType = 'f32'): T.Tensor {
  const p = T.fromArray(values, [values.length], { dtype, requiresGrad: true });
  p.grad = grad ? T.fromArray(grad, [grad.length], { dtype }) : null;
  return p;
}

test('clipGradNorm: global L2 norm over all gradients; scaled by maxNorm/(norm + 1e-6) when above', () => {
  const a = withGrad([0, 0], [3, 4]);
  const b = withGrad([0], [12], 'f64');
  const c = withGrad([0], null); // no gradient: ignored
  const norm = clipGradNorm([a, b, c], 6.5);
  assert.equal(norm, 13);
  const coef = 6.5 / (13 + 1e-6);
  assert.deepEqual(a.grad!.toArray(), [Math.fround(3 * coef), Math.fround(4 * coef)]);
  assert.deepEqual(b.grad!.toArray(), [12 * coef]);
  assert.equal(c.grad, null);
  assert.ok(Math.abs(gradNorm([a, b]) - 6.5) < 1e-5);
});

test('clipGradNorm leaves gradients untouched when the norm is within the limit', () => {
  const a = withGrad([0, 0, 0], [1, -2, 2]);
  const g = a.grad;
  assert.equal(clipGradNorm([a], 3.5), 3);
  assert.equal(a.grad, g);
  assert.deepEqual(a.grad!.toArray(), [1, -2, 2]);
  // bf16 gradients are summed in f32
  const h = withGrad([0, 0], [0.5, 0.5], 'bf16');
  assert.ok(Math.abs(clipGradNorm([h], 10) - Math.SQRT1_2) < 1e-7);
  assert.equal(clipGradNorm([], 1), 0);
});

test('clipGradNorm works on accumulated (broadcast-view) gradients from backward', () => {
  const p = T.fromArray([1, 2, 3, 4], [4], { requiresGrad: true });
  T.backward(T.sum(T.muls(p, 10))); // dL/dp = 10 everywhere (an expanded view)
  assert.equal(clipGradNorm([p], 2), 20);
  const g = p.grad!.toFloat64();
  for (const v of g) assert.ok(Math.abs(v - 10 * (2 / (20 + 1e-6))) < 1e-6);
});

test('clipGradNorm: non-finite norms and bad limits', () => {
  const a = withGrad([0, 0], [NaN, 1]);
  assert.throws(() => clipGradNorm([a], 1, { errorIfNonfinite: true }), (e: unknown) => e instanceof ClipError && /norm is NaN/.test(e.message));
  assert.ok(Number.isNaN(clipGradNorm([a], 1))); // torch's default: scale by NaN and report it
  assert.ok(Number.isNaN(a.grad!.toFloat64()[1]!));
  const b = withGrad([0], [Infinity]);
  assert.equal(clipGradNorm([b], 1), Infinity);
  assert.throws(() => clipGradNorm([b], 0), /maxNorm must be a positive number, got 0/);
  assert.throws(() => clipGradNorm([b], NaN), ClipError);
});
