// Block FP8 quantisation (model.md §8, fixtures README "Pure-torch kernel semantics"): hand-worked
// blocks (zero block, power-of-two ue8m0 scales, clamping at 448, the trailing partial block), an
// independent straightforward implementation on random rows, dequantisation, weight_dequant, and the
// real tiny-fp8 checkpoint reproduced bit for bit from the tiny-bf16 weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as T from '../../src/tensor/index.js';
import { assertClose, assertThrowsWith, randn, testEachDevice, to } from './helpers.js';

const f = Math.fround;
const INV448 = f(1 / 448);

/** Direct transcription of the reference semantics, with ue8m0 via log2 (a different route than the kernel's bit trick). */
function refQuant(row: Float32Array, block: number, ue8m0: boolean): { q: number[]; s: number[] } {
  const q: number[] = [];
  const s: number[] = [];
  for (let lo = 0; lo < row.length; lo += block) {
    const blk = Array.from(row.subarray(lo, Math.min(row.length, lo + block)));
    const amax = Math.max(f(1e-4), ...blk.map(Math.abs));
    let sc = f(amax * INV448);
    if (ue8m0) sc = 2 ** Math.ceil(Math.log2(sc));
    s.push(sc);
    for (const v of blk) q.push(T.f32ToE4m3Bits(Math.min(448, Math.max(-448, f(v / sc)))));
  }
  return { q, s };
}

testEachDevice('actQuant: hand-worked blocks incl. zero block, clamp and the trailing partial block', (dev) => {
  const N = 130; // two blocks: 128 values and a partial block of 2
  const rows = new Float32Array(3 * N);
  // row 0: amax 1 → s = 2^ceil(log2(fp32(1/448))) = 2^-8; values scale by 256
  rows.set([1, -0.5, 0.3], 0);
  rows.set([0.01, -0.02], 128); // partial block: amax 0.02 → s = 2^ceil(log2(0.02/448)) = 2^-14
  // row 1: all zeros → amax clamps to f32(1e-4) → s = 2^-22
  // row 2: amax 449 → s = 2; 449/2 = 224.5 → e4m3 224 (0x76)
  rows.set([449, 448], 2 * N);
  const x = to(T.fromArray(rows, [3, N]), dev);
  const { q, s } = T.actQuant(x);
  assert.equal(q.dtype, 'f8e4m3');
  assert.deepEqual(s.shape, [3, 2]);
  assert.deepEqual(Array.from(s.toFloat64()), [2 ** -8, 2 ** -14, 2 ** -22, 2 ** -22, 2, 2 ** -22]);
  const qb = q.toHost() as Uint8Array;
  // 1·256 = 2^8 → 0x78; −0.5·256 = −2^7 → 0xF0; 0.3·256 = 76.8 → 80 (step 8 in [64,128)) → 0x6A
  assert.deepEqual(Array.from(qb.subarray(0, 4)), [0x78, 0xf0, 0x6a, 0x00]);
  // −0.02·2^14 = −327.68 → −320 (step 32 in [256,448]) → 0xFA; 0.01·2^14 = 163.84 → 160 → 0x72
  assert.deepEqual(Array.from(qb.subarray(128, 130)), [0x72, 0xfa]);
  assert.ok(qb.subarray(N, 2 * N).every((b) => b === 0));
  assert.deepEqual(Array.from(qb.subarray(2 * N, 2 * N + 2)), [0x76, 0x76]); // 448/2 = 224 too
  // without ue8m0 the scale is amax·fp32(1/448) and x/s is clamped to ±448 (never the NaN code)
  const raw = T.actQuant(x, 128, { ue8m0: false });
  assert.equal(raw.s.toFloat64()[4], f(449 * INV448));
  assert.equal((raw.q.toHost() as Uint8Array)[2 * N], 0x7e);
});

testEachDevice('actQuant matches a direct implementation bit for bit on random rows (bf16 input, odd block)', (dev) => {
  const rng = new T.Rng(5);
  const N = 200;
  const vals = new Float32Array(4 * N);
  for (let i = 0; i < vals.length; i++) vals[i] = rng.normal() * 10 ** (rng.int(7) - 3);
  for (let i = 0; i < 128; i++) vals[i] = rng.normal();
  vals[7] = 448; // amax exactly 448: 448·fp32(1/448) rounds to exactly 1 → s = 1
  const x = T.cast(to(T.fromArray(vals, [2, 2, N]), dev), 'bf16');
  const xf = T.cast(x, 'f32').toFloat32();
  for (const [block, ue8m0] of [[128, true], [128, false], [48, true]] as const) {
    const { q, s } = T.actQuant(x, block, { ue8m0 });
    const qb = q.toHost() as Uint8Array;
    const sv = s.toFloat32();
    const nb = Math.ceil(N / block);
    for (let r = 0; r < 4; r++) {
      const want = refQuant(xf.subarray(r * N, (r + 1) * N), block, ue8m0);
      assert.deepEqual(Array.from(qb.subarray(r * N, (r + 1) * N)), want.q, `q row ${r} block ${block} ue8m0 ${ue8m0}`);
      assert.deepEqual(Array.from(sv.subarray(r * nb, (r + 1) * nb)), want.s, `s row ${r} block ${block} ue8m0 ${ue8m0}`);
    }
  }
  assert.equal(T.actQuant(x).s.toFloat64()[0], 1);
});

