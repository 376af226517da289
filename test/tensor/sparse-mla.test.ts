// Sparse MLA forward (prefill and paged decode) and the MLA latent-cache writer (src/tensor/ops/sparse-mla.ts):
//  - the CPU reference against the model's former host MQA path (test/oracles/sparse-attention.ts), bit for bit;
//  - one test body per backend at awkward shapes (k not a multiple of 64, Tk not a multiple of the page,
//    −1 holes and a row of only holes, H of 16/64/128, s_q of 2), against a plain f64 reference and, on
//    CUDA, against the CPU op (skipped with the reason when no CUDA driver is present);
//  - the FP8 cache layout: the writer's bytes equal actQuant(ue8m0)'s, the scale equals
//    2^ceil(log2(amax/448)), and write → decode equals prefill on the dequantised kv.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { eachDevice } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { bitsEqual, normalsF32 as normals, on, relErr } from './helpers.js';
import { sparseMqaAttention } from '../oracles/sparse-attention.js';
import { sparseMlaTune } from '../../src/backend/cuda/sparse-mla.js';

/**
 * On CUDA a bf16 query takes the wide-head wgmma kernel (sparseMlaTune.wg: at least 64 heads at D 576, dv 512,
 * bf16 rows or the FP8 cache), a fused tensor-core kernel (sparseMlaTune.fused, within its bounds: the
 * one-pass kernel with sparseMlaTune.flash for bf16 rows where its layout fits, else the two-pass one) or
 * the gather + cuBLASLt path (sparseMlaTune.gemm), and f32 the CUDA-core kernel: run the body on each path
 * in turn (the wgmma kernel with its keys split over CTAs, as few rows make it, and unsplit; one-pass split
 * and unsplit, two-pass, gemm, kernel), so every path meets the same bounds.
 */
// the fused path with its speed bounds lifted, so the small cases here reach it at up to 64 heads
const PATHS = [
  { wg: true, fused: true, flash: true, split: true, splitMinRows: 1, gemm: true, fusedMinRows: 0, fusedMaxHeads: 64 },
  { wg: true, fused: true, flash: true, split: false, gemm: true, fusedMinRows: 0, fusedMaxHeads: 64 },
  { wg: false, fused: true, flash: true, split: true, splitMinRows: 1, gemm: true, fusedMinRows: 0, fusedMaxHeads: 64 },
  { wg: false, fused: true, flash: true, split: false, gemm: true, fusedMinRows: 0, fusedMaxHeads: 64 },
  { wg: false, fused: true, flash: false, gemm: true, fusedMinRows: 0, fusedMaxHeads: 64 },
  { wg: false, fused: false, gemm: true },
  { wg: false, fused: false, gemm: false },
] as const;
function bothPaths(dev: string, body: () => void): void {
  const keep = { ...sparseMlaTune };
  try {
    for (const p of dev === 'cpu' ? [keep] : PATHS) {
      Object.assign(sparseMlaTune, p);
      body();
    }
  } finally {
    Object.assign(sparseMlaTune, keep);
  }
}

/** The CUDA path a bf16 query of H heads takes now (for messages). */
const pathName = (dev: string, H: number): string =>
  dev === 'cpu' ? '' : sparseMlaTune.wg && H >= sparseMlaTune.wgMinHeads ? ` (wgmma kernel where it applies${sparseMlaTune.split ? ', split' : ''})` : sparseMlaTune.fused && H <= sparseMlaTune.fusedMaxHeads && sparseMlaTune.fusedMinRows === 0 ? (sparseMlaTune.flash ? ' (fused path, one-pass kernel where it applies)' : ' (fused path)') : sparseMlaTune.gemm ? ' (gemm path)' : ' (kernel path)';

const bf16All = (a: Float32Array): Float32Array => a.map((x) => T.bf16Round(x));

/**
 * rows × k indices into [0, Tk): distinct valid entries, about `holes` of them −1, a few out of range
 * (also holes), and the rows in `emptyRows` all −1.
 */
