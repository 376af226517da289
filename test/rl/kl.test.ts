// The unbiased KL estimate of Eq. 7 (../shared/docs/rl.md §1.3): per-token values and gradient directions
// (invariant 3) and the distribution-level identity E_{π_old}[r·k3] = KL(π_θ‖π_ref) (invariant 4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { k3Kl, unbiasedKl } from '../../src/rl/kl.js';
import { assertClose, assertGradcheck } from '../tensor/helpers.js';

const f64 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f64', requiresGrad: grad });

test('invariant 3: log π_θ = −2.0, log π_old = −2.1, log π_ref = −1.5 → r = 1.105171, k3 = 0.148721, r·k3 = 0.164362', () => {
  const x = f64([[-2.0]], true);
  const v = unbiasedKl(x, f64([[-2.1]]), f64([[-1.5]]));
  assertClose(v, [0.164362], 1e-6);
  assertClose(k3Kl(f64([[-2.0]]), f64([[-1.5]])), [0.148721], 1e-6);
  assertClose(T.tensor([v.item() / 0.148721]), [1.105171], 1e-5); // r·k3 / k3 = r = e^0.1
});

test('invariant 3: ∂(r·k3)/∂log π_θ = r·(log π_θ − log π_ref) = −0.552585 (autograd, closed form, finite difference); plain k3 gives −0.648721', () => {
  const x = f64([[-2.0]], true);
  T.backward(T.sum(unbiasedKl(x, f64([[-2.1]]), f64([[-1.5]]))));
  const g = x.grad!.item();
  assert.ok(Math.abs(g - -0.552585) < 1e-6, `autograd ${g}`);
  assert.ok(Math.abs(g - Math.exp(0.1) * (-2.0 + 1.5)) < 1e-12, 'closed form r·(log π_θ − log π_ref)');
  const h = 1e-6;
  const f = (lp: number): number => T.noGrad(() => unbiasedKl(f64([[lp]]), f64([[-2.1]]), f64([[-1.5]])).item());
  const fd = (f(-2.0 + h) - f(-2.0 - h)) / (2 * h);
  assert.ok(Math.abs(fd - g) < 1e-8, `finite difference ${fd} vs ${g}`);
  const y = f64([[-2.0]], true);
  T.backward(T.sum(k3Kl(y, f64([[-1.5]]))));
  assert.ok(Math.abs(y.grad!.item() - -0.648721) < 1e-6, `plain k3 gradient ${y.grad!.item()}`);
  // and the full gradcheck on a batch (π_θ only is differentiable: π_old and π_ref are data)
  const old = f64([[-1.0, -2.2, -0.4], [-0.7, -3.0, -1.5]]);
  const ref = f64([[-1.3, -1.9, -0.5], [-0.2, -2.0, -1.0]]);
  assertGradcheck((lp) => unbiasedKl(lp, old, ref), [f64([[-1.1, -2.0, -0.6], [-0.5, -2.5, -1.2]])]);
});

test('invariant 3: extreme π_θ = 0.01, π_ref = 0.5, r = 1: k3 gradient −49.0, corrected −3.912023 (= ln 0.02)', () => {
  const lp = Math.log(0.01);
  const x = f64([[lp]], true);
  T.backward(T.sum(unbiasedKl(x, f64([[lp]]), f64([[Math.log(0.5)]]))));
  assert.ok(Math.abs(x.grad!.item() - Math.log(0.02)) < 1e-9, `corrected ${x.grad!.item()}`);
  assert.ok(Math.abs(x.grad!.item() - -3.912023) < 1e-6);
  const y = f64([[lp]], true);
  T.backward(T.sum(k3Kl(y, f64([[Math.log(0.5)]]))));
  assert.ok(Math.abs(y.grad!.item() - -49.0) < 1e-9, `k3 ${y.grad!.item()}`);
});

test('invariant 3: the ratio is NOT detached (a detached r would give r·dk3 = −0.716948, not −0.552585)', () => {
  const x = f64([[-2.0]], true);
  T.backward(T.sum(unbiasedKl(x, f64([[-2.1]]), f64([[-1.5]]))));
  const detachedR = Math.exp(0.1) * (1 - Math.exp(0.5)); // r · dk3/dlog π_θ with r held constant
  assert.ok(Math.abs(detachedR - -0.716948) < 1e-6);
  assert.ok(Math.abs(x.grad!.item() - detachedR) > 0.1, `gradient ${x.grad!.item()} is the detached-ratio one`);
  // the difference is exactly the term through r: ∂r/∂log π_θ · k3 = r·k3 = 0.164362
  assert.ok(Math.abs(x.grad!.item() - detachedR - 0.164362) < 1e-6);
});

// π_θ's logits are log π_θ (softmax is shift-invariant); the 3 vocabulary entries are laid out as
// 3 "tokens" of one sequence so E_{π_old}[·] = Σ_v π_old(v)·(per-token value at v).
const pOld = [0.6, 0.1, 0.3];
const pTh = [0.4, 0.4, 0.2];
const pRef = [0.3, 0.3, 0.4];
const logRow = (p: number[]): T.Tensor => f64([p.map(Math.log)]);

function expectationUnderOld(perToken: T.Tensor): T.Tensor {
  return T.sum(T.mul(perToken, f64([pOld])));
}

