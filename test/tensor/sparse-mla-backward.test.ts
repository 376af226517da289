// Sparse MLA backward (src/tensor/ops/sparse-mla-train.ts, Backend.sparseMlaBackward):
//  - gradcheck of sparseMlaPrefillTrain against f64 finite differences at tiny awkward shapes (k not a
//    multiple of 64, −1 holes and out-of-range entries, a row of only holes, a repeated index, H 2–16,
//    dv 8 + rope 4);
//  - one test body per backend: f32 and bf16 gradients against the f64 gradients of the same values, at the
//    671B head dims (dv 512 + rope 64) and at small ones, with holes, an empty row and a row index repeated
//    three times; on CUDA also against the CPU op, on each path (the CUDA-core kernels, the bf16 gather +
//    cuBLASLt forward and backward with the backward's default chunk and with two queries a chunk);
//    skipped with the reason when there is no CUDA driver (the kernels are compiled here, not run);
//  - the training forward is the inference forward bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { eachDevice } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { normals64 as normals, on, relErr } from './helpers.js';
import { sparseMlaBackwardBytesPerQuery, sparseMlaBackwardTune } from '../../src/backend/cuda/sparse-mla-backward.js';
import { BACKWARD_PATHS, onGemmPath } from './gemm-paths.js';

/** rows × k indices into [0, Tk): distinct valid entries, ~20% −1 holes, a few ≥ Tk (holes too), `empty` rows all −1. */
function makeIndices(rows: number, k: number, Tk: number, rnd: () => number, empty: number[] = []): Int32Array {
  const idx = new Int32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const perm = Array.from({ length: Tk }, (_, i) => i).sort(() => rnd() - 0.5);
    for (let j = 0; j < k; j++) {
      const u = rnd();
      idx[r * k + j] = empty.includes(r) || j >= Tk || u < 0.2 ? -1 : u < 0.23 ? Tk + Math.floor(rnd() * 3) : perm[j]!;
    }
  }
  return idx;
}

interface GradCase { Tq: number; H: number; Tk: number; k: number; dv: number; dr: number }

test('sparseMlaPrefillTrain: gradcheck of dq and dkv against f64 finite differences (holes, an empty row, a repeated index, H 2–16)', () => {
  const cases: GradCase[] = [
    { Tq: 3, H: 2, Tk: 11, k: 7, dv: 8, dr: 4 },
    { Tq: 4, H: 5, Tk: 9, k: 13, dv: 8, dr: 4 }, // k > Tk: rows padded with holes
    { Tq: 2, H: 16, Tk: 6, k: 5, dv: 4, dr: 2 },
  ];
  let seed = 3;
  for (const c of cases) {
    const rnd = mulberry32(seed++);
    const D = c.dv + c.dr;
    const idx = makeIndices(c.Tq, c.k, c.Tk, rnd, [1]);
    // a repeated index in row 0: counted once per occurrence, in the forward and the backward
    idx[1] = 0;
    idx[2] = 0;
    const it = T.fromArray(idx, [c.Tq, c.k], { dtype: 'i32' });
    const q = T.fromArray(normals(c.Tq * c.H * D, rnd), [c.Tq, c.H, D], { dtype: 'f64', requiresGrad: true });
    const kv = T.fromArray(normals(c.Tk * D, rnd), [c.Tk, D], { dtype: 'f64', requiresGrad: true });
    const scale = 0.7;
    const r = T.gradcheck((a, b) => T.sparseMlaPrefillTrain(a, b, it, scale, { dv: c.dv }).out, [q, kv], { atol: 1e-6, rtol: 1e-5 });
    assert.ok(r.ok, `${JSON.stringify(c)}: ${r.detail}`);
  }
});

