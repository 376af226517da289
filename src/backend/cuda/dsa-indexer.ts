// CUDA launchers of the DSA indexer operations (kernels/dsa_indexer.cu, kernels/dsa_indexer_mma.cu,
// kernels/dsa_indexer_gemm.cu, topk_select_f32 and causal_select in kernels/topk.cu).
// Contracts: src/tensor/ops/dsa-indexer.ts; CPU reference: src/backend/cpu/dsa-indexer.ts. The op layer
// hands over contiguous inputs; here only what the kernels need beyond that is checked (D = 128, H ≤ 128,
// 16-byte alignment of the e4m3 rows, which are read as uint4).
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import { ITEMSIZE } from '../../tensor/dtype.js';
import { numelOf } from '../../tensor/tensor.js';
import type { CudaBackend, CudaStorage } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { Arg, Kernel, ParamKind } from './launch.js';
import { gemmPathOn } from './gemm-switch.js';

const SIG: Record<string, readonly ParamKind[]> = {
  indexer_logits: ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'],
  indexer_logits_paged: ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p'],
  indexer_cache_write: ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p'],
  topk_select_f32: ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'i64', 'i64', 'i64', 'p'],
  causal_select: ['i64', 'i64', 'p', 'p', 'i64', 'i64', 'p'],
  indexer_gather_keys: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p'],
  indexer_reduce: ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'i64', 'i64', 'p'],
};
/** The fused wgmma kernels' instances (kernels/dsa_indexer_mma.cu): heads H × B-tile columns NT. */
const MMA_INSTANCES = ['4_64', '8_64', '16_64', '32_64', '64_64', '16_256', '32_256', '64_256', '128_256'] as const;
const MMA_SIG = {
  dense: ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'] as const,
  paged: ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p'] as const,
};

/**
 * Path choice, for tests and benchmarks, tried in this order. mma: the fused FP8 wgmma kernels of
 * kernels/dsa_indexer_mma.cu (H in 4, 8, 16, 32, 64, 128), which keep the per-head scores in registers;
 * on by default since their first GPU run (H100, 2026-12-07): the indexer tests of every path against the
 * CPU (16 of 16), the model's goldens, ragged steps and engine tests on CUDA with them on (15 of 15), and
 * the logits of 4096 queries × 131072 keys × 64 heads in 19.1 ms (460 TFLOPS) against 103.3 ms on the
 * gemm path (5.4×) and 384.5 ms for torch's bf16 einsum; other heads fall through to gemm. gemm: the per-head dot products as one FP8 cuBLASLt GEMM per
 * sequence (and chunk of queries) with f32 output, then kernels/dsa_indexer_gemm.cu's reduce; neither: the
 * CUDA-core kernels of dsa_indexer.cu. gemm is on by default since 2026-12-06. Its logits are 1.1e-4–2.7e-4
 * relative from the exact f32 reference on an H100 (2026-12-05; Hopper's FP8 MMA accumulates with ~14
 * mantissa bits, and DeepGEMM's fp8_mqa_logits, the official kernel, shares this), where the CUDA-core
 * kernels stay within 1e-5, so a near-tied key can be selected differently from the CPU backend. It
 * was made the default once the model's goldens (tiny-f32 and tiny-fp8 in f32: every top-k set
 * identical; tiny-bf16 in bf16), the ragged steps and the engine's CUDA tests all passed with it on (H100,
 * 2026-12-06). Its speed (H100, 2026-12-06, bench/dsa-cost.ts --indexer-gemm): the logits of 1024
 * queries over 131072 keys, 64 heads, in 25.9 ms against 220.5 ms for the CUDA-core kernels on an H100
 * the day before (8.5×); it is what makes DSA prefill cheaper than dense. DSV32_CUDA_GEMM (gemm-switch.ts)
 * turns it off for a whole run.
 */
/** scoreBytes: bytes of the f32 per-head score block S [rows·H, keys] per GEMM (bounds the temporary at long
 * context; tests lower it to run many query chunks at small shapes). */
export const indexerTune = { mma: gemmPathOn('indexer-mma', true), gemm: gemmPathOn('indexer', true), scoreBytes: 1 << 30 };

const MMA_CHUNK = 2048;
const MMA_THREADS = 256;
/**
 * Keys per CTA of the fused kernel and its grid: 2048 (each CTA loads its q block once per chunk), fewer
 * (down to 256, multiples of 64) when the query blocks × chunks would not give every SM two CTAs — a
 * decode step of a small batch has a query block or two per sequence, and its keys are then split wider.
 */
