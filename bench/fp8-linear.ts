// FP8 block-scaled linear benchmark (src/tensor/ops/fp8-linear.ts): y = fp8Linear(x, w8, scale) with bf16
// x and y, at the projection shapes of the mid config (dim 2048) and of the 671B model, for decode-sized
// and prefill-sized M. Columns (CUDA-event medians over bursts of back-to-back calls):
//   op      the whole op: act_quant of x + Backend.fp8BlockLinear (scale transpose + cuBLASLt / FP8 GEMV)
//   gemm    Backend.fp8BlockLinear alone on pre-quantised x (the default path)
//   kernel  the same with the fallback kernel forced (kernels/fp8_linear.cu; only M ≤ 256: CUDA cores)
//   bf16    the dense bf16 linear of the same shape (T.linear), the path FP8 weights replace
// with TFLOPS (2·M·N·K / time) and, for decode, weight GB/s (N·K bytes of e4m3 + scales per call).
//   node dist/bench/fp8-linear.js [--out result.json] [--quick]
//   node dist/bench/fp8-linear.js --device cpu     (small shapes: the op against the host loop it replaced, test/oracles/fp8-linear.ts)
import { writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { fp8BlockLinearTune } from '../src/backend/cuda/fp8-linear.js';
import { hostFp8Linear } from '../test/oracles/fp8-linear.js';
import { args, benchDevice, burstMs, dispose, machine, opt, printTable } from './harness.js';

const { device, onCpu } = benchDevice('fp8-linear bench', 'run with --device cpu for the CPU shapes');
const quick = args.includes('--quick');

/** [name, N, K] */
const SHAPES: [string, number, number][] = onCpu
  ? [['mid wq_a', 768, 2048], ['mid expert w2', 2048, 512]]
  : [
      ['mid wq_a', 768, 2048], ['mid wkv_a', 576, 2048], ['mid wo', 2048, 2048], ['mid w1', 5632, 2048], ['mid w2', 2048, 5632],
      ['671B wq_b', 24576, 1536], ['671B wo', 7168, 16384], ['671B w1', 18432, 7168], ['671B expert w2', 7168, 2048],
    ];
const MS = onCpu ? [1, 16, 128] : quick ? [1, 64, 4096] : [1, 3, 4, 7, 16, 64, 256, 1024, 4096];

/** Median ms per call: CUDA events around bursts of `burst` calls (host clock on the CPU). */
const timeMs = (fn: () => void, reps: number, burst: number): number => burstMs(fn, reps, burst, 1, onCpu);

/** A weight N(0, 1/K) quantised per 128×128 tile (amax/448 scales), as the checkpoint stores it. */
function fp8Weight(N: number, K: number, seed: number): { w8: T.Tensor; sw: T.Tensor; wb: T.Tensor; scale: Float32Array } {
  const w = T.mul(T.randn([N, K], new T.Rng(seed), { device }), T.scalar(K ** -0.5, { device }));
  const NB = Math.ceil(N / 128);
  const KB = Math.ceil(K / 128);
  const wv = w.toFloat32();
  const scale = new Float32Array(NB * KB);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    const i = Math.floor(n / 128) * KB + Math.floor(k / 128);
    scale[i] = Math.max(scale[i]!, Math.abs(wv[n * K + k]!));
  }
  for (let i = 0; i < scale.length; i++) scale[i] = Math.fround(scale[i]! / 448);
  const sw = T.fromArray(scale, [NB, KB], { device });
  const w8 = T.cast(T.div(w, T.weightDequant(T.full([N, K], 1, { device }), sw)), 'f8e4m3');
  const wb = T.cast(w, 'bf16');
  dispose(w);
  return { w8, sw, wb, scale };
}

const fmt = (x: number | undefined, d = 3): string => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));
const rows: string[][] = [];
const out: Record<string, unknown>[] = [];
for (const [name, N, K] of SHAPES) {
  const { w8, sw, wb, scale } = fp8Weight(N, K, 1);
  for (const M of MS) {
    const x = T.cast(T.randn([M, K], new T.Rng(2), { device }), 'bf16');
    const flop = 2 * M * N * K;
    const row: Record<string, number | string> = { name, M, N, K };
    let y: T.Tensor | null = null;
    const reps = onCpu ? 3 : 20;
    const burst = onCpu ? 1 : M >= 1024 ? 3 : 20;
    row.op_ms = timeMs(() => {
      if (y) dispose(y);
      y = T.fp8Linear(x, w8, sw, { outDtype: 'bf16' });
    }, reps, burst);
    if (onCpu) {
      row.host_ms = timeMs(() => void hostFp8Linear(x, w8, scale, 'bf16', true), reps, burst);
    } else {
      const { q, s } = T.actQuant(x, 128, { ue8m0: true });
      const o = T.empty([M, N], { dtype: 'bf16', device });
      const be = cudaBackend();
      row.gemm_ms = timeMs(() => be.fp8BlockLinear(o, q, s, w8, sw), reps, burst);
      if (M <= 256) {
        fp8BlockLinearTune.forceKernel = true;
        try {
          row.kernel_ms = timeMs(() => be.fp8BlockLinear(o, q, s, w8, sw), reps, Math.min(burst, 5));
        } finally {
          fp8BlockLinearTune.forceKernel = false;
        }
      }
      let yb: T.Tensor | null = null;
      row.bf16_ms = timeMs(() => {
        if (yb) dispose(yb);
        yb = T.linear(x, wb);
      }, reps, burst);
      dispose(q, s, o);
      if (yb) dispose(yb);
    }
    if (y) dispose(y);
    dispose(x);
    row.op_tflops = flop / (row.op_ms as number) / 1e9;
    row.weight_GBps = (N * K + 4 * scale.length) / (row.op_ms as number) / 1e6;
    out.push(row);
    rows.push([name, `${M}×${N}×${K}`, fmt(row.op_ms as number, 4), fmt(row.op_tflops as number, 1), fmt(row.weight_GBps as number, 0),
      ...(onCpu ? [fmt(row.host_ms as number, 4)] : [fmt(row.gemm_ms as number, 4), fmt(row.kernel_ms as number | undefined, 4), fmt(row.bf16_ms as number, 4)])]);
  }
  dispose(w8, sw, wb);
}
const dev = onCpu ? 'cpu' : cudaBackend().rt.info.name;
console.log(`FP8 block-scaled linear, bf16 in/out — ${dev}; ${machine()}`);
printTable(['weight', 'M×N×K', 'op ms', 'op TFLOPS', 'weight GB/s', ...(onCpu ? ['host loop ms'] : ['gemm ms', 'fallback kernel ms', 'bf16 linear ms'])], rows);
if (opt('--out')) writeFileSync(opt('--out')!, JSON.stringify({ date: new Date().toISOString(), machine: machine(), device: dev, rows: out }, null, 2));
