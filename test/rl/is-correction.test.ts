// TIS / MIS train-inference IS correction (../shared/docs/rl.md §6 invariant 8), C = 2, detached weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { applyIsWeights, misWeights, sequenceIsRatio, tisWeights } from '../../src/rl/is-correction.js';
import { assertClose } from '../tensor/helpers.js';

const f64 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f64', requiresGrad: grad });

test('invariant 8: log(π_old_train/π_rollout) = 1.0 → ratio 2.7183 → TIS 2.0, MIS 0', () => {
  const train = f64([[1.0]]);
  const roll = f64([[0.0]]);
  assertClose(T.exp(T.sub(train, roll)), [2.7183], 1e-4);
  assertClose(tisWeights(train, roll, { clip: 2 }), [2.0], 1e-15);
  assertClose(misWeights(train, roll, { low: 0.5, high: 2 }), [0], 1e-15);
});

test('invariant 8: log-ratios 0.3 → 1.3499 and −0.5 → 0.6065 pass unchanged under both TIS and MIS', () => {
  const train = f64([[0.3, -0.5]]);
  const roll = f64([[0, 0]]);
  assertClose(tisWeights(train, roll), [1.3499, 0.6065], 1e-4);
  assertClose(misWeights(train, roll), [1.3499, 0.6065], 1e-4);
  assertClose(tisWeights(train, roll), [Math.exp(0.3), Math.exp(-0.5)], 1e-15);
  assertClose(misWeights(train, roll), [Math.exp(0.3), Math.exp(-0.5)], 1e-15);
});

test('invariant 8: 100 tokens at 0.012 each: product 3.3201, geometric mean 1.01207 (use the mean of logs)', () => {
  const train = f64([new Array(100).fill(0.012)]);
  const roll = f64([new Array(100).fill(0)]);
  assertClose(sequenceIsRatio(train, roll, { mode: 'product' }), [3.3201], 1e-4);
  assertClose(sequenceIsRatio(train, roll), [1.01207], 1e-5);
  // padding is excluded: the same 100 tokens padded to 150 with garbage give the same geometric mean
  const mask = f64([Array.from({ length: 150 }, (_, t) => (t < 100 ? 1 : 0))]);
  const tp = f64([Array.from({ length: 150 }, (_, t) => (t < 100 ? 0.012 : 9))]);
  assertClose(sequenceIsRatio(tp, f64([new Array(150).fill(0)]), { mask }), [Math.exp(0.012)], 1e-14);
});

test('invariant 8: the weights are detached — the gradient through a weighted term is weight × the term\'s own', () => {
  const train = f64([[1.0, 0.3]], true);
  const w = tisWeights(train, f64([[0, 0]]));
  assert.equal(w.requiresGrad, false);
  assert.equal(misWeights(train, f64([[0, 0]])).requiresGrad, false);
  const x = f64([[0.5, -0.25]], true);
  T.backward(T.sum(applyIsWeights(x, w)));
  assertClose(x.grad!, [2.0, Math.exp(0.3)], 1e-15);
  assert.equal(train.grad, null);
  // sequence weights [S] broadcast over the tokens
  const y = f64([[1, 1], [1, 1]], true);
  T.backward(T.sum(applyIsWeights(y, f64([2, 3]))));
  assertClose(y.grad!, [2, 2, 3, 3], 1e-15);
});

test('TIS/MIS reject bad thresholds and shapes with the argument named', () => {
  const a = f64([[0, 0]]);
  assert.throws(() => tisWeights(a, a, { clip: 0 }), /tisWeights: clip must be a positive number/);
  assert.throws(() => tisWeights(a, a, { clip: 2, clipLow: 3 }), /clipLow must be in \[0, clip = 2\]/);
  assert.throws(() => misWeights(a, a, { low: 3, high: 2 }), /misWeights: low \(3\) must be ≤ high \(2\)/);
  assert.throws(() => misWeights(a, f64([[0]])), /misWeights: logpRollout has shape \[1, 1\], expected \[1, 2\]/);
  assert.throws(() => sequenceIsRatio(a, a, { mode: 'sum' as never }), /mode must be 'geometric' or 'product'/);
  assert.throws(() => applyIsWeights(a, f64([1, 2])), /applyIsWeights: weights has shape \[2\], expected \[1\]/);
});
