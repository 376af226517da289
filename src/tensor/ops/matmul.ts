// Matrix products with broadcast batch dims: [..., M, K] @ [..., K, N] → [..., M, N].
// Transposed operands stay views; the backend reads them as column-major matrices.
import { record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { add } from './elementwise.js';
import { broadcastShapes } from './shape.js';
import { alloc, promote, sameDevice } from './util.js';
import { cast, reshape, sumTo, transpose, unsqueeze, squeeze } from './view.js';
import { DsvError } from '../../errors.js';
import type { DType } from '../dtype.js';

export interface MatmulOptions {
  /**
   * The product's dtype, wider than the operands' (bf16 operands into an f32 product: f32 accumulation,
   * the values of the f32 GEMM of the widened operands up to the order of the sums, at the bf16 GEMM's
   * speed). The backward then runs in the operands' dtype, as torch's autocast does: the incoming
   * gradient is rounded to it and each operand's gradient is a GEMM in it.
   */
  out?: DType;
}

export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  sameDevice('matmul', a, b);
  if (a.rank === 0 || b.rank === 0) throw new ShapeError(`matmul: operands must have rank ≥ 1, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  // vectors are promoted to matrices and the added dim removed afterwards (torch.matmul rules)
  if (a.rank === 1) return squeeze(matmul(unsqueeze(a, 0), b, opts), -2);
  if (b.rank === 1) return squeeze(matmul(a, unsqueeze(b, 1), opts), -1);
  const M = a.shape[a.rank - 2]!;
  const K = a.shape[a.rank - 1]!;
  const K2 = b.shape[b.rank - 2]!;
  const N = b.shape[b.rank - 1]!;
  if (K !== K2) throw new ShapeError(`matmul: inner dims differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} (${K} vs ${K2})`);
  let batch: number[];
  try {
    batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  } catch {
    throw new ShapeError(`matmul: batch dims of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} cannot be broadcast`);
  }
  const dt = promote(a.dtype, b.dtype);
  if (opts.out !== undefined && promote(dt, opts.out) !== opts.out) throw new DsvError(`matmul: out ${opts.out} is narrower than the operands' ${dt}`);
  const out = alloc(a.backend, [...batch, M, N], opts.out ?? dt);
  if (out.numel > 0) {
    if (K === 0) out.backend.fill(out, 0);
    else a.backend.matmul(out, bview(a, [...batch, M, K]), bview(b, [...batch, K, N]));
  }
  return record(out, 'matmul', [a, b], (g) => {
    const gd = g.dtype === dt ? g : cast(g, dt);
    return [
      // dA = G·Bᵀ, dB = Aᵀ·G, each summed over broadcast batch dims
      a.requiresGrad ? sumTo(matmul(gd, transpose(b)), a.shape) : null,
      b.requiresGrad ? sumTo(matmul(transpose(a), gd), b.shape) : null,
    ];
  });
}

/** Broadcast view for the kernel (no autograd). */
function bview(t: Tensor, shape: number[]): Tensor {
  const lead = shape.length - t.rank;
  const strides = shape.map((d, i) => (i < lead || t.shape[i - lead] !== d ? 0 : t.strides[i - lead]!));
  return t._view(shape, strides, t.offset);
}

/** x @ wᵀ for a weight stored [out, in] (nn.Linear layout), plus optional bias. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  if (w.rank !== 2) throw new ShapeError(`linear: weight must be [out, in], got ${fmtShape(w.shape)}`);
  if (x.shape[x.rank - 1] !== w.shape[1]) {
    throw new ShapeError(`linear: input ${fmtShape(x.shape)} has last dim ${x.shape[x.rank - 1]}, weight ${fmtShape(w.shape)} expects ${w.shape[1]}`);
  }
  const x2 = reshape(x, [-1, w.shape[1]!]);
  let y = matmul(x2, transpose(w));
  if (bias) y = add(y, bias);
  return reshape(y, [...x.shape.slice(0, -1), w.shape[0]!]);
}

