// pickTokens (src/tensor/ops/pick.ts): the token and logprob per row of logits, greedy or drawn at a
// temperature with no filter.
//  - CPU: bit for bit the engine's host sampler (sampleOne) at vocabularies 1 .. 129 280, greedy and
//    τ ∈ {0.7, 1, 1.3} with u from 0 to 1 − 2⁻⁵³, ties, ±0, −∞ entries; rows with a NaN or only −∞ give
//    token −1 (the sampler would throw on them).
//  - One body per backend: greedy tokens exactly the CPU's; a drawn token the CPU's, or else u·S within
//    the summation-order rounding of the cumulative mass at the boundary (a tie, see the op's header);
//    logprobs within that rounding; NaN where the CPU's is NaN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { sampleOne, type SampleJob } from '../../src/engine/sampler-pool.js';
import { distribution } from '../../src/engine/sampler.js';
import { eachDevice, nextSeed } from '../cuda/common.js';
import { rowArgmax } from '../../src/backend/cpu/pick.js';

const U = 2 ** -53;
const TAUS = [0, 1, 0.7, 1.3];

/** R rows of V logits: normal draws, then per row one of the awkward patterns. */
function logits(R: number, V: number, seed: number): Float32Array {
  const rng = new T.Rng(seed);
  const z = Float32Array.from({ length: R * V }, () => rng.normal() * 3);
  for (let r = 0; r < R; r++) {
    const row = z.subarray(r * V, (r + 1) * V);
    const at = (f: number): number => Math.min(V - 1, Math.floor(f * V));
    switch (r % 7) {
      case 1: // the maximum three times: the first wins
        row[at(0.9)] = 30;
        row[at(0.1)] = 30;
        row[at(0.5)] = 30;
        break;
      case 2: // −0 before +0, every other logit below them
        row.fill(-5);
        row[at(0.7)] = 0;
        row[at(0.3)] = -0;
        break;
      case 3: // every other logit −∞
        for (let v = 0; v < V; v += 2) row[v] = -Infinity;
        break;
      case 4: // the maximum in the last column
        row[V - 1] = 40;
        break;
      case 5: // the last third −∞ (a draw near u = 1 falls back to the last id of positive mass)
        row.fill(-Infinity, Math.floor((2 * V) / 3));
        row[0] = Math.max(row[0]!, 0);
        break;
      default:
    }
  }
  return z;
}

function params(R: number, seed: number): { tau: Float64Array; u: Float64Array } {
  const rng = new T.Rng(seed);
  const tau = Float64Array.from({ length: R }, (_, r) => TAUS[r % TAUS.length]!);
  const u = Float64Array.from({ length: R }, (_, r) => (r % 9 === 8 ? 1 - U : r % 9 === 7 ? 0 : rng.uniform()));
  return { tau, u };
}

const pick = (z: Float32Array, R: number, V: number, p: { tau: Float64Array; u: Float64Array }, dev: string): { token: Int32Array; logprob: Float64Array } => {
  const r = T.pickTokens(T.fromBits(z, 'f32', [R, V], { device: dev }), p.tau, p.u);
  return { token: r.token.toHost() as Int32Array, logprob: r.logprob.toHost() as Float64Array };
};

const job = (tau: number, u: number): SampleJob => ({ row: 0, params: { temperature: tau, topP: 1, topK: 0, minP: 0 }, u: tau === 0 ? null : u, logprobs: 0, mask: false });

for (const [R, V] of [[1, 1], [9, 33], [18, 1000], [9, 32000], [4, 129280]] as const) {
  test(`pickTokens on the CPU is the host sampler's token and logprob bit for bit, R ${R} V ${V}`, () => {
    const z = logits(R, V, 11 + V);
    const p = params(R, 3 + V);
    const got = pick(z, R, V, p, 'cpu');
    for (let r = 0; r < R; r++) {
      const s = sampleOne(z.subarray(r * V, (r + 1) * V), job(p.tau[r]!, p.u[r]!));
      assert.equal(got.token[r], s.token, `row ${r} (τ ${p.tau[r]}, u ${p.u[r]}): token`);
      assert.ok(Object.is(got.logprob[r], s.logprob), `row ${r}: logprob ${got.logprob[r]} against the sampler's ${s.logprob}`);
    }
  });
}

