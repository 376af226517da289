// Keep Sampling Mask (../shared/docs/rl.md §1.6, invariant 6 of §6) and the mask's rule, CSR form and gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { DsvError } from '../../src/errors.js';
import {
  GATHER_RATIO, checkSamplingMask, denseToMask, keptTokens, maskToDense, maskedLogSoftmax, maskedTokenLogProbs, samplingMask,
} from '../../src/rl/keep-sampling-mask.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('invariant 6: top-p 0.8 over logits [2, 1, 0, −1] keeps {0, 1}; masked log p −0.313262, full −0.440190, ratio 0.880797 = kept mass', () => {
  const logits = T.fromArray([2, 1, 0, -1], [1, 4]);
  const p = T.softmax(logits, -1).toFloat64();
  [0.643914, 0.236883, 0.087144, 0.032059].forEach((v, i) => close(p[i]!, v, 1e-6, `p[${i}]`));
  const mask = samplingMask(logits, { temperature: 1, topP: 0.8 });
  assert.deepEqual(Array.from(mask.indptr), [0, 2]);
  assert.deepEqual(Array.from(mask.indices), [0, 1]);
  const tok = T.fromArray([0], [1], { dtype: 'i32' });
  const full = T.logSoftmax(logits, -1).toFloat64()[0]!;
  const masked = maskedTokenLogProbs(logits, tok, mask, 1).item();
  close(full, -0.44019, 1e-6, 'full-vocab log p');
  close(masked, -0.313262, 1e-6, 'masked log p');
  // the trainer without the mask against the engine's (masked) π_old: r = kept mass, not 1
  close(Math.exp(full - masked), 0.880797, 1e-6, 'unmasked ratio');
  close(p[0]! + p[1]!, 0.880797, 1e-6, 'kept mass');
  // with the mask replayed on π_θ at θ = θ_old, r ≡ 1 for every kept token
  const toks = T.fromArray([0, 1], [2], { dtype: 'i32' });
  const two = T.fromArray([2, 1, 0, -1, 2, 1, 0, -1], [2, 4]);
  const m2 = samplingMask(two, { temperature: 1, topP: 0.8 });
  const lpOld = maskedTokenLogProbs(two, toks, m2, 1).toFloat64();
  const lpNew = maskedTokenLogProbs(T.fromArray(two.toFloat32(), [2, 4]), toks, m2, 1).toFloat64();
  for (let i = 0; i < 2; i++) assert.equal(Math.exp(lpNew[i]! - lpOld[i]!), 1);
});

test('mask rule: top-k ties go to lower ids, min-p keeps p ≥ min_p·p_max, top-p boundary ties cut by id, order min-p → top-k → top-p (renormalised)', () => {
  // ties: tokens 1, 2, 3 share a logit
  const row = [0, 1, 1, 1, -5];
  assert.deepEqual(Array.from(keptTokens(row, { temperature: 1, topK: 2 })), [1, 2]);
  // top-p: p ∝ [e^0, e, e, e, e^-5]; the first token of the order (id 1) holds < 0.5, two reach ≥ 0.5 →
  // the boundary falls between equal probabilities: lower ids stay
  assert.deepEqual(Array.from(keptTokens(row, { temperature: 1, topP: 0.5 })), [1, 2]);
  // min-p: p_v ≥ 0.5·p_max keeps the three tied tokens only (e^-1 < 0.5)
  assert.deepEqual(Array.from(keptTokens(row, { temperature: 1, minP: 0.5 })), [1, 2, 3]);
  assert.deepEqual(Array.from(keptTokens(row, { temperature: 1, minP: Math.exp(-1) })), [0, 1, 2, 3]);
  // top-p after top-k is computed on the renormalised top-k set (vLLM): logits [2, 1, 0, −1], k = 2:
  // renormalised p = [0.731059, 0.268941] → top-p 0.7 keeps {0}; on the full distribution 0.643914 < 0.7
  // (SGLang's reading) it would keep {0, 1}
  assert.deepEqual(Array.from(keptTokens([2, 1, 0, -1], { temperature: 1, topK: 2, topP: 0.7 })), [0]);
  assert.deepEqual(Array.from(keptTokens([2, 1, 0, -1], { temperature: 1, topP: 0.7 })), [0, 1]);
  // temperature flattens: τ = 4 → p ∝ e^{[0.5, 0.25, 0, −0.25]}, top-p 0.8 now needs three tokens
  assert.deepEqual(Array.from(keptTokens([2, 1, 0, -1], { temperature: 4, topP: 0.8 })), [0, 1, 2]);
  // disabled filters keep everything
  assert.equal(keptTokens([2, 1, 0, -1], { temperature: 1, topP: 1, topK: 0, minP: 0 }).length, 4);
  assert.throws(() => keptTokens([1, 2], { temperature: 0 }), (e: unknown) => e instanceof DsvError && /temperature/.test(e.message));
  assert.throws(() => keptTokens([1, 2], { temperature: 1, topP: 1.5 }), (e: unknown) => e instanceof DsvError && /topP/.test(e.message));
});

