// The fused few-head sparse MLA kernels — one pass (kernels/sparse_mla_flash.cu) and two passes
// (kernels/sparse_mla_gemm.cu) — against the gathered-GEMM path on the same inputs, over the number of
// query rows N: where the fused kernels pay (sparseMlaTune's bounds). The one-pass kernel runs with its keys split over
// CTAs wherever few rows leave SMs idle (the default does so from splitMinRows rows), and unsplit.
//   N query rows × H heads (default 16, the mid config) × D 576 (512 latent + 64 RoPE), k selected keys of a
//   4 096-row bf16 kv, distinct per row; medians of CUDA-event times over bursts (bench/harness.ts burstMs)
//   node dist/bench/sparse-mla-fused.js [--heads 16] [--k 1024,2048] [--rows 16,64,256,1024,4096] [--cache fp8|bf16]
import * as T from '../src/tensor/index.js';
import '../src/backend/cuda/index.js';
import { sparseMlaTune } from '../src/backend/cuda/sparse-mla.js';
import { argError, benchDevice, burstMs, distinctRows, fillMlaCache, machine, opt, printTable, randDevice } from './harness.js';

benchDevice('sparse-mla-fused bench');

const list = (name: string, dflt: string): number[] => {
  const v = (opt(name) ?? dflt).split(',').map(Number);
  if (v.some((x) => !Number.isInteger(x) || x < 1)) argError(`${name} must list positive integers, got '${opt(name)}'`);
  return v;
};
const H = list('--heads', '16')[0]!;
const ks = list('--k', '1024,2048');
const rowsList = list('--rows', '16,64,256,1024,4096');
const D = 576;
const DV = 512;
const TK = 4096;
const scale = 1 / Math.sqrt(D);
// --cache fp8|bf16: the queries read a paged latent cache of TK slots through sparseMlaDecode (the engine's
// decode and chunked prefill) instead of dense bf16 rows through sparseMlaPrefill. The FP8 cache takes the
// gathered GEMMs whatever the switches (src/backend/cuda/sparse-mla.ts: the fused kernels measured slower
// there), so its three columns time that one path.
const cacheFormat = opt('--cache');
if (cacheFormat !== undefined && cacheFormat !== 'fp8' && cacheFormat !== 'bf16') argError(`--cache must be fp8 or bf16, got '${cacheFormat}'`);
const kv = randDevice([TK, D], 'bf16', 1, 'cuda');
const cache = cacheFormat ? T.newMlaCache(TK / 64, 64, { format: cacheFormat, device: 'cuda' }) : null;
if (cache) fillMlaCache(cache, TK, DV, D, 5, 'cuda', TK);

const keep = { ...sparseMlaTune };
const out: string[][] = [];
for (const k of ks) {
  for (const N of rowsList) {
    const q = randDevice([N, H, D], 'bf16', 2, 'cuda');
    const idx = T.fromArray(distinctRows(N, k, TK, 3), [N, k], { dtype: 'i32', device: 'cuda' });
    const run = (): void => {
      if (cache) T.sparseMlaDecode(T.reshape(q, [1, N, H, D]), cache, T.reshape(idx, [1, N, k]), scale);
      else T.sparseMlaPrefill(q, kv, idx, scale, { dv: DV });
    };
    const burst = Math.max(1, Math.floor(2048 / N));
    Object.assign(sparseMlaTune, { fused: true, flash: true, split: true, splitMinRows: 1, fusedMinRows: 0, fusedMaxHeads: Math.max(64, H) });
    const flash = burstMs(run, 7, burst);
    Object.assign(sparseMlaTune, { split: false });
    const unsplit = burstMs(run, 7, burst);
    Object.assign(sparseMlaTune, { flash: false });
    const fused = burstMs(run, 7, burst);
    Object.assign(sparseMlaTune, { fused: false });
    const gemm = burstMs(run, 7, burst);
    Object.assign(sparseMlaTune, keep);
    const tflops = (ms: number): string => ((2 * N * H * k * (D + DV)) / (ms * 1e9)).toFixed(1);
    out.push([String(k), String(N), flash.toFixed(3), tflops(flash), unsplit.toFixed(3), fused.toFixed(3), tflops(fused), gemm.toFixed(3), tflops(gemm), (fused / flash).toFixed(2) + '×', (gemm / flash).toFixed(2) + '×']);
    console.error(JSON.stringify({ k, N, H, flashMs: flash, flashUnsplitMs: unsplit, fusedMs: fused, gemmMs: gemm }));
  }
}
console.log(`# sparse MLA, one-pass and two-pass fused kernels vs gathered GEMM, H ${H}, D ${D}, dv ${DV}, bf16 queries, ${cache ? `a paged ${cacheFormat} cache` : 'bf16 rows'} — ${machine()}`);
printTable(['k', 'rows', 'one-pass ms', 'TFLOPS', 'one-pass unsplit ms', 'two-pass ms', 'TFLOPS', 'gathered GEMM ms', 'TFLOPS', 'two-pass / one-pass', 'GEMM / one-pass'], out);