test('pickTokens: a NaN logit or a row of −∞ gives token −1 and a NaN logprob, greedy or drawn; +∞ gives its first index and NaN', () => {
  const V = 40;
  const z = new Float32Array(5 * V).fill(1);
  z[5] = NaN;
  z.fill(-Infinity, V, 2 * V);
  z[2 * V + 9] = Infinity;
  z[2 * V + 30] = Infinity;
  z[3 * V] = NaN; // NaN first in the row: every comparison with it is false
  z[4 * V + 17] = NaN;
  const got = pick(z, 5, V, { tau: Float64Array.of(0, 0.8, 0, 0, 1), u: Float64Array.of(0, 0.5, 0, 0, 0.5) }, 'cpu');
  assert.deepEqual([...got.token], [-1, -1, 9, -1, -1]);
  assert.ok(got.logprob.every((x) => Number.isNaN(x)));
});

test('pickTokens rejects bad logits, temperatures and uniforms, naming what it got', () => {
  const x = T.zeros([2, 4], { dtype: 'f32' });
  const ok = Float64Array.of(0, 0);
  assert.throws(() => T.pickTokens(T.zeros([4], { dtype: 'f32' }), ok, ok), /pickTokens: logits must be f32 \[rows, vocab\], got f32 \[4\]/);
  assert.throws(() => T.pickTokens(T.zeros([2, 4], { dtype: 'f64' }), ok, ok), /got f64 \[2, 4\]/);
  assert.throws(() => T.pickTokens(T.zeros([2, 0], { dtype: 'f32' }), ok, ok), /vocabulary dim is empty/);
  assert.throws(() => T.pickTokens(x, [0], ok), /2 rows need 2 temperatures and 2 uniforms, got 1 and 2/);
  assert.throws(() => T.pickTokens(x, [0, -1], ok), /temperature\[1\] must be a finite number ≥ 0, got -1/);
  assert.throws(() => T.pickTokens(x, [0, NaN], ok), /temperature\[1\] must be a finite number ≥ 0, got NaN/);
  assert.throws(() => T.pickTokens(x, [1, 0], [1, 0]), /u\[0\] must be in \[0, 1\), got 1/);
});

/** Σ_{w ≤ v} exp(z_w/τ − zmax) in id order, and S, as the host sampler adds them. */
function cumulative(z: Float32Array, off: number, V: number, tau: number): { at: (v: number) => number; S: number } {
  let zmax = -Infinity;
  for (let v = 0; v < V; v++) zmax = Math.max(zmax, z[off + v]!);
  zmax /= tau;
  const c = new Float64Array(V);
  let s = 0;
  for (let v = 0; v < V; v++) c[v] = s += Math.exp(z[off + v]! / tau - zmax);
  return { at: (v) => c[v]!, S: s };
}

