// Block FP8 (e4m3fn) quantisation as DeepSeek-V3.2's kernel.py defines it (model.md §8, fixtures
// README "Pure-torch kernel semantics"):
//   per row, per `block` consecutive values of the last dim: amax = max(max|x|, 1e-4) in f32;
//   s = amax·fp32(1/448), or with ue8m0 s = 2^ceil(log2(that)) (f32 exponent + (mantissa ≠ 0));
//   q = e4m3(clamp(x/s, −448, 448)) with round-to-nearest-even.
// A trailing partial block (N % block ≠ 0) is its own block with the amax of the values present
// (the fixtures' extension; identical to the official kernel whenever N % block == 0).
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape, fromArray } from '../tensor.js';
import { mul } from './elementwise.js';
import { indexSelect } from './indexing.js';
import { alloc, requireFloat, sameDevice } from './util.js';
import { cast, contiguous } from './view.js';

function checkBlock(op: string, block: number): void {
  if (!Number.isInteger(block) || block <= 0) throw new DsvError(`${op}: block must be a positive integer, got ${block}`);
}

/** Quantise x [..., N] → q f8e4m3 [..., N] and scales s f32 [..., ceil(N/block)]; not differentiable. */
export function actQuant(x: Tensor, block = 128, opts: { ue8m0?: boolean } = {}): { q: Tensor; s: Tensor } {
  checkBlock('actQuant', block);
  requireFloat('actQuant', x);
  if (x.rank === 0) throw new ShapeError(`actQuant: input must have rank ≥ 1, got ${fmtShape(x.shape)}`);
  const N = x.shape[x.rank - 1]!;
  const nb = Math.ceil(N / block);
  const q = alloc(x.backend, x.shape, 'f8e4m3');
  const s = alloc(x.backend, [...x.shape.slice(0, -1), nb], 'f32');
  if (x.numel > 0) x.backend.actQuant(q, s, noGrad(() => contiguous(x)), block, opts.ue8m0 ?? true);
  return { q, s };
}

/** Scale of column j = s[..., floor(j/block)], expanded to [..., N]. */
function expandScales(op: string, s: Tensor, N: number, block: number, axis: number): Tensor {
  const idx = new Int32Array(N);
  for (let j = 0; j < N; j++) idx[j] = Math.floor(j / block);
  const nb = Math.ceil(N / block);
  if (s.shape[axis] !== nb) throw new ShapeError(`${op}: scale ${fmtShape(s.shape)} needs ${nb} blocks of ${block} along dim ${axis}`);
  return indexSelect(s, axis, fromArray(idx, [N], { dtype: 'i32', device: s.device }));
}

/** f32 values q·s[block of each column] (exact for ue8m0 scales). */
export function actDequant(q: Tensor, s: Tensor, block = 128): Tensor {
  checkBlock('actDequant', block);
  sameDevice('actDequant', q, s);
  const N = q.rank === 0 ? 0 : q.shape[q.rank - 1]!;
  if (q.rank === 0 || s.rank !== q.rank || q.shape.slice(0, -1).some((d, i) => d !== s.shape[i]) || s.shape[q.rank - 1] !== Math.ceil(N / block)) {
    throw new ShapeError(`actDequant: values ${fmtShape(q.shape)} and scales ${fmtShape(s.shape)} do not match (expected [..., ${Math.ceil(N / block)}])`);
  }
  return mul(cast(q, 'f32'), expandScales('actDequant', cast(s, 'f32'), N, block, q.rank - 1));
}

/**
 * Block-dequantise an FP8 weight: W[i, j] = w8[i, j] · scaleInv[floor(i/block), floor(j/block)] in f32
 * (the checkpoint's `weight_scale_inv`); dims need not be multiples of the block.
 */
export function weightDequant(w8: Tensor, scaleInv: Tensor, block = 128): Tensor {
  checkBlock('weightDequant', block);
  sameDevice('weightDequant', w8, scaleInv);
  if (w8.rank !== 2 || scaleInv.rank !== 2) {
    throw new ShapeError(`weightDequant: weight ${fmtShape(w8.shape)} and scale ${fmtShape(scaleInv.shape)} must both be 2-D`);
  }
  const [R, C] = w8.shape as [number, number];
  const want = [Math.ceil(R / block), Math.ceil(C / block)];
  if (scaleInv.shape[0] !== want[0] || scaleInv.shape[1] !== want[1]) {
    throw new ShapeError(`weightDequant: scale ${fmtShape(scaleInv.shape)} does not fit weight ${fmtShape(w8.shape)} in ${block}×${block} blocks (expected ${fmtShape(want)})`);
  }
  const sf = cast(scaleInv, 'f32');
  const rows = expandScales('weightDequant', sf, R, block, 0); // [R, ceil(C/block)]
  return mul(cast(w8, 'f32'), expandScales('weightDequant', rows, C, block, 1));
}

/**
 * x → actDequant(actQuant(x)) cast back to x's dtype (the MLA latent's FP8 round trip). The backward
 * is the straight-through identity: rounding has zero derivative almost everywhere, and training
 * through the round trip wants the gradient of the unquantised value.
 */
export function fp8RoundTrip(x: Tensor, block = 128, opts: { ue8m0?: boolean } = {}): Tensor {
  const out = noGrad(() => {
    const { q, s } = actQuant(x, block, opts);
    return cast(actDequant(q, s, block), x.dtype);
  });
  return record(out, 'fp8RoundTrip', [x], (g) => [g]);
}