function mmaGrid(be: CudaBackend, width: number, blocks: number): { chunk: number; x: number; y: number } {
  const y = Math.min(blocks, MAX_GRID_Y);
  let chunk = MMA_CHUNK;
  const want = 2 * be.rt.info.multiprocessors;
  if (y * Math.ceil(width / chunk) < want) chunk = Math.max(256, Math.min(MMA_CHUNK, Math.ceil((width * y) / want / 64) * 64));
  return { chunk, x: Math.ceil(width / chunk), y };
}

/**
 * The fused kernel's B-tile columns NT for H heads and `perBlock` queries that may share a tile (a
 * sequence's next_n in the paged op, any number in the dense one): 64 when that many queries' heads fit
 * 64 columns (decode) or H ≤ 8 (where 256 columns would be 32–64 queries' partial sums per thread), else
 * 256 (more queries share each key tile). Also the CPU emulation's choice (scripts/kernel-emu).
 */
export const mmaColumns = (H: number, perBlock: number): 64 | 256 => (perBlock * H > 64 && H >= 16 ? 256 : 64);
/** The fused kernel for these heads and queries, its queries per B tile and shared memory; null when no instance has these heads. */
function mmaKernel(be: CudaBackend, H: number, perBlock: number, paged: boolean): { k: Kernel; qb: number; smem: number } | null {
  if (!indexerTune.mma) return null;
  const nt = mmaColumns(H, perBlock);
  if (!(MMA_INSTANCES as readonly string[]).includes(`${H}_${nt}`)) return null;
  const name = `indexer_logits_mma${paged ? '_paged' : ''}_h${H}_n${nt}`;
  const k = be.rt.modules.get('dsa_indexer_mma', name, paged ? MMA_SIG.paged : MMA_SIG.dense);
  const qb = nt / H;
  // 1024 (alignment of the swizzled tiles) + q block + two warpgroups' four-stage key rings + w + ranges
  const smem = 1024 + nt * D + 2 * 4 * 64 * D + 4 * nt + 8 * qb;
  k.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  return { k, qb, smem };
}

const units = new WeakMap<CudaBackend, CudaStorage>();
/** A device f32 1.0: the per-tensor scale of both GEMM operands (the real scales are applied in the reduce). */
function unit(be: CudaBackend): View {
  let u = units.get(be);
  if (!u) {
    u = be.alloc('f32', 1);
    be.fill({ storage: u, dtype: 'f32', shape: [1], strides: [1], offset: 0 }, 1);
    units.set(be, u);
  }
  return { storage: u, dtype: 'f32', shape: [1], strides: [1], offset: 0 };
}

const view = (storage: CudaStorage | View['storage'], dtype: View['dtype'], shape: number[], offset: number): View => {
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return { storage, dtype, shape, strides, offset } as View;
};

/**
 * S = q rows [n·H, 128] · keysᵀ, then the reduce into out rows row0 … row0 + n − 1. Returns false when
 * cuBLASLt has no FP8 algorithm for the shape (nothing written yet then).
 */
function gemmRows(be: CudaBackend, S: CudaStorage, q: View, qRow: number, n: number, H: number, keys: View, ld: number, cols: number,
  reduceArgs: (sPtr: number) => Arg[]): boolean {
  const sView = view(S, 'f32', [n * H, ld], 0);
  const x = view(q.storage, 'f8e4m3', [n * H, D], q.offset + qRow * H * D);
  if (!be.fp8Linear(sView, x, keys, unit(be), unit(be), 'tensor')) return false;
  kernel(be, 'dsa_indexer_gemm', 'indexer_reduce').launch(Math.ceil(cols / 256), 256, 0, reduceArgs(be.address(sView)), n);
  return true;
}

const D = 128;
const CHUNK = 256;
const THREADS = 256;
const MAX_GRID_Y = 65535;

function kernel(be: CudaBackend, file: string, name: keyof typeof SIG) {
  return be.rt.modules.get(file, name, SIG[name]!);
}

/** A 16-byte aligned device copy of v when its address is not (views with an odd offset). */
function aligned16(be: CudaBackend, v: View): { ptr: number; tmp: CudaStorage | null } {
  const p = be.address(v);
  if (p % 16 === 0) return { ptr: p, tmp: null };
  const n = numelOf(v.shape);
  const s = be.alloc(v.dtype, n);
  be.copy({ storage: s, dtype: v.dtype, shape: v.shape, strides: v.strides, offset: 0 }, v);
  return { ptr: s.ptr, tmp: s };
}

function logitsSmem(be: CudaBackend, H: number, op: string): number {
  if (H > 128) throw new DsvError(`${op} on cuda: at most 128 heads, got ${H}`);
  const smem = 4 * (H * D + 32 * 132 + 32 * (H + 1) + H);
  if (smem > be.rt.info.maxSharedPerBlockOptin) throw new DsvError(`${op} on cuda: ${smem} bytes of shared memory needed, the device allows ${be.rt.info.maxSharedPerBlockOptin}`);
  return smem;
}

