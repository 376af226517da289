// DSA indexer benchmarks on the GPU (issue 11), with PyTorch's numbers from bench/dsa_indexer_ref.py run
// by this script in the same command on the same GPU. Medians of CUDA-event-timed bursts.
//   topkSelect   [64, 9295] and [4096, 131072], k 2048 (targets: ≤ 30 µs and ≥ 3.5× torch.topk at
//                [64, 9295]); also with causal ranges (row r of a 4096-query prefill sees r + 1 + offset keys)
//   indexerLogits   s_q × s_kv × 64 heads × 128 (target ≥ 600 TFLOPS; FLOPs = 2·s_q·s_kv·H·128 over the
//                whole [s_q, s_kv] rectangle), on each CUDA path (src/backend/cuda/dsa-indexer.ts): the
//                fused wgmma kernels, the FP8 cuBLASLt GEMM + reduce, the CUDA-core kernels;
//                s_q defaults to 256 because the CUDA-core kernels are slow (--full runs the 4096),
//                and a causal case (query i of the chunk sees the first s_kv − s_q + i + 1 keys)
//   indexerLogitsPaged   decode, b 64, next_n 1 and 2, context 32K, 64 heads (GB/s of key cache read)
//   indexerCacheWrite    4096 keys at scattered slots
//   node dist/bench/dsa-indexer.js [--full] [--no-torch] [--torch FILE] [--out result.json]
import { readFileSync, writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { indexerTune } from '../src/backend/cuda/dsa-indexer.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { args, benchDevice, burstMs, heldBurstMs, opt, printTable, runReference, randDevice } from './harness.js';

benchDevice('dsa-indexer bench');
const b = cudaBackend();
const full = args.includes('--full');

const med = (fn: () => void, reps = 20, warm = 3, burst = 5): number => burstMs(fn, reps, burst, warm); // ms

const rand = (shape: number[], seed: number, scale = 1): T.Tensor => randDevice(shape, 'f32', seed, 'cuda', scale);
type Path = 'mma' | 'gemm' | 'cores';
const PATHS: Path[] = ['mma', 'gemm', 'cores'];
/** The same measurement on one CUDA path of the indexer's logits. */
function onPath<R>(p: Path, f: () => R): R {
  const keep = { ...indexerTune };
  indexerTune.mma = p === 'mma';
  indexerTune.gemm = p === 'gemm';
  try {
    return f();
  } finally {
    Object.assign(indexerTune, keep);
  }
}
const i32 = (a: ArrayLike<number>, shape = [a.length]): T.Tensor => T.fromBits(Int32Array.from(a), 'i32', shape, { device: 'cuda' });

const TOPK: [number, number, number][] = [[64, 9295, 2048], [4096, 131072, 2048]];
const SQ = full ? 4096 : 256;
const LOGITS: [number, number, number][] = [[SQ, 32768, 64], [SQ, 131072, 64]];

let torch: Record<string, any> | string | null = null;
if (opt('--torch')) torch = JSON.parse(readFileSync(opt('--torch')!, 'utf8'));
else if (!args.includes('--no-torch')) {
  const r = runReference('dsa_indexer_ref.py', { topk: TOPK, logits: LOGITS });
  torch = r.error ? `python3 could not be run (${r.error.message})` : r.status !== 0 ? `dsa_indexer_ref.py failed: ${r.stderr.trim().split('\n').pop()}` : JSON.parse(r.stdout);
}
const tref = typeof torch === 'object' && torch ? torch : null;
if (typeof torch === 'string') console.log(`torch reference: ${torch}`);

const result: Record<string, unknown> = { date: new Date().toISOString(), device: b.rt.info.name, torch: tref?.torch, deepGemm: tref?.deep_gemm };

// ---- top-k ------------------------------------------------------------------------------------------------
{
  const rows: string[][] = [];
  const out: Record<string, unknown> = {};
  for (const [R, N, k] of TOPK) {
    const x = rand([R, N], 1);
    const ms = med(() => T.topkSelect(x, k));
    // the kernel alone: the same calls enqueued behind a hold, so the host's per-op cost is not in the time
    const dev = heldBurstMs(() => T.topkSelect(x, k), 20, 5, 3);
    // causal prefill ranges: row r sees the first N − R + r + 1 columns
    const ends = i32(Array.from({ length: R }, (_, r) => Math.max(1, N - R + r + 1)));
    const msCausal = med(() => T.topkSelect(x, k, { end: ends }));
    const ref = tref?.topk?.[`${R}x${N}/${k}`];
    out[`${R}x${N}/${k}`] = { ms, deviceMs: dev, msCausal, torchSorted: ref?.sorted, torchUnsorted: ref?.unsorted };
    rows.push([`[${R}, ${N}] k ${k}`, (ms * 1e3).toFixed(1), Number.isNaN(dev) ? '—' : (dev * 1e3).toFixed(1), (msCausal * 1e3).toFixed(1), ref ? (ref.sorted * 1e3).toFixed(1) : '—', ref ? (ref.unsorted * 1e3).toFixed(1) : '—',
      ref ? `${(ref.unsorted / ms).toFixed(2)}×` : '—']);
    (x.storage as { dispose?: () => void }).dispose?.();
  }
  console.log(`\n## topkSelect on ${b.rt.info.name} (µs, median of CUDA-event bursts)`);
  printTable(['shape', 'topkSelect', 'kernel alone (held stream)', 'causal ranges', 'torch.topk sorted', 'torch.topk unsorted', 'speed-up vs unsorted'], rows);
  result.topk = out;
}

// ---- logits ------------------------------------------------------------------------------------------------
{
  const rows: string[][] = [];
  const out: Record<string, unknown> = {};
  for (const [sq, skv, H] of LOGITS) {
    const q = T.cast(rand([sq, H, 128], 2, 32), 'f8e4m3');
    const k = T.cast(rand([skv, 128], 3, 32), 'f8e4m3');
    const ks = T.adds(T.abs(rand([skv], 4)), 0.01);
    const w = rand([sq, H], 5);
    const ref = tref?.logits?.[`${sq}x${skv}x${H}`];
    for (const causal of [false, true]) {
      const s = i32(new Array(sq).fill(0));
      const e = i32(Array.from({ length: sq }, (_, i) => (causal ? skv - sq + i + 1 : skv)));
      const call = (): void => void T.indexerLogits(q, k, ks, w, s, e);
      // FLOPs of the keys each query sees (the whole rectangle, or its causal part)
      const flops = 2 * H * 128 * (causal ? sq * (skv - sq) + (sq * (sq + 1)) / 2 : sq * skv);
      const ms = Object.fromEntries(PATHS.map((p) => [p, onPath(p, () => med(call, p === 'cores' ? 3 : full ? 3 : 5, 1, 1))])) as Record<Path, number>;
      const tf = (m: number): string => `${m.toFixed(2)} (${(flops / m / 1e9).toFixed(0)})`;
      out[`${sq}x${skv}x${H}${causal ? '/causal' : ''}`] = { ms, tflops: Object.fromEntries(PATHS.map((p) => [p, flops / ms[p] / 1e9])), torchPlain: causal ? undefined : ref?.torch_plain, deepGemm: causal ? undefined : ref?.deep_gemm };
      rows.push([`${sq} × ${skv} × ${H}${causal ? ' causal' : ''}`, tf(ms.mma), tf(ms.gemm), tf(ms.cores), `${(ms.gemm / ms.mma).toFixed(2)}×`,
        !causal && ref ? tf(ref.torch_plain) : '—', !causal && ref?.deep_gemm ? tf(ref.deep_gemm) : '—']);
    }
  }
  console.log(`\n## indexerLogits (ms (TFLOPS); target ≥ 600 TFLOPS)${full ? '' : ' at s_q 256 (--full for 4096)'}`);
  printTable(['s_q × s_kv × H', 'fused wgmma', 'FP8 GEMM + reduce', 'CUDA cores', 'fused vs GEMM', 'torch bf16 plain', 'DeepGEMM'], rows);
  result.logits = out;
}

// ---- paged decode logits and the cache writer ----------------------------------------------------------------
{
  const rows: string[][] = [];
  const out: Record<string, unknown> = {};
  const B = 64;
  const ctx = 32768;
  const H = 64;
  const maxBlocks = ctx / 64;
  const cache = T.indexerCache(B * maxBlocks, 128, b);
  const table = i32(Array.from({ length: B * maxBlocks }, (_, i) => (i * 7919) % (B * maxBlocks)), [B, maxBlocks]);
  const keys = T.cast(rand([B * maxBlocks * 64, 128], 6, 32), 'f8e4m3');
  const kscale = T.adds(T.abs(rand([B * maxBlocks * 64], 7)), 0.01);
  const slots = i32(Array.from({ length: B * maxBlocks * 64 }, (_, i) => i));
  T.indexerCacheWrite(cache, keys, kscale, slots);
  for (const N of [1, 2]) {
    const q = T.cast(rand([B, N, H, 128], 8, 32), 'f8e4m3');
    const w = rand([B, N, H], 9);
    const lens = i32(new Array(B).fill(ctx));
    const call = (): void => void T.indexerLogitsPaged(q, cache, w, table, lens, ctx);
    const ms = Object.fromEntries(PATHS.map((p) => [p, onPath(p, () => med(call, p === 'mma' ? 20 : 5, 1, 1))])) as Record<Path, number>;
    const gb = (B * ctx * 132) / ms.mma / 1e6;
    out[`paged b${B} n${N} ctx${ctx}`] = { ms, cacheGBs: gb, tflops: (2 * B * N * ctx * H * 128) / ms.mma / 1e9 };
    rows.push([`paged logits b ${B}, next_n ${N}, ctx ${ctx}, H ${H}`, (ms.mma * 1e3).toFixed(1),
      `${gb.toFixed(0)} GB/s cache, ${((2 * B * N * ctx * H * 128) / ms.mma / 1e9).toFixed(1)} TFLOPS; FP8 GEMM + reduce ${(ms.gemm * 1e3).toFixed(1)} µs, CUDA cores ${(ms.cores * 1e3).toFixed(1)} µs`]);
  }
  const T4 = 4096;
  const k4 = T.cast(rand([T4, 128], 10, 32), 'f8e4m3');
  const s4 = T.adds(T.abs(rand([T4], 11)), 0.01);
  const sl4 = i32(Array.from({ length: T4 }, (_, i) => (i * 104729) % (B * maxBlocks * 64)));
  const msw = med(() => T.indexerCacheWrite(cache, k4, s4, sl4));
  out.cacheWrite4096 = { ms: msw };
  rows.push([`cache write, ${T4} keys at scattered slots`, (msw * 1e3).toFixed(1), `${((T4 * 132) / msw / 1e6).toFixed(0)} GB/s`]);
  console.log('\n## paged indexer cache (µs)');
  printTable(['case', 'µs (fused wgmma)', 'rate'], rows);
  result.paged = out;
}

if (opt('--out')) writeFileSync(opt('--out')!, JSON.stringify(result, null, 2));
