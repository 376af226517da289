import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expd, expTable } from '../../src/backend/cpu/exp.js';
import { Rng } from '../../src/tensor/random.js';

const bits = new BigInt64Array(1);
const f64 = new Float64Array(bits.buffer);
/** Distance in ulps of two finite doubles of one sign (their bit patterns are ordered like the values). */
function ulps(a: number, b: number): number {
  f64[0] = a;
  const x = bits[0]!;
  f64[0] = b;
  const d = x - bits[0]!;
  return Number(d < 0n ? -d : d);
}

test('expd table: each 2^(j/64) is the double nearest the real value', () => {
  assert.equal(expTable.length, 64);
  assert.equal(expTable[0], 1);
  for (let j = 1; j < 64; j++) {
    // t = m·2^-52 in [1, 2); nearest iff the midpoints (2m ∓ 1)·2^-53 bracket 2^(j/64), compared as 64th powers
    const m = BigInt(expTable[j]! * 2 ** 52);
    assert.equal(Number(m) * 2 ** -52, expTable[j], `entry ${j} is not in [1, 2) with a 52-bit fraction`);
    const target = 1n << BigInt(j + 53 * 64);
    assert.ok((2n * m - 1n) ** 64n < target && target < (2n * m + 1n) ** 64n, `entry ${j} (${expTable[j]}) is not the nearest double to 2^(${j}/64)`);
  }
});

test('expd is within one ulp of Math.exp over (−700, 700), and the same on every f32 rounding sampled', () => {
  const rng = new Rng(7);
  let worst = 0;
  let f32Differ = 0;
  const n = 300_000;
  for (let i = 0; i < n; i++) {
    // half over the whole range, half where softmax and SiLU live (e^(s − max) with s − max ≤ 0, SiLU's ±20)
    const x = i % 2 === 0 ? (rng.uniform() - 0.5) * 1399.9 : (rng.uniform() - 0.75) * 40;
    const a = Math.exp(x);
    const b = expd(x);
    const u = ulps(a, b);
    if (u > worst) worst = u;
    if (Math.fround(a) !== Math.fround(b)) f32Differ++;
  }
  assert.ok(worst <= 1, `worst difference ${worst} ulps`);
  assert.equal(f32Differ, 0, `${f32Differ} of ${n} arguments round to different f32 values`);
});

test('expd: exact points, the range edges and the special values', () => {
  assert.equal(expd(0), 1);
  assert.equal(expd(-0), 1);
  assert.equal(expd(1), Math.E);
  for (const x of [-699.999, -699, 699, 699.999, -700, 700, -708.5, 709.7, -745.2, -746, 710, 1e-300, -1e-300, Math.LN2, -Math.LN2, 64 * Math.LN2]) {
    assert.ok(ulps(expd(x), Math.exp(x)) <= 1, `expd(${x}) = ${expd(x)}, Math.exp ${Math.exp(x)}`);
  }
  assert.ok(Number.isNaN(expd(NaN)));
  assert.equal(expd(Infinity), Infinity);
  assert.equal(expd(-Infinity), 0);
  assert.equal(expd(1000), Infinity);
  assert.equal(expd(-1000), 0);
});
