// CUDA FP8 block-scaled linear from quantised activations (Backend.fp8BlockLinear; contract and math in
// src/tensor/ops/fp8-linear.ts). The op layer has made q, sq, w8 and sw contiguous and checked shapes.
// Two paths, chosen by output dtype and shape:
//  - bf16 out (the bf16 numerics, where speed matters), K % 128 == 0 and N % 16 == 0 (every FP8
//    projection of the 671B model): the backend's fp8Linear in
//    'block' mode, i.e. cuBLASLt's VEC128 × BLK128x128 block-scaled FP8 GEMM, or the FP8 decode GEMV of
//    kernels/gemv.cu for M ≤ 8 not a multiple of 4. fp8Linear wants the activation scales K-block-major,
//    [⌈K/128⌉, M] with M fastest (the transpose of actQuant's [M, ⌈K/128⌉]): they are transposed on the
//    device into a temporary (a strided copy; no host read), and the weight scales go as stored
//    (fp8Linear pads their row pitch for cuBLASLt itself). When cuBLASLt offers no block-scaled algorithm
//    (fp8Linear returns false) the fallback below runs instead.
//  - f32 out (the f32 numerics: the parity mode, matched against the goldens to 1e-4): the kernel below.
//    Hopper's FP8 tensor cores accumulate with fewer mantissa bits than f32 (DeepSeek-V3 §3.3.2: about 14),
//    and cuBLASLt's block-scaled GEMM measured 1.25e-4 relative L2 error against the exact f32 sum at
//    M = 64, K = 128, N = 128 with f32 out (H100, 2026-12-05), 12× the 1e-5 an f32 accumulation keeps.
//  - anything else (a partial last K block such as the experts' K = 64 of the tiny fixtures, which
//    cuBLASLt's K % 16 rule would admit but which neither it nor the GEMV has been measured on; or N not a
//    multiple of 16, which fp8Linear rejects): kernels/fp8_linear.cu, a shared-memory tiled CUDA-core
//    kernel that reads every layout unpadded and follows the CPU reference's promotion order.
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import type { ParamKind } from './launch.js';

const SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p'];
/** Output tile of kernels/fp8_linear.cu (BM rows × BN columns, NT threads). */
const BM = 16;
const BN = 64;
const NT = 256;

/** Path choice, for tests and benchmarks: forceKernel sends every shape to kernels/fp8_linear.cu. */
export const fp8BlockLinearTune = { forceKernel: false };

export function fp8BlockLinearCuda(b: CudaBackend, out: View, q: View, sq: View, w8: View, sw: View): void {
  const [M, K] = q.shape as [number, number];
  const N = w8.shape[0]!;
  if (out.dtype !== 'f32' && out.dtype !== 'bf16') throw new DsvError(`fp8BlockLinear on cuda: out must be f32 or bf16, got ${out.dtype}`);
  if (M === 0 || N === 0) return;
  if (K === 0) return b.fill(out, 0);
  const nbK = Math.ceil(K / 128);
  if (!fp8BlockLinearTune.forceKernel && out.dtype === 'bf16' && K % 128 === 0 && N % 16 === 0) {
    // [M, nbK] → [nbK, M]: view sq's element (kb, m) at m·nbK + kb and copy it contiguous. At M = 1 (decode
    // of one token) both layouts are the same bytes and sq goes as it is.
    const st = M === 1 ? null : b.alloc('f32', nbK * M);
    const sx: View = st ? { storage: st, dtype: 'f32', shape: [nbK, M], strides: [M, 1], offset: 0 } : sq;
    try {
      if (st) b.copy(sx, { storage: sq.storage, dtype: 'f32', shape: [nbK, M], strides: [1, nbK], offset: sq.offset });
      if (b.fp8Linear(out, q, w8, sx, sw, 'block')) return;
    } finally {
      // stream-ordered reuse: later work on the stream runs after the GEMM has read the scales
      st?.dispose();
    }
  }
  const gridY = Math.min(Math.ceil(M / BM), 65535);
  const gridX = Math.ceil(N / BN);
  if (gridX > 2 ** 31 - 1) throw new DsvError(`fp8BlockLinear on cuda: N = ${N} exceeds the grid`);
  b.rt.modules.get('fp8_linear', `fp8_block_linear_${out.dtype}`, SIG)
    .launch(gridX, NT, 0, [M, N, K, b.address(out), b.address(q), b.address(sq), b.address(w8), b.address(sw)], gridY);
}
