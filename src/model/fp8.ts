// FP8 activation quantisation of the reference (model.md §8, fixtures README) is the tensor op
// `actQuant` (src/tensor/ops/quant.ts): per 128-value block of the last dim, amax = max(|x|, 1e-4),
// s = 2^ceil(log2(amax/448)) with ue8m0, q = e4m3(clamp(x/s, ±448)); a trailing partial block is its own
// block. The model only fixes the block size.
export const QUANT_BLOCK = 128;
