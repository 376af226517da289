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
#include "segments.cuh"
#include <cuda_fp8.h>

// Walks this lane's 16-byte vectors kv, kv + stride, … (< kvn) of R weight rows, issuing two steps' loads
// before their arithmetic so that each lane keeps 2·R·16 bytes in flight. step(kv, v) consumes one step.
template <int R, class V, class Step>
__device__ __forceinline__ void stream_rows(const V* const (&wrow)[R], int64_t kv, int64_t stride, int64_t kvn, Step&& step) {
  for (; kv + stride < kvn; kv += 2 * stride) {
    V a[R], b[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      a[r] = wrow[r][kv];
      b[r] = wrow[r][kv + stride];
    }
    step(kv, a);
    step(kv + stride, b);
  }
  if (kv < kvn) {
    V a[R];
#pragma unroll
    for (int r = 0; r < R; r++) a[r] = wrow[r][kv];
    step(kv, a);
  }
}

// out[m·ldo + n0 + r] = Σ over the block's warps of acc[r][m]: a warp shuffle sum, then one thread per
// (r, m) adds the warps' partials from shared memory. Rows n0 + r ≥ N and m ≥ mrows are not written.
template <int R, int MM, class TO>
__device__ __forceinline__ void reduce_store(const float (&acc)[R][MM], int64_t n0, int64_t N, TO* out, int64_t ldo, int mrows = MM) {
  __shared__ float red[8][R * MM];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < MM; m++) {
      const float v = warp_sum(acc[r][m]);
      if (lane == 0) red[wid][r * MM + m] = v;
    }
  __syncthreads();
  if (threadIdx.x < R * MM) {
    const int r = threadIdx.x / MM, m = threadIdx.x % MM;
    float s = 0.0f;
    for (int i = 0; i < nw; i++) s += red[i][threadIdx.x];
    if (n0 + r < N && m < mrows) out[m * ldo + n0 + r] = from_f<TO>(s);
  }
}

// The dot of R weight rows (wrow: 16-byte vectors of T along k) with `rows` ≤ MM activation rows (xrow(m)
// of T, the same layout), shared by gemv_rows and grouped_gemv_bf16: each lane converts its weight vectors
// once a step and FMAs them against every row's; out[m·ldo + n0 + r] as reduce_store writes it.
template <class T, int MM, int R, class XRow, class TO>
__device__ __forceinline__ void rows_dot(const Vec<T, 16 / sizeof(T)>* const (&wrow)[R], int rows, int64_t K, XRow xrow, int64_t n0, int64_t N,
                                         TO* out, int64_t ldo) {
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float acc[R][MM];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < MM; m++) acc[r][m] = 0.0f;
  auto step = [&](int64_t kv, const Vec<T, VEC> (&wv)[R]) {  // kv: this lane's 16-byte vector along k
    float wf[R][VEC];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int k = 0; k < VEC; k++) wf[r][k] = to_f<T>(wv[r].v[k]);
#pragma unroll
    for (int m = 0; m < MM; m++) {
      if (m >= rows) break;
      const Vec<T, VEC> xv = reinterpret_cast<const Vec<T, VEC>*>(xrow(m))[kv];
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int k = 0; k < VEC; k++) acc[r][m] = fmaf(wf[r][k], to_f<T>(xv.v[k]), acc[r][m]);
    }
  };
  stream_rows<R>(wrow, (int64_t)wid * 32 + lane, (int64_t)nw * 32, K / VEC, step);
  reduce_store<R, MM>(acc, n0, N, out, ldo, rows);
}

template <class T, int MM, int R>
__device__ void gemv_rows(int64_t N, int64_t K, T* out, int64_t ldo, const T* x, int64_t ldx, const T* w, int64_t ldw) {
  constexpr int VEC = 16 / sizeof(T);
  const int64_t n0 = (int64_t)blockIdx.x * R;
  const Vec<T, VEC>* wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) wrow[r] = reinterpret_cast<const Vec<T, VEC>*>(w + min(n0 + r, N - 1) * ldw);  // a missing last row re-reads row N−1, never written
  rows_dot<T, MM, R>(wrow, MM, K, [&](int m) { return x + m * ldx; }, n0, N, out, ldo);
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

