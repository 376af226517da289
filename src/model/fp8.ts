// FP8 activation quantisation as the reference's kernel.py does it (model.md §8, fixtures README):
// per row, per block of 128 values of the last dim: amax = max(|x|, 1e-4); s = amax/448, or with ue8m0
// s = 2^ceil(log2(amax/448)); q = e4m3(clamp(x/s, ±448)) (round to nearest even). A trailing partial
// block is its own block (the fixture's extension; identical to the official kernel when N % 128 = 0).
import { Tensor } from '../tensor/tensor.js';
import { alloc } from '../tensor/ops/util.js';
import { cast, contiguous } from '../tensor/ops/view.js';

export const QUANT_BLOCK = 128;

/** q: f8e4m3 [..., N]; s: f32 [..., ceil(N/128)]. */
export function actQuant(x: Tensor, ue8m0: boolean, block = QUANT_BLOCK): { q: Tensor; s: Tensor } {
  const xc = contiguous(x);
  const N = x.shape[x.rank - 1]!;
  const q = alloc(x.backend, x.shape, 'f8e4m3');
  const s = alloc(x.backend, [...x.shape.slice(0, -1), Math.ceil(N / block)], 'f32');
  if (x.numel > 0) x.backend.actQuant(q, s, xc, block, ue8m0);
  return { q, s };
}

/** The round trip dequant(quant(x)) as f32 values (q · s per block). */
export function fp8RoundTripValues(x: Tensor, ue8m0: boolean, block = QUANT_BLOCK): Float32Array {
  const { q, s } = actQuant(x, ue8m0, block);
  const qv = cast(q, 'f32').toFloat32();
  const sv = s.toFloat32();
  const N = x.shape[x.rank - 1]!;
  const nb = Math.ceil(N / block);
  const rows = N === 0 ? 0 : qv.length / N;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < N; j++) qv[r * N + j] = qv[r * N + j]! * sv[r * nb + Math.floor(j / block)]!;
  }
  return qv;
}
