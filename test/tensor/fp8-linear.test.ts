// FP8 block-scaled linear (src/tensor/ops/fp8-linear.ts, Backend.fp8BlockLinear):
//  - one test body per backend against the model's former host loop (test/oracles/fp8-linear.ts) on random
//    FP8 weights at M ∈ {1, 3, 7, 64}, K ∈ {64, 128, 256, 320} (partial K blocks), N ∈ {128, 200} (a
//    partial N tile), f32/bf16 inputs and outputs, ue8m0 on and off: bit for bit on the CPU; on CUDA
//    within f32 accumulation order, through the default path (cuBLASLt / FP8 GEMV where the shape allows)
//    and through the fallback kernel (kernels/fp8_linear.cu) forced;
//  - the tiny-fp8 fixture's real FP8 tensors (including the experts' K = 64) with leading dims [2, 5];
//  - the straight-through backward dx = dy · W_dequant, and the argument checks;
//  - on the CPU (Backend.widensFp8Weights) the weight's decoded f32 values give the codes' product bit for
//    bit; a backend with FP8 arithmetic (CUDA) refuses them, naming what it wants.
// CUDA cases are skipped with the driver's reason where there is no GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as T from '../../src/tensor/index.js';
import { eachDevice } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { bitsEqual, normal, on, relErr } from './helpers.js';
import { fp8BlockLinearTune } from '../../src/backend/cuda/fp8-linear.js';
import { hostFp8Linear } from '../oracles/fp8-linear.js';
import { fixtureDir } from '../model/golden-data.js';
import { fp8Codes } from '../../src/model/fp8-linear.js';

/** An FP8 weight as a checkpoint stores it: per 128×128 tile amax/448 scales (magnitudes varying by tile). */
function randomFp8Weight(N: number, K: number, rnd: () => number): { w8: T.Tensor; scale: Float32Array } {
  const NB = Math.ceil(N / 128);
  const KB = Math.ceil(K / 128);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = normal(rnd) / Math.sqrt(K);
  const scale = new Float32Array(NB * KB);
  const y = new Float32Array(N * K);
  for (let nb = 0; nb < NB; nb++) {
    for (let kb = 0; kb < KB; kb++) {
      const mag = 2 ** (((nb * 7 + kb * 3) % 5) - 2);
      let amax = 0;
      for (let n = nb * 128; n < Math.min(N, nb * 128 + 128); n++) for (let k = kb * 128; k < Math.min(K, kb * 128 + 128); k++) amax = Math.max(amax, Math.abs(w[n * K + k]! * mag));
      const s = Math.fround(amax / 448);
      scale[nb * KB + kb] = s;
      for (let n = nb * 128; n < Math.min(N, nb * 128 + 128); n++) for (let k = kb * 128; k < Math.min(K, kb * 128 + 128); k++) y[n * K + k] = (w[n * K + k]! * mag) / s;
    }
  }
  return { w8: T.cast(T.fromArray(y, [N, K]), 'f8e4m3'), scale };
}

/** Activations with magnitudes 2^-3 … 2^3 varying per (row, 128-block), in `dtype`. */
function randomX(shape: number[], dtype: T.DType, rnd: () => number): T.Tensor {
  const K = shape[shape.length - 1]!;
  const n = T.numelOf(shape);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = Math.floor(i / K);
    const kb = (i % K) >> 7;
    v[i] = normal(rnd) * 2 ** (((r * 3 + kb * 5) % 7) - 3);
  }
  return T.fromArray(v, shape, { dtype });
}

/** ‖a − e‖ / ‖e‖ ≤ tol. */
function assertRel(a: T.Tensor, e: T.Tensor, tol: number, what: string): void {
  const rel = relErr(a.toFloat64(), e.toFloat64());
  assert.ok(rel <= tol, `${what}: relative error ${rel.toExponential(2)} > ${tol}`);
}

/**
 * fp8Linear on `dev` against the host loop on the CPU: identical bytes on the CPU; on CUDA, relative error
 * within f32 accumulation order (f32 out) or one bf16 rounding (bf16 out), on the default path and on the
 * fallback kernel.
 */
