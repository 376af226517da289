// The indexer's training ops (src/tensor/ops/indexer-train.ts):
//  - indexerScores (float, unquantised): dense f32 scores equal the host model's indexScores with
//    quantisation off bit for bit; gradcheck of dq, dk, dw in the dense and sparse modes; f32/bf16 against
//    f64 on every backend, on CUDA on each path (CUDA-core kernels, bf16 GEMM paths, small chunks; skipped
//    with the reason where there is no driver: compiled, not run here);
//  - indexerKlLoss: the loss value against a direct f64 computation from the per-head attention
//    probabilities (softmax of the scores, not the lse route), its gradient by gradcheck, both modes;
//    the target is detached (q, kv, lse get no gradient); indexerScores → indexerKlLoss gradchecks end to end;
//    f32/bf16 against f64 on every backend at awkward shapes (holes, a row of only holes, an empty range, k
//    and H not multiples of 8/16, D not a multiple of 8), each lse from the forward the model pairs with the
//    mode; on CUDA on each path (the CUDA-core kernel, the bf16 GEMM path, and that with two queries a chunk)
//    and against the CPU op on the same inputs (skipped with the reason where there is no CUDA driver).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { eachDevice } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { normals64 as normals, on, relErr, to } from './helpers.js';
import { indexScores } from '../oracles/indexer.js';
import { indexerKlBytesPerQuery, indexerScoresBytesPerQuery, indexerTrainTune } from '../../src/backend/cuda/indexer-train.js';
import { BACKWARD_PATHS, GEMM_PATHS, onGemmPath } from './gemm-paths.js';

/** Causal ranges of Tq queries at positions pos0.. over Tk keys: [0, pos + 1); row `empty` gets [3, 3). */
function causal(Tq: number, pos0: number, empty = -1): { start: T.Tensor; end: T.Tensor } {
  const s = new Int32Array(Tq);
  const e = Int32Array.from({ length: Tq }, (_, i) => pos0 + i + 1);
  if (empty >= 0) {
    s[empty] = 3;
    e[empty] = 3;
  }
  return { start: T.fromArray(s, [Tq], { dtype: 'i32' }), end: T.fromArray(e, [Tq], { dtype: 'i32' }) };
}
/** Selected indices: distinct causal keys, −1 holes, an out-of-range entry, and row `empty` all holes. */
function selected(Tq: number, k: number, pos0: number, rnd: () => number, empty = -1): Int32Array {
  const idx = new Int32Array(Tq * k).fill(-1);
  for (let i = 0; i < Tq; i++) {
    if (i === empty) continue;
    const vis = Array.from({ length: pos0 + i + 1 }, (_, t) => t).sort(() => rnd() - 0.5);
    for (let j = 0; j < k; j++) idx[i * k + j] = rnd() < 0.2 || j >= vis.length ? -1 : vis[j]!;
    if (k > 2) idx[i * k + k - 1] = 10_000; // out of range: a hole
  }
  return idx;
}

// ---- indexerScores ------------------------------------------------------------------------------------

// On CUDA the device tests run each of GEMM_PATHS (gemm-paths.ts; the CPU has one path): f32 always takes
// the CUDA-core kernels. The KL's sparse lse comes from the forward of the same path (the gemm forward's
// score rounding is the GEMM path's: kernels/indexer_train_gemm.cu); its dense lse is causalMlaPrefillTrain's
// on every path, as in the model. The two-queries budget is the KL's or the scores forward's bytes per
// query, so the scores backward then takes one a chunk.