// Grouped GEMV for decode-sized MoE steps: out [M, N] = x [M, K] · W[e]ᵀ over the expert segments
// [off[e], off[e+1]) of x's rows (the contract of grouped_matmul in kernels/moe.cu, W [E, N, K] bf16). A decode
// step has a row or a few per expert (batch 1: k rows, one per picked expert), where the tensor-core kernel's
// 128 × 128 tiles multiply zeros and its few busy CTAs stream the weights through a 3-stage ring far below
// copy bandwidth. Measured (bench/moe.ts, H100, 2026-12-06): 4 rows of the mid config's gate projection
// (N 512, K 2 048, four experts) 0.022 ms here against 0.044 on the tensor cores (383 GB/s of weights: still
// latency-bound), but its down projection (N 2 048, K 512) 0.024 against 0.018, and 64 rows 0.117 against
// 0.045 — so the host takes this kernel only for ≤ 8 rows with K ≥ N (moeTune). Here, as gemv_rows: a block owns
// R = 2 weight rows of one segment's expert and up to GG_MM of its x rows (a row tile of segments.cuh with
// BM = GG_MM), its warps split k, each lane streams 16 bytes of both rows a step, two steps in flight; the x
// rows come through L1. grid = (⌈N/2⌉, ⌈M/GG_MM⌉ + min(E + 2, M)) bounds the tiles (each non-empty segment adds
// at most one partial tile); blocks past the last tile exit. Rows outside every expert (before off[0], from
// off[E] on) are written as zeros, as the CPU reference writes them. Rounding: f32 sums (per lane in k order,
// then the warp's shuffle tree, then the warps in order), rounded once to bf16, as the tensor-core kernel
// rounds its own f32 sum: each within the op tests' bf16 bound of the CPU's result, not bit for bit.
#define GG_MM 8
// This block's row tile (segments.cuh): false when there is nothing more to do — past the last tile, or a
// tile of rows outside every expert, which is written as zeros here (R output columns from n0).
template <int R, class TO>
__device__ __forceinline__ bool gg_tile(int64_t M, int64_t N, int64_t E, const int32_t* off, TO* out, int64_t n0, int* seg, int64_t* r0, int* rows) {
  __shared__ int seg_s, r0_s, rows_s;
  if (threadIdx.x == 0) gm_find_tile<GG_MM>(M, E, off, &seg_s, &r0_s, &rows_s);
  __syncthreads();
  *seg = seg_s;
  *r0 = r0_s;
  *rows = rows_s;
  if (*seg == -2) return false;
  if (*seg < 0 || *seg >= E) {
    for (int i = threadIdx.x; i < *rows * R; i += blockDim.x)
      if (n0 + i % R < N) out[(*r0 + i / R) * N + n0 + i % R] = from_f<TO>(0.0f);
    return false;
  }
  return true;
}

extern "C" __global__ void grouped_gemv_bf16(int64_t M, int64_t N, int64_t K, int64_t E, __nv_bfloat16* out, const __nv_bfloat16* x,
                                             const __nv_bfloat16* W, const int32_t* off) {
  constexpr int R = 2, VEC = 8;
  const int64_t n0 = (int64_t)blockIdx.x * R;
  int seg, rows;
  int64_t r0;
  if (!gg_tile<R>(M, N, E, off, out, n0, &seg, &r0, &rows)) return;
  const __nv_bfloat16* We = W + (int64_t)seg * N * K;
  const Vec<__nv_bfloat16, VEC>* wrow[R];
#pragma unroll
  for (int r = 0; r < R; r++) wrow[r] = reinterpret_cast<const Vec<__nv_bfloat16, VEC>*>(We + min(n0 + r, N - 1) * K);
  rows_dot<__nv_bfloat16, GG_MM, R>(wrow, rows, K, [&](int m) { return x + (r0 + m) * K; }, n0, N, out + r0 * N, N);
}