function makeIndices(rows: number, k: number, Tk: number, rnd: () => number, holes = 0.2, emptyRows: number[] = []): Int32Array {
  const idx = new Int32Array(rows * k);
  const perm = Int32Array.from({ length: Tk }, (_, i) => i);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < Math.min(k, Tk); j++) {
      const p = j + Math.floor(rnd() * (Tk - j));
      [perm[j], perm[p]] = [perm[p]!, perm[j]!];
    }
    for (let j = 0; j < k; j++) {
      const u = rnd();
      idx[r * k + j] = emptyRows.includes(r) || j >= Tk || u < holes ? -1 : u < holes + 0.02 ? Tk + Math.floor(rnd() * 5) : perm[j]!;
    }
  }
  return idx;
}

/** Plain f64 sparse attention (no intermediate rounding): out [N, H, dv], lse [N, H]. */
function naive(q: Float32Array, kv: Float32Array, idx: Int32Array, N: number, H: number, D: number, dv: number, k: number, scale: number): { out: Float64Array; lse: Float64Array } {
  const rows = kv.length / D;
  const out = new Float64Array(N * H * dv);
  const lse = new Float64Array(N * H).fill(-Infinity);
  for (let i = 0; i < N; i++) {
    const ts = [...idx.subarray(i * k, (i + 1) * k)].filter((t) => t >= 0 && t < rows);
    if (!ts.length) continue;
    for (let h = 0; h < H; h++) {
      const s = ts.map((t) => {
        let d = 0;
        for (let c = 0; c < D; c++) d += q[(i * H + h) * D + c]! * kv[t * D + c]!;
        return d * scale;
      });
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < ts.length; j++) for (let c = 0; c < dv; c++) out[(i * H + h) * dv + c] += (e[j]! / z) * kv[ts[j]! * D + c]!;
      lse[i * H + h] = m + Math.log(z);
    }
  }
  return { out, lse };
}

/** lse agree: −∞ exactly where expected, elsewhere |a − e| ≤ tol·(1 + |e|). */
function assertLse(a: ArrayLike<number>, e: ArrayLike<number>, tol: number, what: string): void {
  for (let i = 0; i < e.length; i++) {
    if (e[i] === -Infinity || a[i] === -Infinity) {
      assert.equal(a[i], e[i], `${what}: lse[${i}]`);
      continue;
    }
    assert.ok(Math.abs(a[i]! - e[i]!) <= tol * (1 + Math.abs(e[i]!)), `${what}: lse[${i}] = ${a[i]}, expected ${e[i]}`);
  }
}

// ---- the CPU reference is the host MQA path ---------------------------------------------------------

/** Host MQA inputs of a random tiny config, the equivalent op inputs, and both results. */
function hostVsOp(dtype: 'f32' | 'bf16', seed: number, opts: { B: number; S: number; H: number; T: number; dC: number; dR: number; width: number; qPos0: number }) {
  const { B, S, H, T: Tn, dC, dR, width, qPos0 } = opts;
  const rnd = mulberry32(seed);
  const round = dtype === 'bf16' ? bf16All : (a: Float32Array) => a;
  const rndFn = dtype === 'bf16' ? T.bf16Round : Math.fround;
  const qAbs = round(normals(B * S * H * dC, rnd, 0.3));
  const qPe = round(normals(B * S * H * dR, rnd, 0.3));
  const kv = round(normals(B * Tn * dC, rnd));
  const pe = round(normals(B * Tn * dR, rnd));
  const scale = 0.1352338;
  // selection rows as the indexer leaves them: ascending positions, −1 padded; some in the future of the
  // query (the host drops them causally), one row with nothing visible
  const sel = new Int32Array(B * S * width).fill(-1);
  for (let r = 0; r < B * S; r++) {
    if (r === 1) {
      sel[r * width] = Tn - 1; // only a future key for query position qPos0 + 1 < Tn − 1: nothing visible
      continue;
    }
    const picks = [...new Set(Array.from({ length: width }, () => Math.floor(rnd() * Tn)))].sort((a, b) => a - b);
    picks.slice(0, width - 2).forEach((t, j) => { sel[r * width + j] = t; });
  }
  const D = dC + dR;
  const host = new Float32Array(B * S * H * dC);
  for (let b = 0; b < B; b++) {
    host.set(sparseMqaAttention({
      S, H, T: Tn, dC, dRope: dR, qPos0,
      qAbs: qAbs.subarray(b * S * H * dC, (b + 1) * S * H * dC), qPe: qPe.subarray(b * S * H * dR, (b + 1) * S * H * dR),
      kv: kv.subarray(b * Tn * dC, (b + 1) * Tn * dC), pe: pe.subarray(b * Tn * dR, (b + 1) * Tn * dR),
      sel: { idx: sel, off: b * S * width, width }, scale, rnd: rndFn,
    }), b * S * H * dC);
  }
  // the op's inputs: [q_abs | q_pe] per head, [kv | pe] per token of the flattened batch, and indices with
  // the causal filter applied and batch b's keys at rows b·T + t
  const q = new Float32Array(B * S * H * D);
  for (let n = 0; n < B * S * H; n++) {
    q.set(qAbs.subarray(n * dC, (n + 1) * dC), n * D);
    q.set(qPe.subarray(n * dR, (n + 1) * dR), n * D + dC);
  }
  const kvc = new Float32Array(B * Tn * D);
  for (let t = 0; t < B * Tn; t++) {
    kvc.set(kv.subarray(t * dC, (t + 1) * dC), t * D);
    kvc.set(pe.subarray(t * dR, (t + 1) * dR), t * D + dC);
  }
  const idx = new Int32Array(B * S * width);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < S; i++) {
      for (let j = 0; j < width; j++) {
        const t = sel[(b * S + i) * width + j]!;
        idx[(b * S + i) * width + j] = t >= 0 && t <= qPos0 + i && t < Tn ? b * Tn + t : -1;
      }
    }
  }
  return { host, q, kvc, idx, latent: kv, pe, scale, D };
}

