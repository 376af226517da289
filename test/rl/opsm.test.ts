// Off-Policy Sequence Masking (../shared/docs/rl.md §1.4, Eq. 8–9): invariant 5 and each of its sub-cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { opsmMask, opsmStatistic } from '../../src/rl/opsm.js';
import { policyLoss } from '../../src/rl/policy-loss.js';
import { assertClose } from '../tensor/helpers.js';

const f64 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f64', requiresGrad: grad });
const OLD = [-1.0, -2.0, -0.5];
const NEW = [-1.2, -2.5, -0.6];
const keepOf = (adv: number, delta: number): number[] => Array.from(opsmMask(f64([OLD]), f64([NEW]), f64([adv]), delta).keep.toFloat64());

test('invariant 5: log π_old = [−1.0, −2.0, −0.5], log π_θ = [−1.2, −2.5, −0.6] → mean log(π_old/π_θ) = 0.266667', () => {
  assertClose(opsmStatistic(f64([OLD]), f64([NEW])), [0.8 / 3], 1e-15);
  assertClose(opsmStatistic(f64([OLD]), f64([NEW])), [0.266667], 1e-6);
});

test('invariant 5: δ = 0.2 → A = −0.5 masked (M = 0), A = +0.5 kept, A = 0 kept (Â < 0 is strict)', () => {
  assert.deepEqual(keepOf(-0.5, 0.2), [0, 0, 0]);
  assert.deepEqual(keepOf(0.5, 0.2), [1, 1, 1]);
  assert.deepEqual(keepOf(0, 0.2), [1, 1, 1]);
  // the three at once in one batch, per-sequence advantages [S]
  const m = opsmMask(f64([OLD, OLD, OLD]), f64([NEW, NEW, NEW]), f64([-0.5, 0.5, 0]), 0.2);
  assert.deepEqual(m.keep.toArray(), [[0, 0, 0], [1, 1, 1], [1, 1, 1]]);
  assert.deepEqual(Array.from(m.masked.toFloat64()), [1, 1, 1, 0, 0, 0, 0, 0, 0]);
});

test('invariant 5: δ = 0.3 → kept even with A = −0.5 (statistic 0.266667 ≤ δ)', () => {
  assert.deepEqual(keepOf(-0.5, 0.3), [1, 1, 1]);
});

test('invariant 5: statistic = δ exactly → kept (the > is strict)', () => {
  // log-ratios of 0.5 and 0.25 are exact in binary, so the mean 0.375 equals δ bit for bit
  const old = f64([[-1.0, -2.0]]);
  const lp = f64([[-1.5, -2.25]]);
  assert.equal(opsmStatistic(old, lp).item(), 0.375);
  assert.deepEqual(Array.from(opsmMask(old, lp, f64([-1]), 0.375).keep.toFloat64()), [1, 1]);
  assert.deepEqual(Array.from(opsmMask(old, lp, f64([-1]), 0.374).keep.toFloat64()), [0, 0]);
});

test('invariant 5: padding is excluded from the mean (÷ valid length 3, not T = 5), whatever the padded values', () => {
  const old = f64([[...OLD, 0, -Infinity]]);
  const lp = f64([[...NEW, -50, 7]]);
  const mask = T.tensor([[1, 1, 1, 0, 0]], { dtype: 'bool' });
  assertClose(opsmStatistic(old, lp, mask), [0.8 / 3], 1e-15); // ÷ T would give 0.16, and δ = 0.2 would keep it
  assert.deepEqual(Array.from(opsmMask(old, lp, f64([-0.5]), 0.2, mask).keep.toFloat64()), [0, 0, 0, 0, 0]);
  // a 0/1 float mask is the same; a sequence with no valid token has statistic 0 and is kept
  assertClose(opsmStatistic(old, lp, f64([[1, 1, 1, 0, 0]])), [0.8 / 3], 1e-15);
  assert.equal(opsmStatistic(old, lp, f64([[0, 0, 0, 0, 0]])).item(), 0);
});

