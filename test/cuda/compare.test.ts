// The comparison rule every CUDA-vs-CPU test uses (runs without a GPU): relative L2 error over all
// elements. It once left equal elements out of the denominator, which turned a handful of 1-ulp bf16
// rounding differences in otherwise identical outputs into "2e-2 relative error" failures that looked
// intermittent (they depended on how many elements happened to round alike).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { assertRel } from './common.js';

test('assertRel: equal elements count in the denominator; real differences still fail', () => {
  const n = 1000;
  const e = T.cast(T.fromArray(Float32Array.from({ length: n }, (_, i) => 1 + (i % 17) / 16), [n]), 'bf16');
  const bits = new Uint16Array(e.toHost() as Uint16Array);
  bits[3]! += 1; // one element one bf16 ulp up (relative 2^-7 at most)
  const a = T.fromBits(bits, 'bf16', [n]);
  const err = assertRel(a, e, 1e-2, 'one ulp in a thousand');
  assert.ok(err > 0 && err < 1e-3, `a single 1-ulp difference among 1000 elements is a ~2e-4 relative error, got ${err}`);
  const off = T.muls(e, 1.05);
  assert.throws(() => assertRel(off, e, 1e-2, 'five percent'), /five percent: relative error [45]\.\d+e-2 > 0\.01/);
  const withNaN = T.fromArray(Float32Array.of(1, NaN, 3), [3]);
  assert.throws(() => assertRel(T.fromArray(Float32Array.of(1, 2, 3), [3]), withNaN, 1e-2, 'nan'), /nan: element 1 is 2 on cuda, NaN on cpu/);
  assert.throws(() => assertRel(T.fromArray(Float32Array.of(1, Infinity), [2]), T.fromArray(Float32Array.of(1, 5), [2]), 1e-2, 'inf'), /inf: element 1/);
});