test('indexerScores (dense, f32 and bf16 values) equals the host indexScores with quantisation off, bit for bit', () => {
  for (const [Tq, H, D, Tk, seed] of [[5, 4, 16, 23, 1], [9, 64, 128, 40, 2]] as const) {
    const rnd = mulberry32(seed);
    for (const dtype of ['f32', 'bf16'] as const) {
      const q = T.fromArray(normals(Tq * H * D, rnd), [Tq, H, D], { dtype });
      const k = T.fromArray(normals(Tk * D, rnd), [Tk, D], { dtype });
      const w = T.fromArray(normals(Tq * H, rnd, 0.1), [Tq, H], { dtype: 'f32' });
      const pos0 = Tk - Tq;
      const host = indexScores(q.toFloat32(), w.toFloat32(), k.toFloat32(), new Float32Array(Tk).fill(1), Tq, H, D, Tk, pos0);
      const got = T.indexerScores(q, k, w, causal(Tq, pos0)).toFloat32();
      assert.equal(got.length, host.length);
      for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], host[i]), `${dtype} [${Tq},${H},${D}]: scores[${i}] = ${got[i]}, host ${host[i]}`);
    }
  }
});

test('indexerScores: gradcheck of dq, dk and dw (dense with an empty range, sparse with holes)', () => {
  const [Tq, H, D, Tk] = [4, 3, 5, 9];
  const rnd = mulberry32(7);
  const pos0 = Tk - Tq;
  const q = T.fromArray(normals(Tq * H * D, rnd), [Tq, H, D], { dtype: 'f64', requiresGrad: true });
  const k = T.fromArray(normals(Tk * D, rnd), [Tk, D], { dtype: 'f64', requiresGrad: true });
  const w = T.fromArray(normals(Tq * H, rnd), [Tq, H], { dtype: 'f64', requiresGrad: true }); // negative weights too
  const dense = causal(Tq, pos0, 1);
  const sparse = { indices: T.fromArray(selected(Tq, 6, pos0, rnd, 2), [Tq, 6], { dtype: 'i32' }) };
  for (const sel of [dense, sparse]) {
    // −inf entries are constant: compare only finite outputs (mask them to 0 in the contracted output)
    const f = (a: T.Tensor, b: T.Tensor, c: T.Tensor): T.Tensor => {
      const s = T.indexerScores(a, b, c, sel);
      return T.where(T.gt(T.detach(s), -Infinity), s, 0);
    };
    const r = T.gradcheck(f, [q, k, w], { atol: 1e-6, rtol: 1e-5 });
    assert.ok(r.ok, `${'indices' in sel ? 'sparse' : 'dense'}: ${r.detail}`);
  }
});

