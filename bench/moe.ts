// MoE operations benchmark (issue 12: "MoE dispatch on the device"): per-op times of one routed-expert layer
// built from src/tensor/ops/moe.ts, at the 671B shapes by default (dim 7168, expert dim 2048, 256 experts,
// 8 per token, 8 groups keeping 4, bf16 activations and weights):
//   route (moeRoute on sigmoid scores with the bias), dispatch (moeDispatch), the three grouped GEMMs of the
//   SwiGLU experts (gate and up [T·k, dim] × [E, F, dim], down [T·k, F] × [E, dim, F]), combine.
// For the GEMMs: TFLOPS = 2·T·k·N·K / time, and GB/s = the activated experts' weight bytes / time (the decode
// roofline: a decode step reads each chosen expert's weights once).
// Medians of CUDA-event times over bursts of calls (host clock on the CPU). No PyTorch reference is timed
// here (the reference's MoE is a Python loop over experts; its time comes from the full-model bench).
// bf16 on CUDA: the GEMMs run on the default path (the grouped GEMV up to moeTune.gemvMaxRows rows where the
// inner dim is at least the width, else the tensor-core kernel grouped_matmul_tc_*), again on the tensor-core
// kernel at those row counts,
// and on the SIMT kernel (the `simt` columns), in the same run; from 64 rows also the gate projection's
// training forward + backward (dx and dW through autograd) on the default (tensor-core) and the SIMT kernels; bench/moe_ref.py times PyTorch's torch._grouped_mm and a
// per-expert torch.mm loop at the same shapes (run it beside this for the ratio).
//   node dist/bench/moe.js [--tokens 1,8,64,2048] [--dim 7168] [--inter 2048] [--experts 256] [--k 8]
//                          [--dtype bf16|f32|fp8] [--out result.json]
//   fp8: e4m3 expert weights with 128×128 block scales through groupedMatmulFp8 (bf16 activations).
//   node dist/bench/moe.js --device cpu       (tiny shapes on the CPU reference; says so)
import { writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { moeTune } from '../src/backend/cuda/moe.js';
import { releaseDeadTensors } from '../src/tensor/memory.js';
import { benchDevice, burstMs, machine, opt, printTable, randDevice } from './harness.js';

const { device, onCpu } = benchDevice('moe bench', 'run with --device cpu for the tiny CPU shapes');
const num = (n: string, d: number): number => Number(opt(n) ?? d);
const DIM = num('--dim', onCpu ? 256 : 7168);
const F = num('--inter', onCpu ? 64 : 2048);
const E = num('--experts', onCpu ? 16 : 256);
const K = num('--k', onCpu ? 4 : 8);
const G = num('--groups', onCpu ? 4 : 8);
const TG = num('--topk-groups', onCpu ? 2 : 4);
const fp8 = opt('--dtype') === 'fp8';
const dt = (fp8 ? 'bf16' : opt('--dtype') ?? 'bf16') as T.DType;
const TOKENS = (opt('--tokens') ?? (onCpu ? '1,8,64' : '1,8,64,512,2048')).split(',').map(Number);

/**
 * Median ms per call over bursts (CUDA events on the GPU, host clock on the CPU), after the dead tensors of
 * earlier timings are given back: a timing's outputs come back only after its job ends (src/tensor/
 * memory.ts), and at 16 384 tokens the bursts of one shape held all of an H100's memory (2026-12-06).
 */
const timeMs = async (fn: () => void, reps = onCpu ? 3 : 20, burst = onCpu ? 1 : 5): Promise<number> => {
  await releaseDeadTensors(device);
  return burstMs(fn, reps, burst, 1, onCpu);
};
const rand = (shape: number[], seed: number, scale = 1): T.Tensor => randDevice(shape, dt, seed, device, scale);

const wg = rand([E, F, DIM], 1, DIM ** -0.5);
const wu = rand([E, F, DIM], 2, DIM ** -0.5);
const wd = rand([E, DIM, F], 3, F ** -0.5);
const gateW = T.muls(T.randn([E, DIM], new T.Rng(4), { device }), DIM ** -0.5);
const bias = T.muls(T.randn([E], new T.Rng(5), { device }), 0.1);
const bytesPer = fp8 ? 1 : T.ITEMSIZE[dt];
/** e4m3 codes of a weight stack [E, N, K] and power-of-two-ish block scales [E, ⌈N/128⌉, ⌈K/128⌉] (timing only). */
const q8 = (w: T.Tensor): { w8: T.Tensor; s: T.Tensor } => {
  const [e, n, k] = w.shape as [number, number, number];
  return { w8: T.cast(T.muls(T.cast(w, 'f32'), 448 / 4 * k ** 0.5), 'f8e4m3'), s: T.full([e, Math.ceil(n / 128), Math.ceil(k / 128)], 4 / 448 * k ** -0.5, { device }) };
};
const wg8 = fp8 ? q8(wg) : null;
const wd8 = fp8 ? q8(wd) : null;
const gmm = (a: T.Tensor, w: T.Tensor, w8: { w8: T.Tensor; s: T.Tensor } | null, off: T.Tensor): T.Tensor => (w8 ? T.groupedMatmulFp8(a, w8.w8, w8.s, off) : T.groupedMatmul(a, w, off));

const rows: string[][] = [];
const results: Record<string, unknown>[] = [];
for (const Tn of TOKENS) {
  const x = rand([Tn, DIM], 10 + Tn);
  const s = T.sigmoid(T.linear(T.cast(x, 'f32'), gateW));
  const route = (): T.Tensor => T.moeRoute(s, { bias, groups: G, topkGroups: TG, k: K });
  const experts = route();
  const d = T.moeDispatch(experts, E);
  const xs = T.indexSelect(x, 0, d.tokens);
  const h = rand([Tn * K, F], 20 + Tn);
  const ys = rand([Tn * K, DIM], 30 + Tn);
  const w = T.moeRouteWeights(s, experts, { normalize: true, scale: 2.5 });
  // activated experts (distinct ids) for the weight-bytes roofline
  const active = new Set(Array.from(experts.toHost() as Int32Array)).size;
  const t = {
    route: await timeMs(route),
    dispatch: await timeMs(() => T.moeDispatch(experts, E)),
    gateUp: await timeMs(() => gmm(xs, wg, wg8, d.offsets)),
    down: await timeMs(() => gmm(h, wd, wd8, d.offsets)),
    combine: await timeMs(() => T.moeCombine(ys, w, d.rows, { dtype: dt })),
  };
  // the other kernels at the same shapes (bf16 on CUDA only: elsewhere there is one path): the tensor-core
  // kernel where the default took the grouped GEMV (decode-sized row counts), and the SIMT kernel
  const both = !onCpu && !fp8 && dt === 'bf16';
  const alt = async (gemv: boolean, tc: boolean): Promise<{ gateUp: number; down: number }> => {
    const keep = { ...moeTune };
    Object.assign(moeTune, { gemv, tc });
    try {
      return { gateUp: await timeMs(() => gmm(xs, wg, null, d.offsets)), down: await timeMs(() => gmm(h, wd, null, d.offsets)) };
    } finally {
      Object.assign(moeTune, keep);
    }
  };
  const simt = both ? await alt(false, false) : { gateUp: NaN, down: NaN };
  // training: the gate projection's forward and backward (dx and dW, 3× the forward's flops) through
  // autograd, on the default path and on the SIMT kernels (from 64 rows: the sizes of a training step)
  const train = async (tc: boolean): Promise<number> => {
    const keep = { ...moeTune };
    Object.assign(moeTune, { tc, dwTc: tc });
    try {
      const xl = T.contiguous(xs);
      xl.requiresGrad = true;
      const wl = T.contiguous(wg);
      wl.requiresGrad = true;
      const g = rand([Tn * K, F], 40 + Tn);
      return await timeMs(() => T.backward(T.groupedMatmul(xl, wl, d.offsets), g), onCpu ? 3 : 10, onCpu ? 1 : 2);
    } finally {
      Object.assign(moeTune, keep);
    }
  };
  const trainMs = both && Tn * K >= 64 ? { tc: await train(true), simt: await train(false) } : null;
  const tcOnly = both && moeTune.gemv && Tn * K <= moeTune.gemvMaxRows ? await alt(false, true) : { gateUp: NaN, down: NaN };
  void wu; // up_proj has gate_proj's shape and time
  const flopsGU = 2 * Tn * K * F * DIM;
  const wBytes = active * F * DIM * bytesPer;
  const tflops = (f: number, ms: number): string => (f / (ms * 1e-3) / 1e12).toFixed(2);
  const gbs = (b: number, ms: number): string => (b / (ms * 1e-3) / 1e9).toFixed(0);
  rows.push([String(Tn), String(active), t.route.toFixed(3), t.dispatch.toFixed(3), t.gateUp.toFixed(3), tflops(flopsGU, t.gateUp), gbs(wBytes, t.gateUp),
    t.down.toFixed(3), tflops(flopsGU, t.down), gbs(wBytes, t.down), t.combine.toFixed(3),
    ...(both ? [tcOnly.gateUp.toFixed(3), tcOnly.down.toFixed(3), simt.gateUp.toFixed(3), simt.down.toFixed(3),
      trainMs ? `${trainMs.tc.toFixed(3)} (${tflops(3 * flopsGU, trainMs.tc)})` : '', trainMs ? `${trainMs.simt.toFixed(3)} (${tflops(3 * flopsGU, trainMs.simt)})` : ''] : [])]);
  results.push({ tokens: Tn, activeExperts: active, gateUpPath: both && Tn * K <= moeTune.gemvMaxRows && moeTune.gemv && DIM >= F ? 'grouped-gemv' : 'default', ms: t,
    gateUpTflops: +tflops(flopsGU, t.gateUp), downTflops: +tflops(flopsGU, t.down),
    gateUpGBs: +gbs(wBytes, t.gateUp), downGBs: +gbs(wBytes, t.down), ...(both ? { tcMs: tcOnly, simtMs: simt, gateFwdBwdMs: trainMs } : {}) });
}
console.log(`MoE ops on ${onCpu ? 'cpu (tiny shapes, CPU reference)' : cudaBackend().rt.info.name}: dim ${DIM}, expert dim ${F}, ${E} experts, k ${K}, groups ${G}/${TG}, ${fp8 ? 'FP8 weights, bf16 activations' : dt}`);
printTable(['T', 'experts', 'route ms', 'dispatch ms', 'gate|up ms', 'TFLOPS', 'GB/s', 'down ms', 'TFLOPS', 'GB/s', 'combine ms',
  ...(rows[0]!.length > 11 ? ['tensor-core gate|up ms', 'tensor-core down ms', 'simt gate|up ms', 'simt down ms', 'gate fwd+bwd ms (TFLOPS)', 'simt fwd+bwd ms (TFLOPS)'] : [])], rows);
if (rows[0]!.length > 11) console.log(`(up to ${moeTune.gemvMaxRows} rows, T·k, the default for a projection whose inner dim is at least its width — gate|up here when dim ≥ expert dim — is the grouped GEMV; the tensor-core columns time the kernel it replaced there)`);
const out = opt('--out');
if (out) writeFileSync(out, JSON.stringify({ date: new Date().toISOString().slice(0, 10), machine: machine(), device: onCpu ? 'cpu' : cudaBackend().rt.info.name, dim: DIM, inter: F, experts: E, k: K, dtype: fp8 ? 'fp8' : dt, results }, null, 2));