test('sparseMlaPrefillTrain: the row of only holes gets zero gradients; lse is detached; strided inputs backpropagate', () => {
  const rnd = mulberry32(9);
  const [Tq, H, Tk, dv, dr, k] = [3, 2, 5, 8, 4, 4];
  const D = dv + dr;
  const idx = makeIndices(Tq, k, Tk, rnd, [1]);
  // q built transposed ([H, Tq, D] storage viewed as [Tq, H, D]): gradients must flow through the copy
  const qt = T.fromArray(normals(Tq * H * D, rnd), [H, Tq, D], { dtype: 'f64', requiresGrad: true });
  const kv = T.fromArray(normals(Tk * D, rnd), [Tk, D], { dtype: 'f64', requiresGrad: true });
  const { out, lse } = T.sparseMlaPrefillTrain(T.transpose(qt, 0, 1), kv, T.fromArray(idx, [Tq, k], { dtype: 'i32' }), 0.5, { dv });
  assert.equal(lse.requiresGrad, false);
  assert.equal(out.requiresGrad, true);
  T.backward(T.sum(out));
  const g = qt.grad!.toFloat64();
  for (let h = 0; h < H; h++) for (let c = 0; c < D; c++) assert.equal(g[(h * Tq + 1) * D + c], 0, 'empty row: dq = 0');
  assert.ok(g.some((x) => x !== 0));
  assert.ok(kv.grad!.toFloat64().some((x) => x !== 0));
});

for (const dtype of ['f32', 'bf16'] as const) {
  test(`sparseMlaPrefillTrain's forward equals sparseMlaPrefill bit for bit (${dtype})`, () => {
    const rnd = mulberry32(21);
    const [Tq, H, Tk, dv, dr, k] = [4, 3, 20, 32, 8, 9];
    const q = T.fromArray(normals(Tq * H * (dv + dr), rnd), [Tq, H, dv + dr], { dtype });
    const kv = T.fromArray(normals(Tk * (dv + dr), rnd), [Tk, dv + dr], { dtype });
    const it = T.fromArray(makeIndices(Tq, k, Tk, rnd, [2]), [Tq, k], { dtype: 'i32' });
    const a = T.sparseMlaPrefill(q, kv, it, 0.3, { dv });
    const b = T.sparseMlaPrefillTrain(q, kv, it, 0.3, { dv });
    assert.deepEqual(T.hostBytes(b.out.toHost()), T.hostBytes(a.out.toHost()));
    assert.deepEqual(T.hostBytes(b.lse.toHost()), T.hostBytes(a.lse.toHost()));
  });
}

const CASES: GradCase[] = [
  { Tq: 3, H: 16, Tk: 90, k: 70, dv: 512, dr: 64 },
  { Tq: 2, H: 64, Tk: 40, k: 37, dv: 512, dr: 64 },
  { Tq: 5, H: 20, Tk: 12, k: 19, dv: 96, dr: 24 }, // H not a multiple of 16, k > Tk
  { Tq: 4, H: 3, Tk: 30, k: 17, dv: 8, dr: 4 }, // D % 8 ≠ 0: the CUDA-core kernel even on the gemm path
  { Tq: 6, H: 3, Tk: 40, k: 33, dv: 24, dr: 8 }, // the gemm path at tiny, odd H
  { Tq: 4, H: 19, Tk: 200, k: 150, dv: 96, dr: 32 }, // the flash path: two head groups, the second of 3; k past two tiles
];

// On CUDA the body below runs each of BACKWARD_PATHS (gemm-paths.ts; the CPU has one path), each backward
// with its own forward: f32 always takes the CUDA-core kernels, which round the score as the CPU reference
// does; the gemm and flash backwards recompute p from the gemm forward's rounding of the score
// (kernels/sparse_mla_bwd_gemm.cu, Numerics). The flash path takes the cases whose D is a multiple of 64
// (D 576, 128) and leaves the others to the gemm path or the kernel.

/** Row r's first valid entry repeated at its last two positions (three occurrences of one kv row). */
function repeatIndex(idx: Int32Array, r: number, k: number, Tk: number): void {
  let j = 0;
  while (j < k - 2 && !(idx[r * k + j]! >= 0 && idx[r * k + j]! < Tk)) j++;
  if (j >= k - 2) return;
  idx[r * k + k - 1] = idx[r * k + j]!;
  idx[r * k + k - 2] = idx[r * k + j]!;
}