eachDevice('indexerScores forward and backward in f32/bf16 against f64 (dense and sparse; H 64, D 128 and small odd shapes) on every path', (dev) => {
  let seed = 50;
  // [5, 3, 20]: D % 8 ≠ 0, so sparse stays on the kernels even on the gemm path; [7, 20, 16]: H not a multiple of 16;
  // [5, 11, 128, 200, 150] and [4, 4, 64, 90, 70]: the one-pass kernels' shapes (H ≤ 16), the first past two key tiles
  for (const [Tq, H, D, Tk, kSel] of [[6, 64, 128, 70, 37], [5, 3, 20, 13, 9], [7, 20, 16, 40, 30], [5, 11, 128, 200, 150], [4, 4, 64, 90, 70]] as const) {
    const rnd = mulberry32(seed++);
    const pos0 = Tk - Tq;
    const qv = normals(Tq * H * D, rnd);
    const kv = normals(Tk * D, rnd);
    const wv = normals(Tq * H, rnd, 0.2);
    const sels = [causal(Tq, pos0, 1), { indices: T.fromArray(selected(Tq, kSel, pos0, rnd, 2), [Tq, kSel], { dtype: 'i32' }) }];
    for (const sel of sels) {
      const N = 'indices' in sel ? kSel : Tk;
      const gv = normals(Tq * N, rnd);
      for (const dtype of ['f32', 'bf16'] as const) {
        const what = `${dev} ${dtype} ${'indices' in sel ? 'sparse' : 'dense'} [${Tq},${H},${D}] Tk ${Tk}`;
        const q0 = T.fromArray(qv, [Tq, H, D], { dtype });
        const k0 = T.fromArray(kv, [Tk, D], { dtype });
        const w0 = T.fromArray(wv, [Tq, H], { dtype: 'f32' });
        const run = (q: T.Tensor, k: T.Tensor, w: T.Tensor, d: string) => {
          const [ql, kl, wl] = [q, k, w].map((t) => T.fromBits(t.toHost(), t.dtype, t.shape, { device: d })) as [T.Tensor, T.Tensor, T.Tensor];
          for (const t of [ql, kl, wl]) t.requiresGrad = true;
          const dsel = 'indices' in sel ? { indices: on(sel.indices, d) } : { start: on(sel.start, d), end: on(sel.end, d) };
          const s = T.indexerScores(ql, kl, wl, dsel);
          const g = T.fromArray(gv, [Tq, N], { dtype: s.dtype });
          T.backward(s, on(g, d));
          return { s: s.toFloat64(), dq: ql.grad!.toFloat64(), dk: kl.grad!.toFloat64(), dw: wl.grad!.toFloat64() };
        };
        const ref = run(T.cast(q0, 'f64'), T.cast(k0, 'f64'), T.cast(w0, 'f64'), 'cpu');
        const bytes = indexerScoresBytesPerQuery(H, N, D, 'indices' in sel, false);
        for (const path of dev === 'cpu' ? [null] : dtype === 'bf16' ? BACKWARD_PATHS : (['kernel'] as const)) {
          const where = `${what}${path ? ` (${path})` : ''}`;
          const got = onGemmPath(indexerTrainTune, path, bytes, () => run(q0, k0, w0, dev));
          // −inf exactly where the reference has it
          for (let i = 0; i < ref.s.length; i++) assert.equal(got.s[i] === -Infinity, ref.s[i] === -Infinity, `${where}: −inf pattern at ${i}`);
          const fin = (a: Float64Array) => a.map((x) => (x === -Infinity ? 0 : x));
          // the inputs are the dtype's values, the math is f32 or better (the gemm path's l: tensor-core f32
          // accumulation, whose partial sums need not round as f32 FMAs do — allowed 1e-4, a real fault is far above)
          const tol = path?.startsWith('gemm') || path === 'flash' ? 1e-4 : 1e-5;
          assert.ok(relErr(fin(got.s), fin(ref.s)) <= tol, `${where}: scores ${relErr(fin(got.s), fin(ref.s))}`);
          // gradients: the gemm path's bf16 coefficients g·w (and bf16 dq) cost ~2e-3 (a CPU emulation, 2026-12-06)
          for (const key of ['dq', 'dk', 'dw'] as const) {
            const e = relErr(got[key], ref[key]);
            assert.ok(e <= (dtype === 'f32' ? 1e-4 : 1e-2), `${where}: ${key} relative error ${e}`);
          }
          // the row with an empty range (dense) or only holes (sparse): zero dq and dw
          const empty = 'indices' in sel ? 2 : 1;
          for (let j = empty * H * D; j < (empty + 1) * H * D; j++) assert.ok(got.dq[j] === 0, `${where}: empty row dq[${j}] = ${got.dq[j]}`);
          for (let h = 0; h < H; h++) assert.ok(got.dw[empty * H + h] === 0, `${where}: empty row dw[${h}]`);
        }
      }
    }
  }
});

// ---- indexerKlLoss ------------------------------------------------------------------------------------

