// Numerics modes of the model.
//   'f32':  every activation is f32; the only roundings left are the reference's FP8 round trips
//           (indexer q/k, the MLA latent, and fp8-weight linears), which are part of its semantics.
//   'bf16': activations are bf16 exactly where the official reference (default dtype bf16) holds them
//           in bf16; the places it computes in f32 (norm math, the MoE gate and combine, weights_proj,
//           lm_head, index scores) stay f32.
// Kernels compute in f32 or wider and round once into the activation dtype, as torch's bf16 kernels do.
import type { DType } from '../tensor/dtype.js';

export type Numerics = 'f32' | 'bf16';

export function actDtype(n: Numerics): DType {
  return n === 'bf16' ? 'bf16' : 'f32';
}