test('the sampled token is always in its mask; probabilities are exactly zero outside it', () => {
  const rng = new T.Rng(3);
  const N = 40;
  const V = 16;
  const x = Float32Array.from({ length: N * V }, () => 3 * rng.normal());
  const logits = T.fromArray(x, [N, V]);
  const params = { temperature: 0.7, topP: 0.9, topK: 6, minP: 0.02 };
  const mask = samplingMask(logits, params);
  const lp = maskedLogSoftmax(logits, mask, params.temperature).toFloat64();
  const dense = maskToDense(mask, N, V).toFloat64();
  for (let i = 0; i < N; i++) {
    // sample from the masked distribution (inverse CDF): the token must be a kept one
    let u = rng.uniform();
    let y = -1;
    for (let v = 0; v < V && y < 0; v++) {
      u -= Math.exp(lp[i * V + v]!);
      if (u <= 0) y = v;
    }
    if (y < 0) y = mask.indices[mask.indptr[i + 1]! - 1]!;
    assert.equal(dense[i * V + y], 1, `row ${i}: sampled ${y} outside its mask`);
    let mass = 0;
    for (let v = 0; v < V; v++) {
      const pv = Math.exp(lp[i * V + v]!);
      if (dense[i * V + v] === 0) assert.equal(pv, 0, `row ${i}, token ${v}: probability outside the mask`);
      mass += pv;
    }
    close(mass, 1, 1e-6, `row ${i} kept mass after renormalisation`);
  }
  // a token outside the mask cannot be scored
  const row0 = new Set(mask.indices.subarray(0, mask.indptr[1]!));
  const outside = Array.from({ length: V }, (_, v) => v).find((v) => !row0.has(v))!;
  const toks = new Int32Array(N);
  toks[0] = outside;
  for (let i = 1; i < N; i++) toks[i] = mask.indices[mask.indptr[i]!]!;
  assert.throws(() => maskedTokenLogProbs(logits, T.fromArray(toks, [N], { dtype: 'i32' }), mask, 0.7),
    (e: unknown) => e instanceof DsvError && /outside its sampling mask/.test(e.message));
});