/** Direct f64 KL: per-head softmax over the row's entries from the scores themselves (no lse), head sum, L1 norm. */
function directKl(qv: Float64Array, kvv: Float64Array, I: Float64Array, Tq: number, H: number, D: number, scale: number,
  entries: (i: number) => [number, number][], N: number): { loss: number; grad: Float64Array } {
  let loss = 0;
  const grad = new Float64Array(Tq * N);
  for (let i = 0; i < Tq; i++) {
    const E = entries(i);
    if (!E.length) continue;
    const a = new Float64Array(E.length);
    for (let h = 0; h < H; h++) {
      const s = E.map(([t]) => {
        let d = 0;
        for (let c = 0; c < D; c++) d += qv[(i * H + h) * D + c]! * kvv[t * D + c]!;
        return d * scale;
      });
      const m = Math.max(...s);
      const z = s.reduce((x, y) => x + Math.exp(y - m), 0);
      s.forEach((x, j) => { a[j] += Math.exp(x - m) / z; });
    }
    const P = a.reduce((x, y) => x + y, 0);
    const Ii = E.map(([, col]) => I[i * N + col]!);
    const m = Math.max(...Ii);
    const lz = m + Math.log(Ii.reduce((x, y) => x + Math.exp(y - m), 0));
    E.forEach(([, col], j) => {
      const p = a[j]! / P;
      if (p > 0) loss += p * (Math.log(p) - (Ii[j]! - lz));
      grad[i * N + col] = Math.exp(Ii[j]! - lz) - p;
    });
  }
  return { loss, grad };
}

test('indexerKlLoss: value against a direct f64 computation and gradient by gradcheck (dense warm-up and sparse stage)', () => {
  const [Tq, H, D, dv, Tk, kSel] = [5, 4, 12, 8, 11, 7];
  const rnd = mulberry32(17);
  const pos0 = Tk - Tq;
  const scale = 0.6;
  const qv = normals(Tq * H * D, rnd);
  const kvv = normals(Tk * D, rnd);
  const q = T.fromArray(qv, [Tq, H, D], { dtype: 'f64' });
  const kv = T.fromArray(kvv, [Tk, D], { dtype: 'f64' });
  const idx = selected(Tq, kSel, pos0, rnd, 2);
  const dense = causal(Tq, pos0, 1);
  const sparse = { indices: T.fromArray(idx, [Tq, kSel], { dtype: 'i32' }) };
  for (const sel of [dense, sparse]) {
    const mode = 'indices' in sel ? 'sparse' : 'dense';
    const N = 'indices' in sel ? kSel : Tk;
    // the main attention over the same entries: dense = every causal key as indices, sparse = the selection
    const attIdx = 'indices' in sel ? sel.indices : T.fromArray(Int32Array.from({ length: Tq * Tk }, (_, n) => {
      const i = Math.floor(n / Tk);
      const t = n % Tk;
      return i !== 1 && t <= pos0 + i ? t : -1;
    }), [Tq, Tk], { dtype: 'i32' });
    const { lse } = T.sparseMlaPrefillTrain(q, kv, attIdx, scale, { dv });
    const Iv = normals(Tq * N, rnd, 2);
    const entries = (i: number): [number, number][] => {
      const out: [number, number][] = [];
      if ('indices' in sel) idx.subarray(i * kSel, (i + 1) * kSel).forEach((t, j) => { if (t >= 0 && t < Tk) out.push([t, j]); });
      else if (i !== 1) for (let t = 0; t <= pos0 + i; t++) out.push([t, t]);
      return out;
    };
    const ref = directKl(qv, kvv, Iv, Tq, H, D, scale, entries, N);
    const attn = { q, kv, lse, scale, dv };
    const loss = T.indexerKlLoss(T.fromArray(Iv, [Tq, N], { dtype: 'f64' }), attn, sel);
    assert.deepEqual(loss.shape, []);
    assert.ok(Math.abs(loss.item() - ref.loss) <= 1e-12 * (1 + ref.loss), `${mode}: loss ${loss.item()} vs direct ${ref.loss}`);
    assert.ok(ref.loss > 0.1, `${mode}: a non-trivial loss (${ref.loss})`);
    // f32 scores and q/kv: the same loss to f32 accuracy
    const l32 = T.indexerKlLoss(T.fromArray(Iv, [Tq, N], { dtype: 'f32' }), { q: T.cast(q, 'f32'), kv: T.cast(kv, 'f32'), lse: T.cast(lse, 'f32'), scale, dv }, sel);
    assert.equal(l32.dtype, 'f32');
    assert.ok(Math.abs(l32.item() - ref.loss) <= 1e-5 * (1 + ref.loss), `${mode}: f32 loss ${l32.item()} vs ${ref.loss}`);
    // the gradient: analytic against the direct formula, and by finite differences
    const s = T.fromArray(Iv, [Tq, N], { dtype: 'f64', requiresGrad: true });
    T.backward(T.indexerKlLoss(s, attn, sel));
    assert.ok(relErr(s.grad!.toFloat64(), ref.grad) <= 1e-12, `${mode}: gradient vs direct`);
    const r = T.gradcheck((x) => T.indexerKlLoss(x, attn, sel), [T.fromArray(Iv, [Tq, N], { dtype: 'f64', requiresGrad: true })], { atol: 1e-7, rtol: 1e-6 });
    assert.ok(r.ok, `${mode}: ${r.detail}`);
  }
});

