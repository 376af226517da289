// The composed objective (Eq. 5 + 7 + 8) on a tiny hand-made batch, against a hand computation of
// every token's term and gradient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { DsvError } from '../../src/errors.js';
import { groupAdvantages } from '../../src/rl/grpo.js';
import { policyLoss } from '../../src/rl/policy-loss.js';
import { assertClose, assertGradcheck } from '../tensor/helpers.js';

const f64 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f64', requiresGrad: grad });
const NEG = -Infinity;

// Two sequences of one prompt (G = 2), rewards [0, 1] → Â = [−0.5, +0.5]; ε = 0.2, β = 0.1, δ = 0.2.
// seq 0: 3 tokens, π_θ fell (OPSM statistic 0.266667 > δ, Â < 0) → policy term masked.
// seq 1: 2 tokens + 1 padding (−∞ logprobs); ratios e^0.1 (unclipped) and e^0.2 = 1.2214 > 1.2 (clipped, Â > 0).
const LOGP = [[-1.2, -2.5, -0.6], [-0.4, -1.3, NEG]];
const OLD = [[-1.0, -2.0, -0.5], [-0.5, -1.5, NEG]];
const REF = [[-1.1, -2.2, -0.4], [-0.6, -1.0, NEG]];
const MASK = [[1, 1, 1], [1, 1, 0]];
const EPS = 0.2;
const BETA = 0.1;

/** The hand computation: scalar arithmetic straight from the equations. */
function byHand(): { loss: number; grad: number[][] } {
  const A = [-0.5, 0.5];
  const keep = [0, 1]; // seq 0 masked: A < 0 and (0.2 + 0.5 + 0.1)/3 > 0.2
  const lens = [3, 2];
  let loss = 0;
  const grad = [[0, 0, 0], [0, 0, 0]];
  for (let i = 0; i < 2; i++) {
    let seq = 0;
    for (let t = 0; t < lens[i]!; t++) {
      const lp = LOGP[i]![t]!;
      const r = Math.exp(lp - OLD[i]![t]!);
      const d = REF[i]![t]! - lp; // log(π_ref/π_θ)
      const kl = r * (Math.exp(d) - d - 1); // Eq. 7
      const rc = Math.min(Math.max(r, 1 - EPS), 1 + EPS);
      const surr = Math.min(r * A[i]!, rc * A[i]!);
      const clipped = rc * A[i]! < r * A[i]!;
      seq += -(keep[i]! * surr - BETA * kl);
      // d/dlog π_θ: surrogate r·A where unclipped, 0 where clipped; KL r·(log π_θ − log π_ref)
      const dSurr = clipped ? 0 : r * A[i]!;
      grad[i]![t] = (-(keep[i]! * dSurr) + BETA * r * (lp - REF[i]![t]!)) / lens[i]! / 2;
    }
    loss += seq / lens[i]! / 2;
  }
  return { loss, grad };
}

test('policyLoss on a hand-made batch: value and gradient match the hand computation of Eq. 5 + 7 + 8', () => {
  const adv = groupAdvantages(f64([0, 1]), 2);
  assertClose(adv, [-0.5, 0.5], 1e-15);
  const logp = f64(LOGP, true);
  const out = policyLoss({ logp, logpOld: f64(OLD), logpRef: f64(REF), advantages: adv, mask: f64(MASK) }, { eps: EPS, beta: BETA, opsmDelta: 0.2 });
  const hand = byHand();
  assertClose(out.loss, [hand.loss], 1e-14);
  T.backward(out.loss);
  assertClose(logp.grad!, hand.grad.flat(), 1e-14);
  assert.deepEqual(out.keep.toArray(), [[0, 0, 0], [1, 1, 1]]);
  assertClose(out.opsmStatistic, [0.8 / 3, -0.15], 1e-14);
  assert.equal(out.stats.maskedSequenceFraction, 0.5);
  // clipped: seq 0 token 1 (r = e^−0.5 < 0.8, Â < 0) and seq 1 token 1 (r = e^0.2 > 1.2, Â > 0), of 5 valid tokens
  assert.ok(Math.abs(out.stats.clipFraction - 2 / 5) < 1e-15, `clip fraction ${out.stats.clipFraction}`);
  assert.ok(out.stats.klMean > 0);
  assert.ok(out.perToken.toFloat64()[5] === 0, 'padding contributes ±0');
  // The numbers, worked out (6 decimals):
  //   seq 0 (masked): r = [0.818731, 0.606531, 0.904837], r·k3 = [0.004234, 0.030241, 0.019366]
  //                   ℓ = +β·r·k3 only → sequence mean 0.1·0.053841/3 = 0.001795
  //   seq 1 (kept):   r = [1.105171, 1.221403], surrogate [0.552585, 0.6 (clipped)], r·k3 = [0.020701, 0.060898]
  //                   ℓ = −(surr − β·r·k3) = [−0.550515, −0.593910] → sequence mean −0.572212
  //   L = (0.001795 − 0.572212) / 2 = −0.285209
  assertClose(out.loss, [-0.285209], 1e-6);
});

