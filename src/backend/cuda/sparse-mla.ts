// CUDA launches of sparse MLA (kernels/sparse_mla.cu): the prefill and decode forward share one kernel
// with a key-row loader per layout (dense f32/bf16 rows, or the FP8 cache), and the cache writer.
// The op layer (src/tensor/ops/sparse-mla.ts) has checked shapes and dtypes and made every input
// contiguous; here only the kernel's own limits are checked.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';
import { gemmPathOn } from './gemm-switch.js';
import { gatheredScores } from './gathered-scores.js';

const FWD_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p'];
const WRITE_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p'];
/** Heads per CTA, key rows per tile, threads, most latent dims (kernels/sparse_mla.cu HG, TK, NT, NT·NCOL). */
const HG = 16;
const TK = 16;
const NT = 256;
const DV_MAX = 512;

const sfx = (d: string): string => (d === 'bf16' ? 'bf16' : 'f32');

function fwd(b: CudaBackend, op: string, kvName: string, out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number, rows: number, W: number): void {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  if (dv > DV_MAX) throw new DsvError(`${op} on cuda: dv ${dv} exceeds the kernel's ${DV_MAX} latent dims`);
  if (rows > 2 ** 31 - 1) throw new DsvError(`${op} on cuda: ${rows} key rows exceed the i32 index space`);
  const smem = 4 * (TK * D + HG * D + HG * TK + 3 * HG) + 4 * TK;
  if (smem > b.rt.info.maxSharedPerBlockOptin) throw new DsvError(`${op} on cuda: D = ${D} needs ${smem} bytes of shared memory, the device allows ${b.rt.info.maxSharedPerBlockOptin}`);
  if (Math.ceil(H / HG) > 65535) throw new DsvError(`${op} on cuda: ${H} heads exceed the grid`);
  const kern = b.rt.modules.get('sparse_mla', `sparse_mla_fwd_${sfx(q.dtype)}_${kvName}`, FWD_SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(N, NT, smem, [N, H, D, dv, k, rows, W, scale, b.address(out), b.address(lse), b.address(q), b.address(kv), b.address(indices)], Math.ceil(H / HG));
}

/**
 * Path choice, for tests and benchmarks: `fused` sends bf16 queries of at most `fusedMaxHeads` heads and at
 * least `fusedMinRows` query rows to a fused tensor-core kernel (`flash`: the one-pass kernel where its
 * layout fits, else the two-pass one), `gemm` the others (or all, with fused off) to the gathered-GEMM
 * path; both off sends them to the CUDA-core kernel too. The bounds are where the one-pass kernel measured
 * faster (bench/sparse-mla-fused.ts, H100, D 576, k 2 048, 2026-12-06 15:30): at 16 heads 1.48× the
 * gathered GEMMs at 64 rows, 2.61× at 128, 2.72× at 4 096, but 0.28–0.50× at 1–16 rows (one CTA per row
 * and head group leaves most SMs idle); at 128 heads 0.53× (72 against 135 TFLOPS: each group of 16 heads
 * gathers the rows again, where the GEMMs read them once for all heads). `split` (word `mla-split`): from
 * `splitMinRows` rows, where rows × head groups fill fewer CTAs than the device has SMs, the one-pass kernel
 * splits the keys over more CTAs and a combine merges them (flash decoding). Measured (bench/sparse-mla-fused.ts,
 * H100, 16 heads, k 2 048, 2026-12-06 19:00): 16 rows 0.048 ms split against 0.069 gathered GEMMs and 0.139
 * unsplit, 64 rows 0.084 against 0.205 and 0.141; but one row 0.068 against the GEMMs' 0.040 (the combine,
 * a warp per row and head looping over its splits, keeps one load in flight a lane), so fewer rows keep the GEMMs.
 */
export const sparseMlaTune = {
  gemm: gemmPathOn('mla', true), fused: gemmPathOn('mla-fused', true), flash: gemmPathOn('mla-flash', true), split: gemmPathOn('mla-split', true),
  wg: gemmPathOn('mla-wg', true), fusedMaxHeads: 16, fusedMinRows: 64, splitMinRows: 16, wgMinHeads: 64,
};

const SOFTMAX_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p'];
/** Bytes of gathered rows per chunk of queries (bounds the temporaries at long k). */
const GATHER_BYTES = 512 << 20;

/**
 * bf16 queries: per chunk of n queries, S = q·Gᵀ over each query's gathered rows G [n, k, D] bf16
 * (gatheredScores, from bf16/f32 rows or the FP8 cache), softmax with lse in place, out = P·G[:, :, :dv]
 * (kernels/sparse_mla_gemm.cu has the math). Returns false where the path does not apply.
 */
function gemmPath(b: CudaBackend, src: 'bf16' | 'f32' | 'fp8', out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number, rows: number, W: number): boolean {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  if (!sparseMlaTune.gemm || q.dtype !== 'bf16' || out.dtype !== 'bf16' || D % 8 !== 0 || dv % 8 !== 0 || k === 0 || N === 0) return false;
  const chunk = Math.max(1, Math.min(N, Math.floor(GATHER_BYTES / (2 * k * D))));
  const G = b.alloc('bf16', chunk * k * D);
  const S = b.alloc('bf16', chunk * H * k);
  try {
    const softmax = b.rt.modules.get('sparse_mla_gemm', 'sparse_softmax_lse', SOFTMAX_SIG);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const n = Math.min(chunk, N - n0);
      const idx: View = { ...indices, shape: [n, k], offset: indices.offset + n0 * k };
      const sView = gatheredScores(b, S, 'bf16', G, q, { keys: kv, src, rows, dv, W }, n0, n, idx);
      const lseView: View = { storage: lse.storage, dtype: 'f32', shape: [n, H], strides: [H, 1], offset: lse.offset + n0 * H };
      softmax.launch(Math.ceil((n * H * 32) / 256), 256, 0, [n, H, k, rows, scale, b.address(sView), b.address(lseView), b.address(idx)]);
      const oView: View = { storage: out.storage, dtype: 'bf16', shape: [n, H, dv], strides: [H * dv, dv, 1], offset: out.offset + n0 * H * dv };
      b.matmul(oView, sView, { storage: G, dtype: 'bf16', shape: [n, k, dv], strides: [k * D, D, 1], offset: 0 });
    }
  } finally {
    // stream-ordered reuse: later work on the stream runs after these kernels have finished with them
    G.dispose();
    S.dispose();
  }
  return true;
}

