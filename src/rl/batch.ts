// Token batches of the RL loss: every per-token tensor is [S, T] (S sequences padded to T tokens)
// with a validity mask of the same shape (true/1 = a trained, model-generated token; false/0 =
// padding, prompt or tool output). These helpers check the shapes once, turn any 0/1 mask into a
// bool mask and a float mask in the loss dtype, and zero the padded entries of an input *before*
// any arithmetic: padding may hold −∞ or garbage logprobs, and exp(−∞)·0 or ∞·0 would otherwise
// put NaN into the loss and its gradient (where() gives exactly zero gradient to the dropped side).
import { DsvError } from '../errors.js';
import { type Tensor, fmtShape, full, isFloat, cast, ne, sum, where } from '../tensor/index.js';

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Throws a DsvError naming `op`, the argument and the expected shape unless t has `shape`. */
export function requireShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (!sameShape(t.shape, shape)) {
    throw new DsvError(`${op}: ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
  }
}

export function requireFloatArg(op: string, name: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new DsvError(`${op}: ${name} must be a floating-point tensor, got ${t.dtype} of shape ${fmtShape(t.shape)}`);
}

/** Per-token log-probs must be [S, T] floats. */
export function requireTokens(op: string, name: string, t: Tensor): void {
  requireFloatArg(op, name, t);
  if (t.rank !== 2) throw new DsvError(`${op}: ${name} must be [sequences, T], got shape ${fmtShape(t.shape)}`);
}

export interface TokenMask {
  /** bool [S, T] */
  valid: Tensor;
  /** the same as 0/1 in `dtype` */
  validF: Tensor;
  /** valid tokens per sequence, [S] in `dtype` */
  lengths: Tensor;
}

/**
 * A validity mask [S, T] (bool, or any numeric dtype holding 0/1) for per-token tensors of `shape`;
 * when omitted every token is valid. Nonzero counts as valid.
 */
export function tokenMask(op: string, mask: Tensor | undefined, shape: readonly number[], dtype: Tensor['dtype'], device: string): TokenMask {
  let valid: Tensor;
  if (mask === undefined) {
    valid = full(shape, 1, { dtype: 'bool', device });
  } else {
    requireShape(op, 'mask', mask, shape);
    if (mask.device !== device) throw new DsvError(`${op}: mask is on ${mask.device}, the log-probs on ${device}`);
    valid = mask.dtype === 'bool' ? mask : ne(mask, 0);
  }
  const validF = cast(valid, dtype);
  return { valid, validF, lengths: sum(validF, 1) };
}

/** x with its invalid entries replaced by 0 (no value and no gradient flows from them). */
export function zeroInvalid(x: Tensor, valid: Tensor): Tensor {
  return where(valid, x, 0);
}
