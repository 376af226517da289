// GRPO (../shared/docs/rl.md §1.2): group-relative advantages (invariant 1), the clipped surrogate
// (invariant 2) and the loss aggregation (invariant 7), each with the doc's numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { DsvError } from '../../src/errors.js';
import { aggregateTokens, clippedSurrogate, groupAdvantages } from '../../src/rl/grpo.js';
import { assertClose, assertGradcheck, assertThrowsWith } from '../tensor/helpers.js';

const f64 = (nested: unknown, grad = false): T.Tensor => T.tensor(nested, { dtype: 'f64', requiresGrad: grad });

test('invariant 1: R = [1,0,0,1] → Â = [0.5, −0.5, −0.5, 0.5], mean-centred only (std-normalised would be ±0.866025)', () => {
  const R = f64([1, 0, 0, 1]);
  assertClose(groupAdvantages(R, 4), [0.5, -0.5, -0.5, 0.5], 1e-15);
  // the comparison the doc warns against: unbiased std of [1,0,0,1] is √(1/3), so ±0.5/0.57735 = ±0.866025
  assertClose(groupAdvantages(R, 4, { scale: 'group' }), [0.866025, -0.866025, -0.866025, 0.866025], 1e-5);
});

test('invariant 1: Σ_i Â_i = 0 within every group; groups are the contiguous runs of G rows', () => {
  const R = f64([0.3, 1.7, -2.0, 5.0, 0.25, 0.25, 9.0, -1.0, 0.0]);
  const A = groupAdvantages(R, 3).toFloat64();
  for (let g = 0; g < 3; g++) {
    const s = A[3 * g]! + A[3 * g + 1]! + A[3 * g + 2]!;
    assert.ok(Math.abs(s) < 1e-14, `group ${g}: Σ Â = ${s}`);
  }
  assertClose(T.tensor(Array.from(A.slice(0, 3))), [0.3 - 0, 1.7 - 0, -2.0 - 0], 1e-12); // group 0 mean is 0
  assertClose(T.tensor(Array.from(A.slice(3, 6))), [5 - 11 / 6, 0.25 - 11 / 6, 0.25 - 11 / 6], 1e-12);
});

test('invariant 1: an all-equal group gives Â ≡ 0 (and a zero policy gradient: only a KL term could train on it)', () => {
  const A = groupAdvantages(f64([0.7, 0.7, 0.7, 0.7, 1, 0, 0, 1]), 4);
  assert.ok(Array.from(A.toFloat64()).slice(0, 4).every((v) => v === 0), `Â = ${A.toFloat64()}`);
  const logp = f64([[-1.0, -2.0], [-0.5, -0.1], [-3.0, -0.2], [-1.1, -1.3]], true);
  const old = f64([[-1.2, -1.9], [-0.4, -0.3], [-2.9, -0.2], [-1.0, -1.0]]);
  const surr = clippedSurrogate(logp, old, T.narrow(A, 0, 0, 4), 0.2);
  T.backward(T.neg(aggregateTokens(surr, undefined)));
  assert.ok(Array.from(logp.grad!.toFloat64()).every((v) => v === 0), `gradient ${logp.grad!.toFloat64()}`);
});

test('groupAdvantages rejects bad arguments with the argument named', () => {
  assert.throws(() => groupAdvantages(f64([1, 2, 3]), 2), (e: unknown) => e instanceof DsvError && /groupSize 2/.test((e as Error).message));
  assert.throws(() => groupAdvantages(f64([1, 2]), 0), /groupSize must be a positive integer/);
  assert.throws(() => groupAdvantages(f64([[1, 2]]), 2), /rewards must be \[sequences\]/);
  assert.throws(() => groupAdvantages(f64([1, NaN]), 2), /rewards\[1\] is NaN/);
  assert.throws(() => groupAdvantages(f64([1, 2]), 2, { scale: 'batch' as never }), /scale must be/);
});

/** value and d/d logp of the surrogate for one token with ratio r and advantage A (π_old = 1). */
function surrogateAt(r: number, A: number): { value: number; grad: number } {
  const logp = f64([[Math.log(r)]], true);
  const s = clippedSurrogate(logp, f64([[0]]), f64([A]), 0.2);
  T.backward(T.sum(s));
  return { value: s.item(), grad: logp.grad!.item() };
}