// Decode with DeepSeek's FP8 block scaling, M = MM rows (1, 2, 3, 5, 6, 7):
//   out[m, n] = Σ_kb sw[n/128, kb] · sx[kb, m] · Σ_{k ∈ kb} w[n, k] · x[m, k]
// with w [N, K] and x [M, K] in e4m3, sx [K/128, M] (one f32 scale per 128 activations of a row, M fastest,
// the layout fp8Linear takes) and sw one per 128×128 weight tile (row pitch swp, unpadded). cuBLASLt has no
// block-scaled algorithm when M is not a multiple of 4 (fp8Linear would pad the rows: 29–34 µs at 7168 ×
// 2048 against 8–17 µs here); this is the same weight stream as gemv_rows: a block owns R = 2 rows, its warps split k,
// each lane takes 16 codes (16 bytes, inside one 128-block) of both rows per step, two steps in flight.
// Codes go through the hardware e4m3x2 → f16x2 conversion (exact), then f32; each 16-term partial dot is
// taken in f32 and scaled once by its two block scales.
__device__ __forceinline__ void e4m3x16_to_f32(const uint4& v, float (&f)[16]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)((w[i] >> (16 * h)) & 0xffffu), __NV_E4M3);
      const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&r));
      f[i * 4 + h * 2] = p.x;
      f[i * 4 + h * 2 + 1] = p.y;
    }
  }
}
// The block-scaled FP8 dot shared by gemv_e4m3_block and grouped_gemv_e4m3: R = 2 weight rows (wrow, and
// srow their 128-block scales along k) against `rows` ≤ MM activation rows, xrow(m) row m's codes and
// xscale(m, kb) its scale of 128-block kb; out[m·ldo + n0 + r] as reduce_store writes it.
template <int MM, class TO, class XRow, class XScale>
__device__ __forceinline__ void e4m3_rows_dot(const uint4* const (&wrow)[2], const float* const (&srow)[2], int rows, int64_t K, XRow xrow,
                                              XScale xscale, int64_t n0, int64_t N, TO* out, int64_t ldo) {
  constexpr int R = 2;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float acc[R][MM];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < MM; m++) acc[r][m] = 0.0f;
  auto step = [&](int64_t kv, const uint4 (&wv)[R]) {
    const int64_t kb = kv >> 3;  // 8 vectors of 16 codes per 128-block
    float wf[R][16], ws[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      e4m3x16_to_f32(wv[r], wf[r]);
      ws[r] = srow[r][kb];
    }
#pragma unroll
    for (int m = 0; m < MM; m++) {
      if (m >= rows) break;
      float xf[16];
      e4m3x16_to_f32(reinterpret_cast<const uint4*>(xrow(m))[kv], xf);
      const float s = xscale(m, kb);
#pragma unroll
      for (int r = 0; r < R; r++) {
        float d = 0.0f;
#pragma unroll
        for (int k = 0; k < 16; k++) d = fmaf(wf[r][k], xf[k], d);
        acc[r][m] = fmaf(d, s * ws[r], acc[r][m]);
      }
    }
  };
  stream_rows<R>(wrow, (int64_t)wid * 32 + lane, (int64_t)nw * 32, K / 16, step);
  reduce_store<R, MM>(acc, n0, N, out, ldo, rows);
}