test('indexerKlLoss: the target is detached (q, kv, lse get no gradient); indexerScores → indexerKlLoss gradchecks end to end', () => {
  const [Tq, Hm, D, dv, Tk, Hi, Di, kSel] = [4, 3, 10, 6, 8, 3, 5, 5];
  const rnd = mulberry32(23);
  const pos0 = Tk - Tq;
  const scale = 0.5;
  const q = T.fromArray(normals(Tq * Hm * D, rnd), [Tq, Hm, D], { dtype: 'f64', requiresGrad: true });
  const kv = T.fromArray(normals(Tk * D, rnd), [Tk, D], { dtype: 'f64', requiresGrad: true });
  const idx = T.fromArray(selected(Tq, kSel, pos0, rnd, 1), [Tq, kSel], { dtype: 'i32' });
  const { out, lse } = T.sparseMlaPrefillTrain(q, kv, idx, scale, { dv });
  const qi = T.fromArray(normals(Tq * Hi * Di, rnd), [Tq, Hi, Di], { dtype: 'f64', requiresGrad: true });
  const ki = T.fromArray(normals(Tk * Di, rnd), [Tk, Di], { dtype: 'f64', requiresGrad: true });
  const wi = T.fromArray(normals(Tq * Hi, rnd), [Tq, Hi], { dtype: 'f64', requiresGrad: true });
  const sel = { indices: idx };
  const attn = { q, kv, lse, scale, dv };
  // one backward through both losses: the KL part must not reach q or kv
  T.backward(T.indexerKlLoss(T.indexerScores(qi, ki, wi, sel), attn, sel));
  assert.equal(q.grad, null);
  assert.equal(kv.grad, null);
  assert.ok(qi.grad && ki.grad && wi.grad);
  void out;
  const det = { q: T.detach(q), kv: T.detach(kv), lse, scale, dv };
  for (const s of [sel, causal(Tq, pos0)]) {
    // dense warm-up: the attention target over all causal keys
    const a = 'indices' in s ? det : (() => {
      const all = T.fromArray(Int32Array.from({ length: Tq * Tk }, (_, n) => (n % Tk <= pos0 + Math.floor(n / Tk) ? n % Tk : -1)), [Tq, Tk], { dtype: 'i32' });
      return { ...det, lse: T.sparseMlaPrefillTrain(det.q, det.kv, all, scale, { dv }).lse };
    })();
    const r = T.gradcheck((x, y, z) => T.indexerKlLoss(T.indexerScores(x, y, z, s), a, s), [qi, ki, wi], { atol: 1e-6, rtol: 1e-5 });
    assert.ok(r.ok, `${'indices' in s ? 'sparse' : 'dense'}: ${r.detail}`);
  }
});