for (const dtype of ['f32', 'bf16'] as const) {
  test(`sparseMlaPrefill on the CPU reproduces the host MQA path bit for bit (${dtype})`, () => {
    const cfg = { B: 2, S: 5, H: 4, T: 23, dC: 48, dR: 16, width: 9, qPos0: 18 };
    const r = hostVsOp(dtype, 1234 + dtype.length, cfg);
    const q = T.fromArray(r.q, [cfg.B * cfg.S, cfg.H, r.D], { dtype });
    const kv = T.fromArray(r.kvc, [cfg.B * cfg.T, r.D], { dtype });
    const { out, lse } = T.sparseMlaPrefill(q, kv, T.fromArray(r.idx, [cfg.B * cfg.S, cfg.width], { dtype: 'i32' }), r.scale, { dv: cfg.dC });
    const got = out.toFloat32();
    for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], r.host[i]), `out[${i}] = ${got[i]}, host ${r.host[i]}`);
    // the query with no visible key: zeros (as the host) and lse −∞
    const l = lse.toFloat32();
    for (let h = 0; h < cfg.H; h++) assert.equal(l[1 * cfg.H + h], -Infinity);
    assert.ok(l.every((x, i) => Math.floor(i / cfg.H) === 1 || Number.isFinite(x)));
  });

  test(`sparseMlaDecode over the FP8 cache on the CPU reproduces the host MQA path on the FP8 round-tripped latent (${dtype})`, () => {
    // dC a multiple of 128, as the FP8 layout's scales are per 128 values; pe bf16-valued (the cache stores bf16)
    const cfg = { B: 2, S: 2, H: 4, T: 37, dC: 256, dR: 16, width: 11, qPos0: 34 };
    const r = hostVsOp(dtype, 77, cfg);
    const pe = bf16All(r.pe);
    // the host caches dequant(quant(latent)) rounded to the activation dtype (exact: e4m3·2^k fits bf16)
    const lat = T.fromArray(r.latent, [cfg.B * cfg.T, cfg.dC], { dtype });
    const { q: q8, s } = T.actQuant(lat, 128, { ue8m0: true });
    const rt = T.actDequant(q8, s, 128).toFloat32();
    const host = new Float32Array(cfg.B * cfg.S * cfg.H * cfg.dC);
    const rndFn = dtype === 'bf16' ? T.bf16Round : Math.fround;
    for (let b = 0; b < cfg.B; b++) {
      // the same selection as hostVsOp's (rebuilt from the op indices: batch b's rows are b·T + t)
      const sel = new Int32Array(cfg.S * cfg.width).map((_, j) => {
        const t = r.idx[b * cfg.S * cfg.width + j]!;
        return t < 0 ? -1 : t - b * cfg.T;
      });
      host.set(sparseMqaAttention({
        S: cfg.S, H: cfg.H, T: cfg.T, dC: cfg.dC, dRope: cfg.dR, qPos0: cfg.qPos0,
        qAbs: Float32Array.from({ length: cfg.S * cfg.H * cfg.dC }, (_, n) => r.q[(b * cfg.S * cfg.H + Math.floor(n / cfg.dC)) * r.D + (n % cfg.dC)]!),
        qPe: Float32Array.from({ length: cfg.S * cfg.H * cfg.dR }, (_, n) => r.q[(b * cfg.S * cfg.H + Math.floor(n / cfg.dR)) * r.D + cfg.dC + (n % cfg.dR)]!),
        kv: rt.map(rndFn).subarray(b * cfg.T * cfg.dC, (b + 1) * cfg.T * cfg.dC), pe: pe.subarray(b * cfg.T * cfg.dR, (b + 1) * cfg.T * cfg.dR),
        sel: { idx: sel, off: 0, width: cfg.width }, scale: r.scale, rnd: rndFn,
      }), b * cfg.S * cfg.H * cfg.dC);
    }
    // cache pages of 16: token row t of the flattened batch lives at slot t (blocks in order)
    const page = 16;
    const cache = T.newMlaCache(Math.ceil((cfg.B * cfg.T) / page), page, { dv: cfg.dC, dr: cfg.dR });
    T.mlaCacheWrite(cache, lat, T.fromArray(pe, [cfg.B * cfg.T, cfg.dR], { dtype }), T.arange(0, cfg.B * cfg.T, 1, { dtype: 'i32' }));
    const q = T.fromArray(r.q, [cfg.B, cfg.S, cfg.H, r.D], { dtype });
    const { out } = T.sparseMlaDecode(q, cache, T.fromArray(r.idx, [cfg.B, cfg.S, cfg.width], { dtype: 'i32' }), r.scale, { dv: cfg.dC });
    const got = out.toFloat32();
    for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], host[i]), `out[${i}] = ${got[i]}, host ${host[i]}`);
  });
}