test('invariant 2: (1.3, 0.5) → 0.60 and (0.7, −0.5) → −0.40 are clipped: zero gradient', () => {
  for (const [r, A, v] of [[1.3, 0.5, 0.6], [0.7, -0.5, -0.4]] as const) {
    const { value, grad } = surrogateAt(r, A);
    assert.ok(Math.abs(value - v) < 1e-12, `(${r}, ${A}) → ${value}, expected ${v}`);
    assert.ok(grad === 0, `(${r}, ${A}) gradient ${grad}`); // ±0
  }
});

test('invariant 2: (1.3, −0.5) → −0.65 is NOT clipped: gradient r·A = −0.65 flows', () => {
  const { value, grad } = surrogateAt(1.3, -0.5);
  assert.ok(Math.abs(value + 0.65) < 1e-12, `value ${value}`);
  assert.ok(Math.abs(grad + 0.65) < 1e-12, `d/d log π_θ = r·A, got ${grad}`);
});

test('invariant 2: (0.7, 0.5) → 0.35 and (1.0, 0.5) → 0.5 are unclipped (gradient r·A)', () => {
  for (const [r, A, v] of [[0.7, 0.5, 0.35], [1.0, 0.5, 0.5]] as const) {
    const { value, grad } = surrogateAt(r, A);
    assert.ok(Math.abs(value - v) < 1e-12, `(${r}, ${A}) → ${value}`);
    assert.ok(Math.abs(grad - r * A) < 1e-12, `(${r}, ${A}) gradient ${grad}`);
  }
});

test('invariant 2: at r = 1 GRPO is the on-policy policy gradient Â·∇log π_θ (through the logits, autograd and closed form)', () => {
  // one sequence of 2 tokens over a vocab of 3; π_old = π_θ, so r ≡ 1
  const logits = f64([[0.2, -0.4, 1.1], [0.0, 0.5, -0.3]], true);
  const toks = T.fromArray(BigInt64Array.from([2n, 0n]), [2, 1], { dtype: 'i64' });
  const logp = T.reshape(T.gather(T.logSoftmax(logits, -1), 1, toks), [1, 2]);
  const A = 0.7;
  const surr = clippedSurrogate(logp, T.detach(logp), f64([A]), 0.2);
  assertClose(surr, [A, A], 1e-15);
  T.backward(aggregateTokens(surr, undefined)); // J = (1/2) Σ_t Â·r_t
  const p = T.softmax(T.detach(logits), -1).toArray() as number[][];
  // ∇_logits log π(tok) = onehot(tok) − p; J's gradient = (Â/|o|) Σ_t (onehot − p)
  const expected = [0, 1].flatMap((t) => p[t]!.map((pv, v) => (A / 2) * ((v === [2, 0][t] ? 1 : 0) - pv)));
  assertClose(logits.grad!, expected, 1e-12);
});

test('clippedSurrogate gradients match finite differences away from the clip kinks; padded −∞ tokens give 0, no NaN', () => {
  const old = f64([[-1.0, -2.0, -0.5], [-0.3, -1.0, -1.0]]);
  const adv = f64([0.8, -1.2]);
  const logp = f64([[-1.05, -1.9, -0.6], [-0.25, -1.1, -0.9]]); // ratios within 0.8..1.2 of the kinks? all |Δ| ≤ 0.1 → inside the clip
  assertGradcheck((x) => clippedSurrogate(x, old, adv, 0.2), [logp]);
  const padded = f64([[-1.0, -Infinity], [-0.5, -0.2]], true);
  const mask = T.tensor([[1, 0], [1, 1]], { dtype: 'bool' });
  const s = clippedSurrogate(padded, f64([[-1.0, -Infinity], [-0.5, -0.3]]), adv, 0.2, { mask });
  assert.equal(s.toFloat64()[1], 0);
  T.backward(T.sum(s));
  assert.ok(Array.from(padded.grad!.toFloat64()).every(Number.isFinite), 'finite gradients');
  assert.equal(padded.grad!.toFloat64()[1], 0);
});

test('clippedSurrogate rejects bad shapes and ε with the argument named', () => {
  const x = f64([[0, 0]]);
  assert.throws(() => clippedSurrogate(x, f64([[0, 0, 0]]), f64([1]), 0.2), /logpOld has shape \[1, 3\], expected \[1, 2\]/);
  assert.throws(() => clippedSurrogate(x, x, f64([1, 2]), 0.2), /advantages has shape \[2\], expected \[1\]/);
  assert.throws(() => clippedSurrogate(x, x, f64([1]), 1.5), /eps must be in \(0, 1\)/);
  assert.throws(() => clippedSurrogate(f64([0, 0]), x, f64([1]), 0.2), /logp must be \[sequences, T\]/);
});

