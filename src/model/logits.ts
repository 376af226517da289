// The LM head on chosen rows: logits f32 [R, vocab] = hidden[rows] (cast to f32) · headᵀ, the
// reference's f32 head applied to the f32 hidden state. Rows are gathered first, so a decode step of
// many sequences computes only their last rows.
import type { Tensor } from '../tensor/tensor.js';
import { fromArray } from '../tensor/tensor.js';
import { indexSelect } from '../tensor/ops/indexing.js';
import { linear } from '../tensor/ops/matmul.js';
import { cast, contiguous, narrow } from '../tensor/ops/view.js';
import { wideDtype } from './numerics.js';

/** hidden [T, dim], rows (flat indices) → f32 [rows.length, vocab]. */
export function logitsAt(hidden: Tensor, rows: Int32Array, head: Tensor): Tensor {
  const T = hidden.shape[0]!;
  let h: Tensor;
  if (rows.length === T && rows.every((r, i) => r === i)) h = hidden;
  else if (rows.length === 1) h = contiguous(narrow(hidden, 0, rows[0]!, 1));
  else h = indexSelect(hidden, 0, fromArray(rows, [rows.length], { dtype: 'i32', device: hidden.device }));
  return linear(cast(h, wideDtype(h.dtype)), head);
}