// ---- every backend at awkward shapes ---------------------------------------------------------------

interface PrefillCase { Tq: number; H: number; k: number; Tk: number; dv: number; dr: number }
const PREFILL_CASES: PrefillCase[] = [
  { Tq: 5, H: 16, k: 100, Tk: 150, dv: 512, dr: 64 },
  { Tq: 3, H: 64, k: 37, Tk: 70, dv: 512, dr: 64 },
  { Tq: 2, H: 128, k: 65, Tk: 200, dv: 512, dr: 64 },
  { Tq: 4, H: 20, k: 19, Tk: 12, dv: 96, dr: 24 }, // H not a multiple of 16, k > Tk (rows padded with holes)
  { Tq: 3, H: 20, k: 130, Tk: 300, dv: 512, dr: 64 }, // fused: a partial head group, a partial third key tile
  { Tq: 4, H: 16, k: 200, Tk: 70, dv: 512, dr: 64 }, // rows −1 past entry 70: the one-pass kernel skips its all-hole tiles
  { Tq: 2, H: 16, k: 700, Tk: 900, dv: 512, dr: 64 }, // split: 11 key tiles over as many CTAs, the last partial
];

eachDevice('sparseMlaPrefill at awkward shapes (k ∤ 64, holes, a row of only holes, H 16/64/128) against an f64 reference', (dev) => bothPaths(dev, () => {
  let seed = 11;
  for (const c of PREFILL_CASES) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const rnd = mulberry32(seed++);
      const D = c.dv + c.dr;
      const scale = 1.5 / Math.sqrt(D);
      let qv = normals(c.Tq * c.H * D, rnd);
      let kvv = normals(c.Tk * D, rnd);
      if (dtype === 'bf16') {
        qv = bf16All(qv);
        kvv = bf16All(kvv);
      }
      const idx = makeIndices(c.Tq, c.k, c.Tk, rnd, 0.2, [1]);
      const q = T.fromArray(qv, [c.Tq, c.H, D], { dtype });
      const kv = T.fromArray(kvv, [c.Tk, D], { dtype });
      const it = T.fromArray(idx, [c.Tq, c.k], { dtype: 'i32' });
      const { out, lse } = T.sparseMlaPrefill(on(q, dev), on(kv, dev), on(it, dev), scale, { dv: c.dv });
      const what = `${dev}${pathName(dev, c.H)} ${dtype} ${JSON.stringify(c)}`;
      assert.deepEqual(out.shape, [c.Tq, c.H, c.dv]);
      assert.equal(out.dtype, dtype);
      const ref = naive(qv, kvv, idx, c.Tq, c.H, D, c.dv, c.k, scale);
      const o = out.toFloat32();
      // the row of only holes: exact zeros and lse −∞
      for (let j = c.H * c.dv; j < 2 * c.H * c.dv; j++) assert.ok(Object.is(o[j], 0), `${what}: empty row out[${j}] = ${o[j]}`);
      const err = relErr(o, ref.out);
      assert.ok(err <= (dtype === 'f32' ? 1e-5 : 1e-2), `${what}: relative error ${err} against f64`);
      assertLse(lse.toFloat32(), ref.lse, dtype === 'f32' ? 1e-5 : 1e-2, what);
      if (dev !== 'cpu') {
        // bf16: each is held to 1e-2 of f64 above, so the two may differ by the sum. At k 700 (the split case)
        // the CPU op, which rounds p after normalising as the reference does, is 0.92% from f64, the one-pass
        // kernel (p rounded before) 0.62%, and the two 1.24% apart — measured on an H100 and reproduced by a
        // host emulation of the kernel's roundings (2026-12-06); the split and unsplit kernels are 0.22% apart
        const cpu = T.sparseMlaPrefill(q, kv, it, scale, { dv: c.dv });
        const e2 = relErr(o, cpu.out.toFloat32());
        assert.ok(e2 <= (dtype === 'f32' ? 1e-5 : 2e-2), `${what}: relative error ${e2} against the CPU op`);
        assertLse(lse.toFloat32(), cpu.lse.toFloat32(), dtype === 'f32' ? 1e-5 : 4e-3, `${what} vs cpu`);
      }
    }
  }
}));