export function indexerLogitsCuda(be: CudaBackend, out: View, q: View, k: View, kScale: View, w: View, start: View, end: View): void {
  const [Tq, H, Dq] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  if (Dq !== D) throw new DsvError(`indexerLogits on cuda: head dim must be ${D}, got ${Dq}`);
  if (Tq === 0 || Tk === 0) return;
  const mma = mmaKernel(be, H, Tq, false);
  if (mma) {
    const qa = aligned16(be, q);
    const ka = aligned16(be, k);
    const g = mmaGrid(be, Tk, Math.ceil(Tq / mma.qb));
    mma.k.launch(g.x, MMA_THREADS, mma.smem, [Tq, Tk, g.chunk, qa.ptr, be.address(w), ka.ptr, be.address(kScale), be.address(start), be.address(end), be.address(out)], g.y);
    qa.tmp?.dispose();
    ka.tmp?.dispose();
    return;
  }
  if (indexerTune.gemm && Tk % 16 === 0 && be.address(q) % 16 === 0 && be.address(k) % 16 === 0) {
    const qc = Math.max(1, Math.min(Tq, Math.floor(indexerTune.scoreBytes / (4 * H * Tk))));
    const S = be.alloc('f32', qc * H * Tk);
    try {
      let ok = true;
      for (let j0 = 0; j0 < Tq && ok; j0 += qc) {
        const n = Math.min(qc, Tq - j0);
        ok = gemmRows(be, S, q, j0, n, H, k, Tk, Tk, (sp) => [n, H, Tk, Tk, j0, Tk, sp, be.address(w), be.address(kScale), be.address(start), be.address(end), 0, 0, 0, be.address(out)]);
        if (!ok && j0 > 0) throw new DsvError('indexerLogits on cuda: cuBLASLt refused a chunk after accepting the first');
      }
      if (ok) return;
    } finally {
      S.dispose();
    }
  }
  const smem = logitsSmem(be, H, 'indexerLogits');
  const kk = kernel(be, 'dsa_indexer', 'indexer_logits');
  if (smem > 46 * 1024) kk.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  const qa = aligned16(be, q);
  const ka = aligned16(be, k);
  kk.launch(Math.ceil(Tk / CHUNK), THREADS, smem, [Tq, H, Tk, qa.ptr, be.address(w), ka.ptr, be.address(kScale), be.address(start), be.address(end), be.address(out)],
    Math.min(Tq, MAX_GRID_Y));
  qa.tmp?.dispose();
  ka.tmp?.dispose();
}

