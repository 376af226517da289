// FP8 block-scaled linear layer (DeepSeek-V3's `linear` on an FP8 weight: act_quant + fp8_gemm), with the
// weight kept as e4m3 codes and its 128×128 block scales on the device. Optional backend capability
// Backend.fp8BlockLinear; the CPU reference is src/backend/cpu/fp8-linear.ts, the CUDA implementation
// src/backend/cuda/fp8-linear.ts (cuBLASLt block scaling / the FP8 decode GEMV, else kernels/fp8_linear.cu).
//
// Shapes: x [..., K] (f32 or bf16), w8 f8e4m3 [N, K] (the checkpoint's `weight`), wScale [⌈N/128⌉, ⌈K/128⌉]
// (the checkpoint's `weight_scale_inv`, f32), y [..., N] in outDtype (f32 or bf16; default x's dtype).
// On a backend that widensFp8Weights (the CPU) w8 may also be the codes' decoded values (f32, each an e4m3
// value: the same product without decoding the codes on every call; fp8Codes in src/model/fp8-linear.ts).
// Math, with M = the product of x's leading dims:
//   (a8, sa) = actQuant(x, 128, ue8m0)   a8 e4m3 [M, K], sa f32 [M, ⌈K/128⌉] (a trailing partial block of
//                                        K is its own block, as in actQuant)
//   y[m, n]  = Σ_kb fround(acc + fround(part · fround(sa[m, kb] · wScale[⌊n/128⌋, kb])))   (kb in order)
//   part     = Σ_{k ∈ kb} a8[m, k] · w8[n, k]   (one f32 GEMM per 128-wide K block; e4m3·e4m3 is exact)
// i.e. each K block's exact-ish f32 product is promoted into an f32 accumulator with both scales (the
// reference's "2xAcc" fp8_gemm), and the f32 result is rounded once to outDtype. The CPU backend
// reproduces the host model's applyLinear (src/model/fp8-linear.ts) bit for bit. The CUDA backend
// computes the same sum with the tensor cores' (or the GEMV's) order inside a block, so it agrees to f32
// accumulation order (about 1e-6 relative in f32, one ulp of bf16).
//
// Backward (training): FP8 weights are frozen (bf16 master weights train, not these), so the op
// differentiates with respect to x only, straight through the activation quantisation (rounding has zero
// derivative almost everywhere; the training signal wants the gradient of the unquantised value):
//   dx = dy · W,  W[n, k] = w8[n, k] · wScale[⌊n/128⌋, ⌊k/128⌋]  (weightDequant, f32), dx in x's dtype.
// The gradient uses the dequantised weight, not the quantised activations, so it is exactly the
// gradient of y' = x·Wᵀ, the product the FP8 path approximates. w8 and wScale get no gradient.
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import type { DType } from '../dtype.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { matmul } from './matmul.js';
import { actQuant, weightDequant } from './quant.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous, reshape } from './view.js';

/** Rows and columns of a weight scale tile, and the width of an activation scale block. */
export const FP8_LINEAR_BLOCK = 128;

export interface Fp8LinearOptions {
  /** power-of-two activation scales (the V3.2 checkpoint's scale_fmt "ue8m0"). Default true. */
  ue8m0?: boolean;
  /** dtype of y: f32 or bf16. Default x's dtype. */
  outDtype?: DType;
}

const FLOAT = new Set<DType>(['f32', 'bf16']);

/**
 * y = x·Wᵀ for an FP8 weight w8 [N, K] with block scales wScale [⌈N/128⌉, ⌈K/128⌉]: x [..., K] → y [..., N]
 * (math in the header). Differentiable with respect to x only (straight-through; see the header).
 */
export function fp8Linear(x: Tensor, w8: Tensor, wScale: Tensor, opts: Fp8LinearOptions = {}): Tensor {
  const op = 'fp8Linear';
  sameDevice(op, x, w8, wScale);
  const ue8m0 = opts.ue8m0 ?? true;
  const outDtype = opts.outDtype ?? x.dtype;
  if (!FLOAT.has(x.dtype)) throw new DsvError(`${op}: x must be f32 or bf16, got ${x.dtype}`);
  if (!FLOAT.has(outDtype)) throw new DsvError(`${op}: outDtype must be f32 or bf16, got ${outDtype}`);
  fp8WeightDtype(op, w8);
  if (w8.rank !== 2) throw new ShapeError(`${op}: the weight must be [N, K], got ${fmtShape(w8.shape)}`);
  const [N, K] = w8.shape as [number, number];
  if (x.rank < 1 || x.shape[x.rank - 1] !== K) throw new ShapeError(`${op}: x ${fmtShape(x.shape)} must be [..., ${K}] for the weight ${fmtShape(w8.shape)}`);
  const nbN = Math.ceil(N / FP8_LINEAR_BLOCK);
  const nbK = Math.ceil(K / FP8_LINEAR_BLOCK);
  if (wScale.rank !== 2 || wScale.shape[0] !== nbN || wScale.shape[1] !== nbK) {
    throw new ShapeError(`${op}: the weight scales ${fmtShape(wScale.shape)} must be [${nbN}, ${nbK}] (one per 128×128 tile of ${fmtShape(w8.shape)})`);
  }
  if (wScale.dtype !== 'f32' && wScale.dtype !== 'bf16' && wScale.dtype !== 'f64') throw new DsvError(`${op}: the weight scales must be floating point, got ${wScale.dtype}`);
  const lead = x.shape.slice(0, -1);
  const out = noGrad(() => {
    const x2 = reshape(x, [-1, K]);
    const M = x2.shape[0]!;
    const y = alloc(x.backend, [M, N], outDtype);
    if (M * N === 0) return y;
    if (K === 0) {
      x.backend.fill(y, 0);
      return y;
    }
    const f = x.backend.fp8BlockLinear;
    if (!f) throw new DsvError(`${op} (fp8BlockLinear) is not implemented on device '${x.device}'`);
    const { q, s } = actQuant(x2, FP8_LINEAR_BLOCK, { ue8m0 });
    f.call(x.backend, y, contiguous(q), contiguous(s), contiguous(w8), contiguous(cast(wScale, 'f32')));
    return y;
  });
  const y = reshape(out, [...lead, N]);
  return record(y, op, [x], (g) => [fp8LinearBackward(g, w8, wScale, x)]);
}

/**
 * The FP8 products' weight operand: e4m3 codes, or on a backend that widensFp8Weights their decoded f32
 * values (see the header); anything else names what was expected.
 */
export function fp8WeightDtype(op: string, w8: Tensor): void {
  if (w8.dtype === 'f8e4m3') return;
  if (w8.dtype === 'f32' && w8.backend.widensFp8Weights) return;
  throw new DsvError(`${op}: the weight must be f8e4m3 codes${w8.backend.widensFp8Weights ? ' or their decoded f32 values' : ''}, got ${w8.dtype} (dense weights go through linear)`);
}

/** dx = dy · W_dequant (f32 GEMM), in x's dtype and shape. */
function fp8LinearBackward(g: Tensor, w8: Tensor, wScale: Tensor, x: Tensor): Tensor {
  const [N, K] = w8.shape as [number, number];
  const w = weightDequant(w8, cast(wScale, 'f32'), FP8_LINEAR_BLOCK); // [N, K] f32
  const dx = matmul(reshape(cast(g, 'f32'), [-1, N]), w);
  return cast(reshape(dx, [...x.shape.slice(0, -1), K]), x.dtype);
}