eachDevice('MLA cache writer: FP8 bytes equal actQuant(ue8m0) and bf16 rope; bf16 cache; −1 skips; bad slots throw', (dev) => {
  const rnd = mulberry32(5);
  const N = 9;
  const dv = 512;
  const dr = 64;
  const page = 7; // odd page size: slots cross pages
  const blocks = 3;
  const lat = normals(N * dv, rnd);
  // magnitudes across blocks: tiny (amax clamp 1e-4), zero, large, and exact power-of-two boundaries
  for (let j = 0; j < 128; j++) lat[j] *= 1e-7;
  for (let j = 128; j < 256; j++) lat[j] = 0;
  for (let j = dv; j < dv + 128; j++) lat[j] *= 3000;
  lat[dv + 200] = 448; // amax = 448·2^0 exactly
  lat[2 * dv + 300] = -448 * 2 ** -6;
  const rope = normals(N * dr, rnd);
  const slots = Int32Array.from([0, 20, 5, -1, 6, 7, 13, 1, 19]);
  for (const dtype of ['f32', 'bf16'] as const) {
    const L = T.fromArray(lat, [N, dv], { dtype });
    const R = T.fromArray(rope, [N, dr], { dtype: dtype === 'f32' ? 'bf16' : 'f32' }); // mixed dtypes too
    const S = T.fromArray(slots, [N], { dtype: 'i32' });
    const cache = on(T.newMlaCache(blocks, page), dev);
    assert.deepEqual(cache.shape, [blocks, page, 656]);
    T.mlaCacheWrite(cache, on(L, dev), on(R, dev), on(S, dev));
    const bytes = cache.toHost() as Uint8Array;
    const { q, s } = T.actQuant(L, 128, { ue8m0: true });
    const qb = q.toHost() as Uint8Array;
    const sv = s.toFloat32();
    const rb = T.cast(R, 'bf16').toHost() as Uint16Array;
    const dvw = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const written = new Set<number>();
    for (let n = 0; n < N; n++) {
      const sl = slots[n]!;
      if (sl < 0) continue;
      written.add(sl);
      const base = sl * 656;
      for (let j = 0; j < dv; j++) assert.equal(bytes[base + j], qb[n * dv + j], `${dev} ${dtype}: token ${n} latent byte ${j}`);
      for (let b = 0; b < 4; b++) {
        const sc = dvw.getFloat32(base + dv + 4 * b, true);
        assert.equal(sc, sv[n * 4 + b], `${dev} ${dtype}: token ${n} scale ${b}`);
        // FlashMLA's definition: 2^ceil(log2(amax/448)), amax clamped to 1e-4
        const amax = Math.max(1e-4, ...Array.from(L.toFloat32().subarray(n * dv + b * 128, n * dv + (b + 1) * 128), Math.abs));
        assert.equal(sc, 2 ** Math.ceil(Math.log2(Math.fround(amax) / 448)), `${dev} ${dtype}: token ${n} scale ${b} vs 2^ceil(log2(amax/448))`);
      }
      for (let j = 0; j < dr; j++) assert.equal(dvw.getUint16(base + dv + 16 + 2 * j, true), rb[n * dr + j], `${dev} ${dtype}: token ${n} rope ${j}`);
    }
    for (let sl = 0; sl < blocks * page; sl++) {
      if (written.has(sl)) continue;
      for (let j = 0; j < 656; j++) assert.equal(bytes[sl * 656 + j], 0, `${dev}: slot ${sl} untouched`);
    }
    // the bf16 cache: both parts rounded to bf16
    const cb = on(T.newMlaCache(blocks, page, { format: 'bf16' }), dev);
    assert.deepEqual(cb.shape, [blocks, page, 576]);
    T.mlaCacheWrite(cb, on(L, dev), on(R, dev), on(S, dev));
    const cv = cb.toHost() as Uint16Array;
    const lb = T.cast(L, 'bf16').toHost() as Uint16Array;
    for (let n = 0; n < N; n++) {
      const sl = slots[n]!;
      if (sl < 0) continue;
      for (let j = 0; j < dv; j++) assert.equal(cv[sl * 576 + j], lb[n * dv + j]);
      for (let j = 0; j < dr; j++) assert.equal(cv[sl * 576 + dv + j], rb[n * dr + j]);
    }
  }
  assert.throws(() => T.mlaCacheWrite(on(T.newMlaCache(blocks, page), dev), on(T.fromArray(lat.subarray(0, dv), [1, dv]), dev), on(T.fromArray(rope.subarray(0, dr), [1, dr]), dev),
    on(T.fromArray([blocks * page], [1], { dtype: 'i32' }), dev)), /21|slot/);
});

