// Token embedding: a row lookup of the embedding matrix (exact), in the activation dtype.
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { embedding } from '../tensor/ops/indexing.js';
import { cast } from '../tensor/ops/view.js';

/** tokens: B·S ids (row-major) → [B, S, dim]. Ids must already be validated against the vocabulary. */
export function embedTokens(weight: Tensor, tokens: Int32Array, B: number, S: number, dt: DType): Tensor {
  return embedIds(weight, fromArray(tokens, [B, S], { dtype: 'i32', device: weight.device }), dt);
}

/** ids: an i32 tensor of any shape already on the weight's device (a step layout's) → [...shape, dim]. */
export function embedIds(weight: Tensor, ids: Tensor, dt: DType): Tensor {
  return cast(embedding(weight, ids), dt);
}
