// Runs kernels/fp8_linear.cu (the fallback FP8 block-scaled linear) on the CPU, one host thread per CUDA
// thread, and compares it with the CPU reference op (src/tensor/ops/fp8-linear.ts) at partial K blocks,
// N not a multiple of the 64-column tile, M not a multiple of the 16-row tile, and a gridY smaller than
// the row tiles (the kernel's grid-stride loop). For a machine without a GPU: it checks the kernel's
// indexing, tiling, barriers and promotion order before the GPU run; no substitute for that run (g++
// compiles it, no GPU memory model). Expect f32 outputs within ~1e-8 relative (only the in-block dot's
// summation order differs from the CPU's GEMM) and bf16 outputs almost always bit-equal.
//   npm run build && node scripts/kernel-emu/run-fp8-linear.mjs
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case is out of tolerance.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const T = await import(join(root, 'dist', 'src', 'tensor', 'index.js'));
const dir = mkdtempSync(join(tmpdir(), 'fp8-linear-emu-'));

const src = readFileSync(join(root, 'kernels', 'fp8_linear.cu'), 'utf8');
const inc = '#include "common.cuh"';
if (!src.includes(inc)) throw new Error(`kernels/fp8_linear.cu no longer includes common.cuh as '${inc}'`);
writeFileSync(join(dir, 'kernel.cpp'), src.slice(src.indexOf(inc) + inc.length));
copyFileSync(join(here, 'fp8-linear-emu.cpp'), join(dir, 'emu.cpp'));
execFileSync('g++', ['-std=c++20', '-O1', '-ffp-contract=off', '-pthread', '-o', join(dir, 'emu'), join(dir, 'emu.cpp')], { stdio: 'inherit' });

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const r = rng(7);
const nrm = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
let fails = 0;
// [M, N, K, gridY]
for (const [M, N, K, gy] of [[1, 128, 64, 1], [3, 200, 320, 1], [7, 200, 128, 1], [64, 128, 256, 4], [64, 200, 320, 2], [17, 72, 200, 1], [33, 130, 130, 1]]) {
  for (const od of ['f32', 'bf16']) {
    const x = T.fromArray(Float32Array.from({ length: M * K }, (_, i) => nrm() * 2 ** ((i % 7) - 3)), [M, K]);
    const w8 = T.cast(T.fromArray(Float32Array.from({ length: N * K }, () => nrm() * 40), [N, K]), 'f8e4m3');
    const NB = Math.ceil(N / 128);
    const KB = Math.ceil(K / 128);
    const sw = T.fromArray(Float32Array.from({ length: NB * KB }, (_, i) => 0.001 * (1 + i) * (1 + r())), [NB, KB]);
    const want = T.fp8Linear(x, w8, sw, { ue8m0: true, outDtype: od });
    const { q, s } = T.actQuant(x, 128, { ue8m0: true });
    for (const [name, t] of [['q', q], ['sq', s], ['w', w8], ['sw', sw]]) writeFileSync(join(dir, `${name}.bin`), T.hostBytes(t.toHost()));
    execFileSync(join(dir, 'emu'), [M, N, K, gy, od === 'bf16' ? 1 : 0, 'q.bin', 'sq.bin', 'w.bin', 'sw.bin', 'out.bin'].map(String), { cwd: dir });
    const ob = readFileSync(join(dir, 'out.bin'));
    const host = od === 'bf16' ? new Uint16Array(ob.buffer, ob.byteOffset, M * N) : new Float32Array(ob.buffer, ob.byteOffset, M * N);
    const a = T.fromBits(host, od, [M, N]).toFloat64();
    const e = want.toFloat64();
    let num = 0;
    let den = 0;
    let diff = 0;
    for (let i = 0; i < e.length; i++) {
      num += (a[i] - e[i]) ** 2;
      den += e[i] ** 2;
      if (a[i] !== e[i]) diff++;
    }
    const rel = Math.sqrt(num / den);
    const ok = rel <= (od === 'bf16' ? 8e-3 : 1e-6);
    if (!ok) fails++;
    console.log(`M=${M} N=${N} K=${K} gridY=${gy} ${od}: relative error ${rel.toExponential(2)}, ${diff}/${e.length} not bit-equal${ok ? '' : '  FAIL'}`);
  }
}
console.log(fails ? `${fails} case(s) out of tolerance` : 'all cases within tolerance');
process.exit(fails ? 1 : 0);