test('actQuant ue8m0 scales equal 2^ceil(log2(amax/448)) around every power-of-two boundary (the FP8 cache definition)', () => {
  // amax values within ±200 f32 ulps of 448·2^e for e in [−20, 12]; one block of 128 holding amax each
  const vals: number[] = [];
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let e = -20; e <= 12; e++) {
    f[0] = 448 * 2 ** e;
    const b0 = u[0]!;
    for (let d = -200; d <= 200; d++) {
      u[0] = b0 + d;
      vals.push(f[0]!);
    }
  }
  const x = new Float32Array(vals.length * 128);
  vals.forEach((v, i) => { x[i * 128 + (i % 128)] = v; });
  const s = T.actQuant(T.fromArray(x, [vals.length, 128]), 128, { ue8m0: true }).s.toFloat32();
  vals.forEach((v, i) => assert.equal(s[i], 2 ** Math.ceil(Math.log2(Math.max(v, Math.fround(1e-4)) / 448)), `amax ${v}`));
});

interface DecodeCase { B: number; sq: number; H: number; k: number; len: number; page: number; dv: number; dr: number }
const DECODE_CASES: DecodeCase[] = [
  { B: 3, sq: 2, H: 16, k: 100, len: 150, page: 64, dv: 512, dr: 64 },
  { B: 2, sq: 1, H: 128, k: 70, len: 90, page: 64, dv: 512, dr: 64 },
  { B: 2, sq: 2, H: 64, k: 33, len: 41, page: 5, dv: 512, dr: 64 },
  { B: 2, sq: 2, H: 4, k: 13, len: 20, page: 3, dv: 200, dr: 8 }, // a partial 128-block of the latent
];

