// Linear layers over dense or FP8 weights.
//
// Dense: y = x·Wᵀ accumulated in f32 and rounded once to the activation dtype (torch F.linear).
// FP8 (the reference's `linear` → act_quant + fp8_gemm): the input is quantised per token and per
// 128 input channels (e4m3 values a8 with scales sa[m, kb]); the weight is e4m3 values b8 with block
// scales sb[n/128, kb]. Each 128-wide K block is multiplied exactly in f32 (e4m3·e4m3 products are
// exact) and promoted into the f32 accumulator with both scales:
//   y[m, n] = Σ_kb (a8[m, kb]·b8[n, kb]) · (sa[m, kb] · sb[n/128, kb])
// which is the "2xAcc" fp8_gemm, and the output is rounded to the activation dtype.
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { linear as denseLinear, matmul } from '../tensor/ops/matmul.js';
import { cast, narrow, reshape, transpose } from '../tensor/ops/view.js';
import { actQuant } from '../tensor/ops/quant.js';
import { QUANT_BLOCK } from './fp8.js';
import { FP8_BLOCK, type LinearWeight } from './weights.js';

/** y = x·Wᵀ with x [..., in]; the result has dtype `dt`. */
export function applyLinear(x: Tensor, lw: LinearWeight, dt: DType, ue8m0: boolean): Tensor {
  if (lw.kind === 'dense') return cast(denseLinear(x, lw.w), dt);
  const K = lw.in;
  const N = lw.out;
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [-1, K]);
  const M = x2.shape[0]!;
  const { q, s } = actQuant(x2, QUANT_BLOCK, { ue8m0 });
  const a8 = cast(q, 'f32');
  const sa = s.toFloat32();
  const nbK = Math.ceil(K / FP8_BLOCK);
  const acc = new Float32Array(M * N);
  for (let kb = 0; kb < nbK; kb++) {
    const k0 = kb * FP8_BLOCK;
    const kl = Math.min(FP8_BLOCK, K - k0);
    const part = matmul(narrow(a8, 1, k0, kl), transpose(narrow(lw.q, 1, k0, kl))).toFloat32();
    for (let m = 0; m < M; m++) {
      const am = sa[m * nbK + kb]!;
      for (let n = 0; n < N; n++) {
        const sc = Math.fround(am * lw.scale[Math.floor(n / FP8_BLOCK) * nbK + kb]!);
        acc[m * N + n] = Math.fround(acc[m * N + n]! + Math.fround(part[m * N + n]! * sc));
      }
    }
  }
  return fromArray(acc, [...lead, N], { dtype: dt, device: x.device });
}