export function indexerLogitsPagedCuda(be: CudaBackend, out: View, q: View, cache: View, w: View, blockTable: View, contextLens: View): void {
  const [B, N, H, Dq] = q.shape as [number, number, number, number];
  if (Dq !== D) throw new DsvError(`indexerLogitsPaged on cuda: head dim must be ${D}, got ${Dq}`);
  const maxCtx = out.shape[1]!;
  const rows = B * N;
  if (rows === 0 || maxCtx === 0) return;
  const mma = mmaKernel(be, H, N, true);
  if (mma) {
    const qa = aligned16(be, q);
    const ca = aligned16(be, cache);
    const g = mmaGrid(be, maxCtx, B * Math.ceil(N / mma.qb));
    mma.k.launch(g.x, MMA_THREADS, mma.smem, [rows, maxCtx, g.chunk, N, blockTable.shape[1]!, cache.shape[0]!, qa.ptr, be.address(w), ca.ptr,
      be.address(blockTable), be.address(contextLens), be.address(out)], g.y);
    qa.tmp?.dispose();
    ca.tmp?.dispose();
    return;
  }
  if (indexerTune.gemm && be.address(q) % 16 === 0 && be.address(cache) % 16 === 0) {
    // each sequence's keys in position order, then one GEMM per sequence (and chunk of its queries)
    const ctxPad = Math.ceil(maxCtx / 16) * 16;
    const K = be.alloc('f8e4m3', B * ctxPad * D);
    const KS = be.alloc('f32', B * ctxPad);
    const qc = Math.max(1, Math.min(N, Math.floor(indexerTune.scoreBytes / (4 * H * ctxPad))));
    const S = be.alloc('f32', qc * H * ctxPad);
    try {
      const maxBlocks = blockTable.shape[1]!;
      kernel(be, 'dsa_indexer_gemm', 'indexer_gather_keys').launch(Math.ceil((B * ctxPad * 32) / 256), 256, 0,
        [B, ctxPad, maxBlocks, cache.shape[0]!, be.address(cache), be.address(blockTable), be.address(contextLens), be.address(view(K, 'f8e4m3', [1], 0)), be.address(view(KS, 'f32', [1], 0))]);
      let ok = true;
      for (let b = 0; b < B && ok; b++) {
        const ks = be.address(view(KS, 'f32', [ctxPad], b * ctxPad));
        for (let j0 = 0; j0 < N && ok; j0 += qc) {
          const n = Math.min(qc, N - j0);
          const row0 = b * N + j0;
          // causal bound from the host-known width alone: query j sees keys < ctx[b] − N + j + 1 ≤ maxCtx − N + j + 1,
          // so this chunk's GEMM needs only the first maxCtx − N + j0 + n keys (a 16-multiple for the FP8 GEMM).
          // A long prefill's chunks then multiply and write half the score block on average: the block is
          // f32 [n·H, keys] written and read once (1 GiB a chunk), which bounds this op (~41 ms over the mid
          // config's four layers at 16 384 tokens on an H100, 2026-12-06, before the bound).
          const kc = Math.min(ctxPad, Math.max(16, Math.ceil((maxCtx - N + j0 + n) / 16) * 16));
          const kv = view(K, 'f8e4m3', [kc, D], b * ctxPad * D);
          ok = gemmRows(be, S, q, row0, n, H, kv, kc, maxCtx, (sp) => [n, H, maxCtx, kc, row0, maxCtx, sp, be.address(w), ks, 0, 0, be.address(contextLens), b, N, be.address(out)]);
          if (!ok && (b > 0 || j0 > 0)) throw new DsvError('indexerLogitsPaged on cuda: cuBLASLt refused a GEMM after accepting the first');
        }
      }
      if (ok) return;
    } finally {
      K.dispose();
      KS.dispose();
      S.dispose();
    }
  }
  const smem = logitsSmem(be, H, 'indexerLogitsPaged');
  const kk = kernel(be, 'dsa_indexer', 'indexer_logits_paged');
  if (smem > 46 * 1024) kk.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  const qa = aligned16(be, q);
  const ca = aligned16(be, cache);
  kk.launch(Math.ceil(maxCtx / CHUNK), THREADS, smem, [rows, H, maxCtx, N, blockTable.shape[1]!, cache.shape[0]!, qa.ptr, be.address(w), ca.ptr,
    be.address(blockTable), be.address(contextLens), be.address(out)], Math.min(rows, MAX_GRID_Y));
  qa.tmp?.dispose();
  ca.tmp?.dispose();
}

export function indexerCacheWriteCuda(be: CudaBackend, cache: View, k: View, kScale: View, slots: View): void {
  const [T, Dk] = k.shape as [number, number];
  if (T === 0) return;
  const warpsPerBlock = 8;
  const grid = Math.min(Math.ceil(T / warpsPerBlock), be.rt.info.multiprocessors * 16);
  kernel(be, 'dsa_indexer', 'indexer_cache_write').launch(grid, 32 * warpsPerBlock, 0,
    [T, Dk, cache.shape[0]!, be.address(cache), be.address(k), be.address(kScale), be.address(slots)]);
}

export function causalSelectCuda(be: CudaBackend, out: View, end: View, blockTable: View | null, rowsPerSeq: number): void {
  const [R, k] = out.shape as [number, number];
  if (k >= 2 ** 31) throw new DsvError(`causalSelect on cuda: width ${k} exceeds the kernel's 32-bit positions`);
  const n = R * k;
  kernel(be, 'topk', 'causal_select').launch(Math.max(1, Math.min(Math.ceil(n / 256), be.rt.info.multiprocessors * 32)), 256, 0,
    [R, k, be.address(end), blockTable ? be.address(blockTable) : 0, blockTable ? blockTable.shape[1]! : 0, rowsPerSeq, be.address(out)]);
}

export function topkSelectCuda(be: CudaBackend, out: View, x: View, k: number, start: View | null, end: View | null, blockTable: View | null, rowsPerSeq: number): void {
  const R = out.shape[0]!;
  const n = x.shape[1]!;
  if (R === 0 || k === 0) return;
  if (n >= 2 ** 31) throw new DsvError(`topkSelect on cuda: ${n} columns exceed the kernel's 32-bit positions`);
  // cache the row's keys in shared memory when a whole row fits (1 KB kept for the static arrays)
  const bytes = n * ITEMSIZE.f32;
  const cache = bytes <= be.rt.info.maxSharedPerBlockOptin - 2048 ? bytes : 0;
  const kk = kernel(be, 'topk', 'topk_select_f32');
  if (cache > 46 * 1024) kk.setMaxDynamicSmem(cache, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kk.launch(Math.min(R, 2 ** 31 - 1), 1024, cache, [R, n, k, be.address(x), start ? be.address(start) : 0, end ? be.address(end) : 0,
    blockTable ? be.address(blockTable) : 0, blockTable ? blockTable.shape[1]! : 0, rowsPerSeq, cache / ITEMSIZE.f32, be.address(out)]);
}
