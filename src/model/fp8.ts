// FP8 activation quantisation of the reference (model.md §8, fixtures README) is the tensor op
// `actQuant` (src/tensor/ops/quant.ts): per 128-value block of the last dim, amax = max(|x|, 1e-4),
// s = 2^ceil(log2(amax/448)) with ue8m0, q = e4m3(clamp(x/s, ±448)); a trailing partial block is its own
// block. The model only fixes the block size and adds the host-side round trip the CPU path caches.
import { Tensor } from '../tensor/tensor.js';
import { actDequant, actQuant } from '../tensor/ops/quant.js';

export const QUANT_BLOCK = 128;

/** dequant(quant(x)) as f32 host values (q · s per block): the value the reference caches and uses. */
export function fp8RoundTripValues(x: Tensor, ue8m0: boolean, block = QUANT_BLOCK): Float32Array {
  const { q, s } = actQuant(x, block, { ue8m0 });
  return actDequant(q, s, block).toFloat32();
}
