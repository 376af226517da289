// Numerics modes of the model.
//   'f32':  every activation is f32; the only roundings left are the reference's FP8 round trips
//           (indexer q/k, the MLA latent, and fp8-weight linears), which are part of its semantics.
//   'bf16': activations are bf16 exactly where the official reference (default dtype bf16) holds them
//           in bf16; the places it computes in f32 (norm math, the MoE gate and combine, weights_proj,
//           lm_head, index scores) stay f32.
//   'f64':  gradient checks only (CPU, src/train/): activations AND the places computed in f32 run in
//           double, with f64 master weights, so a central difference of the loss is accurate to ~1e-10
//           and the analytic gradient can be judged against it (an f32 forward's rounding noise would
//           drown the comparison). No FP8 op runs in this mode (training keeps them off).
// Kernels compute in f32 or wider and round once into the activation dtype, as torch's bf16 kernels do.
import type { DType } from '../tensor/dtype.js';

export type Numerics = 'f32' | 'bf16' | 'f64';

export function actDtype(n: Numerics): DType {
  return n === 'bf16' ? 'bf16' : n === 'f64' ? 'f64' : 'f32';
}

/** The dtype of the reference's f32 places (norm math, gate, head, SwiGLU product) for activations dt. */
export function wideDtype(dt: DType): DType {
  return dt === 'f64' ? 'f64' : 'f32';
}
