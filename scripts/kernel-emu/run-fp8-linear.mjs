// Runs kernels/fp8_linear.cu (the fallback FP8 block-scaled linear) on the CPU, one host thread per CUDA
// thread, and compares it with the CPU reference op (src/tensor/ops/fp8-linear.ts) at partial K blocks,
// N not a multiple of the 64-column tile, M not a multiple of the 16-row tile, and a gridY smaller than
// the row tiles (the kernel's grid-stride loop). For a machine without a GPU: it checks the kernel's
// indexing, tiling, barriers and promotion order before the GPU run; no substitute for that run (g++
// compiles it, no GPU memory model). Expect f32 outputs within ~1e-8 relative (only the in-block dot's
// summation order differs from the CPU's GEMM) and bf16 outputs almost always bit-equal.
//   npm run build && node scripts/kernel-emu/run-fp8-linear.mjs
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case is out of tolerance. Shared parts: emu-runner.mjs.
import { join } from 'node:path';
import { build, emulate, mulberry32, readValues, relErr, reporter, setup, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('fp8-linear');
const emu = build(dir, { cu: 'fp8_linear.cu', driver: 'fp8-linear-emu.cpp', staticShared: true, flags: ['-O1', '-ffp-contract=off'] });
const { check, finish } = reporter('fp8-linear');

const r = mulberry32(7);
const nrm = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
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
    for (const [name, t] of [['q', q], ['sq', s], ['w', w8], ['sw', sw]]) writeData(T, join(dir, `${name}.bin`), t);
    emulate(emu, [M, N, K, gy, od === 'bf16' ? 1 : 0, 'q.bin', 'sq.bin', 'w.bin', 'sw.bin', 'out.bin'], { cwd: dir });
    const a = readValues(T, join(dir, 'out.bin'), od, [M, N]);
    const e = want.toFloat64();
    const diff = e.reduce((n, v, i) => n + (a[i] !== v ? 1 : 0), 0);
    const rel = relErr(a, e);
    check(rel <= (od === 'bf16' ? 8e-3 : 1e-6), `M=${M} N=${N} K=${K} gridY=${gy} ${od}: relative error ${rel.toExponential(2)}, ${diff}/${e.length} not bit-equal`);
  }
}
finish();
