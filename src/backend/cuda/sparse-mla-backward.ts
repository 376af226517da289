// CUDA launches of the sparse MLA backward. Contract: src/tensor/ops/sparse-mla-train.ts; CPU reference:
// src/backend/cpu/sparse-mla-backward.ts. Three paths: bf16 inputs of few heads take the one-pass
// tensor-core kernel (kernels/sparse_mla_bwd_flash.cu; sparseMlaBackwardTune.flash) where its limits
// allow, other bf16 inputs with sparseMlaBackwardTune.gemm on the gather + cuBLASLt path
// (kernels/sparse_mla_bwd_gemm.cu has the math), everything else (f32, the switches off, shapes neither
// takes) the CUDA-core kernel (kernels/sparse_mla_bwd.cu). The op layer has checked shapes and dtypes and
// made every input contiguous; here only the kernels' limits are checked.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { Kernel, ParamKind } from './launch.js';
import { gatheredScores } from './gathered-scores.js';
import { temporaries } from './temporaries.js';
import { gemmPathOn } from './gemm-switch.js';

const SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
/** Heads per CTA, key rows per tile, threads, most q columns (kernels/sparse_mla_bwd.cu HG, TK, NT, NT·NCOLQ). */
const HG = 16;
const TK = 16;
const NT = 256;
const D_MAX = 768;

/**
 * Path choice and the gemm path's temporary budget, for tests and benchmarks: gemm = false sends bf16 inputs
 * to the CUDA-core kernel too; chunkBytes bounds the bytes of the gemm path's temporaries (queries are
 * processed in chunks of max(1, ⌊chunkBytes / sparseMlaBackwardBytesPerQuery⌋)). gemm is on by default since
 * the tests of both paths passed on an H100 (2026-12-06, test/tensor/sparse-mla-backward.test.ts sets each
 * one), where it took 59.1 ms against the CUDA-core kernel's 1,772.6 ms and torch's 107.1 ms
 * (bench/dsa-train.ts: s_q 4096, k 2048, h 128; 100 TFLOPS).
 */
export const sparseMlaBackwardTune = {
  gemm: gemmPathOn('mla-bwd', true),
  chunkBytes: 1 << 30,
  /**
   * The one-pass kernel for bf16 queries of at most flashMaxHeads heads (kernels/sparse_mla_bwd_flash.cu).
   * On by default since its tests passed on an H100 (2026-12-07, every case and path of
   * test/tensor/sparse-mla-backward.test.ts), where it took 21.7 ms against the gemm path's 74.1 and torch's
   * 169.7 at the mid config's layer (bench/dsa-train.ts: s_q 8 192, k 2 048, 16 heads).
   */
  flash: gemmPathOn('mla-bwd-flash', true),
  flashMaxHeads: 16,
  /** bench/dsa-train.ts's probe only: the one-pass kernel without its dkv atomics (dkv stays zero), to time them. */
  probeNoAtomics: false,
};

/** kernels/sparse_mla_bwd_flash.cu: heads per CTA, key tile, threads, and the shapes it takes (its header). */
const FLASH = { HG: 16, TK: 64, NT: 256, D_MAX: 576, DV_MAX: 512, K_MAX: 2048 };
const FLASH_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

/**
 * bf16 queries of few heads over bf16 rows: one CTA per (query, 16 heads) walks the query's selected rows
 * once, each product's operands read from shared memory, dG added into dkv from registers (no gathered
 * block, no f32 dG in device memory). dkv must be zeroed already. Returns false where it does not apply.
 */