eachDevice('pickTokens matches the CPU reference (greedy exact; a drawn token exact but for a rounding tie; logprobs to rounding)', (dev) => {
  let drawnOffArgmax = 0;
  for (const [R, V] of [[1, 1], [9, 511], [18, 4097], [64, 32000], [9, 129280]] as const) {
    const seed = nextSeed();
    const z = logits(R, V, seed);
    const p = params(R, seed + 1);
    const cpu = pick(z, R, V, p, 'cpu');
    const got = pick(z, R, V, p, dev);
    for (let r = 0; r < R; r++) {
      const what = `R ${R} V ${V} row ${r} τ ${p.tau[r]} u ${p.u[r]} (seed ${seed})`;
      const a = cpu.token[r]!;
      const b = got.token[r]!;
      // V terms in [0, 1] summed in two orders (≤ V·2⁻⁵³ of S each), each exp and z/τ within an ulp
      const tol = (V + 2) * 2 * U;
      if (p.tau[r] === 0 || a < 0) assert.equal(b, a, `${what}: token`);
      else if (b !== a) {
        const c = cumulative(z, r * V, V, p.tau[r]!);
        const gap = Math.abs(c.at(Math.min(a, b)) - p.u[r]! * c.S);
        assert.ok(gap <= tol * c.S, `${what}: token ${b}, the CPU's ${a}, and u·S is ${gap / c.S} of S from the boundary (a tie needs ≤ ${tol})`);
      }
      if (p.tau[r]! > 0 && a >= 0 && a !== rowArgmax(z, r * V, V).best) drawnOffArgmax++;
      const e = cpu.logprob[r]!;
      if (Number.isNaN(e) || b !== a) continue;
      const bound = tol + 8 * U * (Math.abs(e) + Math.abs(z[r * V + a]! / (p.tau[r] || 1)) + 1);
      assert.ok(Math.abs(got.logprob[r]! - e) <= bound, `${what}: logprob ${got.logprob[r]} against the CPU's ${e} (bound ${bound})`);
    }
  }
  assert.ok(drawnOffArgmax > 10, `draws away from the argmax: ${drawnOffArgmax} (the cumulative search is exercised)`);
  // a transposed (non-contiguous) input is read in its logical order
  const zt = logits(50, 3, 5);
  const x = T.transpose(T.fromBits(zt, 'f32', [50, 3], { device: dev }), 0, 1);
  const ref = T.contiguous(T.transpose(T.fromBits(zt, 'f32', [50, 3]), 0, 1)).toHost() as Float32Array;
  const tau = Float64Array.of(0, 1, 0);
  const u = Float64Array.of(0, 0.25, 0);
  assert.deepEqual([...(T.pickTokens(x, tau, u).token.toHost() as Int32Array)], [...pick(ref, 3, 50, { tau, u }, 'cpu').token]);
});

// ---- filtered rows: top-k, top-p, min-p and the kept set as a bit mask ----------------------------------

/** Per row: a filter combination (some off, some cutting at a tie of the awkward rows), by row index. */
const FILTERS: { topK: number; topP: number; minP: number }[] = [
  { topK: 5, topP: 1, minP: 0 },
  { topK: 0, topP: 0.9, minP: 0 },
  { topK: 0, topP: 1, minP: 0.05 },
  { topK: 50, topP: 0.8, minP: 0 },
  { topK: 0, topP: 0.5, minP: 0.01 },
  { topK: 3, topP: 1, minP: 0.2 },
  { topK: 1, topP: 1, minP: 0 },
  { topK: 200, topP: 0.999, minP: 0.001 },
  { topK: 0, topP: 1, minP: 0 },
];
function filters(R: number, V: number): { topK: Float64Array; topP: Float64Array; minP: Float64Array } {
  // row r's awkward pattern is r mod 7 and its filter r mod 9, so every pattern meets every filter
  const f = Array.from({ length: R }, (_, r) => FILTERS[r % FILTERS.length]!);
  return { topK: Float64Array.from(f, (x) => x.topK), topP: Float64Array.from(f, (x) => x.topP), minP: Float64Array.from(f, (x) => x.minP) };
}

const maskIds = (bits: Int32Array, r: number, V: number): number[] => [...T.keptIds(bits, r, V)];

type Filters = ReturnType<typeof filters>;
const pickF = (z: Float32Array, R: number, V: number, p: { tau: Float64Array; u: Float64Array }, f: Filters, dev: string): { token: Int32Array; logprob: Float64Array; mask: Int32Array; logZ: Float64Array } => {
  const r = T.pickTokens(T.fromBits(z, 'f32', [R, V], { device: dev }), p.tau, p.u, { filters: f, mask: true, logZ: true });
  return { token: r.token.toHost() as Int32Array, logprob: r.logprob.toHost() as Float64Array, mask: r.mask!.toHost() as Int32Array, logZ: r.logZ!.toHost() as Float64Array };
};