test('policyLoss: gradients match finite differences (away from the clip kinks and the OPSM threshold)', () => {
  const old = f64([[-1.0, -2.0, -0.5], [-0.5, -1.5, -1.0]]);
  const ref = f64([[-1.1, -2.2, -0.4], [-0.6, -1.0, -0.9]]);
  const adv = f64([-0.5, 0.5]);
  const mask = f64([[1, 1, 1], [1, 1, 0]]);
  const x = f64([[-1.2, -2.5, -0.6], [-0.45, -1.4, -1.0]]); // ratios 0.82..1.11: inside the clip; seq 0 masked, seq 1 kept
  assertGradcheck((lp) => policyLoss({ logp: lp, logpOld: old, logpRef: ref, advantages: adv, mask }, { eps: EPS, beta: BETA, opsmDelta: 0.2 }).loss, [x]);
});

test('policyLoss: micro-batches with the global sequence count sum to the full batch (loss and gradient)', () => {
  const full = f64(LOGP, true);
  const base = { logpOld: f64(OLD), logpRef: f64(REF), mask: f64(MASK) };
  const opts = { eps: EPS, beta: BETA, opsmDelta: 0.2 };
  const L = policyLoss({ ...base, logp: full, advantages: f64([-0.5, 0.5]) }, opts).loss;
  T.backward(L);
  const parts = [0, 1].map((i) => {
    const lp = f64([LOGP[i]], true);
    const l = policyLoss({ logp: lp, logpOld: f64([OLD[i]]), logpRef: f64([REF[i]]), mask: f64([MASK[i]]), advantages: f64([[-0.5, 0.5][i]]) }, { ...opts, numSequences: 2 }).loss;
    T.backward(l);
    return { l: l.item(), g: Array.from(lp.grad!.toFloat64()) };
  });
  assertClose(T.tensor([parts[0]!.l + parts[1]!.l]), [L.item()], 1e-14);
  assertClose(full.grad!, [...parts[0]!.g, ...parts[1]!.g], 1e-15);
});

test('policyLoss: OPSM off keeps every sequence; β = 0 needs no π_ref; use_unbiased_kl = false uses plain k3', () => {
  const base = { logp: f64(LOGP), logpOld: f64(OLD), advantages: f64([-0.5, 0.5]), mask: f64(MASK) };
  const off = policyLoss(base, { eps: EPS, beta: 0 });
  assert.deepEqual(off.keep.toArray(), [[1, 1, 1], [1, 1, 1]]);
  assert.equal(off.stats.maskedSequenceFraction, 0);
  assert.equal(off.stats.klMean, 0);
  const unb = policyLoss({ ...base, logpRef: f64(REF) }, { eps: EPS, beta: BETA }).stats.klMean;
  const k3 = policyLoss({ ...base, logpRef: f64(REF) }, { eps: EPS, beta: BETA, unbiasedKl: false }).stats.klMean;
  assert.ok(Math.abs(unb - k3) > 1e-4, `unbiased ${unb} vs k3 ${k3}`);
});

test('policyLoss rejects bad arguments with the argument named', () => {
  const base = { logp: f64(LOGP), logpOld: f64(OLD), advantages: f64([-0.5, 0.5]), mask: f64(MASK) };
  assert.throws(() => policyLoss(base, { eps: EPS, beta: 0.1 }), (e: unknown) => e instanceof DsvError && /logpRef is required when beta > 0/.test((e as Error).message));
  assert.throws(() => policyLoss(base, { eps: EPS, beta: -1 }), /beta must be a finite number ≥ 0/);
  assert.throws(() => policyLoss({ ...base, logpOld: f64([[0]]) }, { eps: EPS, beta: 0 }), /policyLoss: logpOld has shape \[1, 1\], expected \[2, 3\]/);
  assert.throws(() => policyLoss(base, { eps: EPS, beta: 0, opsmDelta: -1 }), /delta must be a finite number ≥ 0/);
});

test('policyLoss in f32 (the training dtype) agrees with the f64 hand computation to 1e-6', () => {
  const f32 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f32', requiresGrad: grad });
  const logp = f32(LOGP, true);
  const out = policyLoss({ logp, logpOld: f32(OLD), logpRef: f32(REF), advantages: f32([-0.5, 0.5]), mask: T.tensor(MASK, { dtype: 'bool' }) }, { eps: EPS, beta: BETA, opsmDelta: 0.2 });
  assert.equal(out.loss.dtype, 'f32');
  const hand = byHand();
  assertClose(out.loss, [hand.loss], 1e-6);
  T.backward(out.loss);
  assertClose(logp.grad!, hand.grad.flat(), 1e-6);
});
