// Skinny GEMM for decode: out[m, n] = Σ_k x[m, k] · w[n, k] for MM rows of x and a weight w [N, K]
// whose rows are contiguous in k (the layout of every linear layer's weight, used as x·wᵀ). At M = 1 the
// GEMM is a stream over w (N·K·2 bytes for bf16) with one FMA per element, so the kernel is shaped for
// bandwidth, not for tensor cores: each block owns R = 2 rows of w and the warps of the
// block split k between them, every lane moving 16 bytes of each row per step (VEC elements), with two
// steps' loads issued before their FMAs. x (at most 8 · K elements) is re-read through L1/L2 and converted
// once per step for both rows. Partial sums (R·M per warp) are reduced over the warp with shuffles and
// over the block through shared memory; accumulation is f32. blockDim = 32 · min(8, ceil(K / (32·VEC)))
// so short rows (K = 512) do not leave warps idle.
#include "common.cuh"

template <class T, int MM, int R>
__device__ void gemv_rows(int64_t N, int64_t K, T* out, int64_t ldo, const T* x, int64_t ldx, const T* w, int64_t ldw) {
  constexpr int VEC = 16 / sizeof(T);
  constexpr int STEP = 32 * VEC;  // elements of k one warp covers per step
  __shared__ float red[8][R * MM];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t n0 = (int64_t)blockIdx.x * R;
  float acc[R][MM];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < MM; m++) acc[r][m] = 0.0f;
  const Vec<T, VEC>* wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) wrow[r] = reinterpret_cast<const Vec<T, VEC>*>(w + min(n0 + r, N - 1) * ldw);  // a missing last row re-reads row N−1, never written
  auto step = [&](int64_t kv, const Vec<T, VEC> (&wv)[R]) {
    // kv: index of this lane's 16-byte vector along k
#pragma unroll
    for (int m = 0; m < MM; m++) {
      const Vec<T, VEC> xv = reinterpret_cast<const Vec<T, VEC>*>(x + m * ldx)[kv];
      float xf[VEC];
#pragma unroll
      for (int k = 0; k < VEC; k++) xf[k] = to_f<T>(xv.v[k]);
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int k = 0; k < VEC; k++) acc[r][m] = fmaf(to_f<T>(wv[r].v[k]), xf[k], acc[r][m]);
    }
  };
  const int64_t kvn = K / VEC;
  const int64_t stride = (int64_t)nw * 32;
  int64_t kv = (int64_t)wid * 32 + lane;
  for (; kv + stride < kvn; kv += 2 * stride) {  // two steps in flight
    Vec<T, VEC> a[R], b[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      a[r] = wrow[r][kv];
      b[r] = wrow[r][kv + stride];
    }
    step(kv, a);
    step(kv + stride, b);
  }
  if (kv < kvn) {
    Vec<T, VEC> a[R];
#pragma unroll
    for (int r = 0; r < R; r++) a[r] = wrow[r][kv];
    step(kv, a);
  }
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < MM; m++) {
      float v = warp_sum(acc[r][m]);
      if (lane == 0) red[wid][r * MM + m] = v;
    }
  __syncthreads();
  if (threadIdx.x < R * MM) {
    const int r = threadIdx.x / MM, m = threadIdx.x % MM;
    float s = 0.0f;
    for (int i = 0; i < nw; i++) s += red[i][threadIdx.x];
    if (n0 + r < N) out[m * ldo + n0 + r] = from_f<T>(s);
  }
}

#define GEMV1(T, TN, MM)                                                                                               \
  extern "C" __global__ void gemv_##TN##_m##MM(int64_t N, int64_t K, T* out, int64_t ldo, const T* x, int64_t ldx,     \
                                               const T* w, int64_t ldw) {                                             \
    gemv_rows<T, MM, 2>(N, K, out, ldo, x, ldx, w, ldw);                                                               \
  }
// Only M = 1 is instantiated: measured against cuBLASLt on the H200, the CUDA-core FMAs of this kernel
// fall behind the tensor-core kernels from M = 2 on (91–104% at M = 2, 45–54% at M = 8).
GEMV1(__nv_bfloat16, bf16, 1)
GEMV1(float, f32, 1)