/**
 * kernels/sparse_mla_gemm.cu's fused kernel: its tile sizes (FUSED_HG, FUSED_TK1, FUSED_TK2, FUSED_NS,
 * FUSED_NT, FUSED_DVMAX) and the shapes this path takes it for (D ≤ 576 and k ≤ 2 048: those its tests and
 * benchmark ran; there it needs at most 206 336 bytes of shared memory).
 */
const FUSED = { HG: 16, TK1: 64, TK2: 32, NS: 3, NT: 256, D_MAX: 576, DV_MAX: 512, K_MAX: 2048 };

/**
 * bf16 queries of few heads: the fused kernel (kernels/sparse_mla_gemm.cu, "the fused few-head path"),
 * one CTA per (query, 16 heads), key tiles gathered into shared memory. Returns false where it does not
 * apply (then the gathered-GEMM path or the CUDA-core kernel runs).
 */
function fusedPath(b: CudaBackend, src: 'bf16' | 'f32' | 'fp8', out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number, rows: number, W: number): boolean {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  // the FP8 cache goes to the gathered GEMMs: the fused kernels decode its rows through registers, stage by
  // stage, and measured 0.31× (one-pass) and 0.15× (two-pass) the GEMMs' speed at 64 rows, 0.55× and 0.27×
  // at 1 024 (bench/sparse-mla-fused.ts --cache fp8, H100, 2026-12-06 16:11, 16 heads, k 2 048)
  if (src === 'fp8') return false;
  if (!sparseMlaTune.fused || H > sparseMlaTune.fusedMaxHeads || q.dtype !== 'bf16' || out.dtype !== 'bf16') return false;
  if (D % 16 !== 0 || D > FUSED.D_MAX || dv % 64 !== 0 || dv > FUSED.DV_MAX || dv > D || k === 0 || k > FUSED.K_MAX || N === 0) return false;
  if (N > 2 ** 31 - 1 || Math.ceil(H / FUSED.HG) > 65535) return false;
  const split = sparseMlaTune.split && N >= sparseMlaTune.splitMinRows ? splitsFor(b, N * Math.ceil(H / FLASH.HG), Math.ceil(k / FLASH.TK)) : 1;
  if (N < sparseMlaTune.fusedMinRows && split === 1) return false;
  if (sparseMlaTune.flash && flashPath(b, src, out, lse, q, kv, indices, dv, scale, rows, W, split)) return true;
  if (N < sparseMlaTune.fusedMinRows) return false;
  // the two-pass kernel's layout: Q [16][D + 8], FUSED.NS stage buffers (pass 1: 64 keys × half of D, pass 2:
  // 32 keys × dv, rows padded by 8), X [16][kt + 8] bf16, the indices [kt] i32, kt = k rounded up to 64
  const kt = Math.ceil(k / FUSED.TK1) * FUSED.TK1;
  const stage = Math.max(FUSED.TK1 * (16 * Math.ceil(D / 32) + 8), FUSED.TK2 * (dv + 8));
  const smem = 2 * (FUSED.HG * (D + 8) + FUSED.NS * stage + FUSED.HG * (kt + 8)) + 4 * kt;
  if (smem > b.rt.info.maxSharedPerBlockOptin) return false;
  const kern = b.rt.modules.get('sparse_mla_gemm', `sparse_mla_fused_${src}`, FWD_SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(N, FUSED.NT, smem, [N, H, D, dv, k, rows, W, scale, b.address(out), b.address(lse), b.address(q), b.address(kv), b.address(indices)], Math.ceil(H / FUSED.HG));
  return true;
}

/** kernels/sparse_mla_flash.cu: its tile sizes and the shapes it takes (its header lists why). */
const FLASH = { HG: 16, TK: 64, NT: 256, D_MAX: 576, DV_MAX: 512 };

/**
 * The one-pass kernel (kernels/sparse_mla_flash.cu, online softmax, each selected row gathered once),
 * within fusedPath's bounds, where its layout fits: D % 32 == 0, dv % 128 == 0; bf16 or f32 rows (a bf16
 * or f32 cache is such rows, so its decode and a prefill over the same rows are one computation).
 */
function flashPath(b: CudaBackend, src: 'bf16' | 'f32', out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number, rows: number, W: number, split: number): boolean {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  if (D % 32 !== 0 || D > FLASH.D_MAX || dv % 128 !== 0 || dv > FLASH.DV_MAX) return false;
  // Q [16][D + 8], two tiles [64][D + 8] bf16, P [16][72] bf16, S [16][68] f32, α/m/l [3·16] f32, indices [kt] i32
  // (kt: the entries one CTA walks, all k or its split's tiles, rounded up to whole tiles)
  const tiles = Math.ceil(k / FLASH.TK);
  const tps = Math.ceil(tiles / split); // tiles a CTA walks (all of them unsplit)
  const kt = tps * FLASH.TK;
  const smem = 2 * ((FLASH.HG + 2 * FLASH.TK) * (D + 8) + FLASH.HG * (FLASH.TK + 8)) + 4 * (FLASH.HG * (FLASH.TK + 4) + 3 * FLASH.HG) + 4 * kt;
  if (smem > b.rt.info.maxSharedPerBlockOptin) return false;
  const groups = Math.ceil(H / FLASH.HG);
  if (split === 1) {
    const kern = b.rt.modules.get('sparse_mla_flash', `sparse_mla_flash_${src}`, FWD_SIG);
    if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
    kern.launch(N, FLASH.NT, smem, [N, H, D, dv, k, rows, W, scale, b.address(out), b.address(lse), b.address(q), b.address(kv), b.address(indices)], groups);
    return true;
  }
  const kern = b.rt.modules.get('sparse_mla_flash', `sparse_mla_flash_split_${src}`, SPLIT_SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  const S = Math.ceil(tiles / tps); // splits that hold a tile
  splitLaunch(b, out, lse, N, H, dv, S, (po, plse) =>
    kern.launch(N, FLASH.NT, smem, [N, H, D, dv, k, rows, W, scale, b.address(q), b.address(kv), b.address(indices), tps, po, plse], groups, S));
  return true;
}

/**
 * A split launch (flash decoding): `partials(po, plse)` launches the S splits, each writing its normalised
 * f32 partial output and lse into po [S, N, H, dv] and plse [S, N, H]; sparse_mla_split_combine
 * (kernels/sparse_mla_flash.cu) merges them into out and lse.
 */
function splitLaunch(b: CudaBackend, out: View, lse: View, N: number, H: number, dv: number, S: number, partials: (po: number, plse: number) => void): void {
  const po = b.alloc('f32', S * N * H * dv);
  const plse = b.alloc('f32', S * N * H);
  try {
    partials(po.ptr, plse.ptr);
    const warps = 8;
    b.rt.modules.get('sparse_mla_flash', 'sparse_mla_split_combine', COMBINE_SIG)
      .launch(Math.ceil((N * H) / warps), 32 * warps, 0, [N * H, dv, S, po.ptr, plse.ptr, b.address(out), b.address(lse)]);
  } finally {
    // stream-ordered reuse, as in gemmPath
    po.dispose();
    plse.dispose();
  }
}

const SPLIT_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'i64', 'p', 'p'];
const COMBINE_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p'];
/** The most splits the combine takes (one lane each). */
const MAX_SPLITS = 32;

/**
 * Key splits for a one-pass kernel launching `ctas` CTAs over `tiles` key tiles each: 1 where they already
 * fill half the SMs, else as many as bring the CTAs up to the SM count (one CTA per SM fits either kernel's
 * shared memory), at most one per tile and MAX_SPLITS.
 */
function splitsFor(b: CudaBackend, ctas: number, tiles: number): number {
  const sms = b.rt.info.multiprocessors;
  if (2 * ctas > sms) return 1;
  return Math.max(1, Math.min(Math.floor(sms / ctas), tiles, MAX_SPLITS));
}

/** kernels/sparse_mla_wgmma.cu: heads a CTA, keys a tile, threads, the dims it takes, the FP8 row's bytes, shared memory (its header). */
const WG = { H: 64, TK: 64, NT: 384, D: 576, DV: 512, FP8_W: 656, SMEM: 1024 + 3 * 73728 + 8192 + 2 * 64 * 4 + 2 * 64 * 4 };

/**
 * The wide-head kernel (kernels/sparse_mla_wgmma.cu: wgmma, 64 heads a CTA, a producer warpgroup gathering
 * or decoding each selected row once per CTA): bf16 queries of at least `wgMinHeads` heads at D 576, dv 512,
 * over bf16 rows or the 656-byte FP8 cache; split over the keys where the CTAs fill fewer than half the SMs.
 */
function wgPath(b: CudaBackend, src: 'bf16' | 'f32' | 'fp8', out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number, rows: number, W: number): boolean {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  if (!sparseMlaTune.wg || H < sparseMlaTune.wgMinHeads || q.dtype !== 'bf16' || out.dtype !== 'bf16' || src === 'f32') return false;
  if (D !== WG.D || dv !== WG.DV || (src === 'fp8' && W !== WG.FP8_W) || k === 0 || N === 0 || N > 2 ** 31 - 1) return false;
  if (Math.ceil(H / WG.H) > 65535 || WG.SMEM > b.rt.info.maxSharedPerBlockOptin) return false;
  const groups = Math.ceil(H / WG.H);
  const tiles = Math.ceil(k / WG.TK);
  const split = sparseMlaTune.split ? splitsFor(b, N * groups, tiles) : 1;
  const args = [N, H, D, dv, k, rows, W, scale];
  if (split === 1) {
    const kern = b.rt.modules.get('sparse_mla_wgmma', `sparse_mla_wg_${src}`, FWD_SIG);
    kern.setMaxDynamicSmem(WG.SMEM, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
    kern.launch(N, WG.NT, WG.SMEM, [...args, b.address(out), b.address(lse), b.address(q), b.address(kv), b.address(indices)], groups);
    return true;
  }
  const tps = Math.ceil(tiles / split);
  const S = Math.ceil(tiles / tps);
  const kern = b.rt.modules.get('sparse_mla_wgmma', `sparse_mla_wg_split_${src}`, SPLIT_SIG);
  kern.setMaxDynamicSmem(WG.SMEM, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  splitLaunch(b, out, lse, N, H, dv, S, (po, plse) => kern.launch(N, WG.NT, WG.SMEM, [...args, b.address(q), b.address(kv), b.address(indices), tps, po, plse], groups, S));
  return true;
}

export function sparseMlaPrefillCuda(b: CudaBackend, out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void {
  if (q.dtype !== kv.dtype) throw new DsvError(`sparseMlaPrefill on cuda: kv (${kv.dtype}) must have q's dtype (${q.dtype})`);
  if (wgPath(b, sfx(kv.dtype) as 'bf16' | 'f32', out, lse, q, kv, indices, dv, scale, kv.shape[0]!, 0)) return;
  if (fusedPath(b, sfx(kv.dtype) as 'bf16' | 'f32', out, lse, q, kv, indices, dv, scale, kv.shape[0]!, 0)) return;
  if (gemmPath(b, sfx(kv.dtype) as 'bf16' | 'f32', out, lse, q, kv, indices, dv, scale, kv.shape[0]!, 0)) return;
  fwd(b, 'sparseMlaPrefill', sfx(kv.dtype), out, lse, q, kv, indices, dv, scale, kv.shape[0]!, 0);
}

export function sparseMlaDecodeCuda(b: CudaBackend, out: View, lse: View, q: View, cache: View, indices: View, dv: number, scale: number): void {
  const [blocks, page, W] = cache.shape as [number, number, number];
  // the bf16 and f32 caches are dense row layouts [blocks·page, D] (q arrives as [B·s_q, H, D])
  const src = cache.dtype === 'u8' ? 'fp8' : (sfx(cache.dtype) as 'bf16' | 'f32');
  if (wgPath(b, src, out, lse, q, cache, indices, dv, scale, blocks * page, cache.dtype === 'u8' ? W : 0)) return;
  if (fusedPath(b, src, out, lse, q, cache, indices, dv, scale, blocks * page, cache.dtype === 'u8' ? W : 0)) return;
  if (gemmPath(b, src, out, lse, q, cache, indices, dv, scale, blocks * page, cache.dtype === 'u8' ? W : 0)) return;
  fwd(b, 'sparseMlaDecode', cache.dtype === 'u8' ? 'fp8' : sfx(cache.dtype), out, lse, q, cache, indices, dv, scale, blocks * page, cache.dtype === 'u8' ? W : 0);
}

export function mlaCacheWriteCuda(b: CudaBackend, cache: View, latent: View, rope: View, slots: View): void {
  const [blocks, page, W] = cache.shape as [number, number, number];
  const N = latent.shape[0]!;
  const dv = latent.shape[1]!;
  const dr = rope.shape[1]!;
  const fmt = cache.dtype === 'u8' ? 'fp8' : sfx(cache.dtype);
  const kern = b.rt.modules.get('sparse_mla', `mla_cache_write_${fmt}_${sfx(latent.dtype)}_${sfx(rope.dtype)}`, WRITE_SIG);
  kern.launch(N, 128, 0, [N, dv, dr, blocks * page, W, b.address(cache), b.address(latent), b.address(rope), b.address(slots), b.rt.errWord]);
  if (b.eagerIndexChecks && !b.rt.capturing) b.rt.checkErrors('mlaCacheWrite');
}