test('invariant 5: a negative statistic (π_θ rose) is never masked, even with A < 0 and δ = 0', () => {
  const m = opsmMask(f64([NEW]), f64([OLD]), f64([-10]), 0);
  assertClose(m.statistic, [-0.8 / 3], 1e-15);
  assert.deepEqual(Array.from(m.keep.toFloat64()), [1, 1, 1]);
});

test('invariant 5: the mask is constant across a sequence\'s tokens and carries no gradient (π_θ detached)', () => {
  const lp = f64([NEW, [-0.1, -0.2, -0.3]], true);
  const m = opsmMask(f64([OLD, [-0.3, -0.2, -0.1]]), lp, f64([-0.5, -0.5]), 0.2);
  const rows = m.keep.toArray() as number[][];
  for (const row of rows) assert.ok(row.every((v) => v === row[0]), `row ${row} not constant`);
  assert.deepEqual(rows.map((r) => r[0]), [0, 1]);
  assert.equal(m.keep.requiresGrad, false);
  assert.equal(m.statistic.requiresGrad, false);
  // with per-token advantages Â_{i,t} the rule applies per token: only the negative ones are masked
  const pt = opsmMask(f64([OLD]), f64([NEW]), f64([[-0.5, 0.5, 0]]), 0.2);
  assert.deepEqual(Array.from(pt.keep.toFloat64()), [0, 1, 1]);
});

test('invariant 5: the mask applies to the surrogate only, NOT to the KL term', () => {
  // one sequence, masked (A = −0.5, statistic 0.266667 > δ = 0.2): only the KL term may train it
  const ref = f64([[-1.1, -2.2, -0.4]]);
  const run = (opts: { opsmDelta?: number; beta: number }): { loss: number; grad: Float64Array } => {
    const lp = f64([NEW], true);
    const out = policyLoss({ logp: lp, logpOld: f64([OLD]), logpRef: ref, advantages: f64([-0.5]) }, { eps: 0.2, ...opts });
    T.backward(out.loss);
    return { loss: out.loss.item(), grad: lp.grad!.toFloat64() };
  };
  const masked = run({ opsmDelta: 0.2, beta: 0.1 });
  const klOnly = run({ beta: 0.1 }); // same KL, surrogate kept (to subtract it below)
  const surrOnly = run({ beta: 0 }); // the surrogate alone, unmasked
  assert.ok(Math.abs(masked.loss) > 1e-3, 'the KL term survives the mask');
  assertClose(T.tensor([masked.loss]), [klOnly.loss - surrOnly.loss], 1e-14);
  for (let t = 0; t < 3; t++) assert.ok(Math.abs(masked.grad[t]! - (klOnly.grad[t]! - surrOnly.grad[t]!)) < 1e-14, `token ${t}`);
  // and with β = 0 a masked sequence has no gradient at all
  const none = run({ opsmDelta: 0.2, beta: 0 });
  assert.ok(Array.from(none.grad).every((g) => g === 0), `gradient ${none.grad}`);
});

test('opsmMask rejects bad δ and shapes with the argument named', () => {
  assert.throws(() => opsmMask(f64([OLD]), f64([NEW]), f64([1]), -0.1), /opsmMask: delta must be a finite number ≥ 0/);
  assert.throws(() => opsmMask(f64([OLD]), f64([NEW]), f64([1]), NaN), /delta must be/);
  assert.throws(() => opsmMask(f64([OLD]), f64([NEW]), f64([1, 2]), 0.1), /advantages has shape \[2\], expected \[1\]/);
  assert.throws(() => opsmStatistic(f64([OLD]), f64([[0, 0]])), /opsmStatistic: logp has shape \[1, 2\], expected \[1, 3\]/);
  assert.throws(() => opsmStatistic(f64([OLD]), f64([NEW]), f64([[1, 1]])), /opsmStatistic: mask has shape \[1, 2\], expected \[1, 3\]/);
});