test('CSR round trip (dense ↔ CSR) and validation errors name the field', () => {
  const mask = { indptr: Int32Array.from([0, 2, 2, 5]), indices: Int32Array.from([1, 3, 0, 2, 4]) };
  const dense = maskToDense(mask, 3, 5);
  assert.deepEqual(dense.toArray(), [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]]);
  const back = denseToMask(dense);
  assert.deepEqual(Array.from(back.indptr), Array.from(mask.indptr));
  assert.deepEqual(Array.from(back.indices), Array.from(mask.indices));
  // samplingMask's CSR also round-trips
  const logits = T.fromArray(Float32Array.from({ length: 30 }, (_, i) => Math.sin(i * 1.7) * 3), [5, 6]);
  const m = samplingMask(logits, { temperature: 1, topP: 0.85 });
  const m2 = denseToMask(maskToDense(m, 5, 6));
  assert.deepEqual(Array.from(m2.indptr), Array.from(m.indptr));
  assert.deepEqual(Array.from(m2.indices), Array.from(m.indices));
  const bad = (mk: { indptr: Int32Array; indices: Int32Array }, re: RegExp): void =>
    assert.throws(() => checkSamplingMask(mk, 3, 5), (e: unknown) => e instanceof DsvError && re.test(e.message));
  bad({ indptr: Int32Array.from([0, 2, 5]), indices: mask.indices }, /indptr has 3 entries, expected N \+ 1 = 4/);
  bad({ indptr: Int32Array.from([0, 2, 2, 4]), indices: mask.indices }, /must equal the number of indices/);
  bad({ indptr: mask.indptr, indices: Int32Array.from([1, 3, 0, 2, 5]) }, /keeps token 5, expected an id in \[0, 5\)/);
  bad({ indptr: mask.indptr, indices: Int32Array.from([1, 1, 0, 2, 4]) }, /keeps token 1 twice/);
  bad({ indptr: Int32Array.from([0, 3, 2, 5]), indices: mask.indices }, /decreases at row 1/);
});

test('gradients w.r.t. logits: exactly zero outside the mask (autograd), closed form (1[v=y] − π^K_v)/τ inside, finite differences agree', () => {
  const tau = 0.8;
  const z = [1.5, -0.3, 0.9, 2.2, -1.0, 0.1];
  const logits = T.fromArray(Float64Array.from(z), [1, 6], { dtype: 'f64', requiresGrad: true });
  const mask = samplingMask(logits, { temperature: tau, topP: 0.9 });
  const kept = Array.from(mask.indices);
  assert.ok(kept.length >= 2 && kept.length < 6, `a non-trivial mask: ${kept}`);
  const y = 0;
  assert.ok(kept.includes(y));
  const lp = maskedTokenLogProbs(logits, T.fromArray([y], [1], { dtype: 'i32' }), mask, tau);
  T.backward(T.sum(lp));
  const g = logits.grad!.toFloat64();
  let den = 0;
  for (const v of kept) den += Math.exp(z[v]! / tau);
  for (let v = 0; v < 6; v++) {
    if (!kept.includes(v)) assert.equal(g[v], 0, `gradient at masked token ${v}`);
    else close(g[v]!, ((v === y ? 1 : 0) - Math.exp(z[v]! / tau) / den) / tau, 1e-12, `closed form at ${v}`);
  }
  const r = T.gradcheck((x) => maskedTokenLogProbs(x, T.fromArray([y, 3], [2], { dtype: 'i32' }), { indptr: Int32Array.from([0, kept.length, 2 * kept.length]), indices: Int32Array.from([...kept, ...kept]) }, tau),
    [T.fromArray(Float64Array.from([...z, ...z.map((v) => -v)]), [2, 6], { dtype: 'f64' })]);
  assert.ok(r.ok, r.detail);
});

test('batched [B, T, V] with padding: invalid positions give 0 and no gradient, may have empty mask rows', () => {
  const B = 2;
  const Tn = 3;
  const V = 4;
  const x = Float64Array.from({ length: B * Tn * V }, (_, i) => Math.cos(i));
  const logits = T.fromArray(x, [B, Tn, V], { dtype: 'f64', requiresGrad: true });
  const valid = T.fromArray([1, 1, 1, 1, 0, 0], [B, Tn], { dtype: 'bool' });
  const full = samplingMask(T.fromArray(x, [B * Tn, V], { dtype: 'f64' }), { temperature: 1, topP: 0.7 });
  // empty rows for the two padding positions
  const indptr = Int32Array.from(full.indptr);
  const cut = full.indptr[4]!;
  indptr[5] = cut;
  indptr[6] = cut;
  const mask = { indptr, indices: full.indices.slice(0, cut) };
  const tokens = new Int32Array(B * Tn);
  for (let i = 0; i < 4; i++) tokens[i] = mask.indices[mask.indptr[i]!]!;
  const lp = maskedTokenLogProbs(logits, T.fromArray(tokens, [B, Tn], { dtype: 'i32' }), mask, 1, valid);
  assert.deepEqual(lp.shape, [B, Tn]);
  const v = lp.toFloat64();
  assert.equal(v[4], 0);
  assert.equal(v[5], 0);
  for (let i = 0; i < 4; i++) assert.ok(v[i]! < 0 && Number.isFinite(v[i]!));
  T.backward(T.sum(lp));
  const g = logits.grad!.toFloat64();
  for (let i = 4 * V; i < 6 * V; i++) assert.equal(g[i], 0, `padding gradient at ${i}`);
});

