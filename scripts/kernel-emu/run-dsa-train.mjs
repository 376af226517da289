// Runs the DSA training kernels (kernels/sparse_mla_bwd.cu, kernels/indexer_train.cu) on the CPU, one host
// thread per CUDA thread (dsa-train-emu.cpp, the approach of run-sparse-mla.mjs), and compares them with
// the CPU reference ops (src/backend/cpu/sparse-mla-backward.ts, indexer-train.ts) at awkward shapes:
// k not a multiple of the tile, −1 holes and out-of-range entries, a row of only holes / an empty range,
// H 3/16/20/64 (partial head groups), dv 512 + rope 64 and small dims, f32 and bf16.
// For a machine without a GPU: it checks the kernels' indexing, tiles, barriers, shuffles, atomics and
// math before the GPU run; no substitute for it (g++ compiles the kernels through textual edits of the
// __shared__ declarations; no GPU memory model or warp scheduling).
//   npm run build && node scripts/kernel-emu/run-dsa-train.mjs
// Needs g++ with C++20 (std::barrier, std::atomic_ref). Exit code 1 when a case differs. Shared parts: emu-runner.mjs.
import { join } from 'node:path';
import { build, emulate, mlaPrefillCase, mulberry32, normals, readValues, relErr as relErrOf, reporter, setup, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('dsa-train');
const cpu = T.getBackend('cpu');

// ---- build: one binary per kernel file ----------------------------------------------------------------
const kernel = (cu, def) => build(dir, {
  cu,
  driver: 'dsa-train-emu.cpp',
  sub: def,
  defines: [def],
  edits: [['extern __shared__ float smem[];', 'float* smem = g_smem;']],
  staticShared: true,
});
const emuSmla = kernel('sparse_mla_bwd.cu', 'EMU_SMLA');
const emuIdx = kernel('indexer_train.cu', 'EMU_IDX');

// ---- helpers ------------------------------------------------------------------------------------------
let nfile = 0;
/** A tensor's bytes in a fresh file (or '-' for null). */
const put = (t) => (t ? writeData(T, join(dir, `b${nfile++}.bin`), t) : '-');
const get = (f, like) => readValues(T, f, like.dtype, like.shape);
const relErr = (a, e) => relErrOf(a, e, { minusInf: true });
const infPattern = (a, e) => a.every((x, i) => (x === -Infinity) === (e[i] === -Infinity));
const finite = (a) => a.every((x) => !Number.isNaN(x) && x !== Infinity);
const { check: report, finish } = reporter('dsa-train');
function makeIdx(rows, k, Tk, r, empty = 1) {
  const idx = new Int32Array(rows * k);
  for (let i = 0; i < rows; i++) {
    const perm = Array.from({ length: Tk }, (_, j) => j).sort(() => r() - 0.5);
    for (let j = 0; j < k; j++) {
      const u = r();
      idx[i * k + j] = i === empty || j >= Tk || u < 0.2 ? -1 : u < 0.23 ? Tk + 3 : perm[j];
    }
  }
  return idx;
}
const zeros = (shape, dtype) => T.zeros(shape, { dtype });

// ---- sparse MLA backward ------------------------------------------------------------------------------
let seed = 1;
for (const c of [{ Tq: 3, H: 16, Tk: 90, k: 70, dv: 512, dr: 64 }, { Tq: 4, H: 20, Tk: 12, k: 19, dv: 96, dr: 24 }, { Tq: 3, H: 3, Tk: 30, k: 17, dv: 8, dr: 4 }]) {
  for (const dtype of ['f32', 'bf16']) {
    const r = mulberry32(seed++);
    const { D, scale, q, kv, idx } = mlaPrefillCase(T, c, dtype, r, makeIdx);
    const { out, lse } = T.sparseMlaPrefill(q, kv, idx, scale, { dv: c.dv });
    const g = T.fromArray(normals(c.Tq * c.H * c.dv, r), [c.Tq, c.H, c.dv], { dtype });
    const dq = zeros([c.Tq, c.H, D], dtype);
    const dkv = zeros([c.Tk, D], 'f32');
    cpu.sparseMlaBackward(dq, dkv, g, q, kv, out, lse, idx, c.dv, scale);
    const fdq = put(zeros([c.Tq, c.H, D], dtype));
    const fdkv = put(zeros([c.Tk, D], 'f32')); // the launcher zeroes dkv before the kernel
    emulate(emuSmla, ['smla_bwd', dtype, c.Tq, c.H, D, c.dv, c.k, c.Tk, scale, fdq, fdkv, put(g), put(q), put(kv), put(out), put(lse), put(idx)]);
    const gq = get(fdq, dq);
    const gk = get(fdkv, dkv);
    const e1 = relErr(gq, dq.toFloat64());
    const e2 = relErr(gk, dkv.toFloat64());
    const empty = gq.subarray(c.H * D, 2 * c.H * D).every((x) => x === 0);
    report(e1 <= (dtype === 'f32' ? 1e-5 : 1e-2) && e2 <= (dtype === 'f32' ? 1e-5 : 1e-4) && empty && finite(gq) && finite(gk),
      `sparse_mla_bwd ${dtype} ${JSON.stringify(c)}: dq ${e1.toExponential(2)}, dkv ${e2.toExponential(2)}, empty row ${empty ? 'zero' : 'NOT zero'}`);
  }
}

// ---- indexer scores, backward, KL ---------------------------------------------------------------------
for (const c of [{ Tq: 6, H: 64, D: 128, Tk: 70, kSel: 37 }, { Tq: 5, H: 3, D: 20, Tk: 13, kSel: 9 }]) {
  for (const dtype of ['f32', 'bf16']) {
    const r = mulberry32(seed++);
    const pos0 = c.Tk - c.Tq;
    const q = T.fromArray(normals(c.Tq * c.H * c.D, r), [c.Tq, c.H, c.D], { dtype });
    const k = T.fromArray(normals(c.Tk * c.D, r), [c.Tk, c.D], { dtype });
    const w = T.fromArray(normals(c.Tq * c.H, r, 0.2), [c.Tq, c.H], { dtype: 'f32' });
    const st = Int32Array.from({ length: c.Tq }, (_, i) => (i === 1 ? 3 : i === 2 ? -4 : 0));
    const en = Int32Array.from({ length: c.Tq }, (_, i) => (i === 1 ? 3 : pos0 + i + 1));
    const start = T.fromArray(st, [c.Tq], { dtype: 'i32' });
    const end = T.fromArray(en, [c.Tq], { dtype: 'i32' });
    const idx = T.fromArray(makeIdx(c.Tq, c.kSel, c.Tk, r, 2), [c.Tq, c.kSel], { dtype: 'i32' });
    for (const [mode, s, e, ix, N] of [['dense', start, end, null, c.Tk], ['sparse', null, null, idx, c.kSel]]) {
      const what = `${dtype} ${mode} ${JSON.stringify(c)}`;
      // scores
      const ref = zeros([c.Tq, N], 'f32');
      cpu.indexerScores(ref, q, k, w, s, e, ix);
      const fo = put(zeros([c.Tq, N], 'f32'));
      emulate(emuIdx, ['scores_fwd', dtype, c.Tq, c.H, c.D, c.Tk, N, fo, put(q), put(k), put(w), put(s), put(e), put(ix)]);
      const got = get(fo, ref);
      const rv = ref.toFloat64();
      const es = relErr(got, rv);
      report(infPattern(got, rv) && es <= 1e-5 && finite(got), `indexer_scores_fwd ${what}: ${es.toExponential(2)}, −inf pattern ${infPattern(got, rv) ? 'equal' : 'DIFFERS'}`);
      // backward (dout random everywhere: both must ignore the columns outside the entries)
      const dout = T.fromArray(normals(c.Tq * N, r), [c.Tq, N], { dtype: 'f32' });
      const dq = zeros([c.Tq, c.H, c.D], dtype);
      const dk = zeros([c.Tk, c.D], 'f32');
      const dw = zeros([c.Tq, c.H], 'f32');
      cpu.indexerScoresBackward(dq, dk, dw, dout, q, k, w, s, e, ix);
      const fq = put(zeros([c.Tq, c.H, c.D], dtype));
      const fk = put(zeros([c.Tk, c.D], 'f32'));
      const fw = put(zeros([c.Tq, c.H], 'f32'));
      emulate(emuIdx, ['scores_bwd', dtype, c.Tq, c.H, c.D, c.Tk, N, fq, fk, fw, put(dout), put(q), put(k), put(w), put(s), put(e), put(ix)]);
      const eq = relErr(get(fq, dq), dq.toFloat64());
      const ek = relErr(get(fk, dk), dk.toFloat64());
      const ew = relErr(get(fw, dw), dw.toFloat64());
      report(eq <= (dtype === 'f32' ? 1e-5 : 1e-2) && ek <= 1e-5 && ew <= 1e-5, `indexer_scores_bwd ${what}: dq ${eq.toExponential(2)}, dk ${ek.toExponential(2)}, dw ${ew.toExponential(2)}`);
      // KL loss against a main attention of Hm heads over the same entries
      const Hm = 20;
      const dv = 48;
      const Dm = dv + 16;
      const scale = 0.2;
      const qm = T.fromArray(normals(c.Tq * Hm * Dm, r), [c.Tq, Hm, Dm], { dtype });
      const kvm = T.fromArray(normals(c.Tk * Dm, r), [c.Tk, Dm], { dtype });
      const attIdx = ix ?? T.fromArray(Int32Array.from({ length: c.Tq * c.Tk }, (_, n) => {
        const i = Math.floor(n / c.Tk);
        const t = n % c.Tk;
        return t >= Math.max(0, st[i]) && t < en[i] ? t : -1;
      }), [c.Tq, c.Tk], { dtype: 'i32' });
      const { lse } = T.sparseMlaPrefill(qm, kvm, attIdx, scale, { dv });
      const sc = T.fromArray(normals(c.Tq * N, r, 2), [c.Tq, N], { dtype: 'f32' });
      const L = zeros([c.Tq], 'f32');
      const G = zeros([c.Tq, N], 'f32');
      cpu.indexerKlLoss(L, G, sc, qm, kvm, lse, s, e, ix, dv, scale);
      const fl = put(zeros([c.Tq], 'f32'));
      const fg = put(zeros([c.Tq, N], 'f32'));
      emulate(emuIdx, ['kl', dtype, c.Tq, Hm, Dm, dv, c.Tk, N, scale, fl, fg, put(sc), put(qm), put(kvm), put(lse), put(s), put(e), put(ix)]);
      const el = relErr(get(fl, L), L.toFloat64());
      const eg = relErr(get(fg, G), G.toFloat64());
      report(el <= 1e-5 && eg <= 1e-5 && L.toFloat64().some((x) => x > 0), `indexer_kl_loss ${what}: loss ${el.toExponential(2)}, grad ${eg.toExponential(2)}`);
    }
  }
}
finish();
