// Sparse MLA forward benchmark (issue 11: the "Sparse prefill" and "Sparse decode, FP8 cache" rows), with
// PyTorch references from bench/sparse_mla_ref.py timed in the same command on the same GPU.
//   prefill: s_q 4096, s_kv 8K / 32K / 128K, k 2048, h 128, bf16 q and kv; FLOPs = 2·s_q·h·k·(576+512)
//   decode:  b 64 / 128, s_q 1 / 2, h 128, k 2048, FP8 cache (656 B/token) and the bf16 cache, page 64,
//            ctx tokens per sequence (default 8192) scattered over the cache by a random block table;
//            "TFLOPS-equivalent" = 2·b·s_q·h·k·(576+512) / time
// Medians of CUDA-event times (bursts of back-to-back calls between two events, as bench/cuda-bench.ts).
// Indices are distinct per query row, uniformly random over the keys (over each sequence's own positions
// for decode), so the gathers are as scattered as top-k selections at long context.
// "ours" is the default path: at these 128 heads the wgmma kernel (kernels/sparse_mla_wgmma.cu, 64 heads a
// CTA, each selected row gathered or decoded once per CTA); the path without it (sparseMlaTune.wg off: the
// gathered rows and two batched cuBLASLt GEMMs of kernels/sparse_mla_gemm.cu, the default before) is timed
// beside it on the same inputs.
//   node dist/bench/sparse-mla.js [--torch ref.json | --no-torch] [--out result.json] [--ctx 8192] [--quick]
//   node dist/bench/sparse-mla.js --device cpu      (tiny shapes on the CPU reference; says so)
// Without --torch the reference runs here: python3 (or $DSV32_PYTHON) bench/sparse_mla_ref.py.
import { readFileSync, writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { sparseMlaTune } from '../src/backend/cuda/sparse-mla.js';
import { args, benchDevice, burstMs, dispose, distinctRows, fillMlaCache, machine, mulberry32, opt, printTable, runReference, randDevice } from './harness.js';

const { device, onCpu } = benchDevice('sparse-mla bench', 'run with --device cpu for the tiny CPU shapes');
const quick = args.includes('--quick');
const D = 576;
const DV = 512;
const H = onCpu ? 16 : 128;
const K = onCpu ? 100 : 2048;
const PAGE = 64;
const ctx = Number(opt('--ctx') ?? (onCpu ? 300 : 8192));
const PREFILL = onCpu ? [{ s_q: 8, s_kv: 500, k: K, h: H }] : (quick ? [8192] : [8192, 32768, 131072]).map((s_kv) => ({ s_q: 4096, s_kv, k: K, h: H }));
const DECODE = onCpu ? [{ b: 2, s_q: 2, h: H, k: K, ctx }] : (quick ? [[64, 1]] : [[64, 1], [64, 2], [128, 1], [128, 2]]).map(([b, s_q]) => ({ b: b!, s_q: s_q!, h: H, k: K, ctx }));

// ---- timing ---------------------------------------------------------------------------------------------
/** Median ms per call: CUDA events around bursts of `burst` calls (host clock on the CPU). */
const timeMs = (fn: () => void, reps: number, burst: number): number => burstMs(fn, reps, burst, 1, onCpu);
/** The same call without the wgmma kernel (sparseMlaTune.wg off: the gathered-GEMM path). */
function withoutWgMs(fn: () => void, reps: number, burst: number): number | undefined {
  if (onCpu) return undefined;
  const keep = sparseMlaTune.wg;
  sparseMlaTune.wg = false;
  try {
    return timeMs(fn, reps, burst);
  } finally {
    sparseMlaTune.wg = keep;
  }
}

// ---- inputs ---------------------------------------------------------------------------------------------
const rand = (shape: number[], dtype: T.DType, seed: number): T.Tensor => randDevice(shape, dtype, seed, device);

// ---- the torch reference, same command ------------------------------------------------------------------
type Row = Record<string, number | string | boolean>;
let torch: { device?: string; torch?: string; flash_mla?: boolean; prefill: Row[]; decode: Row[] } | null = null;
let torchNote = '';
if (onCpu || args.includes('--no-torch')) torchNote = onCpu ? 'no torch reference on the CPU run' : 'torch reference skipped (--no-torch)';
else if (opt('--torch')) torch = JSON.parse(readFileSync(opt('--torch')!, 'utf8'));
else {
  const r = runReference('sparse_mla_ref.py', { prefill: PREFILL, decode: DECODE }, process.env.DSV32_PYTHON ?? 'python3');
  if (r.error || r.status !== 0) torchNote = `torch reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-2).join(' / ')}`;
  else torch = JSON.parse(r.stdout);
}

// ---- prefill --------------------------------------------------------------------------------------------
const result: Record<string, unknown> = { date: new Date().toISOString().slice(0, 10), machine: machine(), device: onCpu ? 'cpu (tiny shapes, CPU reference)' : cudaBackend().rt.info.name, torch: torch ? { device: torch.device, version: torch.torch, flash_mla: torch.flash_mla } : torchNote };
const rows: string[][] = [];
const fmt = (x: unknown, d = 3): string => (typeof x === 'number' ? (onCpu && d === 1 ? x.toExponential(2) : x.toFixed(d)) : '—');
const prefillOut: Row[] = [];
for (const [pi, p] of PREFILL.entries()) {
  const scale = D ** -0.5;
  const q = rand([p.s_q, p.h, D], 'bf16', 1);
  const kv = rand([p.s_kv, D], 'bf16', 2);
  const idx = T.fromArray(distinctRows(p.s_q, p.k, p.s_kv, 3 + pi), [p.s_q, p.k], { dtype: 'i32', device });
  let res: { out: T.Tensor; lse: T.Tensor } | null = null;
  const call = (): void => {
    if (res) dispose(res.out, res.lse);
    res = T.sparseMlaPrefill(q, kv, idx, scale);
  };
  const ms = timeMs(call, onCpu ? 3 : quick ? 3 : 5, 1);
  const kms = withoutWgMs(call, 3, 1);
  const flops = 2 * p.s_q * p.h * p.k * (D + DV);
  const ref = torch?.prefill?.[pi];
  const row: Row = { ...p, ms, tflops: flops / ms / 1e9, ...(kms !== undefined ? { without_wg_ms: kms } : {}), ...(ref ?? {}) };
  prefillOut.push(row);
  rows.push([`prefill s_kv ${p.s_kv}`, `s_q ${p.s_q} h ${p.h} k ${p.k}`, fmt(ms), fmt(row.tflops, 1), fmt(kms), fmt(ref?.torch_sparse_ms), fmt(ref?.torch_sparse_tflops, 1),
    ref?.dense_sdpa_ms !== undefined ? `${fmt(ref.dense_sdpa_ms)} (${ref.dense_sdpa_backend})` : ref?.dense_sdpa_error ? 'failed' : '—', fmt(ref?.dense_matmul_ms), fmt(ref?.flashmla_tflops, 1)]);
  dispose(q, kv, idx);
  if (res) dispose((res as { out: T.Tensor }).out, (res as { lse: T.Tensor }).lse);
}
result.prefill = prefillOut;

// ---- where the default kernel's prefill time goes (not with --quick) -------------------------------------
// the same 4096 × 128-head prefill at s_kv 8192 with indices that keep the kernel's work but not its loads:
// every entry a hole but the last (all 32 key tiles run through the tensor cores, no row is gathered), and
// every entry of a query the same row (the rows come from L2 at once)
const probes: Row[] = [];
if (!onCpu && !quick) {
  const p = { s_q: 4096, s_kv: 8192, k: K, h: H };
  const scale = D ** -0.5;
  const q = rand([p.s_q, p.h, D], 'bf16', 1);
  const kv = rand([p.s_kv, D], 'bf16', 2);
  for (const [name, entry] of [['every entry a hole but the last', (n: number, j: number) => (j === p.k - 1 ? (n * 7) % p.s_kv : -1)],
    ['every entry of a query one row', (n: number) => (n * 7) % p.s_kv]] as const) {
    const idx = T.fromArray(Int32Array.from({ length: p.s_q * p.k }, (_, i) => entry(Math.floor(i / p.k), i % p.k)), [p.s_q, p.k], { dtype: 'i32', device });
    let res: { out: T.Tensor; lse: T.Tensor } | null = null;
    const ms = timeMs(() => {
      if (res) dispose(res.out, res.lse);
      res = T.sparseMlaPrefill(q, kv, idx, scale);
    }, 5, 1);
    const tflops = (2 * p.s_q * p.h * p.k * (D + DV)) / ms / 1e9;
    probes.push({ ...p, probe: name, ms, tflops_equivalent: tflops });
    rows.push([`prefill probe: ${name}`, `s_q ${p.s_q} h ${p.h} k ${p.k}`, fmt(ms), fmt(tflops, 1), '—', '—', '—', '—', '—', '—']);
    dispose(idx);
    if (res) dispose((res as { out: T.Tensor }).out, (res as { lse: T.Tensor }).lse);
  }
  dispose(q, kv);
}
result.prefill_probes = probes;

// ---- decode ---------------------------------------------------------------------------------------------
const decodeOut: Row[] = [];
for (const [di, p] of DECODE.entries()) {
  const scale = D ** -0.5;
  const per = Math.ceil(p.ctx / PAGE);
  const blocks = p.b * per;
  // a block table scattering each sequence's pages over the cache
  const rnd = mulberry32(50 + di);
  const table = Int32Array.from({ length: blocks }, (_, i) => i);
  for (let i = blocks - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [table[i], table[j]] = [table[j]!, table[i]!];
  }
  const slotOf = (seq: number, t: number): number => table[seq * per + Math.floor(t / PAGE)]! * PAGE + (t % PAGE);
  const idx = T.fromArray(distinctRows(p.b * p.s_q, p.k, p.ctx, 60 + di, (r, t) => slotOf(Math.floor(r / p.s_q), t)), [p.b, p.s_q, p.k], { dtype: 'i32', device });
  const q = rand([p.b, p.s_q, p.h, D], 'bf16', 4);
  const row: Row = { ...p, page: PAGE };
  for (const format of ['fp8', 'bf16'] as const) {
    const cache = T.newMlaCache(blocks, PAGE, { format, device });
    // fill the cache through the writer, in chunks of tokens (every slot of the cache)
    const CH = onCpu ? 256 : 65536;
    fillMlaCache(cache, blocks * PAGE, DV, D, 5, device, CH);
    let res: { out: T.Tensor; lse: T.Tensor } | null = null;
    const call = (): void => {
      if (res) dispose(res.out, res.lse);
      res = T.sparseMlaDecode(q, cache, idx, scale);
    };
    const ms = timeMs(call, onCpu ? 3 : 20, onCpu ? 1 : 5);
    row[`${format}_ms`] = ms;
    const kms = withoutWgMs(call, 5, 2);
    if (kms !== undefined) row[`${format}_without_wg_ms`] = kms;
    row[`${format}_tflops`] = (2 * p.b * p.s_q * p.h * p.k * (D + DV)) / ms / 1e9;
    row[`${format}_cache_GBps`] = (p.b * p.s_q * p.k * T.mlaCacheBytesPerToken(format)) / ms / 1e6; // bytes of the selected rows read per call
    dispose(cache);
    if (res) dispose((res as { out: T.Tensor }).out, (res as { lse: T.Tensor }).lse);
  }
  const ref = torch?.decode?.[di];
  Object.assign(row, ref ?? {});
  decodeOut.push(row);
  rows.push([`decode b ${p.b} s_q ${p.s_q}`, `h ${p.h} k ${p.k} ctx ${p.ctx}`, `${fmt(row.fp8_ms)} (bf16 cache ${fmt(row.bf16_ms)})`, `${fmt(row.fp8_tflops, 1)} (${fmt(row.bf16_tflops, 1)})`, `${fmt(row.fp8_without_wg_ms)} (${fmt(row.bf16_without_wg_ms)})`,
    fmt(ref?.torch_sparse_bf16_ms), fmt(ref?.torch_sparse_bf16_tflops, 1), '—', '—', '—']);
  dispose(q, idx);
}
result.decode = decodeOut;

console.log(`sparse MLA forward — ${result.device}; ${machine()}${torch ? `; torch ${torch.torch} on ${torch.device}${torch.flash_mla ? ', FlashMLA present' : ''}` : `; ${torchNote}`}`);
if (onCpu) console.log('CPU run: tiny shapes on the CPU reference, not the issue\'s shapes (those need the GPU)');
printTable(['case', 'shape', 'ours ms', 'ours TFLOPS', 'without wgmma kernel ms', 'torch sparse ms', 'torch sparse TFLOPS', 'dense SDPA ms', 'dense matmul ms', 'FlashMLA TFLOPS'], rows);
if (opt('--out')) writeFileSync(opt('--out')!, JSON.stringify(result, null, 2));