test('indexerKlLoss: empty rows and zero-mass rows contribute nothing; shape errors are clear', () => {
  const [Tq, H, D, Tk] = [3, 2, 6, 5];
  const rnd = mulberry32(31);
  const q = T.fromArray(normals(Tq * H * D, rnd), [Tq, H, D], { dtype: 'f64' });
  const kv = T.fromArray(normals(Tk * D, rnd), [Tk, D], { dtype: 'f64' });
  // lse −∞ in every head of row 0 (the attention saw nothing): zero target mass
  const lse = T.fromArray([-Infinity, -Infinity, 0.5, 0.7, 0.1, 0.2], [Tq, H], { dtype: 'f64' });
  const sel = { indices: T.fromArray([0, 1, -1, -1, -1, -1, 2, 4, 3], [Tq, 3], { dtype: 'i32' }) };
  const s = T.fromArray(normals(Tq * 3, rnd), [Tq, 3], { dtype: 'f64', requiresGrad: true });
  const loss = T.indexerKlLoss(s, { q, kv, lse, scale: 0.3, dv: 4 }, sel);
  assert.ok(Number.isFinite(loss.item()));
  T.backward(loss);
  const g = s.grad!.toFloat64();
  for (let j = 0; j < 6; j++) assert.equal(g[j], 0, `rows 0 and 1: zero gradient (${j})`);
  assert.throws(() => T.indexerKlLoss(T.zeros([Tq, 4]), { q, kv, lse, scale: 1, dv: 4 }, sel), /scores \[3, 4\] must be \[3, 3\]/);
  assert.throws(() => T.indexerKlLoss(T.zeros([Tq, Tk]), { q, kv, lse: T.zeros([Tq, 3]), scale: 1, dv: 4 }, causal(Tq, 2)), /lse \[3, 3\] must be \[3, 2\]/);
  assert.throws(() => T.indexerScores(T.zeros([2, 2, 4]), T.zeros([5, 3]), T.zeros([2, 2]), causal(2, 3)), /k \[5, 3\] must be \[Tk, 4\]/);
  assert.throws(() => T.indexerScores(T.zeros([2, 2, 4]), T.zeros([5, 4]), T.zeros([2, 3]), causal(2, 3)), /w \[2, 3\] must be \[2, 2\]/);
});

