// Losses: cross-entropy (ignore index, reductions, errors), KL(P‖Q) incl. zero-probability support,
// and the per-token KL estimators with the numbers worked out in docs/rl.md §6.
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { assertClose, assertGradcheck, assertThrowsWith, ints, randn, testEachDevice, to } from './helpers.js';

function logSumExp(row: number[]): number {
  const m = Math.max(...row);
  return m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
}

testEachDevice('crossEntropy: values with ignore index and every reduction', (dev) => {
  const logits = randn([3, 4], 1, dev);
  const rows = logits.toArray() as number[][];
  const targets = ints([1, -100, 3], undefined, dev);
  const nll = [logSumExp(rows[0]!) - rows[0]![1]!, 0, logSumExp(rows[2]!) - rows[2]![3]!];
  assertClose(T.crossEntropy(logits, targets, { reduction: 'none' }), nll, 1e-12);
  assertClose(T.crossEntropy(logits, targets, { reduction: 'sum' }), [nll[0]! + nll[2]!], 1e-12);
  assertClose(T.crossEntropy(logits, targets), [(nll[0]! + nll[2]!) / 2], 1e-12);
  // custom ignore index; f32 logits compute in f32
  const t2 = ints([1, 2, 2], undefined, dev);
  const l2 = T.crossEntropy(T.cast(logits, 'f32'), t2, { ignoreIndex: 2 });
  assert.equal(l2.dtype, 'f32');
  assertClose(l2, [nll[0]!], 1e-6, 1e-6);
  assert.ok(Number.isNaN(T.crossEntropy(logits, ints([-100, -100, -100], undefined, dev)).item()), 'all ignored → NaN (0/0), as torch');
  assert.throws(() => T.crossEntropy(logits, ints([0, 4, 1], undefined, dev)), /crossEntropy: a target is outside \[0, 4\)/);
  assertThrowsWith(() => T.crossEntropy(logits, ints([0, 1], undefined, dev)), ['crossEntropy', '[3, 4]', '[2]']);
});

testEachDevice('gradcheck: crossEntropy with an ignored row (its gradient is exactly zero)', (dev) => {
  const logits = randn([4, 5], 2, dev);
  const targets = ints([4, -100, 0, 2], undefined, dev);
  assertGradcheck((l) => T.crossEntropy(l, targets), [logits]);
  assertGradcheck((l) => T.crossEntropy(l, targets, { reduction: 'none' }), [logits]);
  assertGradcheck((l) => T.crossEntropy(T.reshape(l, [2, 2, 5]), T.reshape(targets, [2, 2]), { reduction: 'sum' }), [logits]);
  const leaf = to(logits, dev, true);
  T.backward(T.crossEntropy(leaf, targets));
  assert.deepEqual((leaf.grad!.toArray() as number[][])[1], [0, 0, 0, 0, 0]);
});

testEachDevice('klDiv = Σ P (log P − log Q): rl.md numbers, zero-probability entries, gradchecks', (dev) => {
  // docs/rl.md §6 item 4: KL(π_θ‖π_ref) = 0.091516 and its gradient w.r.t. π_θ's logits
  const logits = to(T.log(T.tensor([0.4, 0.4, 0.2], { dtype: 'f64' })), dev, true);
  const ref = to(T.log(T.tensor([0.3, 0.3, 0.4], { dtype: 'f64' })), dev);
  const kl = T.klDiv(T.logSoftmax(logits), ref, { reduction: 'sum' });
  assertClose(kl, [0.091516], 1e-6);
  T.backward(kl);
  assertClose(logits.grad!, [0.078466, 0.078466, -0.156933], 1e-6);
  // P has zeros (masked keys): they add nothing, even where Q is also −∞, and get no NaN gradient
  const lp = to(T.tensor([[Math.log(0.5), -Infinity, Math.log(0.5)], [0, -Infinity, -Infinity]], { dtype: 'f64' }), dev, true);
  const lq = to(T.tensor([[Math.log(0.25), -Infinity, Math.log(0.75)], [-0.1, -3, -Infinity]], { dtype: 'f64' }), dev, true);
  const rows = T.klDiv(lp, lq, { reduction: 'none' });
  assertClose(rows, [0.5 * Math.log(2) + 0.5 * Math.log(0.5 / 0.75), 0.1], 1e-12);
  T.backward(T.sum(rows));
  for (const g of [...lp.grad!.toFloat64(), ...lq.grad!.toFloat64()]) assert.ok(Number.isFinite(g), `finite gradient, got ${g}`);
  assert.equal(lq.grad!.toFloat64()[1], 0);
  const a = randn([2, 4], 3, dev);
  const b = randn([2, 4], 4, dev);
  assertGradcheck((a, b) => T.klDiv(T.logSoftmax(a), T.logSoftmax(b)), [a, b]);
  assertGradcheck((a, b) => T.klDiv(T.logSoftmax(a, 0), T.logSoftmax(b, 0), { axis: 0, reduction: 'none' }), [a, b]);
  assertThrowsWith(() => T.klDiv(a, randn([4, 2], 5, dev)), ['klDiv', '[2, 4]', '[4, 2]']);
});

testEachDevice('klPerToken: k1/k2/k3 and the importance-weighted unbiased k3 (rl.md §6 item 3)', (dev) => {
  const lp = (v: number, g = false): T.Tensor => to(T.tensor([v], { dtype: 'f64' }), dev, g);
  const ref = lp(-1.5);
  const old = lp(-2.1);
  const x = lp(-2.0, true);
  const r = T.klPerToken(x, ref, { logpOld: old });
  assertClose(r, [0.164362], 1e-6);
  T.backward(T.sum(r));
  assertClose(x.grad!, [-0.552585], 1e-6);
  const y = lp(-2.0, true);
  const k3 = T.klPerToken(y, ref);
  assertClose(k3, [0.148721], 1e-6);
  T.backward(T.sum(k3));
  assertClose(y.grad!, [-0.648721], 1e-6);
  assertClose(T.klPerToken(lp(-2), ref, { estimator: 'k1' }), [-0.5], 1e-15);
  assertClose(T.klPerToken(lp(-2), ref, { estimator: 'k2' }), [0.125], 1e-15);
  const a = randn([2, 3], 6, dev);
  const b = randn([2, 3], 7, dev);
  const c = randn([2, 3], 8, dev);
  for (const estimator of ['k1', 'k2', 'k3'] as const) {
    assertGradcheck((a, b, c) => T.klPerToken(a, b, { estimator, logpOld: c }), [a, b, c]);
  }
});
