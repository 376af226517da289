// Fallback batched GEMM for what cuBLASLt does not take (f64, integer and f8 operands, mixed dtypes):
//   out[b, m, n] = Σ_k a[b, m, k] · b[b, k, n]
// computed in f64, one thread per output element. Batch offsets come from an Iter over the batch dims
// (operands 0 = out, 1 = a, 2 = b); matrix strides are explicit, so transposed views need no copy.
// Not a fast path: f32/bf16/f16 go through cuBLASLt.
#include "common.cuh"

extern "C" __global__ void matmul_naive(Iter batch, int64_t nbatch, int64_t M, int64_t N, int64_t K, void* out, int out_dt,
                                        const void* a, int a_dt, int64_t sam, int64_t sak, const void* b, int b_dt, int64_t sbk,
                                        int64_t sbn) {
  const int64_t total = nbatch * M * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bi = i / (M * N), mn = i - bi * M * N, m = mn / N, n = mn - m * N;
    int64_t off[4];
    iter_offsets(batch, bi, 3, off);
    double acc = 0.0;
    for (int64_t k = 0; k < K; k++) acc += load_as<double>(a, off[1] + m * sam + k * sak, a_dt) * load_as<double>(b, off[2] + k * sbk + n * sbn, b_dt);
    store_as<double>(out, off[0] + mn, out_dt, acc);
  }
}
