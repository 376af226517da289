// CUDA backend benchmarks on the GPU, beside PyTorch's numbers from bench/cuda_ref.py (same command,
// same GPU): bf16 GEMM at the 671B config's linear shapes (target ≥ 95% of torch.matmul), memory-bound
// kernels at ≥ 256 MiB against the device-to-device copy bandwidth measured here (target ≥ 80%), launch
// overhead direct and through CUDA-graph replay (target ≤ 3 µs per kernel), and the FP8 cuBLASLt paths.
//   node dist/bench/cuda-bench.js [--torch torch.json] [--out result.json] [--only adamw]
import { readFileSync, writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { BlasLt } from '../src/backend/cuda/blaslt.js';
import { benchDevice, burstMs, opt, randDevice } from './harness.js';

const to = (t: T.Tensor): T.Tensor => T.fromBits(t.toHost(), t.dtype, t.shape, { device: 'cuda' });

benchDevice('cuda-bench');
const b = cudaBackend();
const torch = opt('--torch') ? JSON.parse(readFileSync(opt('--torch')!, 'utf8')) : null;

/**
 * Median over `reps` samples of the device time per call, each sample a burst of `burst` back-to-back
 * calls between two events (bench/cuda_ref.py times torch the same way). A burst keeps the GPU queue
 * ahead of the host, so the figure is the kernels' time, not the host's dispatch gap between an event
 * and a lone launch (5–8 µs here, 5% of a 0.16 ms kernel); launch overhead is measured on its own below.
 */
const med = (fn: () => void, reps = 30, warm = 3, burst = 10): number => burstMs(fn, reps, burst, warm);
const rand = (shape: number[], dtype: T.DType, seed: number): T.Tensor => randDevice(shape, dtype, seed, 'cuda');

const result: Record<string, unknown> = { date: '2026-11-28', device: b.rt.info.name, driver: b.rt.info.driverVersion, torch: torch?.torch };
const lines: string[] = [];

/**
 * The fused AdamW step (kernels/adamw.cu, Backend.adamwStep) on one 16 M-element f32 parameter against
 * torch.optim.AdamW(fused=True) on the same size (bench/cuda_ref.py 'adamw_ms'). Memory-bound: it reads
 * p, g, m, v and writes p, m, v, 7 × 4 bytes per element; GB/s is that traffic over the time.
 * `--only adamw` runs this case alone (a few seconds), without the copy bandwidth.
 */
function adamwCase(copyBW: number | null): Record<string, unknown> {
  const n = 16 << 20;
  const f = Math.fround;
  const [p, g] = [rand([n], 'f32', 8), rand([n], 'f32', 9)];
  const [m, v] = [0, 1].map(() => T.empty([n], { dtype: 'f32', device: 'cuda' }));
  b.fill(m!, 0);
  b.fill(v!, 0);
  // step 1 of lr 1e-3, betas (0.9, 0.95), weight decay 0.1, as AdamW.step passes them (the values do not change the work)
  const h: T.AdamWScalars = { decay: f(1 - 1e-3 * 0.1), lerp: true, w: f(0.1), oneMinusW: f(0.9), b2: f(0.95), oneMinusB2: f(0.05),
    bc2Sqrt: f(Math.sqrt(0.05)), eps: f(1e-8), negStepSize: f(-1e-3 / 0.1) };
  const ms = med(() => b.adamwStep(p, g, m!, v!, h));
  const bytes = 7 * 4 * n;
  const bw = bytes / (ms * 1e-3) / 1e9;
  const torchMs: number | undefined = torch?.mem?.adamw_ms;
  lines.push(`${'adamw f32 16M'.padEnd(22)} ${ms.toFixed(4)} ms ${bw.toFixed(0).padStart(5)} GB/s` + (copyBW ? ` = ${((bw / copyBW) * 100).toFixed(1)}% of copy` : '')
    + (torchMs ? `  torch fused AdamW ${torchMs.toFixed(4)} ms  ours/torch speed ${((torchMs / ms) * 100).toFixed(1)}%` : ''));
  for (const t of [p, g, m!, v!]) (t.storage as any).dispose();
  return { ms, GBps: bw, pct_of_copy: copyBW ? (bw / copyBW) * 100 : null, torch_ms: torchMs ?? null, n, bytes };
}
if (opt('--only') === 'adamw') {
  result.adamw = adamwCase(null);
  if (opt('--out')) writeFileSync(opt('--out')!, JSON.stringify(result, null, 2));
  console.log(lines.join('\n'));
  process.exit(0);
} else if (opt('--only')) {
  console.error(`cuda-bench: --only takes 'adamw' (the only case that runs alone), got '${opt('--only')}'`);
  process.exit(2);
}

// ---- GEMM ---------------------------------------------------------------------------------------------
// Small-M GEMMs read the whole weight once per call; at 7168×2048 bf16 (29 MB) that fits in the 50 MB
// L2, so back-to-back calls on one weight would time L2, not HBM. Each shape cycles through enough weight
// copies to span ≥ 160 MB (bench/cuda_ref.py does the same for torch), with 60 timed calls per median.
const NK: [number, number][] = [[7168, 2048], [2048, 7168], [18432, 7168], [24576, 1536], [32768, 512]];
const gemm: Record<string, unknown> = {};
for (const M of [1, 16, 128, 4096]) {
  for (const [N, K] of NK) {
    const x = rand([M, K], 'bf16', 1);
    const copies = Math.max(1, Math.min(8, Math.ceil((160 << 20) / (N * K * 2))));
    const ws = Array.from({ length: copies }, (_, i) => rand([N, K], 'bf16', 2 + i));
    const wts = ws.map((w) => T.transpose(w));
    const out = T.empty([M, N], { dtype: 'bf16', device: 'cuda' });
    let turn = 0;
    const ms = med(() => b.matmul(out, x, wts[turn++ % copies]!), M >= 4096 ? 20 : 60, 5);
    const key = `${M}x${N}x${K}`;
    const ref = torch?.gemm?.[key];
    const tflops = (2 * M * N * K) / (ms * 1e-3) / 1e12;
    gemm[key] = { ms, tflops, torch_ms: ref, ratio: ref ? ref / ms : null, weight_copies: copies };
    const wGBps = (N * K * 2) / (ms * 1e-3) / 1e9; // the weight stream, the bound at small M
    (gemm[key] as Record<string, unknown>).weight_GBps = wGBps;
    lines.push(`gemm bf16 ${key.padEnd(18)} ${ms.toFixed(4)} ms ${tflops.toFixed(1).padStart(6)} TFLOP/s ${wGBps.toFixed(0).padStart(5)} GB/s of w` + (ref ? `  torch ${ref.toFixed(4)} ms  ours/torch speed ${(ref / ms * 100).toFixed(1)}%` : ''));
    (x.storage as any).dispose(); for (const w of ws) (w.storage as any).dispose(); (out.storage as any).dispose();
  }
}
result.gemm = gemm;
// the decode GEMV (kernels/gemv.cu, M = 1) against cuBLASLt on the same operands; the 2026-11-28 run that
// set tune.skinnyMaxM also had M = 2, 4, 8 instantiated (docs/benchmarks.md)
{
  const skinny: Record<string, unknown> = {};
  for (const [N, K] of [[7168, 2048], [18432, 7168]] as const) {
    const copies = Math.max(1, Math.min(8, Math.ceil((160 << 20) / (N * K * 2))));
    const ws = Array.from({ length: copies }, (_, i) => T.transpose(rand([N, K], 'bf16', 20 + i)));
    for (let M = 1; M <= b.tune.skinnyMaxM; M++) {
      const x = rand([M, K], 'bf16', 30);
      const out = T.empty([M, N], { dtype: 'bf16', device: 'cuda' });
      let turn = 0;
      const ours = med(() => b.matmul(out, x, ws[turn++ % copies]!), 60, 5);
      const keep = b.tune.skinnyMaxM;
      b.tune.skinnyMaxM = 0;
      const lt = med(() => b.matmul(out, x, ws[turn++ % copies]!), 60, 5);
      b.tune.skinnyMaxM = keep;
      skinny[`${M}x${N}x${K}`] = { skinny_ms: ours, cublaslt_ms: lt };
      lines.push(`skinny gemm ${`${M}x${N}x${K}`.padEnd(14)} ${(ours * 1000).toFixed(1)} µs vs cuBLASLt ${(lt * 1000).toFixed(1)} µs (${(lt / ours * 100).toFixed(0)}%)`);
    }
  }
  result.skinny = skinny;
}

// ---- memory-bound ---------------------------------------------------------------------------------------
const GiB = 1 << 30;
const big = rand([GiB / 2], 'bf16', 3);
const big2 = T.empty([GiB / 2], { dtype: 'bf16', device: 'cuda' });
const copyMs = med(() => b.copy(big2, big));
const copyBW = (2 * GiB) / (copyMs * 1e-3) / 1e9;
(big.storage as any).dispose(); (big2.storage as any).dispose();
const D = 7168;
const rows = Math.floor((256 << 20) / 2 / D);
const x = rand([rows, D], 'bf16', 4);
const y = rand([rows, D], 'bf16', 5);
const w = rand([D], 'bf16', 6);
const o = T.empty([rows, D], { dtype: 'bf16', device: 'cuda' });
const h = T.empty([rows, D], { dtype: 'bf16', device: 'cuda' });
const q = T.empty([rows, D], { dtype: 'f8e4m3', device: 'cuda' });
const s = T.empty([rows, D / 128], { dtype: 'f32', device: 'cuda' });
const X = rows * D * 2;
const mem: Record<string, unknown> = { copy_GBps: copyBW, copy_ms: copyMs, rows, D, torch_copy_GBps: torch ? torch.mem.copy_bytes / (torch.mem.copy_ms * 1e-3) / 1e9 : null };
const memCase = (name: string, bytes: number, fn: () => void, torchMs?: number): void => {
  const ms = med(fn);
  const bw = bytes / (ms * 1e-3) / 1e9;
  mem[name] = { ms, GBps: bw, pct_of_copy: (bw / copyBW) * 100, torch_ms: torchMs ?? null };
  lines.push(`${name.padEnd(22)} ${ms.toFixed(4)} ms ${bw.toFixed(0).padStart(5)} GB/s = ${((bw / copyBW) * 100).toFixed(1)}% of copy` + (torchMs ? `  torch ${torchMs.toFixed(4)} ms` : ''));
};
memCase('add bf16', 3 * X, () => b.binary('add', o, x, y), torch?.mem?.add_ms);
memCase('rmsnorm bf16', 2 * X, () => b.rmsNorm(o, x, w, 1e-6), torch?.mem?.rmsnorm_ms);
memCase('rmsnorm+residual bf16', 4 * X, () => b.rmsNormResidual(o, h, x, y, w, 1e-6));
memCase('softmax bf16', 2 * X, () => b.softmax(o, x, false), torch?.mem?.softmax_ms);
// dx from y and g (x and y stand in for them): read both once, write dx once
memCase('softmax backward bf16', 3 * X, () => b.softmaxBackward(o, x, y, 1), torch?.mem?.softmax_bwd_ms);
memCase('swiglu bf16', 3 * X, () => b.swiglu(o, x, y), torch?.mem?.swiglu_ms);
memCase('act_quant bf16→e4m3', X + X / 2 + (X / 2 / 128) * 4, () => b.actQuant(q, s, x, 128, true));
// RMSNorm weight gradients: f32 [16384, 512] summed over axis 0 (the split column reduction; 8.7 ms before it)
const gradRows = rand([16384, 512], 'f32', 7);
const gradSum = T.empty([512], { dtype: 'f32', device: 'cuda' });
memCase('sum axis 0 [16384,512]', 16384 * 512 * 4, () => b.reduce('sum', gradSum, gradRows, [0]));
mem.adamw = adamwCase(copyBW);
lines.push(`d2d copy ${copyBW.toFixed(0)} GB/s (read+write)` + (mem.torch_copy_GBps ? `, torch copy ${(mem.torch_copy_GBps as number).toFixed(0)} GB/s` : ''));
result.mem = mem;

// ---- launch overhead --------------------------------------------------------------------------------------
const one = T.empty([1], { device: 'cuda' });
const one2 = T.empty([1], { device: 'cuda' });
b.fill(one, 1);
for (let i = 0; i < 200; i++) b.unary('neg', one2, one, 0);
b.synchronize();
const N_L = 5000;
let t0 = performance.now();
for (let i = 0; i < N_L; i++) b.unary('neg', one2, one, 0);
b.synchronize();
const directUs = ((performance.now() - t0) * 1000) / N_L;
const KPG = 100;
const g = b.captureGraph(() => {
  for (let i = 0; i < KPG; i++) b.unary('neg', one2, one, 0);
});
const graphMs = med(() => g.replay(), 30, 5);
const graphUs = (graphMs * 1000) / KPG;
t0 = performance.now();
for (let i = 0; i < 200; i++) g.replay();
b.synchronize();
const graphWallUs = ((performance.now() - t0) * 1000) / (200 * KPG);
g.destroy();
result.launch = { direct_us_per_launch: directUs, graph_us_per_kernel_events: graphUs, graph_us_per_kernel_wall: graphWallUs, kernels_per_graph: KPG };
lines.push(`launch direct ${directUs.toFixed(2)} µs/launch (host wall, incl. backend dispatch); graph replay ${graphUs.toFixed(2)} µs/kernel (events), ${graphWallUs.toFixed(2)} µs/kernel (wall)`);

// ---- FP8 ------------------------------------------------------------------------------------------------
// Block scaling with NON-uniform scales, checked against a float64 reference on dequantised operands, to
// find the scale layouts cuBLASLt expects: x [M, K] takes one scale per (row, 128 columns of K) (VEC128),
// w [N, K] one per 128×128 tile (BLK128x128). Each candidate layout is tried; the right one matches the
// reference to e4m3 accumulation noise, the wrong ones are off by O(1).
{
  const cpuB = T.getBackend('cpu');
  const M = 256, N = 512, K = 1024, KB = K / 128, NB = N / 128;
  const fp8: Record<string, unknown> = { cublasLt_version: (b as any).lt?.version, has_vec128: BlasLt.hasScaleMode('vec128'), has_blk128: BlasLt.hasScaleMode('blk128x128') };
  // x: magnitudes 2^-4 … 2^4 varying with (row, k-block), quantised by the CPU backend's actQuant (block 128)
  const xr = T.randn([M, K], new T.Rng(11)).toFloat64();
  const xh = new Float32Array(M * K);
  for (let r = 0; r < M; r++) for (let k = 0; k < K; k++) xh[r * K + k] = xr[r * K + k]! * 2 ** (((r * 3 + (k >> 7) * 5) % 9) - 4);
  const xq = T.empty([M, K], { dtype: 'f8e4m3' });
  const sx = T.empty([M, KB], { dtype: 'f32' });
  cpuB.actQuant(xq, sx, T.fromArray(xh, [M, K]), 128, false);
  // w: one scale per 128×128 tile, s = amax/448, q = e4m3(w / s)
  const wr = T.randn([N, K], new T.Rng(12)).toFloat64();
  const wh = new Float32Array(N * K);
  const sw = new Float32Array(NB * KB);
  for (let nb = 0; nb < NB; nb++) {
    for (let kb = 0; kb < KB; kb++) {
      const mag = 2 ** (((nb * 7 + kb * 3) % 11) - 5);
      let amax = 0;
      for (let n = nb * 128; n < nb * 128 + 128; n++) for (let k = kb * 128; k < kb * 128 + 128; k++) amax = Math.max(amax, Math.abs((wh[n * K + k] = Math.fround(wr[n * K + k]! * mag))));
      sw[nb * KB + kb] = Math.fround(amax / 448);
    }
  }
  const wy = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wy[n * K + k] = wh[n * K + k]! / sw[(n >> 7) * KB + (k >> 7)]!;
  const wq = T.cast(T.fromArray(wy, [N, K]), 'f8e4m3');
  // float64 reference on the dequantised operands
  const xd = T.cast(xq, 'f32').toFloat64();
  const sxv = sx.toFloat64();
  const wd = T.cast(wq, 'f32').toFloat64();
  for (let r = 0; r < M; r++) for (let k = 0; k < K; k++) xd[r * K + k]! *= sxv[r * KB + (k >> 7)]!;
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wd[n * K + k]! *= sw[(n >> 7) * KB + (k >> 7)]!;
  const ref = new Float64Array(M * N);
  for (let r = 0; r < M; r++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xd[r * K + k]! * wd[n * K + k]!;
      ref[r * N + n] = acc;
    }
  }
  const relErr = (o: T.Tensor): number => {
    const a = T.cast(o, 'f32').toFloat64();
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) { num += (a[i]! - ref[i]!) ** 2; den += ref[i]! ** 2; }
    return Math.sqrt(num / den);
  };
  const transpose2 = (v: Float32Array, R: number, C: number): Float32Array => {
    const t = new Float32Array(R * C);
    for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) t[j * R + i] = v[i * C + j]!;
    return t;
  };
  const xqC = to(xq), wqC = to(wq);
  const sxRow = Float32Array.from(sxv);
  const layoutsX: Record<string, Float32Array> = { 'x[M][K/128]': sxRow, 'x[K/128][M]': transpose2(sxRow, M, KB) };
  const layoutsW: Record<string, Float32Array> = { 'w[N/128][K/128]': sw, 'w[K/128][N/128]': transpose2(sw, NB, KB) };
  const tried: Record<string, unknown> = {};
  let best: { lx: string; lw: string; err: number } | null = null;
  try {
    for (const [lx, vx] of Object.entries(layoutsX)) {
      for (const [lw, vw] of Object.entries(layoutsW)) {
        const out = T.empty([M, N], { dtype: 'bf16', device: 'cuda' });
        const ok = b.fp8Linear(out, xqC, wqC, T.fromArray(vx, [vx.length], { device: 'cuda' }), T.fromArray(vw, [vw.length], { device: 'cuda' }), 'block');
        const err = ok ? relErr(out) : null;
        tried[`${lx} ${lw}`] = ok ? err : 'no algorithm';
        if (err !== null && (!best || err < best.err)) best = { lx, lw, err };
      }
    }
    fp8.block_layouts = tried;
    fp8.block_best = best;
  } catch (e) {
    fp8.block_error = (e as Error).message;
  }
  // per-tensor scales on the same operands' codes (scales 1): a plain check that the FP8 path multiplies right
  {
    const one = T.fromArray([1], [1], { device: 'cuda' });
    const out = T.empty([M, N], { dtype: 'f32', device: 'cuda' });
    const okT = b.fp8Linear(out, xqC, wqC, one, one, 'tensor');
    fp8.per_tensor_supported = okT;
    if (okT) {
      const a = out.toFloat64();
      const xc = T.cast(xq, 'f32').toFloat64(), wc = T.cast(wq, 'f32').toFloat64();
      let num = 0, den = 0;
      for (let r = 0; r < M; r += 17) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += xc[r * K + k]! * wc[n * K + k]!;
          num += (a[r * N + n]! - acc) ** 2; den += acc * acc;
        }
      }
      fp8.per_tensor_rel_err = Math.sqrt(num / den);
    }
  }
  // speed at a 671B shape (M=4096, N=7168, K=2048): per-tensor and block-scaled, TFLOP/s
  {
    const Mb = 4096, Nb = 7168, Kb = 2048;
    const X8 = T.empty([Mb, Kb], { dtype: 'f8e4m3', device: 'cuda' });
    const W8 = T.empty([Nb, Kb], { dtype: 'f8e4m3', device: 'cuda' });
    b.unary('muls', X8, rand([Mb, Kb], 'f32', 9), 40);
    b.unary('muls', W8, rand([Nb, Kb], 'f32', 10), 40);
    const O = T.empty([Mb, Nb], { dtype: 'bf16', device: 'cuda' });
    const one = T.fromArray([1], [1], { device: 'cuda' });
    const fl = 2 * Mb * Nb * Kb;
    if (b.fp8Linear(O, X8, W8, one, one, 'tensor')) {
      const ms = med(() => b.fp8Linear(O, X8, W8, one, one, 'tensor'));
      fp8.tensor_4096x7168x2048 = { ms, tflops: fl / (ms * 1e-3) / 1e12, torch_ms: torch?.fp8?.tensor_ms ?? null };
    }
    const sxb = T.empty([(Mb * Kb) / 128], { device: 'cuda' });
    const swb = T.empty([((Nb / 128) * Kb) / 128], { device: 'cuda' });
    b.fill(sxb, 1);
    b.fill(swb, 1);
    try {
      if (b.fp8Linear(O, X8, W8, sxb, swb, 'block')) {
        const ms = med(() => b.fp8Linear(O, X8, W8, sxb, swb, 'block'));
        fp8.block_4096x7168x2048 = { ms, tflops: fl / (ms * 1e-3) / 1e12, torch_ms: torch?.fp8?.block_ms ?? null };
      }
    } catch (e) {
      fp8.block_speed_error = (e as Error).message;
    }
    // decode, block-scaled, M = 1…8: our FP8 GEMV (M not a multiple of 4) against cuBLASLt (direct at M = 4, 8;
    // on rows padded to a multiple of 4 otherwise), each rotating through 8 weight copies (117 MB, past L2)
    const W8s = Array.from({ length: 8 }, (_, i) => {
      const t = T.empty([Nb, Kb], { dtype: 'f8e4m3', device: 'cuda' });
      b.unary('muls', t, rand([Nb, Kb], 'f32', 40 + i), 40);
      return t;
    });
    const decode: Record<string, unknown> = {};
    const keep = b.tune.fp8GemvMaxM;
    for (let Md = 1; Md <= 8; Md++) {
      const xd = T.empty([Md, Kb], { dtype: 'f8e4m3', device: 'cuda' });
      b.unary('muls', xd, rand([Md, Kb], 'f32', 11), 40);
      const sxd = T.empty([(Md * Kb) / 128], { device: 'cuda' });
      b.fill(sxd, 1);
      const Od = T.empty([Md, Nb], { dtype: 'bf16', device: 'cuda' });
      const row: Record<string, number | string> = {};
      for (const [label, max] of (Md % 4 ? [['gemv', 8], ['cublaslt', 0]] : [['cublaslt', 0]]) as [string, number][]) {
        b.tune.fp8GemvMaxM = max;
        let turn = 0;
        if (b.fp8Linear(Od, xd, W8, sxd, swb, 'block')) row[`${label}_us`] = med(() => b.fp8Linear(Od, xd, W8s[turn++ % 8]!, sxd, swb, 'block'), 60, 5) * 1000;
        else row[`${label}_us`] = 'no algorithm';
      }
      b.tune.fp8GemvMaxM = keep;
      decode[`${Md}x7168x2048`] = row;
      const us = (v: number | string | undefined): string => (typeof v === 'number' ? `${v.toFixed(1)} µs` : String(v ?? '—'));
      lines.push(`fp8 block decode M=${Md}: GEMV ${us(row.gemv_us)}, cuBLASLt ${us(row.cublaslt_us)}`);
    }
    fp8.block_decode = decode;
  }
  result.fp8 = fp8;
  lines.push(`fp8 ${JSON.stringify(fp8)}`);
}

result.memory = b.memoryStats();
if (opt('--out')) writeFileSync(opt('--out')!, JSON.stringify(result, null, 2));
console.log(lines.join('\n'));
