// Runs kernels/sparse_mla_wgmma.cu on the CPU (one host thread per CUDA thread: the producer and both
// consumer warpgroups, their named barriers and the wgmma operands read through the descriptors, as
// sparse-mla-wg-emu.cpp states the hardware's behaviour) and compares it with the CPU reference op at
// 64 and 128 heads: bf16 rows (prefill) and the FP8 paged cache (decode), holes, a row of only holes,
// k not a multiple of 64, rows −1 past an entry (tiles skipped), and the split kernel's partials merged
// here as sparse_mla_split_combine merges them. It checks the kernel's logic before a GPU run, not the
// hardware's reading of the descriptors, which only the GPU tests can.
//   npm run build && node scripts/kernel-emu/run-sparse-mla-wg.mjs
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, emulate, makeIdx, mulberry32, normals, relErr, reporter, root, setup, tensorBytes, wgmmaHeaderEdit, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('sparse-mla-wg');
const src = readFileSync(join(root, 'kernels', 'sparse_mla_wgmma.cu'), 'utf8');
const w0 = src.indexOf('// ---- wgmma, bf16 (sm_90a)');
const w1 = src.indexOf('\ntemplate <int SRC>', w0);
if (w0 < 0 || w1 < 0) throw new Error('sparse-mla-wg-emu: kernels/sparse_mla_wgmma.cu lost its wgmma section; update the runner');
const emu = build(dir, {
  cu: 'sparse_mla_wgmma.cu',
  driver: 'sparse-mla-wg-emu.cpp',
  staticShared: true,
  edits: [
    // mla_rows.cuh's source codes only (its loaders are not used here and need the device's cp.async)
    ['#include "mla_rows.cuh"', '#define SRC_BF16 0\n#define SRC_F32 1\n#define SRC_FP8 2'],
    wgmmaHeaderEdit(),
    [src.slice(w0, w1), ''],
    ['extern __shared__ uint8_t wg_smem[];', 'uint8_t* wg_smem = (uint8_t*)g_smem;'],
    ['__launch_bounds__(WG_THREADS, 1)', ''],
  ],
});
const { check, finish } = reporter('sparse-mla-wg');
const file = (n) => join(dir, n);
const D = 576;
const dv = 512;


/** Splits of tps tiles over k entries, as the host makes them (1: the plain kernel). */
const splits = (k, tps) => (tps ? Math.ceil(Math.ceil(k / 64) / tps) : 1);
/** The emulated kernel (S splits of tps tiles, merged here as the combine kernel does); out f32 [N·H·dv], lse [N·H]. */
function run(srcName, N, H, k, rows, W, scale, q, kvBytes, idx, S, tps) {
  writeData(T, file('q.bin'), q);
  writeData(T, file('kv.bin'), kvBytes);
  writeData(T, file('idx.bin'), idx);
  emulate(emu, [srcName, N, H, k, rows, W, scale, tps, S, file('q.bin'), file('kv.bin'), file('idx.bin'), file('out.bin'), file('lse.bin')]);
  const ob = readFileSync(file('out.bin'));
  const lb = readFileSync(file('lse.bin'));
  const lz = new Float32Array(lb.buffer, lb.byteOffset, lb.byteLength / 4);
  if (S === 1) return { out: T.fromBits(T.hostFromBytes('bf16', new Uint8Array(ob)), 'bf16', [N * H * dv]).toFloat32(), lse: Float32Array.from(lz) };
  const po = new Float32Array(ob.buffer, ob.byteOffset, ob.byteLength / 4);
  const NH = N * H;
  const out = new Float32Array(NH * dv);
  const lse = new Float32Array(NH);
  for (let r = 0; r < NH; r++) {
    let m = -Infinity;
    for (let z = 0; z < S; z++) m = Math.max(m, lz[z * NH + r]);
    if (m === -Infinity) { lse[r] = -Infinity; continue; }
    const w = Array.from({ length: S }, (_, z) => (lz[z * NH + r] === -Infinity ? 0 : Math.exp(lz[z * NH + r] - m)));
    const L = w.reduce((x, y) => x + y, 0);
    for (let c = 0; c < dv; c++) {
      let acc = 0;
      for (let z = 0; z < S; z++) if (w[z]) acc += w[z] * po[(z * NH + r) * dv + c];
      out[r * dv + c] = T.bf16Round(acc / L);
    }
    lse[r] = m + Math.log(L);
  }
  return { out, lse };
}
function compare(what, got, ref) {
  const err = relErr(got.out, ref.out.toFloat32());
  const rl = ref.lse.toFloat32();
  let lbad = 0;
  for (let i = 0; i < rl.length; i++) {
    const x = got.lse[i];
    const y = rl[i];
    if (x === -Infinity || y === -Infinity) lbad += x === y ? 0 : 1;
    else if (!(Math.abs(x - y) <= 4e-3 * (1 + Math.abs(y)))) lbad++;
  }
  const bad = got.out.filter((x) => !Number.isFinite(x)).length;
  // each side is within 1e-2 of f64 (the op tests' bf16 bound), so the two may differ by the sum, as
  // test/tensor/sparse-mla.test.ts holds a CUDA path against the CPU op
  check(err <= 2e-2 && lbad === 0 && bad === 0, `${what}: out relative error ${err.toExponential(2)}, ${lbad} lse off, ${bad} non-finite`);
}