for (const [R, V] of [[1, 1], [18, 33], [27, 1000], [18, 32000], [9, 129280]] as const) {
  test(`pickTokens with filters on the CPU is the host sampler's token, logprob and kept set bit for bit, R ${R} V ${V}`, () => {
    const z = logits(R, V, 17 + V);
    const p = params(R, 5 + V);
    const f = filters(R, V);
    const got = pickF(z, R, V, p, f, 'cpu');
    for (let r = 0; r < R; r++) {
      const params = { temperature: p.tau[r]!, topK: f.topK[r]!, topP: f.topP[r]!, minP: f.minP[r]! };
      const s = sampleOne(z.subarray(r * V, (r + 1) * V), { row: 0, params, u: p.tau[r] === 0 ? null : p.u[r]!, logprobs: 0, mask: true });
      const what = `row ${r} (${JSON.stringify(params)}, u ${p.u[r]})`;
      assert.equal(got.token[r], s.token, `${what}: token`);
      assert.ok(Object.is(got.logprob[r], s.logprob), `${what}: logprob ${got.logprob[r]} against the sampler's ${s.logprob}`);
      assert.deepEqual(maskIds(got.mask, r, V), [...s.mask!], `${what}: kept set`);
      assert.ok(Object.is(got.logZ[r], distribution(z.subarray(r * V, (r + 1) * V), params).logZ), `${what}: logZ`);
    }
  });
}

test('pickTokens: a filter that is off (top-k ≥ V or 0, top-p 1, min-p 0) picks as no filter does, and a row without a token has an empty mask', () => {
  const R = 12;
  const V = 300;
  const z = logits(R, V, 41);
  const p = params(R, 42);
  const plain = pick(z, R, V, p, 'cpu');
  const off = { topK: Float64Array.from({ length: R }, (_, r) => [0, -1, V, V + 7][r % 4]!), topP: new Float64Array(R).fill(1), minP: new Float64Array(R) };
  const got = pickF(z, R, V, p, off, 'cpu');
  assert.deepEqual([...got.token], [...plain.token]);
  assert.deepEqual([...got.logprob], [...plain.logprob]);
  for (let r = 0; r < R; r++) assert.deepEqual(maskIds(got.mask, r, V), p.tau[r] === 0 ? [plain.token[r]] : Array.from({ length: V }, (_, v) => v), `row ${r}`);
  const bad = new Float32Array(2 * V).fill(1);
  bad[3] = NaN;
  const b = pickF(bad, 2, V, { tau: Float64Array.of(1, 1), u: Float64Array.of(0.5, 0.5) }, { topK: Float64Array.of(3, 3), topP: Float64Array.of(0.9, 1), minP: Float64Array.of(0, 0.1) }, 'cpu');
  assert.equal(b.token[0], -1);
  assert.deepEqual(maskIds(b.mask, 0, V), []);
  assert.equal(maskIds(b.mask, 1, V).length, 3);
});

test('pickTokens rejects bad filters, naming the argument, the row and what it got', () => {
  const x = T.zeros([2, 4], { dtype: 'f32' });
  const t = Float64Array.of(1, 1);
  const u = Float64Array.of(0.5, 0.5);
  assert.throws(() => T.pickTokens(x, t, u, { filters: { topK: [1] } }), /pickTokens: 2 rows need 2 values of topK, got 1/);
  assert.throws(() => T.pickTokens(x, t, u, { filters: { topK: [1, 1.5] } }), /topK\[1\] must be an integer ≥ −1 \(≤ 0: off\), got 1.5/);
  assert.throws(() => T.pickTokens(x, t, u, { filters: { topP: [0, 1] } }), /topP\[0\] must be in \(0, 1\] \(1: off\), got 0/);
  assert.throws(() => T.pickTokens(x, t, u, { filters: { minP: [0.5, NaN] } }), /minP\[1\] must be in \[0, 1\] \(0: off\), got NaN/);
});

/** The host's order of a row (e descending, id ascending), its e and the candidates' total as the host sums it. */
function hostOrder(z: Float32Array, off: number, V: number, tau: number): { order: number[]; e: Float64Array } {
  let zmax = -Infinity;
  for (let v = 0; v < V; v++) zmax = Math.max(zmax, z[off + v]!);
  zmax /= tau;
  const e = Float64Array.from({ length: V }, (_, v) => Math.exp(z[off + v]! / tau - zmax));
  return { order: Array.from({ length: V }, (_, v) => v).sort((a, b) => e[b]! - e[a]! || a - b), e };
}

