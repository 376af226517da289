// Softmax / log-softmax over the last dim, one block per row, optional boolean mask and pre-scale:
//   z_j = scale · x_j, or −∞ where mask[(row mod mask_rows), j] == 0
//   softmax_j = exp(z_j − m) / Σ exp(z − m),  log-softmax_j = z_j − m − log Σ exp(z − m)
// Pass 1 keeps a running (max, sum) pair per thread (the online-softmax recurrence
// s ← s·e^(m_old − m_new) + e^(z − m_new)), merged across the block; pass 2 re-reads the row (from L2:
// a row is at most a few hundred KB) and writes. A fully masked row gives NaN, as torch does.
#include "common.cuh"

template <class A>
struct MS {
  A m, s;
};
template <class A>
__device__ __forceinline__ MS<A> ms_merge(MS<A> a, MS<A> b) {
  const A m = fmax(a.m, b.m);
  if (m == (A)-INFINITY) return MS<A>{m, (A)0};
  return MS<A>{m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
}

template <class T, int VEC>
__device__ void softmax_row(int64_t rows, int64_t D, double scale, T* out, const T* x, const uint8_t* mask, int64_t mask_rows, int logm) {
  typedef typename Acc<T>::type A;
  typedef MS<A> M;
  __shared__ M red[32];
  __shared__ M total;
  const int64_t nv = D / VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
    const uint8_t* mr = mask ? mask + (row % mask_rows) * D : nullptr;
    M acc{(A)-INFINITY, (A)0};
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> v = xr[j];
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        A z = to_acc<T>(v.v[k]) * (A)scale;
        if (mr && mr[j * VEC + k] == 0) z = (A)-INFINITY;
        if (z > acc.m) {
          acc.s = acc.s * exp(acc.m - z) + (A)1;
          acc.m = z;
        } else if (z != (A)-INFINITY) {
          acc.s += exp(z - acc.m);  // NaN z makes the sum NaN, so the row comes out NaN as on the CPU
        }
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      M b{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o)};
      acc = ms_merge(acc, b);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) red[wid] = acc;
    __syncthreads();
    if (wid == 0) {
      M t = lane < (int)(blockDim.x >> 5) ? red[lane] : M{(A)-INFINITY, (A)0};
      for (int o = 16; o > 0; o >>= 1) {
        M b{__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)};
        t = ms_merge(t, b);
      }
      if (lane == 0) total = t;
    }
    __syncthreads();
    const A m = total.m == (A)-INFINITY ? (A)0 : total.m;
    const A s = total.s;
    const A inv = (A)1 / s;
    const A logs = log(s);
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> v = xr[j];
      Vec<T, VEC> r;
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        A z = to_acc<T>(v.v[k]) * (A)scale;
        if (mr && mr[j * VEC + k] == 0) z = (A)-INFINITY;
        r.v[k] = from_acc<T>(logm ? (z - m) - logs : exp(z - m) * inv);  // z − m first: exact near the max
      }
      orow[j] = r;
    }
    __syncthreads();  // red/total are reused by the next row
  }
}

#define SOFTMAX(NAME, T, VEC)                                                                                  \
  extern "C" __global__ void NAME(int64_t rows, int64_t D, double scale, T* out, const T* x, const uint8_t* mask, \
                                  int64_t mask_rows, int logm) {                                                \
    softmax_row<T, VEC>(rows, D, scale, out, x, mask, mask_rows, logm);                                         \
  }
SOFTMAX(softmax_f32, float, 1)
SOFTMAX(softmax_f32_v4, float, 4)
SOFTMAX(softmax_bf16, __nv_bfloat16, 1)
SOFTMAX(softmax_bf16_v8, __nv_bfloat16, 8)
SOFTMAX(softmax_f16, __half, 1)
SOFTMAX(softmax_f64, double, 1)

// Register-cached variant (NV vectors per thread, NV · blockDim · VEC ≥ D): the row is read once, the
// max and the sum come from registers (exp recomputed in the output pass instead of re-reading x).
template <class T, int VEC, int NV>
__device__ void softmax_cached(int64_t rows, int64_t D, double scale, T* out, const T* x, const uint8_t* mask, int64_t mask_rows, int logm) {
  __shared__ float red[33];
  const int64_t nv = D / VEC;
  const float sc = (float)scale;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    const uint8_t* mr = mask ? mask + (row % mask_rows) * D : nullptr;
    Vec<T, VEC> cache[NV];
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) cache[c] = xr[j];
    }
    auto zval = [&](int c, int k, int64_t j) -> float {
      float z = to_f<T>(cache[c].v[k]) * sc;
      if (mr && mr[j * VEC + k] == 0) z = -INFINITY;
      return z;
    };
    float m = -INFINITY;
    bool nan = false;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int k = 0; k < VEC; k++) {
          const float z = zval(c, k, j);
          nan |= z != z;
          m = fmaxf(m, z);
        }
      }
    }
    m = block_max(m, red);
    const bool any_nan = block_sum(nan ? 1.0f : 0.0f, red) > 0.0f;
    if (m == -INFINITY) m = 0.0f;  // fully masked row: every exp is 0, the sum is 0, the output NaN
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int k = 0; k < VEC; k++) s += expf(zval(c, k, j) - m);
      }
    }
    s = block_sum(s, red);
    if (any_nan) s = __uint_as_float(0x7fc00000u);
    const float inv = 1.0f / s, logs = logf(s);
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
        Vec<T, VEC> o;
#pragma unroll
        for (int k = 0; k < VEC; k++) {
          const float z = zval(c, k, j);
          o.v[k] = from_f<T>(logm ? (z - m) - logs : expf(z - m) * inv);
        }
        orow[j] = o;
      }
    }
  }
}
#define SMC(NAME, T, VEC, NV)                                                                                          \
  extern "C" __global__ void NAME##_r##NV(int64_t rows, int64_t D, double scale, T* out, const T* x, const uint8_t* mask, \
                                          int64_t mask_rows, int logm) {                                               \
    softmax_cached<T, VEC, NV>(rows, D, scale, out, x, mask, mask_rows, logm);                                         \
  }
SMC(softmax_f32_v4, float, 4, 1)
SMC(softmax_f32_v4, float, 4, 2)
SMC(softmax_f32_v4, float, 4, 4)
SMC(softmax_f32_v4, float, 4, 8)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 1)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 2)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 4)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 8)