eachDevice('sparse MLA backward in f32 and bf16 at awkward shapes against the f64 gradients (and, on CUDA, the CPU op) on every path', (dev) => {
  let seed = 40;
  for (const c of CASES) {
    const rnd = mulberry32(seed++);
    const D = c.dv + c.dr;
    const scale = 1.5 / Math.sqrt(D);
    const idx = makeIndices(c.Tq, c.k, c.Tk, rnd, [1]);
    repeatIndex(idx, 0, c.k, c.Tk);
    if (c.Tq > 2) repeatIndex(idx, c.Tq - 1, c.k, c.Tk);
    const it = T.fromArray(idx, [c.Tq, c.k], { dtype: 'i32' });
    const qv = normals(c.Tq * c.H * D, rnd);
    const kvv = normals(c.Tk * D, rnd);
    const gv = normals(c.Tq * c.H * c.dv, rnd);
    for (const dtype of ['f32', 'bf16'] as const) {
      // the same (dtype-rounded) values in f64 give the reference gradients
      const q0 = T.fromArray(qv, [c.Tq, c.H, D], { dtype });
      const kv0 = T.fromArray(kvv, [c.Tk, D], { dtype });
      const g0 = T.fromArray(gv, [c.Tq, c.H, c.dv], { dtype });
      const grads = (q: T.Tensor, kv: T.Tensor, g: T.Tensor, d: string): { dq: Float64Array; dkv: Float64Array } => {
        const ql = T.fromBits(q.toHost(), q.dtype, q.shape, { device: d }); // fresh leaves
        const kl = T.fromBits(kv.toHost(), kv.dtype, kv.shape, { device: d });
        ql.requiresGrad = true;
        kl.requiresGrad = true;
        const { out } = T.sparseMlaPrefillTrain(ql, kl, on(it, d), scale, { dv: c.dv });
        T.backward(out, on(g, d));
        assert.equal(ql.grad!.dtype, q.dtype);
        assert.equal(kl.grad!.dtype, kv.dtype);
        return { dq: ql.grad!.toFloat64(), dkv: kl.grad!.toFloat64() };
      };
      const ref = grads(T.cast(q0, 'f64'), T.cast(kv0, 'f64'), T.cast(g0, 'f64'), 'cpu');
      const cpu = dev === 'cpu' ? null : grads(q0, kv0, g0, 'cpu');
      for (const path of dev === 'cpu' ? [null] : BACKWARD_PATHS) {
        const what = `${dev}${path ? ` (${path})` : ''} ${dtype} ${JSON.stringify(c)}`;
        const got = onGemmPath(sparseMlaBackwardTune, path, sparseMlaBackwardBytesPerQuery(c.H, c.k, c.dv + c.dr), () => grads(q0, kv0, g0, dev));
        const tol = dtype === 'f32' ? 1e-4 : 3e-2;
        const eq = relErr(got.dq, ref.dq);
        const ek = relErr(got.dkv, ref.dkv);
        assert.ok(eq <= tol, `${what}: dq relative error ${eq}`);
        assert.ok(ek <= tol, `${what}: dkv relative error ${ek}`);
        // the row of only holes: exact zeros
        for (let j = c.H * D; j < 2 * c.H * D; j++) assert.ok(got.dq[j] === 0, `${what}: empty row dq[${j}] = ${got.dq[j]}`);
        if (cpu) {
          const e1 = relErr(got.dq, cpu.dq);
          const e2 = relErr(got.dkv, cpu.dkv);
          assert.ok(e1 <= (dtype === 'f32' ? 1e-5 : 1e-2) && e2 <= (dtype === 'f32' ? 1e-5 : 1e-2), `${what}: against the CPU op dq ${e1}, dkv ${e2}`);
        }
      }
    }
  }
});

