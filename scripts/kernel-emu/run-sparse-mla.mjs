// Runs kernels/sparse_mla.cu on the CPU, one host thread per CUDA thread, and compares it with the CPU
// reference op (src/tensor/ops/sparse-mla.ts) at the awkward shapes of test/tensor/sparse-mla.test.ts.
// For a machine without a GPU: it checks the kernel's own logic (indexing, tiles, barriers, shuffles, the
// online softmax, the FP8 cache writer's bytes and its bad-slot error record) before the GPU run. It is no
// substitute for that run: g++ compiles the kernel (other FMA contraction, no GPU memory model, no real
// warp scheduling), through textual edits of the source (the __shared__ declarations and one PTX max).
// Slow: 10+ minutes in full on 2 shared cores (thousands of host threads per case), 0.5–3 minutes with --quick.
//   npm run build && node scripts/kernel-emu/run-sparse-mla.mjs [--quick]
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case differs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const T = await import(join(root, 'dist', 'src', 'tensor', 'index.js'));
const quick = process.argv.includes('--quick');
const dir = mkdtempSync(join(tmpdir(), 'sparse-mla-emu-'));

// ---- build ------------------------------------------------------------------------------------------
const src = readFileSync(join(root, 'kernels', 'sparse_mla.cu'), 'utf8');
const edits = [
  ['extern __shared__ float smem[];', 'float* smem = g_smem;'],
  ['__shared__ float red[33];', 'static float red[33];'],
  ['asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));', 'm = (a != a || b != b) ? NAN : fmaxf(a, b);'],
];
let host = src;
for (const [from, to] of edits) {
  if (!host.includes(from)) throw new Error(`kernel-emu: kernels/sparse_mla.cu no longer contains '${from}'; update the edits`);
  host = host.split(from).join(to);
}
if (/__shared__|asm\(/.test(host)) throw new Error('kernel-emu: the kernel has __shared__ or asm this emulation does not handle');
writeFileSync(join(dir, 'kernel.cpp'), host);
const emu = join(dir, 'emu');
execFileSync('g++', ['-std=c++20', '-O2', '-pthread', '-Wno-unknown-pragmas', '-I', join(here, 'shim'), '-I', dir, '-o', emu, join(here, 'sparse-mla-emu.cpp')], { stdio: 'inherit' });

// ---- helpers ----------------------------------------------------------------------------------------
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const normals = (n, r) => Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r()));
const bytes = (t) => T.hostBytes(t.toHost());
const file = (name) => join(dir, name);
const put = (name, data) => writeFileSync(file(name), data instanceof Uint8Array ? data : bytes(data));
const sfx = (d) => (d === 'bf16' ? 'bf16' : 'f32');
function relErr(a, e) {
  let n = 0;
  let d = 0;
  for (let i = 0; i < e.length; i++) {
    n += (a[i] - e[i]) ** 2;
    d += e[i] ** 2;
  }
  return Math.sqrt(n / (d || 1));
}
/** rows × k distinct indices of [0, Tk) with −1 holes, a few out of range, row 1 all holes. */
function makeIdx(rows, k, Tk, r) {
  const idx = new Int32Array(rows * k);
  for (let i = 0; i < rows; i++) {
    const perm = Int32Array.from({ length: Tk }, (_, j) => j);
    for (let j = 0; j < Math.min(k, Tk); j++) {
      const p = j + Math.floor(r() * (Tk - j));
      [perm[j], perm[p]] = [perm[p], perm[j]];
    }
    for (let j = 0; j < k; j++) {
      const u = r();
      idx[i * k + j] = i === 1 || j >= Tk || u < 0.2 ? -1 : u < 0.22 ? Tk + 3 : perm[j];
    }
  }
  return idx;
}
let failed = 0;
function report(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed++;
}
/** The emulated forward kernel with the arguments src/backend/cuda/sparse-mla.ts passes. */
function fwd(kernel, q, kvBytes, idx, d, scale) {
  put('q.bin', q);
  put('kv.bin', kvBytes);
  put('idx.bin', idx);
  execFileSync(emu, ['fwd', kernel, d.N, d.H, d.D, d.dv, d.k, d.rows, d.W, scale, file('q.bin'), file('kv.bin'), file('idx.bin'), file('out.bin'), file('lse.bin')].map(String));
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
    const D = c.dv + c.dr;
    const scale = 1.5 / Math.sqrt(D);
    const q = T.fromArray(normals(c.Tq * c.H * D, r), [c.Tq, c.H, D], { dtype });
    const kv = T.fromArray(normals(c.Tk * D, r), [c.Tk, D], { dtype });
    const idx = T.fromArray(makeIdx(c.Tq, c.k, c.Tk, r), [c.Tq, c.k], { dtype: 'i32' });
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
      const rec = execFileSync(emu, ['write', `mla_cache_write_${format}_${sfx(lat.dtype)}_${sfx(rope.dtype)}`, N, c.dv, c.dr, blocks * c.page, W,
        file('cache.bin'), file('lat.bin'), file('rope.bin'), file('slots.bin')].map(String)).toString().trim();
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
  const rec = execFileSync(emu, ['write', 'mla_cache_write_fp8_f32_f32', 1, 512, 64, 8, 656, file('cache.bin'), file('lat.bin'), file('rope.bin'), file('slots.bin')].map(String)).toString().trim();
  report(rec === 'err 1 8 8', `writer with slot 8 of an 8-slot cache records the bad index (${rec})`);
}
console.log(failed ? `kernel-emu: ${failed} case(s) differ` : 'kernel-emu: every case agrees with the CPU reference');
process.exit(failed ? 1 : 0);
