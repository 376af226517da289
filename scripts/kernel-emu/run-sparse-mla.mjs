// Runs kernels/sparse_mla.cu on the CPU, one host thread per CUDA thread, and compares it with the CPU
// reference op (src/tensor/ops/sparse-mla.ts) at the awkward shapes of test/tensor/sparse-mla.test.ts.
// For a machine without a GPU: it checks the kernel's own logic (indexing, tiles, barriers, shuffles, the
// online softmax, the FP8 cache writer's bytes and its bad-slot error record) before the GPU run. It is no
// substitute for that run: g++ compiles the kernel (other FMA contraction, no GPU memory model, no real
// warp scheduling), through textual edits of the source (the __shared__ declarations and one PTX max).
// Slow: 10+ minutes in full on 2 shared cores (thousands of host threads per case), 0.5–3 minutes with --quick.
//   npm run build && node scripts/kernel-emu/run-sparse-mla.mjs [--quick]
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case differs. Shared parts: emu-runner.mjs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, emulate, makeIdx, mlaPrefillCase, mulberry32, normals, relErr, reporter, setup, tensorBytes, writeData } from './emu-runner.mjs';

const { T, quick, dir } = await setup('sparse-mla', { quickMode: true });

// ---- build ------------------------------------------------------------------------------------------
const emu = build(dir, {
  cu: 'sparse_mla.cu',
  driver: 'sparse-mla-emu.cpp',
  edits: [
    ['extern __shared__ float smem[];', 'float* smem = g_smem;'],
    ['__shared__ float red[33];', 'static float red[33];'],
    ['asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));', 'm = (a != a || b != b) ? NAN : fmaxf(a, b);'],
  ],
});

// ---- helpers ----------------------------------------------------------------------------------------
const bytes = (t) => tensorBytes(T, t);
const file = (name) => join(dir, name);
const put = (name, data) => writeData(T, file(name), data);
const sfx = (d) => (d === 'bf16' ? 'bf16' : 'f32');
const { check: report, finish } = reporter('sparse-mla');
/** The emulated forward kernel with the arguments src/backend/cuda/sparse-mla.ts passes. */
function fwd(kernel, q, kvBytes, idx, d, scale) {
  put('q.bin', q);
  put('kv.bin', kvBytes);
  put('idx.bin', idx);
  emulate(emu, ['fwd', kernel, d.N, d.H, d.D, d.dv, d.k, d.rows, d.W, scale, file('q.bin'), file('kv.bin'), file('idx.bin'), file('out.bin'), file('lse.bin')]);
  const ob = readFileSync(file('out.bin'));
  const lb = readFileSync(file('lse.bin'));
  return {
    out: T.fromBits(T.hostFromBytes(q.dtype, new Uint8Array(ob)), q.dtype, [d.N, d.H, d.dv]).toFloat32(),
    lse: new Float32Array(lb.buffer, lb.byteOffset, d.N * d.H),
  };
}
function compare(what, got, out, lse, dtype) {
  const err = relErr(got.out, out.toFloat32());
  const rl = lse.toFloat32();
  let lbad = 0;
  for (let i = 0; i < rl.length; i++) {
    const a = got.lse[i];
    const b = rl[i];
    if (a === -Infinity || b === -Infinity) lbad += a === b ? 0 : 1;
    else if (!(Math.abs(a - b) <= (dtype === 'f32' ? 1e-5 : 4e-3) * (1 + Math.abs(b)))) lbad++;
  }
  const bad = got.out.filter((x) => !Number.isFinite(x)).length;
  report(err <= (dtype === 'f32' ? 1e-5 : 1e-2) && lbad === 0 && bad === 0, `${what}: out relative error ${err.toExponential(2)}, ${lbad} lse off, ${bad} non-finite`);
}

// ---- cases ------------------------------------------------------------------------------------------
let seed = 1;
// the last two (small dims, many tiles; and k > Tk) are the --quick set
const prefill = [{ Tq: 3, H: 16, k: 100, Tk: 150, dv: 512, dr: 64 }, { Tq: 2, H: 128, k: 65, Tk: 200, dv: 512, dr: 64 },
  { Tq: 3, H: 20, k: 70, Tk: 90, dv: 96, dr: 24 }, { Tq: 4, H: 20, k: 19, Tk: 12, dv: 96, dr: 24 }];
