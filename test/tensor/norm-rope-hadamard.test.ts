// RMSNorm/LayerNorm, rotary embedding (both layouts) and the Hadamard transform: forward values
// against direct f64 formulas, gradchecks (also through non-contiguous inputs), and their invariants.
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { DsvError } from '../../src/errors.js';
import { assertClose, assertGradcheck, assertThrowsWith, randn, testEachDevice, to } from './helpers.js';

testEachDevice('rmsNorm and layerNorm forward match the formulas; bf16 in → bf16 out', (dev) => {
  const D = 6;
  const x = randn([3, D], 1, dev);
  const w = randn([D], 2, dev);
  const b = randn([D], 3, dev);
  const xv = x.toFloat64();
  const wv = w.toFloat64();
  const bv = b.toFloat64();
  const rms: number[] = [];
  const ln: number[] = [];
  for (let r = 0; r < 3; r++) {
    const row = Array.from(xv.subarray(r * D, r * D + D));
    const ms = row.reduce((s, v) => s + v * v, 0) / D;
    const mu = row.reduce((s, v) => s + v, 0) / D;
    const vr = row.reduce((s, v) => s + (v - mu) ** 2, 0) / D;
    row.forEach((v, j) => {
      rms.push((v / Math.sqrt(ms + 1e-6)) * wv[j]!);
      ln.push(((v - mu) / Math.sqrt(vr + 1e-5)) * wv[j]! + bv[j]!);
    });
  }
  assertClose(T.rmsNorm(x, w, 1e-6), rms, 1e-12, 1e-12, 'rmsNorm');
  assertClose(T.layerNorm(x, w, b, 1e-5), ln, 1e-12, 1e-12, 'layerNorm');
  const xb = T.cast(x, 'bf16');
  const yb = T.rmsNorm(xb, T.cast(w, 'f32'), 1e-6);
  assert.equal(yb.dtype, 'bf16');
  assertClose(yb, rms, 0, 2 ** -7, 'bf16 rmsNorm'); // within bf16 rounding of the exact value
  assertThrowsWith(() => T.rmsNorm(x, randn([5], 4, dev), 1e-6), ['rmsNorm', '[5]', '[3, 6]']);
});

/** The reference's RMSNorm op by op (x.pow(2).mean(-1), + eps, rsqrt as 1/sqrt, weight · (x · inv)), the
 * sum as src/model/norm.ts documents it (a halving tree, an odd row's last element carried): the oracle
 * the fused op must equal bit for bit. */
function rmsNormOpByOp(x: T.Tensor, w: T.Tensor, eps: number): T.Tensor {
  let t = T.square(x);
  for (let n = t.shape[t.rank - 1]!; n > 1; n = t.shape[t.rank - 1]!) {
    const h = n >> 1;
    let s = T.add(T.narrow(t, -1, 0, h), T.narrow(t, -1, h, h));
    if (n % 2 === 1) s = T.cat([s, T.narrow(t, -1, n - 1, 1)], -1);
    t = s;
  }
  const inv = T.div(1, T.sqrt(T.adds(T.div(t, x.shape[x.rank - 1]!), eps)));
  return T.mul(w, T.mul(x, inv));
}

