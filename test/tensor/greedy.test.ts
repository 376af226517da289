// greedyPick (src/tensor/ops/greedy.ts): greedy decoding's token and logprob per row of logits.
//  - CPU: bit for bit the engine's host sampler at temperature 0 (sampleOne), at vocabularies 1 .. 129 280,
//    ties, ±0, −∞ entries; rows with a NaN or only −∞ give token −1 (the sampler would throw on them).
//  - One body per backend: the token exactly the CPU's, the logprob within the rounding bound of two
//    summation orders (the header of the op), NaN where the CPU's is NaN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { sampleOne } from '../../src/engine/sampler-pool.js';
import { eachDevice, nextSeed } from '../cuda/common.js';

const GREEDY = { params: { temperature: 0, topP: 1, topK: 0, minP: 0 }, u: null, logprobs: 0, mask: false, row: 0 };
const U = 2 ** -53;

/** R rows of V logits: normal draws, then per row one of the awkward patterns. */
function logits(R: number, V: number, seed: number): Float32Array {
  const rng = new T.Rng(seed);
  const z = Float32Array.from({ length: R * V }, () => rng.normal() * 4);
  for (let r = 0; r < R; r++) {
    const row = z.subarray(r * V, (r + 1) * V);
    const at = (f: number): number => Math.min(V - 1, Math.floor(f * V));
    switch (r % 6) {
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
      case 3: // half the vocabulary masked to −∞
        for (let v = 0; v < V; v += 2) row[v] = -Infinity;
        break;
      case 4: // the maximum in the last column
        row[V - 1] = 40;
        break;
      default:
    }
  }
  return z;
}

const pick = (z: Float32Array, R: number, V: number, dev: string): { token: Int32Array; logprob: Float64Array } => {
  const r = T.greedyPick(T.fromBits(z, 'f32', [R, V], { device: dev }));
  return { token: r.token.toHost() as Int32Array, logprob: r.logprob.toHost() as Float64Array };
};

for (const [R, V] of [[1, 1], [7, 33], [12, 1000], [6, 32000], [3, 129280]] as const) {
  test(`greedyPick on the CPU is the host sampler's greedy token and logprob bit for bit, R ${R} V ${V}`, () => {
    const z = logits(R, V, 11 + V);
    const got = pick(z, R, V, 'cpu');
    for (let r = 0; r < R; r++) {
      const s = sampleOne(z.subarray(r * V, (r + 1) * V), GREEDY);
      assert.equal(got.token[r], s.token, `row ${r}: token`);
      assert.ok(Object.is(got.logprob[r], s.logprob), `row ${r}: logprob ${got.logprob[r]} against the sampler's ${s.logprob}`);
    }
  });
}

test('greedyPick: a NaN logit or a row of −∞ gives token −1 and a NaN logprob; +∞ gives its first index and NaN', () => {
  const V = 40;
  const z = new Float32Array(4 * V).fill(1);
  z[5] = NaN;
  z.fill(-Infinity, V, 2 * V);
  z[2 * V + 9] = Infinity;
  z[2 * V + 30] = Infinity;
  z[3 * V] = NaN; // NaN first in the row: every comparison with it is false
  const got = pick(z, 4, V, 'cpu');
  assert.deepEqual([...got.token], [-1, -1, 9, -1]);
  assert.ok(got.logprob.every((x) => Number.isNaN(x)));
});

test('greedyPick rejects logits that are not f32 [rows, vocab], naming what it got', () => {
  assert.throws(() => T.greedyPick(T.zeros([4], { dtype: 'f32' })), /greedyPick: logits must be f32 \[rows, vocab\], got f32 \[4\]/);
  assert.throws(() => T.greedyPick(T.zeros([2, 4], { dtype: 'f64' })), /got f64 \[2, 4\]/);
  assert.throws(() => T.greedyPick(T.zeros([2, 0], { dtype: 'f32' })), /vocabulary dim is empty/);
});

eachDevice('greedyPick matches the CPU reference (token exact, logprob within two summation orders)', (dev) => {
  for (const [R, V] of [[1, 1], [5, 511], [9, 4097], [64, 32000], [6, 129280]] as const) {
    const seed = nextSeed();
    const z = logits(R, V, seed);
    const cpu = pick(z, R, V, 'cpu');
    const got = pick(z, R, V, dev);
    for (let r = 0; r < R; r++) {
      const what = `R ${R} V ${V} row ${r} (seed ${seed})`;
      assert.equal(got.token[r], cpu.token[r], `${what}: token`);
      const e = cpu.logprob[r]!;
      // sums of V terms in [0, 1] in two orders, each exp within an ulp, then two roundings of size |max z|
      const zmax = z[r * V + cpu.token[r]!]!;
      const bound = 2 * (V + 1) * U + 8 * U * (Math.abs(zmax) + Math.abs(e) + 1);
      assert.ok(Math.abs(got.logprob[r]! - e) <= bound, `${what}: logprob ${got.logprob[r]} against the CPU's ${e} (bound ${bound})`);
    }
  }
  // a transposed (non-contiguous) input is read in its logical order
  const x = T.fromBits(logits(3, 50, 5), 'f32', [50, 3], { device: dev });
  const t = T.transpose(x, 0, 1);
  const a = T.greedyPick(t).token.toHost();
  const b = T.greedyPick(T.fromBits(T.contiguous(T.transpose(T.fromBits(logits(3, 50, 5), 'f32', [50, 3]), 0, 1)).toHost(), 'f32', [3, 50], { device: dev })).token.toHost();
  assert.deepEqual([...a], [...b]);
});