function check(dev: string, x: T.Tensor, w8: T.Tensor, scale: Float32Array, ue8m0: boolean, outDtype: T.DType, what: string): void {
  const want = hostFp8Linear(x, w8, scale, outDtype, ue8m0);
  const sw = T.fromArray(scale, [Math.ceil(w8.shape[0]! / 128), Math.ceil(w8.shape[1]! / 128)]);
  const run = (): T.Tensor => T.fp8Linear(on(x, dev), on(w8, dev), on(sw, dev), { ue8m0, outDtype });
  if (dev === 'cpu') {
    bitsEqual(run(), want, what);
    // the CPU widens the codes on every product; the weight's decoded values (the model's fp8Codes) are the same product
    return bitsEqual(T.fp8Linear(x, T.cast(w8, 'f32'), sw, { ue8m0, outDtype }), want, `${what} (decoded weight)`);
  }
  const tol = outDtype === 'bf16' ? 8e-3 : 1e-5;
  const keep = fp8BlockLinearTune.forceKernel;
  try {
    for (const force of [false, true]) {
      fp8BlockLinearTune.forceKernel = force;
      const got = run();
      assert.deepEqual(got.shape, want.shape, `${what}: shape`);
      assert.equal(got.dtype, outDtype, `${what}: dtype`);
      assertRel(got, want, tol, `${what} (${force ? 'fallback kernel' : 'default path'})`);
    }
  } finally {
    fp8BlockLinearTune.forceKernel = keep;
  }
}

eachDevice('fp8Linear equals the host loop on random FP8 weights (M 1/3/7/64, K 64/128/256/320, N 128/200)', (dev) => {
  const rnd = mulberry32(12);
  const variants: [T.DType, boolean, T.DType][] = [['f32', true, 'f32'], ['bf16', true, 'bf16'], ['f32', false, 'bf16'], ['bf16', false, 'f32']];
  for (const N of [128, 200]) {
    for (const K of [64, 128, 256, 320]) {
      const { w8, scale } = randomFp8Weight(N, K, rnd);
      for (const M of [1, 3, 7, 64]) {
        for (const [xd, ue8m0, od] of variants) {
          check(dev, randomX([M, K], xd, rnd), w8, scale, ue8m0, od, `M=${M} K=${K} N=${N} x ${xd} ue8m0 ${ue8m0} out ${od}`);
        }
      }
    }
  }
});