testEachDevice('rmsNorm is the reference\'s op-by-op RMSNorm bit for bit (f32 and bf16 rows, odd widths, bf16 out)', (dev) => {
  // widths for each of the CUDA kernel's register depths (kernels/norm.cu: 2^5 | D, 2^3 | D, neither), with
  // the shared levels' odd carries at block level (1000 → 125, 4104 → 513) and within one warp
  for (const D of [1, 7, 33, 40, 768, 1000, 2048, 2049, 4104, 7168]) {
    const x = T.muls(randn([5, D], 11 + D, dev, 'f32'), 3);
    const w = randn([D], 12 + D, dev, 'f32');
    const want = rmsNormOpByOp(x, w, 1e-6);
    assert.deepEqual(Array.from(T.rmsNorm(x, w, 1e-6).toFloat32()), Array.from(want.toFloat32()), `f32 D ${D}`);
    assert.deepEqual(Array.from(T.rmsNorm(x, w, 1e-6, 'bf16').toFloat32()), Array.from(T.cast(want, 'bf16').toFloat32()), `f32 → bf16 D ${D}`);
    const xb = T.cast(x, 'bf16');
    const wantB = rmsNormOpByOp(T.cast(xb, 'f32'), w, 1e-6);
    assert.deepEqual(Array.from(T.rmsNorm(xb, w, 1e-6).toFloat32()), Array.from(T.cast(wantB, 'bf16').toFloat32()), `bf16 D ${D}`);
    assert.deepEqual(Array.from(T.rmsNorm(xb, w, 1e-6, 'f32').toFloat32()), Array.from(wantB.toFloat32()), `bf16 → f32 D ${D}`);
    // rows one element off 16-byte alignment (the CUDA kernel's scalar output pass)
    const off = T.reshape(T.narrow(T.reshape(T.cat([T.reshape(xb, [-1]), T.reshape(xb, [-1])], 0), [-1]), 0, 1, 5 * D), [5, D]);
    const wantOff = rmsNormOpByOp(T.cast(off, 'f32'), w, 1e-6);
    assert.deepEqual(Array.from(T.rmsNorm(off, w, 1e-6).toFloat32()), Array.from(T.cast(wantOff, 'bf16').toFloat32()), `bf16 D ${D}, unaligned rows`);
  }
  assertThrowsWith(() => T.rmsNorm(randn([2, 4], 1, dev, 'f32'), randn([4], 2, dev, 'f32'), 1e-6, 'i32'), ['rmsNorm', 'i32', 'expected f32 or bf16'], DsvError);
});

testEachDevice('addRmsNorm (one launch) is add in f32, then rmsNorm, bit for bit; its gradient path gives the same values', (dev) => {
  for (const D of [7, 768, 2048]) {
    for (const dt of ['f32', 'bf16'] as const) {
      const x = T.cast(T.muls(randn([4, D], 41 + D, dev, 'f32'), 2), dt);
      const r = T.cast(randn([4, D], 42 + D, dev, 'f32'), dt);
      const w = randn([D], 43 + D, dev, 'f32');
      const h = T.add(T.cast(x, 'f32'), T.cast(r, 'f32'));
      const got = T.addRmsNorm(x, r, w, 1e-6, dt);
      assert.deepEqual(Array.from(got.residual.toFloat32()), Array.from(T.cast(h, dt).toFloat32()), `residual ${dt} D ${D}`);
      assert.deepEqual(Array.from(got.out.toFloat32()), Array.from(T.cast(rmsNormOpByOp(h, w, 1e-6), dt).toFloat32()), `out ${dt} D ${D}`);
      const xg = T.cast(x, dt);
      xg.requiresGrad = true;
      const viaGrad = T.addRmsNorm(xg, r, w, 1e-6, dt);
      assert.deepEqual(Array.from(viaGrad.out.toFloat32()), Array.from(got.out.toFloat32()), `gradient path ${dt} D ${D}`);
    }
  }
  const x = randn([2, 4], 1, dev, 'f32');
  assertThrowsWith(() => T.addRmsNorm(x, randn([2, 5], 2, dev, 'f32'), randn([4], 3, dev, 'f32'), 1e-6, 'f32'), ['addRmsNorm', '[2, 5]', '[2, 4]']);
});

testEachDevice('gradcheck: rmsNorm and layerNorm (x, weight, bias), also on a transposed input', (dev) => {
  const x = randn([3, 5], 5, dev);
  const xt = randn([5, 3], 6, dev);
  const w = randn([5], 7, dev);
  const b = randn([5], 8, dev);
  assertGradcheck((x, w) => T.rmsNorm(x, w, 1e-6), [x, w]);
  assertGradcheck((xt, w) => T.rmsNorm(T.transpose(xt), w, 1e-3), [xt, w]);
  assertGradcheck((x, w, b) => T.layerNorm(x, w, b, 1e-5), [x, w, b]);
  assertGradcheck((xt, w, b) => T.layerNorm(T.transpose(xt), w, b, 1e-5), [xt, w, b]);
});