function flashPath(b: CudaBackend, dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  if (!sparseMlaBackwardTune.flash || H > sparseMlaBackwardTune.flashMaxHeads || q.dtype !== 'bf16') return false;
  if (D % 64 !== 0 || D > FLASH.D_MAX || dv % 32 !== 0 || dv > FLASH.DV_MAX || dv > D || k === 0 || k > FLASH.K_MAX) return false;
  if (Tq > 2 ** 31 - 1 || Math.ceil(H / FLASH.HG) > 65535) return false;
  // 16-byte vector loads of q, dO, O and kv rows, float4 atomics into dkv
  if ([dq, dkv, dout, q, kv, out].some((v) => b.address(v) % 16 !== 0)) return false;
  const kall = Math.ceil(k / FLASH.TK) * FLASH.TK;
  // Q [16][D + 8], dO [16][dv + 8], two tiles [TK][D + 8], P and dS [16][TK + 8] (bf16); lse, Δ [16] and the
  // indices [kall] (i32)
  const smem = 2 * (FLASH.HG * (D + 8) + FLASH.HG * (dv + 8) + 2 * FLASH.TK * (D + 8) + 2 * FLASH.HG * (FLASH.TK + 8)) + 4 * (2 * FLASH.HG + kall);
  if (smem > b.rt.info.maxSharedPerBlockOptin - 1024) return false;  // room for the kernel's static shared memory
  const kern = b.rt.modules.get('sparse_mla_bwd_flash', sparseMlaBackwardTune.probeNoAtomics ? 'sparse_mla_bwd_flash_probe' : 'sparse_mla_bwd_flash', FLASH_SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(Tq, FLASH.NT, smem, [Tq, H, D, dv, k, kv.shape[0]!, scale, b.address(dq), b.address(dkv), b.address(dout), b.address(q), b.address(kv),
    b.address(out), b.address(lse), b.address(indices)], Math.ceil(H / FLASH.HG));
  return true;
}

/**
 * Bytes of the gemm path's temporaries per query of a chunk: G [k, D] bf16, S [H, k] bf16, dP [H, k] f32,
 * SP [2H, k] bf16, QD [2H, D] bf16, dG [k, D] f32 — 6kD + 10Hk + 4HD (≈ 10 MB at k 2048, H 128, D 576).
 */
export function sparseMlaBackwardBytesPerQuery(H: number, k: number, D: number): number {
  return 2 * k * D + 2 * H * k + 4 * H * k + 2 * 2 * H * k + 2 * 2 * H * D + 4 * k * D;
}

const SOFTMAX_BWD_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const SCATTER_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'p', 'p', 'p'];

/**
 * sparse_mla_bwd_scatter_<v4|v1> of kernels/sparse_mla_bwd_gemm.cu for rows of D f32 added into `dst`
 * (float4 atomics where D and dst's address allow them); the indexer scores backward scatters with it too.
 */
export function scatterKernel(b: CudaBackend, dst: View, D: number): Kernel {
  const v4 = D % 4 === 0 && b.address(dst) % 16 === 0;
  return b.rt.modules.get('sparse_mla_bwd_gemm', v4 ? 'sparse_mla_bwd_scatter_v4' : 'sparse_mla_bwd_scatter_v1', SCATTER_SIG);
}

/**
 * bf16 inputs: per chunk of n queries, gather each query's selected rows into G [n, k, D] bf16 with
 * S = q·Gᵀ (gatheredScores), dP = dO·G[:, :, :dv]ᵀ (batched cuBLASLt), P and dS (sparse_mla_bwd_softmax, into SP),
 * dq = dS·G, dG = [dS; P]ᵀ·[q; dO | 0] (f32), and scatter-add dG's valid rows into dkv
 * (kernels/sparse_mla_bwd_gemm.cu has the math). dkv must be zeroed already. Returns false where the
 * path does not apply.
 */
