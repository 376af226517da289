// Test oracle: the model's former host loop for an FP8 block-scaled linear (the reference's act_quant +
// fp8_gemm "2xAcc"), kept as the independent reference the fp8Linear operation is checked against:
//   y[m, n] = Σ_kb fround(acc + fround(part[m, n] · fround(sa[m, kb] · sb[n/128, kb])))
// with part one f32 GEMM (through the CPU backend) per 128-wide K block of e4m3 values.
import type { DType } from '../../src/tensor/dtype.js';
import { Tensor, fromArray } from '../../src/tensor/tensor.js';
import { matmul } from '../../src/tensor/ops/matmul.js';
import { actQuant } from '../../src/tensor/ops/quant.js';
import { cast, narrow, reshape, transpose } from '../../src/tensor/ops/view.js';

const BLOCK = 128;

/** x [..., K] · (w8 [N, K] e4m3 with scale [⌈N/128⌉, ⌈K/128⌉]) → [..., N] in dt. */
export function hostFp8Linear(x: Tensor, w8: Tensor, scale: Float32Array, dt: DType, ue8m0: boolean): Tensor {
  const [N, K] = w8.shape as [number, number];
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [-1, K]);
  const M = x2.shape[0]!;
  const { q, s } = actQuant(x2, BLOCK, { ue8m0 });
  const a8 = cast(q, 'f32');
  const wq = cast(w8, 'f32');
  const sa = s.toFloat32();
  const nbK = Math.ceil(K / BLOCK);
  const acc = new Float32Array(M * N);
  for (let kb = 0; kb < nbK; kb++) {
    const k0 = kb * BLOCK;
    const kl = Math.min(BLOCK, K - k0);
    const part = matmul(narrow(a8, 1, k0, kl), transpose(narrow(wq, 1, k0, kl))).toFloat32();
    for (let m = 0; m < M; m++) {
      const am = sa[m * nbK + kb]!;
      for (let n = 0; n < N; n++) {
        const sc = Math.fround(am * scale[Math.floor(n / BLOCK) * nbK + kb]!);
        acc[m * N + n] = Math.fround(acc[m * N + n]! + Math.fround(part[m * N + n]! * sc));
      }
    }
  }
  return fromArray(acc, [...lead, N], { dtype: dt, device: x.device });
}