eachDevice('pickTokens with filters matches the CPU reference (kept sets and tokens exact but for a rounding tie at a threshold)', (dev) => {
  let cut = 0;
  let drawnOffArgmax = 0;
  for (const [R, V] of [[9, 33], [27, 1000], [64, 32000], [18, 129280]] as const) {
    const seed = nextSeed();
    const z = logits(R, V, seed);
    const p = params(R, seed + 1);
    const f = filters(R, V);
    const cpu = pickF(z, R, V, p, f, 'cpu');
    const got = pickF(z, R, V, p, f, dev);
    for (let r = 0; r < R; r++) {
      const what = `R ${R} V ${V} row ${r} τ ${p.tau[r]} u ${p.u[r]} topK ${f.topK[r]} topP ${f.topP[r]} minP ${f.minP[r]} (seed ${seed})`;
      const kc = maskIds(cpu.mask, r, V);
      const kg = maskIds(got.mask, r, V);
      if (kc.length < V && kc.length > 1) cut++;
      const tol = (V + 2) * 2 * U;
      if (kc.join() !== kg.join()) {
        // K's edge may move only where a threshold is within rounding: the prefix mass against top_p·C
        // (at either edge), e against min_p, or two ids of equal e ordered by their logits
        const { order, e } = hostOrder(z, r * V, V, p.tau[r]!);
        const n = Math.min(kc.length, kg.length);
        const N = Math.max(kc.length, kg.length);
        const inOther = new Set(kc.length < kg.length ? kg : kc);
        assert.ok(order.slice(0, n).every((v) => inOther.has(v)) || e[order[n - 1]!] === e[order[n]!], `${what}: the smaller kept set (${n}) is not a prefix of the larger (${N})`);
        const cand = order.slice(0, Math.min(V, f.topK[r]! > 0 && f.topK[r]! < V ? f.topK[r]! : V)).filter((v) => e[v]! >= f.minP[r]!);
        const C = cand.reduce((s, v) => s + e[v]!, 0);
        let m = 0;
        const near: number[] = [];
        for (let i = 0; i < N; i++) {
          m += e[order[i]!]!;
          if (i >= n - 1) near.push(Math.abs(m - f.topP[r]! * C) / C);
        }
        const pNear = f.topP[r]! < 1 && near.some((d) => d <= tol);
        const mNear = f.minP[r]! > 0 && Math.abs(e[order[n]!]! - f.minP[r]!) <= tol * f.minP[r]!;
        const eTie = e[order[n - 1]!] === e[order[N - 1]!];
        assert.ok(pNear || mNear || eTie, `${what}: kept ${kg.length} ids against the CPU's ${kc.length}, with no threshold within rounding`);
        continue;
      }
      const a = cpu.token[r]!;
      const b = got.token[r]!;
      if (p.tau[r] === 0 || a < 0) assert.equal(b, a, `${what}: token`);
      else if (b !== a) {
        // a draw over K: its cumulative mass in id order at the boundary within rounding of u·Σ_K
        const { e } = hostOrder(z, r * V, V, p.tau[r]!);
        let S = 0;
        for (const v of kc) S += e[v]!;
        let c = 0;
        for (const v of kc) {
          if (v > Math.min(a, b)) break;
          c += e[v]!;
        }
        assert.ok(Math.abs(c - p.u[r]! * S) <= tol * S, `${what}: token ${b}, the CPU's ${a}, and u·Σ_K is not within rounding of the boundary`);
      }
      if (p.tau[r]! > 0 && a >= 0 && a !== rowArgmax(z, r * V, V).best) drawnOffArgmax++;
      const lp = cpu.logprob[r]!;
      if (Number.isNaN(lp) || b !== a) continue;
      const bound = tol + 8 * U * (Math.abs(lp) + Math.abs(z[r * V + a]! / (p.tau[r] || 1)) + 1);
      assert.ok(Math.abs(got.logprob[r]! - lp) <= bound, `${what}: logprob ${got.logprob[r]} against the CPU's ${lp} (bound ${bound})`);
      assert.ok(Math.abs(got.logZ[r]! - cpu.logZ[r]!) <= bound, `${what}: logZ ${got.logZ[r]} against the CPU's ${cpu.logZ[r]} (bound ${bound})`);
    }
  }
  assert.ok(cut > 20, `rows whose kept set is cut to between 2 and V − 1 ids: ${cut}`);
  assert.ok(drawnOffArgmax > 10, `filtered draws away from the argmax: ${drawnOffArgmax}`);
});
