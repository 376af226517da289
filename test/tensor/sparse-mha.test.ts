// sparseMhaPrefill (the reference's MHA prefill of MLA: per-head keys and values) on every backend,
// against an f64 definition at awkward shapes: k ∤ 64, holes and out-of-range indices, a query row with
// only holes, duplicate-free random selections, H 1/8/16, dq 48/96, dv 32/64, Tk 1/77/300; bf16 too.
//   s_t = rnd(rnd(q·k_t)·scale); out = Σ_t softmax(s)_t·v_t; lse = ln Σ_t exp(s_t)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { bf16Round } from '../../src/tensor/dtype.js';
import { eachDevice } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { normalsF32 as normals, on, relErr } from './helpers.js';

interface Case { Tq: number; Tk: number; H: number; dq: number; dv: number; k: number }

/** Distinct keys per row, ~20% holes (−1 or ≥ Tk), row `empty` all holes. */
function indices(c: Case, rnd: () => number, empty: number): Int32Array {
  const out = new Int32Array(c.Tq * c.k);
  for (let i = 0; i < c.Tq; i++) {
    const pool = Array.from({ length: c.Tk }, (_, t) => t);
    for (let j = 0; j < c.k; j++) {
      let v = -1;
      if (i !== empty && rnd() > 0.2 && pool.length > 0) v = pool.splice(Math.floor(rnd() * pool.length), 1)[0]!;
      else if (i !== empty && rnd() < 0.5) v = c.Tk + j; // out of range: a hole too
      out[i * c.k + j] = v;
    }
  }
  return out;
}

function naive(q: Float32Array, k: Float32Array, v: Float32Array, idx: Int32Array, c: Case, scale: number, rnd: (x: number) => number) {
  const out = new Float64Array(c.Tq * c.H * c.dv);
  const lse = new Float64Array(c.Tq * c.H);
  for (let i = 0; i < c.Tq; i++) {
    for (let h = 0; h < c.H; h++) {
      const s: [number, number][] = [];
      for (let j = 0; j < c.k; j++) {
        const t = idx[i * c.k + j]!;
        if (t < 0 || t >= c.Tk) continue;
        let d = 0;
        for (let x = 0; x < c.dq; x++) d += q[(i * c.H + h) * c.dq + x]! * k[(t * c.H + h) * c.dq + x]!;
        s.push([t, rnd(rnd(d) * scale)]);
      }
      if (s.length === 0) {
        lse[i * c.H + h] = -Infinity;
        continue;
      }
      const m = Math.max(...s.map((e) => e[1]));
      const z = s.reduce((a, e) => a + Math.exp(e[1] - m), 0);
      lse[i * c.H + h] = m + Math.log(z);
      for (const [t, st] of s) {
        const p = Math.exp(st - m) / z;
        for (let x = 0; x < c.dv; x++) out[(i * c.H + h) * c.dv + x] += p * v[(t * c.H + h) * c.dv + x]!;
      }
    }
  }
  return { out, lse };
}

eachDevice('sparseMhaPrefill at awkward shapes (k ∤ 64, holes, a row of only holes, H 1/8/16) against an f64 definition', (dev) => {
  const cases: Case[] = [
    { Tq: 5, Tk: 77, H: 8, dq: 96, dv: 64, k: 37 },
    { Tq: 3, Tk: 1, H: 1, dq: 48, dv: 32, k: 5 },
    { Tq: 33, Tk: 300, H: 16, dq: 96, dv: 64, k: 130 },
  ];
  let seed = 7;
  for (const c of cases) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const rnd = mulberry32(seed++);
      const round = dtype === 'bf16' ? bf16Round : (x: number) => x;
      const qv = normals(c.Tq * c.H * c.dq, rnd).map(round);
      const kv = normals(c.Tk * c.H * c.dq, rnd).map(round);
      const vv = normals(c.Tk * c.H * c.dv, rnd).map(round);
      const idx = indices(c, rnd, 1 % c.Tq);
      const scale = 1 / Math.sqrt(c.dq);
      const q = T.fromArray(qv, [c.Tq, c.H, c.dq], { dtype });
      const k = T.fromArray(kv, [c.Tk, c.H, c.dq], { dtype });
      const v = T.fromArray(vv, [c.Tk, c.H, c.dv], { dtype });
      const it = T.fromArray(idx, [c.Tq, c.k], { dtype: 'i32' });
      const r = T.sparseMhaPrefill(on(q, dev), on(k, dev), on(v, dev), on(it, dev), scale);
      const what = `${dev} ${dtype} ${JSON.stringify(c)}`;
      assert.deepEqual(r.out.shape, [c.Tq, c.H, c.dv]);
      assert.equal(r.out.dtype, dtype);
      const want = naive(qv, kv, vv, idx, c, scale, dtype === 'bf16' ? bf16Round : Math.fround);
      const o = r.out.toFloat32();
      const tol = dtype === 'f32' ? 1e-5 : 1e-2;
      assert.ok(relErr(o, want.out) <= tol, `${what}: out relative error ${relErr(o, want.out)}`);
      const l = r.lse.toFloat32();
      for (let j = 0; j < l.length; j++) {
        if (want.lse[j] === -Infinity) assert.equal(l[j], -Infinity, `${what}: lse[${j}] of a row of holes`);
        else assert.ok(Math.abs(l[j]! - want.lse[j]!) <= tol * (1 + Math.abs(want.lse[j]!)), `${what}: lse[${j}] = ${l[j]}, expected ${want.lse[j]}`);
      }
      // the row of only holes: zeros
      const e = 1 % c.Tq;
      for (let j = e * c.H * c.dv; j < (e + 1) * c.H * c.dv; j++) assert.ok(Object.is(o[j], 0), `${what}: out[${j}] of a row of holes is ${o[j]}`);
      if (dev !== 'cpu') {
        const cpu = T.sparseMhaPrefill(q, k, v, it, scale);
        assert.ok(relErr(o, cpu.out.toFloat32()) <= tol, `${what}: relative error against the CPU op`);
      }
    }
  }
});

test('sparseMhaPrefill rejects mismatched shapes and dtypes, naming the operand', () => {
  const q = T.zeros([2, 4, 8]);
  const k = T.zeros([5, 4, 8]);
  const v = T.zeros([5, 4, 6]);
  const idx = T.zeros([2, 3], { dtype: 'i32' });
  assert.throws(() => T.sparseMhaPrefill(q, T.zeros([5, 3, 8]), v, idx, 1), /k \[5, 3, 8\] must be \[Tk, 4, 8\]/);
  assert.throws(() => T.sparseMhaPrefill(q, k, T.zeros([4, 4, 6]), idx, 1), /v \[4, 4, 6\] must be \[5, 4, dv\]/);
  assert.throws(() => T.sparseMhaPrefill(q, k, v, T.zeros([3, 3], { dtype: 'i32' }), 1), /indices \[3, 3\] must be \[2, k\]/);
  assert.throws(() => T.sparseMhaPrefill(q, T.cast(k, 'bf16'), v, idx, 1), /k \(bf16\) and v \(f32\) must have q's dtype \(f32\)/);
});
