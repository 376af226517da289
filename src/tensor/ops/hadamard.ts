// Walsh–Hadamard transform over the last dim in Sylvester (natural) order, as
// scipy.linalg.hadamard(n) and fast_hadamard_transform use: H_1 = [1], H_2m = [[H_m, H_m], [H_m, −H_m]].
// y = x·H·scale. H is symmetric with H·H = n·I, so with scale = n^(−½) the transform is orthonormal
// and its own inverse; the backward of y = scale·x·H is dx = scale·g·H (the same transform).
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { Tensor, fmtShape } from '../tensor.js';
import { alloc, requireFloat } from './util.js';
import { contiguous } from './view.js';

export class HadamardSizeError extends DsvError {}

export function hadamard(x: Tensor, scale = 1): Tensor {
  requireFloat('hadamard', x);
  const n = x.rank === 0 ? 0 : x.shape[x.rank - 1]!;
  if (n < 1 || (n & (n - 1)) !== 0) {
    throw new HadamardSizeError(`hadamard: last dim must be a power of 2, got ${n} (shape ${fmtShape(x.shape)})`);
  }
  const xc = noGrad(() => contiguous(x)); // the node recorded below links to x itself
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.hadamard(out, xc, scale);
  return record(out, 'hadamard', [x], (g) => [hadamard(g, scale)]);
}