function gemmPath(b: CudaBackend, dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): boolean {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const k = indices.shape[1]!;
  if (!sparseMlaBackwardTune.gemm || q.dtype !== 'bf16' || D % 8 !== 0 || dv % 8 !== 0 || k === 0 || Tq * H === 0 || Tk === 0) return false;
  const chunk = Math.max(1, Math.min(Tq, Math.floor(sparseMlaBackwardTune.chunkBytes / sparseMlaBackwardBytesPerQuery(H, k, D))));
  const t = temporaries(b);
  try {
    const G = t.tmp('bf16', chunk * k * D);
    const S = t.tmp('bf16', chunk * H * k);
    const dP = t.tmp('f32', chunk * H * k);
    const SP = t.tmp('bf16', chunk * 2 * H * k);
    const QD = t.tmp('bf16', chunk * 2 * H * D);
    const dG = t.tmp('f32', chunk * k * D);
    const softmax = b.rt.modules.get('sparse_mla_bwd_gemm', 'sparse_mla_bwd_softmax', SOFTMAX_BWD_SIG);
    const scatter = scatterKernel(b, dkv, D);
    // QD's value rows are dO padded with zeros to D columns; the copies below never write the padding
    if (D > dv) b.fill({ storage: QD, dtype: 'bf16', shape: [chunk, H, D - dv], strides: [2 * H * D, D, 1], offset: H * D + dv }, 0);
    for (let n0 = 0; n0 < Tq; n0 += chunk) {
      const n = Math.min(chunk, Tq - n0);
      const idx: View = { ...indices, shape: [n, k], strides: [k, 1], offset: indices.offset + n0 * k };
      const rowsG: View = { storage: G, dtype: 'bf16', shape: [n, k, D], strides: [k * D, D, 1], offset: 0 };
      // G[:, :, :dv]ᵀ per query: [dv, k] read column-major from the row-major [k, D] block
      const gvT: View = { storage: G, dtype: 'bf16', shape: [n, dv, k], strides: [k * D, 1, D], offset: 0 };
      const qC: View = { storage: q.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: q.offset + n0 * H * D };
      const doC: View = { storage: dout.storage, dtype: 'bf16', shape: [n, H, dv], strides: [H * dv, dv, 1], offset: dout.offset + n0 * H * dv };
      const oC: View = { storage: out.storage, dtype: 'bf16', shape: [n, H, dv], strides: [H * dv, dv, 1], offset: out.offset + n0 * H * dv };
      const lseC: View = { storage: lse.storage, dtype: 'f32', shape: [n, H], strides: [H, 1], offset: lse.offset + n0 * H };
      const dpV: View = { storage: dP, dtype: 'f32', shape: [n, H, k], strides: [H * k, k, 1], offset: 0 };
      const dsV: View = { storage: SP, dtype: 'bf16', shape: [n, H, k], strides: [2 * H * k, k, 1], offset: 0 };
      const spT: View = { storage: SP, dtype: 'bf16', shape: [n, k, 2 * H], strides: [2 * H * k, 1, k], offset: 0 };
      const qdV: View = { storage: QD, dtype: 'bf16', shape: [n, 2 * H, D], strides: [2 * H * D, D, 1], offset: 0 };
      const dgV: View = { storage: dG, dtype: 'f32', shape: [n, k, D], strides: [k * D, D, 1], offset: 0 };
      const dqC: View = { storage: dq.storage, dtype: 'bf16', shape: [n, H, D], strides: [H * D, D, 1], offset: dq.offset + n0 * H * D };
      const sV = gatheredScores(b, S, 'bf16', G, q, { keys: kv, src: 'bf16', rows: Tk, dv, W: 0 }, n0, n, idx); // S = q·Gᵀ, bf16 as in the gemm forward
      b.matmul(dpV, doC, gvT); // dP = dO·G[:, :dv]ᵀ, f32
      softmax.launch(Math.ceil((n * H * 32) / 256), 256, 0, [n, H, k, dv, Tk, scale, b.address(sV), b.address(dpV), b.address(dsV), b.address(doC),
        b.address(oC), b.address(lseC), b.address(idx)]);
      b.matmul(dqC, dsV, rowsG); // dq = dS·G
      b.copy({ storage: QD, dtype: 'bf16', shape: [n, H, D], strides: [2 * H * D, D, 1], offset: 0 }, qC);
      b.copy({ storage: QD, dtype: 'bf16', shape: [n, H, dv], strides: [2 * H * D, D, 1], offset: H * D }, doC);
      b.matmul(dgV, spT, qdV); // dG = dSᵀ·q + Pᵀ·dO, f32
      scatter.launch(Math.ceil((n * k * 32) / 256), 256, 0, [n * k, D, Tk, b.address(dkv), b.address(dgV), b.address(idx)]);
    }
  } finally {
    t.dispose();
  }
  return true;
}

export function sparseMlaBackwardCuda(b: CudaBackend, dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void {
  const op = 'sparseMlaBackward on cuda';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const k = indices.shape[1]!;
  if (q.dtype !== 'f32' && q.dtype !== 'bf16') throw new DsvError(`${op}: q must be f32 or bf16, got ${q.dtype}`);
  if (kv.dtype !== q.dtype || dout.dtype !== q.dtype || out.dtype !== q.dtype || dq.dtype !== q.dtype) throw new DsvError(`${op}: q, kv, dout, out and dq must share one dtype`);
  if (dkv.dtype !== 'f32' || lse.dtype !== 'f32') throw new DsvError(`${op}: dkv and lse must be f32`);
  if (Tk > 2 ** 31 - 1) throw new DsvError(`${op}: ${Tk} key rows exceed the i32 index space`);
  b.fill(dkv, 0); // both paths accumulate into it with atomics
  if (Tq * H === 0) return;
  if (flashPath(b, dq, dkv, dout, q, kv, out, lse, indices, dv, scale)) return;
  if (gemmPath(b, dq, dkv, dout, q, kv, out, lse, indices, dv, scale)) return;
  if (D > D_MAX) throw new DsvError(`${op}: D = ${D} exceeds the kernel's ${D_MAX} columns`);
  if (Math.ceil(H / HG) > 65535) throw new DsvError(`${op}: ${H} heads exceed the grid`);
  const smem = 4 * (2 * HG * D + HG * dv + TK * D + 2 * HG * TK + 2 * HG) + 4 * TK;
  if (smem > b.rt.info.maxSharedPerBlockOptin) throw new DsvError(`${op}: D = ${D} needs ${smem} bytes of shared memory, the device allows ${b.rt.info.maxSharedPerBlockOptin}`);
  const kern = b.rt.modules.get('sparse_mla_bwd', `sparse_mla_bwd_${q.dtype}`, SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(Tq, NT, smem, [Tq, H, D, dv, k, Tk, scale, b.address(dq), b.address(dkv), b.address(dout), b.address(q), b.address(kv), b.address(out),
    b.address(lse), b.address(indices)], Math.ceil(H / HG));
}