test('invariant 7: seq1 = [1,1], seq2 = [0,0,0,0], L_max = 4 → grpo 0.5, token-mean 0.333333, dr_grpo 0.25', () => {
  const x = f64([[1, 1, 0, 0], [0, 0, 0, 0]]);
  const mask = T.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], { dtype: 'bool' });
  assertClose(aggregateTokens(x, mask), [0.5], 1e-15);
  assertClose(aggregateTokens(x, mask, { mode: 'seq-mean-token-mean' }), [0.5], 1e-15);
  assertClose(aggregateTokens(x, mask, { mode: 'token-mean' }), [1 / 3], 1e-15);
  assertClose(aggregateTokens(x, mask, { mode: 'dr_grpo', maxLen: 4 }), [0.25], 1e-15);
  // a 0/1 float mask is the same mask; values under padding do not count
  const garbage = f64([[1, 1, 99, -7], [0, 0, 0, 0]]);
  assertClose(aggregateTokens(garbage, f64([[1, 1, 0, 0], [1, 1, 1, 1]])), [0.5], 1e-15);
});

test('invariant 7: with the global sequence count, micro-batches (gradient accumulation) reproduce the full batch loss and gradient', () => {
  const vals = [[0.3, -1.2, 0.8, 0.1, 2.0], [1.0, 0.0, 0.0, 0.0, 0.0], [-0.5, 0.4, 0.9, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2, -3.0]];
  const lens = [5, 1, 3, 4];
  const maskRows = lens.map((l) => [0, 1, 2, 3, 4].map((t) => (t < l ? 1 : 0)));
  const full = f64(vals, true);
  const L = aggregateTokens(full, f64(maskRows));
  T.backward(L);
  // by hand: mean over 4 sequences of each one's token mean
  const hand = vals.reduce((s, row, i) => s + row.slice(0, lens[i]).reduce((a, b) => a + b, 0) / lens[i]!, 0) / 4;
  assertClose(L, [hand], 1e-14);
  const a = f64(vals.slice(0, 1), true);
  const b = f64(vals.slice(1), true);
  const la = aggregateTokens(a, f64(maskRows.slice(0, 1)), { numSequences: 4 });
  const lb = aggregateTokens(b, f64(maskRows.slice(1)), { numSequences: 4 });
  T.backward(la);
  T.backward(lb);
  assertClose(T.tensor([la.item() + lb.item()]), [L.item()], 1e-14);
  assertClose(T.cat([a.grad!, b.grad!], 0), full.grad!, 1e-15);
  // the local per-micro-batch mean is what breaks it (huggingface/trl#3021): averaging the two local
  // means weights the single sequence of micro-batch a as much as the three of b
  const local = (aggregateTokens(f64(vals.slice(0, 1)), f64(maskRows.slice(0, 1))).item() + aggregateTokens(f64(vals.slice(1)), f64(maskRows.slice(1))).item()) / 2;
  assert.ok(Math.abs(local - L.item()) > 1e-3, `local-normalised accumulation ${local} should differ from ${L.item()}`);
  // token-mean with the global token count accumulates exactly too
  const nTok = lens.reduce((s, l) => s + l, 0);
  const tm = aggregateTokens(f64(vals.slice(0, 1)), f64(maskRows.slice(0, 1)), { mode: 'token-mean', numTokens: nTok }).item()
    + aggregateTokens(f64(vals.slice(1)), f64(maskRows.slice(1)), { mode: 'token-mean', numTokens: nTok }).item();
  assertClose(T.tensor([tm]), [aggregateTokens(f64(vals), f64(maskRows), { mode: 'token-mean' }).item()], 1e-14);
});

test('aggregateTokens: a sequence with no valid token adds 0; bad options are named', () => {
  const x = f64([[2, 4], [5, 5]]);
  assertClose(aggregateTokens(x, f64([[1, 1], [0, 0]])), [1.5], 1e-15); // (3 + 0) / 2
  assert.throws(() => aggregateTokens(x, undefined, { mode: 'sum' as never }), /mode must be/);
  assert.throws(() => aggregateTokens(x, undefined, { numSequences: 0 }), /numSequences must be a positive number/);
  assertThrowsWith(() => aggregateTokens(x, f64([[1, 1]])), ['aggregateTokens', 'mask', '[1, 2]', '[2, 2]'], DsvError);
});