template <class TO, int MM>
__device__ void gemv_e4m3_block(int64_t N, int64_t K, TO* out, const uint8_t* x, const float* sx, const uint8_t* w, const float* sw, int64_t swp) {
  constexpr int R = 2;
  const int64_t n0 = (int64_t)blockIdx.x * R;
  const uint4* wrow[R];
  const float* srow[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int64_t n = min(n0 + r, N - 1);  // a missing last row re-reads row N−1, never written
    wrow[r] = reinterpret_cast<const uint4*>(w + n * K);
    srow[r] = sw + (n >> 7) * swp;
  }
  e4m3_rows_dot<MM>(wrow, srow, MM, K, [&](int m) { return x + m * K; }, [&](int m, int64_t kb) { return sx[kb * MM + m]; }, n0, N, out, N);
}
#define GEMV8(TN, TO, MM)                                                                                              \
  extern "C" __global__ void gemv_e4m3_block_##TN##_m##MM(int64_t N, int64_t K, TO* out, const uint8_t* x,             \
                                                          const float* sx, const uint8_t* w, const float* sw, int64_t swp) { \
    gemv_e4m3_block<TO, MM>(N, K, out, x, sx, w, sw, swp);                                                             \
  }
// M = 4 and 8 are not instantiated: there cuBLASLt runs without padding and measured faster (10.9 µs
// against 12.0 and 17.5 at 7168 × 2048); every other M up to 8 is 2–4× faster here than padded cuBLASLt.
#define GEMV8ALL(TN, TO) GEMV8(TN, TO, 1) GEMV8(TN, TO, 2) GEMV8(TN, TO, 3) GEMV8(TN, TO, 5) GEMV8(TN, TO, 6) GEMV8(TN, TO, 7)
GEMV8ALL(bf16, __nv_bfloat16)
GEMV8ALL(f32, float)

// grouped_gemv_e4m3_*: the grouped GEMV above with FP8 expert weights (grouped_matmul_fp8's contract: q e4m3
// [M, K] with sq f32 [M, ⌈K/128⌉], w8 e4m3 [E, N, K] with sw f32 [E, ⌈N/128⌉, ⌈K/128⌉]), each lane's 16-code
// partial dot scaled once by its two block scales as gemv_e4m3_block does. The SIMT kernel it stands in for at
// decode reads the codes a byte at a time through 64 × 64 tiles. K % 16 == 0 (a 16-code vector never straddles
// a 128-block) and 16-byte aligned rows (the host checks).
template <class TO>
__device__ void grouped_gemv_e4m3(int64_t M, int64_t N, int64_t K, int64_t E, TO* out, const uint8_t* q, const float* sq, const uint8_t* w8,
                                  const float* sw, const int32_t* off) {
  constexpr int R = 2;
  const int64_t n0 = (int64_t)blockIdx.x * R;
  int seg, rows;
  int64_t r0;
  if (!gg_tile<R>(M, N, E, off, out, n0, &seg, &r0, &rows)) return;
  const int64_t nbK = (K + 127) >> 7, nbN = (N + 127) >> 7;
  const uint4* wrow[R];
  const float* srow[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int64_t n = min(n0 + r, N - 1);  // a missing last row re-reads row N−1, never written
    wrow[r] = reinterpret_cast<const uint4*>(w8 + ((int64_t)seg * N + n) * K);
    srow[r] = sw + ((int64_t)seg * nbN + (n >> 7)) * nbK;
  }
  e4m3_rows_dot<GG_MM>(wrow, srow, rows, K, [&](int m) { return q + (r0 + m) * K; }, [&](int m, int64_t kb) { return sq[(r0 + m) * nbK + kb]; }, n0, N,
                       out + r0 * N, N);
}
#define GGEMV8(TN, TO)                                                                                                 \
  extern "C" __global__ void grouped_gemv_e4m3_##TN(int64_t M, int64_t N, int64_t K, int64_t E, TO* out, const uint8_t* q, \
                                                    const float* sq, const uint8_t* w8, const float* sw, const int32_t* off) { \
    grouped_gemv_e4m3<TO>(M, N, K, E, out, q, sq, w8, sw, off);                                                         \
  }
GGEMV8(bf16, __nv_bfloat16)
GGEMV8(f32, float)