eachDevice('sparseMlaDecode: write the paged cache, read it back through decode = prefill on the dequantised kv (fp8, bf16 and f32 caches)', (dev) => bothPaths(dev, () => {
  let seed = 99;
  for (const c of DECODE_CASES) {
    for (const format of ['fp8', 'bf16', 'f32'] as const) {
      for (const dtype of ['f32', 'bf16'] as const) {
        // the f32 cache keeps exact values, which a bf16 prefill reference could not hold
        if (format === 'f32' && dtype === 'bf16') continue;
        const rnd = mulberry32(seed++);
        const D = c.dv + c.dr;
        const scale = 1.5 / Math.sqrt(D);
        const per = Math.ceil(c.len / c.page); // pages per sequence; the last one partly used
        const blocks = c.B * per + 2;
        // a block table that scatters each sequence's pages over the cache
        const perm = Int32Array.from({ length: blocks }, (_, i) => i).sort(() => rnd() - 0.5);
        const slotOf = (b: number, t: number): number => perm[b * per + Math.floor(t / c.page)]! * c.page + (t % c.page);
        const lat = normals(c.B * c.len * c.dv, rnd);
        const rope = normals(c.B * c.len * c.dr, rnd);
        const slots = Int32Array.from({ length: c.B * c.len }, (_, n) => slotOf(Math.floor(n / c.len), n % c.len));
        const cache = on(T.newMlaCache(blocks, c.page, { format, dv: c.dv, dr: c.dr }), dev);
        const L = T.fromArray(lat, [c.B * c.len, c.dv]);
        const R = T.fromArray(rope, [c.B * c.len, c.dr]);
        T.mlaCacheWrite(cache, on(L, dev), on(R, dev), on(T.fromArray(slots, [c.B * c.len], { dtype: 'i32' }), dev));
        // the dequantised kv, built independently of the cache: actQuant round trip (fp8) or bf16 rounding
        const q8 = T.actQuant(L, 128, { ue8m0: true });
        const latDq = format === 'fp8' ? T.actDequant(q8.q, q8.s, 128).toFloat32() : format === 'bf16' ? bf16All(lat) : lat;
        const kvFull = new Float32Array(blocks * c.page * D);
        for (let n = 0; n < c.B * c.len; n++) {
          kvFull.set(latDq.subarray(n * c.dv, (n + 1) * c.dv), slots[n]! * D);
          const rp = rope.subarray(n * c.dr, (n + 1) * c.dr);
          kvFull.set(format === 'f32' ? rp : bf16All(rp), slots[n]! * D + c.dv);
        }
        // indices: slots of positions of each query's own sequence, holes, and (query 1) only holes
        const pos = makeIndices(c.B * c.sq, c.k, c.len, rnd, 0.2, [1]);
        const idx = pos.map((t, j) => (t < 0 ? -1 : t >= c.len ? blocks * c.page + t : slotOf(Math.floor(j / (c.sq * c.k)), t)));
        let qv = normals(c.B * c.sq * c.H * D, rnd);
        if (dtype === 'bf16') qv = bf16All(qv);
        const q = T.fromArray(qv, [c.B, c.sq, c.H, D], { dtype });
        const it = T.fromArray(idx, [c.B, c.sq, c.k], { dtype: 'i32' });
        const dec = T.sparseMlaDecode(on(q, dev), cache, on(it, dev), scale, { dv: c.dv });
        const what = `${dev}${pathName(dev, c.H)} ${format} q ${dtype} ${JSON.stringify(c)}`;
        assert.deepEqual(dec.out.shape, [c.B, c.sq, c.H, c.dv]);
        assert.deepEqual(dec.lse.shape, [c.B, c.sq, c.H]);
        // prefill over the dequantised cache rows (exact in bf16 too: e4m3·2^k and bf16 values fit bf16), on the
        // path the decode took: an FP8 cache never takes the fused few-head kernels (src/backend/cuda/sparse-mla.ts;
        // at 64+ heads both take the wgmma kernel, whatever `fused` says)
        const tuned = { ...sparseMlaTune };
        if (format === 'fp8') sparseMlaTune.fused = false;
        const pre = T.sparseMlaPrefill(on(T.fromArray(qv, [c.B * c.sq, c.H, D], { dtype }), dev), on(T.fromArray(kvFull, [blocks * c.page, D], { dtype }), dev),
          on(T.fromArray(idx, [c.B * c.sq, c.k], { dtype: 'i32' }), dev), scale, { dv: c.dv });
        Object.assign(sparseMlaTune, tuned);
        bitsEqual(T.reshape(dec.out, [c.B * c.sq, c.H, c.dv]), pre.out, `${what}: decode vs prefill out`, false);
        bitsEqual(T.reshape(dec.lse, [c.B * c.sq, c.H]), pre.lse, `${what}: decode vs prefill lse`, false);
        const ref = naive(qv, kvFull, idx, c.B * c.sq, c.H, D, c.dv, c.k, scale);
        const err = relErr(dec.out.toFloat32(), ref.out);
        assert.ok(err <= (dtype === 'f32' ? 1e-5 : 1e-2), `${what}: relative error ${err} against f64`);
        assertLse(dec.lse.toFloat32(), ref.lse, dtype === 'f32' ? 1e-5 : 1e-2, what);
        const o = dec.out.toFloat32();
        for (let j = c.H * c.dv; j < 2 * c.H * c.dv; j++) assert.ok(Object.is(o[j], 0), `${what}: empty row`);
        if (dev !== 'cpu') {
          const cc = on(T.newMlaCache(blocks, c.page, { format, dv: c.dv, dr: c.dr }), 'cpu');
          T.mlaCacheWrite(cc, L, R, T.fromArray(slots, [c.B * c.len], { dtype: 'i32' }));
          bitsEqual(cache, cc, `${what}: cache bytes vs cpu`, false);
          const cpu = T.sparseMlaDecode(q, cc, it, scale, { dv: c.dv });
          const e2 = relErr(o, cpu.out.toFloat32());
          assert.ok(e2 <= (dtype === 'f32' ? 1e-5 : 1e-2), `${what}: relative error ${e2} against the CPU op`);
          assertLse(dec.lse.toFloat32(), cpu.lse.toFloat32(), dtype === 'f32' ? 1e-5 : 4e-3, `${what} vs cpu`);
        }
      }
    }
  }
}));

