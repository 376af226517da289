// Token embedding: a row lookup of the embedding matrix (exact), in the activation dtype.
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { embedding } from '../tensor/ops/indexing.js';
import { cast } from '../tensor/ops/view.js';

/** tokens: B·S ids (row-major) → [B, S, dim]. Ids must already be validated against the vocabulary. */
export function embedTokens(weight: Tensor, tokens: Int32Array, B: number, S: number, dt: DType): Tensor {
  const ids = fromArray(tokens, [B, S], { dtype: 'i32', device: weight.device });
  return cast(embedding(weight, ids), dt);
}
