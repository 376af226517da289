// FP8 block-scaled linear, the fallback for shapes the cuBLASLt block-scaled GEMM and the FP8 decode GEMV
// (kernels/gemv.cu) do not take: K not a multiple of 128 (a partial last K block, e.g. an expert's
// down_proj at moe_intermediate_size 64) or N not a multiple of 16. Contract: src/tensor/ops/fp8-linear.ts.
//   out[m, n] = Σ_kb fl(acc + fl(part · fl(sq[m, kb] · sw[⌊n/128⌋, kb])))        kb = 0 … ⌈K/128⌉ − 1 in order
//   part      = Σ_{k ∈ kb} q[m, k] · w[n, k]     (f32, k ascending, one fmaf per term)
// which is the CPU reference's promotion order exactly (the three roundings are __fmul_rn / __fadd_rn, so
// the compiler cannot contract them into an FMA); only `part` may differ from the CPU's GEMM in the last
// bit, where its sum of 128 exact e4m3·e4m3 products is not exact in f32. The f32 accumulator is rounded
// once to the output dtype.
// Layouts (all contiguous, row-major): q e4m3 [M, K] and sq f32 [M, ⌈K/128⌉] as actQuant writes them,
// w e4m3 [N, K] and sw f32 [⌈N/128⌉, ⌈K/128⌉] as the checkpoint stores them (unpadded), out [M, N].
// Tiling: a CTA of 256 threads owns a BM × BN = 16 × 64 output tile; per K block it decodes the tile's
// x rows (16 × 128) and w rows (64 × 128) to f32 in shared memory (w rows padded to 129 floats so that the
// 64 threads reading 64 different rows at the same k hit distinct banks; the x value is a broadcast), then
// thread (tx, ty) accumulates column n0 + tx for rows ty, ty + 4, ty + 8, ty + 12. CUDA cores only: these
// shapes are small (the fixtures', or an odd projection), correctness and any shape come first.
#include "common.cuh"

namespace {
constexpr int BM = 16;             // rows of x per CTA
constexpr int BN = 64;             // rows of w (output columns) per CTA
constexpr int BK = 128;            // the quantisation block along K
constexpr int NT = 256;            // threads
constexpr int RPT = BM / (NT / BN);  // output rows per thread: 4
}  // namespace

template <class TO>
__device__ void fp8_block_linear(int64_t M, int64_t N, int64_t K, TO* out, const uint8_t* q, const float* sq, const uint8_t* w,
                                 const float* sw) {
  __shared__ float xs[BM][BK];
  __shared__ float ws[BN][BK + 1];
  const int tx = threadIdx.x % BN, ty = threadIdx.x / BN;
  const int64_t n0 = (int64_t)blockIdx.x * BN;
  const int64_t n = n0 + tx;
  const int64_t nbK = (K + BK - 1) / BK;
  for (int64_t m0 = (int64_t)blockIdx.y * BM; m0 < M; m0 += (int64_t)gridDim.y * BM) {
    float acc[RPT];
#pragma unroll
    for (int j = 0; j < RPT; j++) acc[j] = 0.0f;
    for (int64_t kb = 0; kb < nbK; kb++) {
      const int64_t k0 = kb * BK;
      const int kl = (int)min((int64_t)BK, K - k0);
      __syncthreads();  // the previous block's (or row tile's) reads of xs/ws are done
      for (int i = threadIdx.x; i < BM * BK; i += NT) {
        const int r = i / BK, k = i % BK;
        const int64_t m = m0 + r;
        xs[r][k] = (m < M && k < kl) ? e4m3_bits_to_f32(q[m * K + k0 + k]) : 0.0f;
      }
      for (int i = threadIdx.x; i < BN * BK; i += NT) {
        const int r = i / BK, k = i % BK;
        const int64_t nn = n0 + r;
        ws[r][k] = (nn < N && k < kl) ? e4m3_bits_to_f32(w[nn * K + k0 + k]) : 0.0f;
      }
      __syncthreads();
      float part[RPT];
#pragma unroll
      for (int j = 0; j < RPT; j++) part[j] = 0.0f;
      for (int k = 0; k < kl; k++) {
        const float wv = ws[tx][k];
#pragma unroll
        for (int j = 0; j < RPT; j++) part[j] = fmaf(xs[ty + j * (NT / BN)][k], wv, part[j]);
      }
      const float sb = n < N ? sw[(n / BK) * nbK + kb] : 0.0f;
#pragma unroll
      for (int j = 0; j < RPT; j++) {
        const int64_t m = m0 + ty + j * (NT / BN);
        const float sa = m < M ? sq[m * nbK + kb] : 0.0f;
        acc[j] = __fadd_rn(acc[j], __fmul_rn(part[j], __fmul_rn(sa, sb)));
      }
    }
#pragma unroll
    for (int j = 0; j < RPT; j++) {
      const int64_t m = m0 + ty + j * (NT / BN);
      if (m < M && n < N) out[m * N + n] = from_f<TO>(acc[j]);
    }
  }
}

#define FP8_BLOCK_LINEAR(TN, TO)                                                                                        \
  extern "C" __global__ void __launch_bounds__(NT) fp8_block_linear_##TN(int64_t M, int64_t N, int64_t K, TO* out,      \
                                                                         const uint8_t* q, const float* sq,              \
                                                                         const uint8_t* w, const float* sw) {            \
    fp8_block_linear<TO>(M, N, K, out, q, sq, w, sw);                                                                  \
  }
FP8_BLOCK_LINEAR(f32, float)
FP8_BLOCK_LINEAR(bf16, __nv_bfloat16)