test('both evaluations of log π^K(y), gathered kept logits (small kept sets) and the dense vocabulary mask (large ones), match the closed form, values and gradients, with padding rows', () => {
  const V = 64;
  const N = 5;
  const tau = 0.7;
  const x = Float64Array.from({ length: N * V }, (_, i) => 2 * Math.sin(1.7 * i) + Math.cos(0.3 * i * i));
  const ok = [1, 1, 0, 1, 0];
  for (const [path, params] of [['gathered', { temperature: tau, topK: 5 }], ['dense', { temperature: tau, topP: 0.999 }]] as const) {
    const full = samplingMask(T.fromArray(x, [N, V], { dtype: 'f64' }), params);
    // padding rows 2 and 4 empty, as the collated batch has them
    const rows = Array.from({ length: N }, (_, i) => (ok[i] ? Array.from(full.indices.subarray(full.indptr[i]!, full.indptr[i + 1]!)) : []));
    const kmax = Math.max(...rows.map((r) => r.length));
    assert.equal(kmax * GATHER_RATIO <= V, path === 'gathered', `${path}: kmax ${kmax}`);
    const indptr = Int32Array.from([0, ...rows.map((_, i) => rows.slice(0, i + 1).reduce((a, r) => a + r.length, 0))]);
    const mask = { indptr, indices: Int32Array.from(rows.flat()) };
    // the sampled token: the last kept id of each trained row (not the argmax)
    const tokens = rows.map((r) => r[r.length - 1] ?? 0);
    const logits = T.fromArray(x, [N, V], { dtype: 'f64', requiresGrad: true });
    const valid = T.fromArray(ok, [N], { dtype: 'bool' });
    const lp = maskedTokenLogProbs(logits, T.fromArray(tokens, [N], { dtype: 'i32' }), mask, tau, valid);
    const got = lp.toFloat64();
    T.backward(T.sum(lp));
    const g = logits.grad!.toFloat64();
    for (let i = 0; i < N; i++) {
      if (!ok[i]) {
        assert.equal(got[i], 0, `${path}: padding row ${i}`);
        for (let v = 0; v < V; v++) assert.equal(g[i * V + v], 0, `${path}: padding gradient ${i}, ${v}`);
        continue;
      }
      const den = rows[i]!.reduce((a, v) => a + Math.exp(x[i * V + v]! / tau), 0);
      close(got[i]!, x[i * V + tokens[i]!]! / tau - Math.log(den), 1e-12, `${path}: row ${i}`);
      for (let v = 0; v < V; v++) {
        const want = rows[i]!.includes(v) ? ((v === tokens[i] ? 1 : 0) - Math.exp(x[i * V + v]! / tau) / den) / tau : 0;
        if (want === 0) assert.equal(g[i * V + v], 0, `${path}: gradient outside the mask at ${i}, ${v}`);
        else close(g[i * V + v]!, want, 1e-12, `${path}: gradient at ${i}, ${v}`);
      }
    }
    const r = T.gradcheck((z) => maskedTokenLogProbs(z, T.fromArray(tokens, [N], { dtype: 'i32' }), mask, tau, valid), [T.fromArray(x, [N, V], { dtype: 'f64' })]);
    assert.ok(r.ok, `${path}: ${r.detail}`);
  }
});