test('sparse MLA ops reject bad shapes and dtypes with clear errors', () => {
  const q = T.zeros([2, 4, 80]);
  const kv = T.zeros([10, 80]);
  const idx = T.zeros([2, 3], { dtype: 'i32' });
  assert.throws(() => T.sparseMlaPrefill(q, T.zeros([10, 79]), idx, 1, { dv: 64 }), /kv \[10, 79\] must be \[Tk, 80\]/);
  assert.throws(() => T.sparseMlaPrefill(q, kv, T.zeros([3, 3], { dtype: 'i32' }), 1, { dv: 64 }), /indices \[3, 3\] must be \[2, k\]/);
  assert.throws(() => T.sparseMlaPrefill(q, kv, T.zeros([2, 3]), 1, { dv: 64 }), /indices must be i32/);
  assert.throws(() => T.sparseMlaPrefill(q, T.zeros([10, 80], { dtype: 'bf16' }), idx, 1, { dv: 64 }), /must have q's dtype/);
  assert.throws(() => T.sparseMlaPrefill(q, kv, idx, 1, { dv: 81 }), /dv 81/);
  const cache = T.newMlaCache(2, 4, { dv: 64, dr: 16 });
  assert.equal(cache.shape[2], 64 + 4 + 32);
  assert.throws(() => T.sparseMlaDecode(T.zeros([1, 2, 4, 80]), T.newMlaCache(2, 4), T.zeros([1, 2, 3], { dtype: 'i32' }), 1, { dv: 64 }), /656 bytes|100 bytes/);
  assert.throws(() => T.sparseMlaDecode(T.zeros([1, 2, 4, 80]), T.zeros([2, 4, 80], { dtype: 'i32' }), T.zeros([1, 2, 3], { dtype: 'i32' }), 1, { dv: 64 }), /u8 \(FP8 layout\), bf16 or f32/);
  assert.throws(() => T.sparseMlaDecode(T.zeros([1, 2, 4, 80]), T.zeros([2, 4, 81]), T.zeros([1, 2, 3], { dtype: 'i32' }), 1, { dv: 64 }), /f32 cache for dv 64, rope 16 has 80 values/);
  assert.equal(T.mlaCacheBytesPerToken('fp8'), 656);
  assert.equal(T.mlaCacheBytesPerToken('bf16'), 1152);
  assert.equal(T.mlaCacheBytesPerToken('f32'), 2304);
});