test('invariant 4: E_{π_old}[r·k3] = KL(π_θ‖π_ref) = 0.091516 exactly, while E_{π_old}[k3] = 0.118433', () => {
  const logits = logRow(pTh);
  const lp = T.logSoftmax(logits, -1);
  const exact = pTh.reduce((s, p, v) => s + p * Math.log(p / pRef[v]!), 0);
  assert.ok(Math.abs(exact - 0.091516) < 1e-6);
  assertClose(expectationUnderOld(unbiasedKl(lp, logRow(pOld), logRow(pRef))), [exact], 1e-14);
  assertClose(expectationUnderOld(k3Kl(lp, logRow(pRef))), [0.118433], 1e-6);
});

test('invariant 4: ∇_logits E_{π_old}[r·k3] = ∇KL(π_θ‖π_ref) = [0.078466, 0.078466, −0.156933]; uncorrected ∇E[k3] = [0.2, 0.075, −0.275]', () => {
  const kl = pTh.reduce((s, p, v) => s + p * Math.log(p / pRef[v]!), 0);
  const closed = pTh.map((p, v) => p * (Math.log(p / pRef[v]!) - kl)); // ∂KL/∂z_v = π_v (log π_v/π_ref,v − KL)
  assertClose(T.tensor(closed), [0.078466, 0.078466, -0.156933], 1e-6);
  const z = f64([pTh.map(Math.log)], true);
  T.backward(expectationUnderOld(unbiasedKl(T.logSoftmax(z, -1), logRow(pOld), logRow(pRef))));
  assertClose(z.grad!, closed, 1e-12);
  const w = f64([pTh.map(Math.log)], true);
  T.backward(expectationUnderOld(k3Kl(T.logSoftmax(w, -1), logRow(pRef))));
  assertClose(w.grad!, [0.2, 0.075, -0.275], 1e-12);
});

test('invariant 4: even on-policy (π_old = π_θ) ∇E[k3] = π_θ − π_ref = [0.1, 0.1, −0.2] (reverse KL); only r·k3 gives ∇KL(π_θ‖π_ref)', () => {
  const onPolicy = (unbiased: boolean): Float64Array => {
    const z = f64([pTh.map(Math.log)], true);
    const lp = T.logSoftmax(z, -1);
    const per = unbiased ? unbiasedKl(lp, T.detach(lp), logRow(pRef)) : k3Kl(lp, logRow(pRef));
    T.backward(T.sum(T.mul(per, f64([pTh]))));
    return z.grad!.toFloat64();
  };
  assertClose(T.tensor(Array.from(onPolicy(false))), [0.1, 0.1, -0.2], 1e-12);
  assertClose(T.tensor(Array.from(onPolicy(true))), [0.078466, 0.078466, -0.156933], 1e-6);
});

test('invariant 4: sampled tokens from π_old — the mean of r·k3 is within sampling error of 0.091516, the mean of k3 is not', () => {
  const rng = new T.Rng(14);
  const N = 200_000;
  const toks = new Float64Array(N);
  const cum = [pOld[0]!, pOld[0]! + pOld[1]!];
  for (let i = 0; i < N; i++) {
    const u = rng.uniform();
    toks[i] = u < cum[0]! ? 0 : u < cum[1]! ? 1 : 2;
  }
  const pick = (p: number[]): T.Tensor => T.fromArray(Float64Array.from(toks, (t) => Math.log(p[t]!)), [1, N], { dtype: 'f64' });
  const lp = pick(pTh);
  const est = unbiasedKl(lp, pick(pOld), pick(pRef)).toFloat64();
  const plain = k3Kl(lp, pick(pRef)).toFloat64();
  const meanSe = (a: Float64Array): [number, number] => {
    let m = 0;
    for (const v of a) m += v;
    m /= a.length;
    let s2 = 0;
    for (const v of a) s2 += (v - m) ** 2;
    return [m, Math.sqrt(s2 / (a.length - 1) / a.length)];
  };
  const [m, se] = meanSe(est);
  const [mk, sek] = meanSe(plain);
  assert.ok(Math.abs(m - 0.091516) < 4 * se, `E[r·k3] ≈ ${m} ± ${se}, exact 0.091516`);
  assert.ok(Math.abs(mk - 0.118433) < 4 * sek, `E[k3] ≈ ${mk} ± ${sek}, exact 0.118433`);
  assert.ok(Math.abs(mk - 0.091516) > 10 * sek, 'plain k3 is biased away from the true KL');
});

test('unbiasedKl: padding is 0 with no gradient (even −∞ padding); bad shapes are named', () => {
  const x = f64([[-1.0, -Infinity]], true);
  const v = unbiasedKl(x, f64([[-1.1, -Infinity]]), f64([[-0.9, 0]]), T.tensor([[1, 0]], { dtype: 'bool' }));
  assert.equal(v.toFloat64()[1], 0);
  T.backward(T.sum(v));
  assert.deepEqual(Array.from(x.grad!.toFloat64()).map(Number.isFinite), [true, true]);
  assert.equal(x.grad!.toFloat64()[1], 0);
  assert.throws(() => unbiasedKl(f64([[0, 0]]), f64([[0]]), f64([[0, 0]])), /unbiasedKl: logpOld has shape \[1, 1\], expected \[1, 2\]/);
  assert.throws(() => unbiasedKl(f64([0, 0]), f64([0, 0]), f64([0, 0])), /unbiasedKl: logp must be \[sequences, T\]/);
});