test('sparseMlaPrefillTrain rejects bad inputs clearly', () => {
  const q = T.zeros([2, 4, 12]);
  const kv = T.zeros([10, 12]);
  const idx = T.zeros([2, 3], { dtype: 'i32' });
  assert.throws(() => T.sparseMlaPrefillTrain(q, T.zeros([10, 11]), idx, 1, { dv: 8 }), /kv \[10, 11\] must be \[Tk, 12\]/);
  assert.throws(() => T.sparseMlaPrefillTrain(q, kv, T.zeros([3, 3], { dtype: 'i32' }), 1, { dv: 8 }), /indices \[3, 3\] must be \[2, k\]/);
  assert.throws(() => T.sparseMlaPrefillTrain(q, kv, idx, 1, { dv: 13 }), /dv 13/);
  assert.throws(() => T.sparseMlaPrefillTrain(q, T.zeros([10, 12], { dtype: 'bf16' }), idx, 1, { dv: 8 }), /q's dtype/);
});

/** Dense causal selection of B sequences of S rows as flat kv rows: row b·S + s takes b·S + 0..s, then −1. */
function causalIndices(B: number, S: number): T.Tensor {
  const idx = new Int32Array(B * S * S).fill(-1);
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) for (let t = 0; t <= s; t++) idx[(b * S + s) * S + t] = b * S + t;
  return T.fromArray(idx, [B * S, S], { dtype: 'i32' });
}

test('causalMlaPrefillTrain: gradcheck of dq and dkv against f64 finite differences (B 2, S 5, H 3)', () => {
  const rnd = mulberry32(71);
  const [B, S, H, dv, dr] = [2, 5, 3, 6, 4];
  const D = dv + dr;
  const q = T.fromArray(normals(B * S * H * D, rnd), [B * S, H, D], { dtype: 'f64', requiresGrad: true });
  const kv = T.fromArray(normals(B * S * D, rnd), [B * S, D], { dtype: 'f64', requiresGrad: true });
  const r = T.gradcheck((a, b) => T.causalMlaPrefillTrain(a, b, B, S, 0.6, { dv }).out, [q, kv], { atol: 1e-6, rtol: 1e-5 });
  assert.ok(r.ok, r.detail);
});

eachDevice('causalMlaPrefillTrain equals sparseMlaPrefillTrain over every causal key: out, lse, dq, dkv (f64 exact to rounding, f32, bf16)', (dev) => {
  const rnd = mulberry32(72);
  const [B, S, H, dv, dr] = [3, 37, 5, 24, 8]; // S·H not a multiple of anything convenient
  const D = dv + dr;
  const qv = normals(B * S * H * D, rnd);
  const kvv = normals(B * S * D, rnd);
  const gv = normals(B * S * H * dv, rnd);
  const idx = causalIndices(B, S);
  const scale = 1 / Math.sqrt(D);
  for (const dtype of ['f64', 'f32', 'bf16'] as const) {
    if (dtype === 'f64' && dev !== 'cpu') continue;
    const run = (causal: boolean): Record<string, Float64Array> => {
      const q = T.fromArray(qv, [B * S, H, D], { dtype, device: dev });
      const kv = T.fromArray(kvv, [B * S, D], { dtype, device: dev });
      q.requiresGrad = true;
      kv.requiresGrad = true;
      const r = causal ? T.causalMlaPrefillTrain(q, kv, B, S, scale, { dv }) : T.sparseMlaPrefillTrain(q, kv, on(idx, dev), scale, { dv });
      assert.equal(r.out.dtype, dtype);
      assert.ok(!r.lse.requiresGrad, 'lse is detached');
      T.backward(r.out, T.fromArray(gv, [B * S, H, dv], { dtype, device: dev }));
      return { out: r.out.toFloat64(), lse: r.lse.toFloat64(), dq: q.grad!.toFloat64(), dkv: kv.grad!.toFloat64() };
    };
    const a = run(true);
    const b = run(false);
    const tol = dtype === 'f64' ? 1e-12 : dtype === 'f32' ? 2e-5 : 2e-2;
    for (const k of ['out', 'lse', 'dq', 'dkv']) {
      const e = relErr(a[k]!, b[k]!);
      assert.ok(e <= tol, `${dev} ${dtype} ${k}: relative difference ${e} > ${tol}`);
    }
  }
});