let seed = 5;
// prefill over bf16 rows; with tps, the split kernel (tps tiles a split)
for (const c of [{ N: 3, H: 64, k: 37, Tk: 70 }, { N: 2, H: 128, k: 130, Tk: 200 }, { N: 3, H: 64, k: 200, Tk: 300, tail: 70 },
  { N: 3, H: 64, k: 200, Tk: 300, tps: 1 }, { N: 2, H: 128, k: 300, Tk: 400, tps: 3 }]) {
  const r = mulberry32(seed++);
  const scale = 1.5 / Math.sqrt(D);
  const q = T.fromArray(normals(c.N * c.H * D, r), [c.N, c.H, D], { dtype: 'bf16' });
  const kv = T.fromArray(normals(c.Tk * D, r), [c.Tk, D], { dtype: 'bf16' });
  const idx = T.fromArray(makeIdx(c.N, c.k, c.Tk, r, c.tail), [c.N, c.k], { dtype: 'i32' });
  const ref = T.sparseMlaPrefill(q, kv, idx, scale, { dv });
  compare(`prefill bf16 ${JSON.stringify(c)}`, run('bf16', c.N, c.H, c.k, c.Tk, 0, scale, q, tensorBytes(T, kv), idx, splits(c.k, c.tps), c.tps ?? 0), ref);
}
// decode over the FP8 cache (656-byte rows, pages of 5 scattered), s_q 2
for (const c of [{ B: 2, sq: 2, H: 64, k: 33, len: 41, page: 5 }, { B: 2, sq: 1, H: 128, k: 70, len: 90, page: 64, tps: 1 }]) {
  const r = mulberry32(seed++);
  const scale = 1.5 / Math.sqrt(D);
  const per = Math.ceil(c.len / c.page);
  const blocks = c.B * per + 2;
  const slotOf = (bq, t) => ((bq * per + Math.floor(t / c.page) + 1) % blocks) * c.page + (t % c.page);
  const cache = T.newMlaCache(blocks, c.page, { format: 'fp8', dv, dr: 64 });
  const n = c.B * c.len;
  T.mlaCacheWrite(cache, T.fromArray(normals(n * dv, r), [n, dv]), T.fromArray(normals(n * 64, r), [n, 64]),
    T.fromArray(Int32Array.from({ length: n }, (_, i) => slotOf(Math.floor(i / c.len), i % c.len)), [n], { dtype: 'i32' }));
  const pos = makeIdx(c.B * c.sq, c.k, c.len, r);
  const idxA = pos.map((t, j) => (t < 0 ? -1 : t >= c.len ? blocks * c.page + t : slotOf(Math.floor(j / (c.sq * c.k)), t)));
  const q = T.fromArray(normals(c.B * c.sq * c.H * D, r), [c.B, c.sq, c.H, D], { dtype: 'bf16' });
  const idx = T.fromArray(idxA, [c.B, c.sq, c.k], { dtype: 'i32' });
  const ref = T.sparseMlaDecode(q, cache, idx, scale, { dv });
  const flat = { out: T.reshape(ref.out, [c.B * c.sq * c.H * dv]), lse: T.reshape(ref.lse, [c.B * c.sq * c.H]) };
  compare(`decode fp8 ${JSON.stringify(c)}`, run('fp8', c.B * c.sq, c.H, c.k, blocks * c.page, cache.shape[2], scale, T.reshape(q, [c.B * c.sq, c.H, D]), tensorBytes(T, cache), idx, splits(c.k, c.tps), c.tps ?? 0), flat);
}
finish();