testEachDevice('actDequant is exact q·s; the round trip error is within e4m3 precision; fp8RoundTrip keeps dtype', (dev) => {
  const x = T.cast(randn([3, 256], 6, dev), 'f32');
  const { q, s } = T.actQuant(x);
  const d = T.actDequant(q, s);
  assert.equal(d.dtype, 'f32');
  const qv = q.toFloat64();
  const sv = s.toFloat64();
  const dv = d.toFloat64();
  const xv = x.toFloat64();
  for (let i = 0; i < dv.length; i++) {
    const sc = sv[Math.floor(i / 256) * 2 + Math.floor((i % 256) / 128)]!;
    assert.equal(dv[i], qv[i]! * sc);
    // e4m3 keeps 3 mantissa bits: relative error ≤ 2^-4 for normals, absolute ≤ 2^-10·s below 2^-6·s
    assert.ok(Math.abs(dv[i]! - xv[i]!) <= Math.max(Math.abs(xv[i]!) * 2 ** -4, sc * 2 ** -10), `element ${i}`);
  }
  const xb = T.cast(x, 'bf16');
  const rt = T.fp8RoundTrip(xb);
  assert.equal(rt.dtype, 'bf16');
  assertClose(rt, T.cast(T.actDequant(...Object.values(T.actQuant(xb)) as [T.Tensor, T.Tensor]), 'bf16'), 0, 0);
  // straight-through gradient: the rounding's zero derivative is replaced by the identity
  const leaf = to(randn([1, 4], 7, dev), dev, true);
  const cot = randn([1, 4], 8, dev);
  T.backward(T.fp8RoundTrip(leaf), cot);
  assertClose(leaf.grad!, cot, 0, 0);
  assertThrowsWith(() => T.actDequant(q, T.narrow(s, 1, 0, 1)), ['actDequant', '[3, 1]', '[3, 256]']);
});

testEachDevice('weightDequant: W[i,j] = w8[i,j]·s[i/128, j/128], dims not multiples of 128', (dev) => {
  const R = 130;
  const C = 200;
  const rng = new T.Rng(8);
  const bits = new Uint8Array(R * C);
  for (let i = 0; i < bits.length; i++) {
    let b = rng.int(256);
    if ((b & 0x7f) === 0x7f) b ^= 1; // avoid the NaN code
    bits[i] = b;
  }
  const w8 = T.fromBits(bits, 'f8e4m3', [R, C], { device: dev });
  const scale = to(T.tensor([[2 ** -3, 2 ** 5], [0.5, 3]]), dev);
  const W = T.weightDequant(w8, scale);
  assert.equal(W.dtype, 'f32');
  const wv = W.toFloat64();
  const sv = [[2 ** -3, 2 ** 5], [0.5, 3]];
  for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) {
    assert.equal(wv[i * C + j], f(T.e4m3BitsToF32(bits[i * C + j]!) * sv[i >> 7]![j >> 7]!), `W[${i}][${j}]`);
  }
  assertThrowsWith(() => T.weightDequant(w8, to(T.tensor([[1, 1, 1]]), dev)), ['weightDequant', '[1, 3]', '[130, 200]', '[2, 2]']);
});

test('real checkpoint: every tiny-fp8 weight is the 128×128 ue8m0 block quantisation of the tiny-bf16 weight, bit for bit', () => {
  const fix = path.resolve(import.meta.dirname, '../../..', '../shared/fixtures');
  const fp8 = T.Checkpoint.open(path.join(fix, 'tiny-fp8'));
  const bf16 = T.Checkpoint.open(path.join(fix, 'tiny-bf16'));
  try {
    const names = fp8.keys().filter((k) => k.endsWith('.weight_scale_inv'));
    assert.ok(names.length >= 70, `expected the fp8 linears, found ${names.length}`);
    let partial = 0;
    for (const sn of names) {
      const wn = sn.slice(0, -'_scale_inv'.length);
      const w8 = fp8.tensor(wn);
      const scale = fp8.tensor(sn);
      const w = bf16.tensor(wn);
      const [R, C] = w8.shape as [number, number];
      // weight_dequant: exact products of the e4m3 values and the power-of-two block scales
      const deq = T.weightDequant(w8, scale).toFloat32();
      const bits = w8.toHost() as Uint8Array;
      const sv = scale.toFloat32();
      const nbc = Math.ceil(C / 128);
      for (let i = 0; i < R; i += 37) for (let j = 0; j < C; j++) {
        assert.equal(deq[i * C + j], T.e4m3BitsToF32(bits[i * C + j]!) * sv[(i >> 7) * nbc + (j >> 7)]!, `${wn}[${i}][${j}]`);
      }
      // re-quantising each 128×128 block of the bf16 weight as one act_quant block gives the stored bits
      for (let i0 = 0; i0 < R; i0 += 128) for (let j0 = 0; j0 < C; j0 += 128) {
        const h = Math.min(128, R - i0);
        const wd = Math.min(128, C - j0);
        if (h * wd < 128 * 128) partial++;
        const blk = T.reshape(T.narrow(T.narrow(w, 0, i0, h), 1, j0, wd), [1, h * wd]);
        const { q, s } = T.actQuant(blk, h * wd);
        assert.equal(s.item(), sv[(i0 >> 7) * nbc + (j0 >> 7)], `${sn} block (${i0}, ${j0})`);
        const want = T.contiguous(T.narrow(T.narrow(w8, 0, i0, h), 1, j0, wd)).toHost() as Uint8Array;
        assert.deepEqual(q.toHost(), want, `${wn} block (${i0}, ${j0})`);
      }
      // weightQuant (what `dsv32 quantize` writes) makes the same bytes and scales from the bf16 weight
      const mine = T.weightQuant(w);
      assert.deepEqual(mine.w8.toHost(), w8.toHost(), `weightQuant ${wn}`);
      assert.deepEqual(Array.from(mine.scaleInv.toFloat32()), Array.from(sv), `weightQuant ${sn}`);
    }
    assert.ok(partial > 0, 'some weights have dims that are not multiples of 128');
  } finally {
    fp8.close();
    bf16.close();
  }
});