for (const c of quick ? prefill.slice(2) : prefill) {
  for (const dtype of ['f32', 'bf16']) {
    const r = mulberry32(seed++);
    const { D, scale, q, kv, idx } = mlaPrefillCase(T, c, dtype, r, makeIdx);
    const ref = T.sparseMlaPrefill(q, kv, idx, scale, { dv: c.dv });
    const got = fwd(`sparse_mla_fwd_${dtype}_${dtype}`, q, bytes(kv), idx, { N: c.Tq, H: c.H, D, dv: c.dv, k: c.k, rows: c.Tk, W: 0 }, scale);
    compare(`prefill ${dtype} ${JSON.stringify(c)}`, got, ref.out, ref.lse, dtype);
  }
}
const decode = [{ B: 2, sq: 2, H: 16, k: 100, len: 150, page: 64, dv: 512, dr: 64 }, { B: 2, sq: 2, H: 4, k: 45, len: 50, page: 3, dv: 200, dr: 8 }];
for (const c of quick ? decode.slice(1) : decode) {
  for (const format of ['fp8', 'bf16', 'f32']) {
    for (const dtype of ['f32', 'bf16']) {
      const r = mulberry32(seed++);
      const D = c.dv + c.dr;
      const scale = 1.5 / Math.sqrt(D);
      const blocks = c.B * Math.ceil(c.len / c.page) + 1;
      const N = c.B * c.len;
      const lat = T.fromArray(normals(N * c.dv, r), [N, c.dv], { dtype });
      const rope = T.fromArray(normals(N * c.dr, r), [N, c.dr]);
      const slots = T.fromArray(Int32Array.from({ length: N }, (_, n) => (n === 3 ? -1 : n + 2)), [N], { dtype: 'i32' });
      const cache = T.newMlaCache(blocks, c.page, { format, dv: c.dv, dr: c.dr });
      T.mlaCacheWrite(cache, lat, rope, slots);
      const W = cache.shape[2];
      put('cache.bin', T.newMlaCache(blocks, c.page, { format, dv: c.dv, dr: c.dr }));
      put('lat.bin', lat);
      put('rope.bin', rope);
      put('slots.bin', slots);
      const rec = emulate(emu, ['write', `mla_cache_write_${format}_${sfx(lat.dtype)}_${sfx(rope.dtype)}`, N, c.dv, c.dr, blocks * c.page, W,
        file('cache.bin'), file('lat.bin'), file('rope.bin'), file('slots.bin')]).trim();
      const eb = readFileSync(file('cache.bin'));
      const cb = bytes(cache);
      let diff = 0;
      for (let i = 0; i < cb.length; i++) if (cb[i] !== eb[i]) diff++;
      report(diff === 0 && rec === 'err 0 0 0', `writer ${format} latent ${dtype} ${JSON.stringify(c)}: ${diff} bytes differ from the CPU writer (${rec})`);
      const idxA = makeIdx(c.B * c.sq, c.k, c.len, r).map((t, j) => (t < 0 ? -1 : t >= c.len ? blocks * c.page + 5 : Math.floor(j / (c.sq * c.k)) * c.len + t + 2));
      const q = T.fromArray(normals(c.B * c.sq * c.H * D, r), [c.B, c.sq, c.H, D], { dtype });
      const idx = T.fromArray(idxA, [c.B, c.sq, c.k], { dtype: 'i32' });
      const ref = T.sparseMlaDecode(q, cache, idx, scale, { dv: c.dv });
      const got = fwd(`sparse_mla_fwd_${dtype}_${format}`, T.reshape(q, [c.B * c.sq, c.H, D]), cb, idx,
        { N: c.B * c.sq, H: c.H, D, dv: c.dv, k: c.k, rows: blocks * c.page, W: format === 'fp8' ? W : 0 }, scale);
      compare(`decode ${format} q ${dtype} ${JSON.stringify(c)}`, got, ref.out, ref.lse, dtype);
    }
  }
}
{
  put('cache.bin', T.newMlaCache(2, 4));
  put('lat.bin', T.fromArray(normals(512, mulberry32(3)), [1, 512]));
  put('rope.bin', T.fromArray(normals(64, mulberry32(4)), [1, 64]));
  put('slots.bin', T.fromArray([8], [1], { dtype: 'i32' }));
  const rec = emulate(emu, ['write', 'mla_cache_write_fp8_f32_f32', 1, 512, 64, 8, 656, file('cache.bin'), file('lat.bin'), file('rope.bin'), file('slots.bin')]).trim();
  report(rec === 'err 1 8 8', `writer with slot 8 of an 8-slot cache records the bad index (${rec})`);
}
finish();
