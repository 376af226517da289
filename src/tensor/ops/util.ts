// Small helpers shared by the op files.
import type { Backend } from '../backend.js';
import { type DType, isFloat } from '../dtype.js';
import { DsvError } from '../../errors.js';
import { Tensor, fmtShape } from '../tensor.js';

/** A fresh contiguous tensor on `backend`. */
export function alloc(backend: Backend, shape: readonly number[], dtype: DType): Tensor {
  let n = 1;
  for (const d of shape) n *= d;
  return new Tensor(backend.alloc(dtype, n), [...shape]);
}

const RANK: Record<DType, number> = { bool: 0, u8: 1, i32: 2, i64: 3, f8e4m3: 4, f16: 5, bf16: 5, f32: 6, f64: 7 };

/** Result dtype of mixing a and b (torch-like): floats win over ints; bf16 with f16 gives f32. */
export function promote(a: DType, b: DType): DType {
  if (a === b) return a;
  if ((a === 'bf16' && b === 'f16') || (a === 'f16' && b === 'bf16')) return 'f32';
  return RANK[a] >= RANK[b] ? a : b;
}

export function sameDevice(op: string, ...ts: Tensor[]): void {
  const d = ts[0]!.device;
  for (const t of ts) {
    if (t.device !== d) throw new DsvError(`${op}: tensors are on different devices (${d} and ${t.device})`);
  }
}

export function requireFloat(op: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new DsvError(`${op}: expected a floating-point tensor, got ${t.dtype} of shape ${fmtShape(t.shape)}`);
}
