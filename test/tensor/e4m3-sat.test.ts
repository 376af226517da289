// The saturating e4m3 encode of the CPU actQuant (e4m3SatFromF32Bits: integer arithmetic on the f32 bits)
// against its definition, f32ToE4m3Bits(clamp(x, −448, 448)) (c10's fp8e4m3fn_from_fp32_value after the
// clamp): every f32 within 512 ulps of each e4m3 value and of each midpoint between neighbours (the
// rounding boundaries), of 2^−10 (below it everything is 0), 464 and 480, both signs; every pair of top
// 16 bits with a spread of low halves (each sign and exponent, NaN payloads, ±∞, f32 subnormals);
// 4 M pseudo-random bit patterns. Then actQuant on rows holding NaNs of both signs, ±∞ and f32
// subnormals, against the same definition applied value by value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bitsToF32, e4m3BitsToF32, e4m3SatFromF32Bits, f32Bits, f32ToE4m3Bits } from '../../src/tensor/dtype.js';
import * as T from '../../src/tensor/index.js';
import { testEachDevice, to } from './helpers.js';

/** actQuant's former per-value step: the clamp by comparisons (a NaN passes through with its sign), then the encode. */
function clampEncode(y: number): number {
  if (y > 448) y = 448;
  else if (y < -448) y = -448;
  return f32ToE4m3Bits(y);
}
const oracle = (b: number): number => clampEncode(bitsToF32(b));

/** actQuant's scale of the 128-value block at lo, as a double (a NaN block's 2^129 is +∞ once stored as f32). */
function blockScale(x: Float32Array, lo: number, ue8m0: boolean): number {
  let amax = 0;
  for (let j = lo; j < lo + 128; j++) {
    const a = Math.abs(x[j]!);
    if (a > amax || a !== a) amax = a;
  }
  const sc = Math.fround(Math.max(amax, Math.fround(1e-4)) * Math.fround(1 / 448));
  if (!ue8m0) return sc;
  const b = f32Bits(sc);
  return 2 ** (((b >>> 23) & 0xff) - 127 + ((b & 0x7fffff) !== 0 ? 1 : 0));
}

function checkAround(center: number, radius: number, bad: number[]): number {
  let n = 0;
  for (let d = -radius; d <= radius; d++) {
    const a = center + d;
    if (a < 0 || a > 0x7fffffff) continue;
    for (const b of [a, (a | 0x80000000) >>> 0]) {
      n++;
      if (e4m3SatFromF32Bits(b) !== oracle(b) && bad.length < 10) bad.push(b);
    }
  }
  return n;
}

test('e4m3SatFromF32Bits = f32ToE4m3Bits(clamp(x, ±448)) around every value and midpoint of the e4m3 grid', () => {
  const bad: number[] = [];
  let n = 0;
  const centers: number[] = [];
  for (let c = 0; c < 0x7e; c++) {
    const lo = e4m3BitsToF32(c);
    const hi = e4m3BitsToF32(c + 1);
    centers.push(f32Bits(lo), f32Bits(Math.fround((lo + hi) / 2)));
  }
  centers.push(f32Bits(448), f32Bits(464), f32Bits(480), f32Bits(2 ** -10), f32Bits(2 ** -6), f32Bits(2 ** -9 * 1.5));
  for (const c of centers) n += checkAround(c, 512, bad);
  assert.deepEqual(bad.map((b) => b.toString(16)), [], `mismatches among ${n} patterns`);
});

test('e4m3SatFromF32Bits = f32ToE4m3Bits(clamp(x, ±448)) on every top-16-bit pattern, random bits and the specials', () => {
  const bad: number[] = [];
  const lows = [0, 1, 2, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x1234, 0xabcd];
  const check = (b: number): void => {
    if (e4m3SatFromF32Bits(b) !== oracle(b) && bad.length < 10) bad.push(b);
  };
  for (let hi = 0; hi < 0x10000; hi++) for (const lo of lows) check(((hi << 16) | lo) >>> 0);
  let s = 0x9e3779b9;
  for (let i = 0; i < 4_000_000; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    check(s >>> 0);
  }
  for (const x of [0, -0, Infinity, -Infinity, NaN, 448, -448, 449, 464, 479.9, 480, 1e30, -1e30, 2 ** -149, -(2 ** -149), 2 ** -126, 2 ** -10, 2 ** -9, 3 * 2 ** -10]) {
    check(f32Bits(x));
  }
  for (const b of [0x7f800001, 0x7fc00000, 0x7fffffff, 0xff800001, 0xffc00000, 0xffffffff]) check(b);
  assert.deepEqual(bad.map((b) => b.toString(16)), []);
  assert.equal(e4m3SatFromF32Bits(0xffc00000), 0xff);
  assert.equal(e4m3SatFromF32Bits(f32Bits(-Infinity)), 0xfe);
  assert.equal(e4m3SatFromF32Bits(f32Bits(-0)), 0x80);
});

testEachDevice('actQuant with NaNs of both signs, ±∞, f32 subnormals and ties: the clamped encode value by value', (dev) => {
  const N = 256;
  const bits = new Uint32Array(2 * N);
  let s = 12345;
  for (let i = 0; i < bits.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bits[i] = f32Bits(((s / 2 ** 32) - 0.5) * 8);
  }
  bits.set([0x7fc00000, 0xffc00000, 0x7f800000, 0xff800000, 0x00000001, 0x80000001, 0x007fffff], 3);
  bits.set([f32Bits(1.0625), f32Bits(-1.0625), f32Bits(3 * 2 ** -8), f32Bits(2 ** -12)], 200);
  bits.set([f32Bits(1e-30), f32Bits(-1e-30)], N + 130); // a block of tiny values
  const x = new Float32Array(bits.buffer);
  for (const ue8m0 of [true, false]) {
    const { q, s: sc } = T.actQuant(to(T.fromArray(x, [2, N]), dev), 128, { ue8m0 });
    const qb = Array.from(q.toHost() as Uint8Array);
    const sv = sc.toFloat32();
    const want: number[] = [];
    for (let i = 0; i < x.length; i++) {
      // a NaN quotient: the sign of a NaN input, else 0x7F (actQuant's rule on every backend, not the
      // hardware's NaN: x86's default NaN is negative, a GPU's positive)
      const y = Math.fround(x[i]! / blockScale(x, i - (i % 128), ue8m0));
      want.push(y === y ? clampEncode(y) : x[i] === x[i] ? 0x7f : 0x7f | ((bits[i]! >>> 24) & 0x80));
    }
    assert.deepEqual(Array.from(sv), Array.from({ length: sv.length }, (_, j) => Math.fround(blockScale(x, j * 128, ue8m0))), `scales, ue8m0 ${ue8m0}`);
    assert.deepEqual(qb, want, `ue8m0 ${ue8m0}`);
  }
});
