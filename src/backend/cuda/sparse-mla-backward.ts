// CUDA launch of the sparse MLA backward (kernels/sparse_mla_bwd.cu). Contract:
// src/tensor/ops/sparse-mla-train.ts; CPU reference: src/backend/cpu/sparse-mla-backward.ts. The op layer
// has checked shapes and dtypes and made every input contiguous; here only the kernel's limits are checked.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';

const SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
/** Heads per CTA, key rows per tile, threads, most q columns (kernels/sparse_mla_bwd.cu HG, TK, NT, NT·NCOLQ). */
const HG = 16;
const TK = 16;
const NT = 256;
const D_MAX = 768;

export function sparseMlaBackwardCuda(b: CudaBackend, dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void {
  const op = 'sparseMlaBackward on cuda';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const k = indices.shape[1]!;
  if (q.dtype !== 'f32' && q.dtype !== 'bf16') throw new DsvError(`${op}: q must be f32 or bf16, got ${q.dtype}`);
  if (kv.dtype !== q.dtype || dout.dtype !== q.dtype || out.dtype !== q.dtype || dq.dtype !== q.dtype) throw new DsvError(`${op}: q, kv, dout, out and dq must share one dtype`);
  if (dkv.dtype !== 'f32' || lse.dtype !== 'f32') throw new DsvError(`${op}: dkv and lse must be f32`);
  if (D > D_MAX) throw new DsvError(`${op}: D = ${D} exceeds the kernel's ${D_MAX} columns`);
  if (Tk > 2 ** 31 - 1) throw new DsvError(`${op}: ${Tk} key rows exceed the i32 index space`);
  if (Math.ceil(H / HG) > 65535) throw new DsvError(`${op}: ${H} heads exceed the grid`);
  const smem = 4 * (2 * HG * D + HG * dv + TK * D + 2 * HG * TK + 2 * HG) + 4 * TK;
  if (smem > b.rt.info.maxSharedPerBlockOptin) throw new DsvError(`${op}: D = ${D} needs ${smem} bytes of shared memory, the device allows ${b.rt.info.maxSharedPerBlockOptin}`);
  b.fill(dkv, 0); // the kernel accumulates into it with atomics
  if (Tq * H === 0) return;
  const kern = b.rt.modules.get('sparse_mla_bwd', `sparse_mla_bwd_${q.dtype}`, SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(Tq, NT, smem, [Tq, H, D, dv, k, Tk, scale, b.address(dq), b.address(dkv), b.address(dout), b.address(q), b.address(kv), b.address(out),
    b.address(lse), b.address(indices)], Math.ceil(H / HG));
}
