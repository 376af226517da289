// CUDA launch of sparse MHA attention (kernels/sparse_mha.cu); the op layer (src/tensor/ops/sparse-mha.ts)
// has checked shapes and dtypes and made every input contiguous.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';

const SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p'];

export function sparseMhaPrefillCuda(b: CudaBackend, out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void {
  const [Tq, H, dq] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const dv = v.shape[2]!;
  const kk = indices.shape[1]!;
  if (H > 65535) throw new DsvError(`sparseMhaPrefill on cuda: ${H} heads exceed the grid's y dimension`);
  const smem = 4 * kk; // the scores of one (query, head)
  if (smem > b.rt.info.maxSharedPerBlockOptin) throw new DsvError(`sparseMhaPrefill on cuda: ${kk} entries per query need ${smem} bytes of shared memory`);
  const kern = b.rt.modules.get('sparse_mha', `sparse_mha_fwd_${q.dtype === 'bf16' ? 'bf16' : 'f32'}`, SIG);
  if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(Tq, 128, smem, [Tq, H, Tk, dq, dv, kk, scale, b.address(out), b.address(lse), b.address(q), b.address(k), b.address(v), b.address(indices)], H);
}