const tinyFp8 = path.join(fixtureDir('tiny-fp8'), 'model.safetensors');
eachDevice('fp8Linear equals the host loop on the tiny-fp8 checkpoint\'s FP8 tensors, with leading dims [2, 5]', (dev, t) => {
  if (!existsSync(tinyFp8)) return t.skip(`no fixture at ${tinyFp8}`);
  const f = T.SafetensorsFile.open(tinyFp8);
  try {
    const names = f.keys().filter((k) => f.info(k).dtype === 'f8e4m3' && f.has(`${k}_scale_inv`)).sort();
    assert.ok(names.length > 0, 'the tiny-fp8 checkpoint holds FP8 weights');
    // every distinct [N, K] shape once (the experts' down_proj has K = moe_intermediate_size = 64)
    const seen = new Set<string>();
    const picked = names.filter((k) => {
      const key = f.info(k).shape.join('x');
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    assert.ok(picked.some((k) => f.info(k).shape[1]! % 128 !== 0), 'some FP8 weight has a partial K block');
    const rnd = mulberry32(5);
    for (const name of picked) {
      const w8 = f.tensor(name);
      const scale = f.tensor(`${name}_scale_inv`).toFloat32();
      const K = w8.shape[1]!;
      check(dev, randomX([2, 5, K], 'bf16', rnd), w8, scale, true, 'bf16', `${name} ${w8.shape.join('×')} bf16`);
      check(dev, randomX([2, 5, K], 'f32', rnd), w8, scale, true, 'f32', `${name} ${w8.shape.join('×')} f32`);
    }
  } finally {
    f.close();
  }
});

eachDevice('fp8Linear backward: dx = dy · W_dequant (straight through the activation quantisation), w8 frozen', (dev) => {
  const rnd = mulberry32(9);
  const N = 200;
  const K = 320;
  const { w8, scale } = randomFp8Weight(N, K, rnd);
  const sw = on(T.fromArray(scale, [2, 3]), dev);
  const w8d = on(w8, dev);
  const W = T.weightDequant(w8, T.fromArray(scale, [2, 3])).toFloat64(); // [N, K] on the CPU, exact in f32
  for (const xd of ['f32', 'bf16'] as T.DType[]) {
    const x = on(randomX([2, 3, K], xd, rnd), dev);
    x.requiresGrad = true;
    const y = T.fp8Linear(x, w8d, sw, { outDtype: 'f32' });
    assert.equal(y.requiresGrad, true);
    const gv = new Float32Array(6 * N);
    for (let i = 0; i < gv.length; i++) gv[i] = normal(rnd);
    T.backward(y, on(T.fromArray(gv, [2, 3, N]), dev));
    const dx = x.grad!;
    assert.deepEqual(dx.shape, [2, 3, K]);
    assert.equal(dx.dtype, xd, 'dx has x\'s dtype');
    const want = new Float64Array(6 * K);
    for (let m = 0; m < 6; m++) for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += gv[m * N + n]! * W[n * K + k]!;
      want[m * K + k] = s;
    }
    assertRel(dx, T.fromArray(want, [2, 3, K], { dtype: 'f64' }), xd === 'bf16' ? 4e-3 : 1e-6, `dx (${xd})`);
  }
});

test('fp8Linear argument checks', () => {
  const rnd = mulberry32(3);
  const { w8, scale } = randomFp8Weight(200, 320, rnd);
  const sw = T.fromArray(scale, [2, 3]);
  const x = randomX([4, 320], 'f32', rnd);
  assert.throws(() => T.fp8Linear(randomX([4, 256], 'f32', rnd), w8, sw), /must be \[\.\.\., 320\]/);
  assert.throws(() => T.fp8Linear(x, w8, T.fromArray(scale.subarray(0, 4), [2, 2])), /must be \[2, 3\]/);
  assert.throws(() => T.fp8Linear(x, T.cast(w8, 'bf16'), sw), /the weight must be f8e4m3 codes or their decoded f32 values, got bf16/);
  assert.throws(() => T.fp8Linear(x, w8, sw, { outDtype: 'f16' }), /outDtype/);
  assert.deepEqual(T.fp8Linear(T.full([0, 320], 0), w8, sw).shape, [0, 200]);
  assert.deepEqual(T.fp8Linear(randomX([320], 'f32', rnd), w8, sw).shape, [200]);
});

eachDevice('fp8Linear: decoded f32 weights are taken only where the backend widens FP8 codes (the CPU), else refused by name', (dev) => {
  const rnd = mulberry32(4);
  const { w8, scale } = randomFp8Weight(128, 256, rnd);
  const sw = on(T.fromArray(scale, [1, 2]), dev);
  const x = on(randomX([3, 256], 'bf16', rnd), dev);
  const decoded = on(T.cast(w8, 'f32'), dev);
  const w = on(w8, dev);
  if (dev === 'cpu') {
    bitsEqual(T.fp8Linear(x, decoded, sw), T.fp8Linear(x, w, sw), 'decoded vs codes');
    // the model decodes a weight once and keeps it while the weight lives
    assert.equal(fp8Codes(w).dtype, 'f32');
    assert.equal(fp8Codes(w), fp8Codes(w), 'decoded once per weight tensor');
    bitsEqual(fp8Codes(w), decoded, 'fp8Codes is the exact decode');
  } else {
    assert.equal(fp8Codes(w), w, 'a backend with FP8 arithmetic keeps the codes');
    assert.throws(() => T.fp8Linear(x, decoded, sw), /fp8Linear: the weight must be f8e4m3 codes, got f32/);
  }
});