eachDevice('indexerKlLoss in f32 and bf16 at awkward shapes against f64 (and, on CUDA, the CPU op) on every path, sparse and dense', (dev) => {
  let seed = 70;
  // sparse: Tq queries choosing k of Tk keys; dense: Tk queries over their causal keys (Tq = Tk, as the model)
  const cases = [
    { Tq: 6, H: 20, dv: 64, dr: 8, Tk: 50, k: 37 }, // H not a multiple of 16, k odd
    { Tq: 5, H: 3, dv: 16, dr: 8, Tk: 13, k: 9 }, // tiny odd H
    { Tq: 3, H: 128, dv: 512, dr: 64, Tk: 24, k: 21 }, // the 671B main attention's heads and dims
    { Tq: 5, H: 4, dv: 8, dr: 4, Tk: 11, k: 7 }, // D % 8 ≠ 0: sparse stays on the kernel even on the gemm path
    { Tq: 5, H: 11, dv: 96, dr: 32, Tk: 160, k: 140 }, // sparse on the flash path: H < 16, k past two tiles
  ];
  for (const c of cases) {
    const rnd = mulberry32(seed++);
    const D = c.dv + c.dr;
    const scale = 1.5 / Math.sqrt(D);
    const kvv = normals(c.Tk * D, rnd);
    for (const mode of ['sparse', 'dense'] as const) {
      const Tq = mode === 'sparse' ? c.Tq : c.Tk;
      const N = mode === 'sparse' ? c.k : c.Tk;
      const idx = selected(Tq, c.k, c.Tk - Tq, rnd, 2); // row 2: only holes
      const sel: T.IndexerSelection = mode === 'sparse' ? { indices: T.fromArray(idx, [Tq, c.k], { dtype: 'i32' }) } : causal(Tq, 0, 1); // row 1: empty range
      const empty = mode === 'sparse' ? 2 : 1;
      const qv = normals(Tq * c.H * D, rnd);
      const Iv = normals(Tq * N, rnd, 2);
      const bytes = indexerKlBytesPerQuery(c.H, N, D, mode === 'sparse');
      for (const dtype of ['f32', 'bf16'] as const) {
        const q0 = T.fromArray(qv, [Tq, c.H, D], { dtype });
        const kv0 = T.fromArray(kvv, [c.Tk, D], { dtype });
        /** The main attention's lse on d (the forward the model pairs with the mode), then the loss and its gradient. */
        const lseOn = (q: T.Tensor, kv: T.Tensor): T.Tensor => T.noGrad(() => (mode === 'sparse'
          ? T.sparseMlaPrefillTrain(q, kv, on((sel as { indices: T.Tensor }).indices, q.device), scale, { dv: c.dv }).lse
          : T.causalMlaPrefillTrain(q, kv, 1, Tq, scale, { dv: c.dv }).lse));
        const kl = (q: T.Tensor, kv: T.Tensor, lse: T.Tensor, sdt: T.DType): { loss: number; grad: Float64Array } => {
          const d = q.device;
          const s = to(T.fromArray(Iv, [Tq, N], { dtype: sdt }), d, true);
          const dsel = 'indices' in sel ? { indices: on(sel.indices, d) } : { start: on(sel.start, d), end: on(sel.end, d) };
          const loss = T.indexerKlLoss(s, { q, kv, lse, scale, dv: c.dv }, dsel);
          T.backward(loss);
          return { loss: loss.item(), grad: s.grad!.toFloat64() };
        };
        const [q64, kv64] = [T.cast(q0, 'f64'), T.cast(kv0, 'f64')];
        const ref = kl(q64, kv64, lseOn(q64, kv64), 'f64');
        assert.ok(ref.loss > 0.1, `${mode} ${JSON.stringify(c)}: a non-trivial loss (${ref.loss})`);
        for (const path of dev === 'cpu' ? [null] : dtype === 'bf16' ? BACKWARD_PATHS : (['kernel'] as const)) {
          const what = `${dev}${path ? ` (${path})` : ''} ${dtype} ${mode} ${JSON.stringify(c)}`;
          const { got, cpu } = onGemmPath(indexerTrainTune, path, bytes, () => {
            const [ql, kl_] = [to(q0, dev), to(kv0, dev)];
            const lse = lseOn(ql, kl_);
            // the CPU op on the very same inputs (the device's lse)
            return { got: kl(ql, kl_, lse, 'f32'), cpu: dev === 'cpu' ? null : kl(q0, kv0, to(lse, 'cpu'), 'f32') };
          });
          const tol = dtype === 'f32' ? 1e-4 : 3e-2;
          const el = Math.abs(got.loss - ref.loss) / ref.loss;
          const eg = relErr(got.grad, ref.grad);
          assert.ok(el <= tol, `${what}: loss ${got.loss} vs f64 ${ref.loss} (relative ${el})`);
          assert.ok(eg <= tol, `${what}: gradient relative error ${eg}`);
          // exact zeros: the empty row, and every column that is not an entry
          for (let i = 0; i < Tq; i++) {
            for (let j = 0; j < N; j++) {
              const entry = i !== empty && (mode === 'sparse' ? idx[i * c.k + j]! >= 0 && idx[i * c.k + j]! < c.Tk : j <= i);
              if (!entry) assert.ok(got.grad[i * N + j] === 0, `${what}: grad[${i}, ${j}] = ${got.grad[i * N + j]} off the entries`);
            }
          }
          if (cpu) {
            const cl = Math.abs(got.loss - cpu.loss) / cpu.loss;
            const cg = relErr(got.grad, cpu.grad);
            const ct = dtype === 'f32' ? 1e-4 : 1e-2;
            assert.ok(cl <= ct && cg <= ct, `${what}: against the CPU op loss ${cl}, gradient ${cg}`);
          }
        }
      }
    }
  }
});