/** Direct formula: pair (i0, i1) rotated by angle pos·freq_i. */
function ropeRef(x: Float64Array, [B, S, H, D]: number[], pos: number[], freqs: number[], interleaved: boolean): number[] {
  const o = Array.from(x);
  for (let b = 0; b < B!; b++) for (let s = 0; s < S!; s++) for (let h = 0; h < H!; h++) {
    const base = ((b * S! + s) * H! + h) * D!;
    for (let i = 0; i < D! / 2; i++) {
      const ang = Math.fround(Math.fround(pos[s]!) * Math.fround(freqs[i]!));
      const c = Math.fround(Math.cos(ang));
      const sn = Math.fround(Math.sin(ang));
      const i0 = interleaved ? base + 2 * i : base + i;
      const i1 = interleaved ? i0 + 1 : i0 + D! / 2;
      o[i0] = x[i0]! * c - x[i1]! * sn;
      o[i1] = x[i1]! * c + x[i0]! * sn;
    }
  }
  return o;
}

testEachDevice('rope: both layouts match the complex-rotation formula, tables use f32 angles', (dev) => {
  const shape = [2, 3, 2, 8];
  const pos = [0, 5, 4097];
  const freqs = [1, 0.1, 0.01, 1e-3];
  const { cos, sin } = T.ropeTables(pos, freqs, dev);
  assert.deepEqual(cos.shape, [3, 4]);
  assert.equal(cos.dtype, 'f32');
  // 4097·0.1 in f32 arithmetic, then cos of that f32 angle
  const ang = Math.fround(4097 * Math.fround(0.1));
  assert.equal(cos.toFloat64()[2 * 4 + 1], Math.fround(Math.cos(ang)));
  const x = randn(shape, 9, dev);
  for (const inter of [true, false]) {
    assertClose(T.rope(x, cos, sin, inter), ropeRef(x.toFloat64(), shape, pos, freqs, inter), 1e-12, 1e-12, `interleaved=${inter}`);
  }
  // half-split on x equals interleaved on x with its last dim reordered (i, i+D/2) → (2i, 2i+1)
  const perm = T.reshape(T.transpose(T.reshape(x, [2, 3, 2, 2, 4]), -1, -2), shape);
  const viaInter = T.rope(perm, cos, sin, true);
  const back = T.reshape(T.transpose(T.reshape(viaInter, [2, 3, 2, 4, 2]), -1, -2), shape);
  assertClose(T.rope(x, cos, sin, false), back, 1e-15, 0, 'layout equivalence');
  assertThrowsWith(() => T.rope(x, T.narrow(cos, 0, 0, 2), sin, true), ['rope', '[2, 4]', '[2, 3, 2, 8]']);
});

testEachDevice('gradcheck: rope in both layouts on a non-contiguous [B, S, H, D] view', (dev) => {
  const xp = randn([1, 2, 3, 4], 10, dev); // [B, H, S, D], permuted to [B, S, H, D]
  const { cos, sin } = T.ropeTables([3, 7, 11], [0.9, 0.05], dev);
  for (const inter of [true, false]) {
    assertGradcheck((xp) => T.rope(T.permute(xp, [0, 2, 1, 3]), cos, sin, inter), [xp]);
  }
});

testEachDevice('hadamard: Sylvester order, H·H = n·I, orthonormal scaling keeps dot products; gradcheck', (dev) => {
  const n = 16;
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const I = to(T.fromArray(eye, [n, n]), dev);
  const H = T.hadamard(I);
  const hv = H.toFloat64();
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let bits = i & j;
    let par = 0;
    while (bits) { par ^= bits & 1; bits >>= 1; }
    assert.equal(hv[i * n + j], par ? -1 : 1, `H[${i}][${j}] (scipy.linalg.hadamard order)`);
  }
  assertClose(T.hadamard(H), T.muls(I, n), 0, 0, 'H·H = n·I');
  const q = randn([3, n], 11, dev);
  const k = randn([3, n], 12, dev);
  const s = 1 / Math.sqrt(n);
  const dot = (a: T.Tensor, b: T.Tensor): T.Tensor => T.sum(T.mul(a, b), -1);
  assertClose(dot(T.hadamard(q, s), T.hadamard(k, s)), dot(q, k), 1e-12, 1e-12, 'dot invariance');
  assertGradcheck((q) => T.hadamard(q, 0.5), [randn([2, 8], 13, dev)]);
  assertGradcheck((q) => T.hadamard(T.transpose(q), s), [randn([4, 3], 14, dev)]);
  assertThrowsWith(() => T.hadamard(randn([2, 6], 15, dev)), ['hadamard', 'power of 2', '6', '[2, 6]'], T.HadamardSizeError);
});
