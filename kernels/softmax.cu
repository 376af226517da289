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

// Register-cached single-pass variant (NV vectors per thread, NV · blockDim · VEC ≥ D): the row is read
// once. Each thread takes its local max m_t and sum s_t = Σ e^(z − m_t) over its registers; the block
// then merges the (m, s) pairs once (one block reduction per row instead of three),
//   M = max m_t,  S = Σ s_t · e^(m_t − M),
// and the output pass recomputes e^(z − M) / S from the cached inputs. Caching the exponentials instead
// would need NV·VEC more registers and spills at NV ≥ 4; the exponentials are 2^((z − m)·log2 e) on the
// MUFU unit (ex2.approx, ~2 ulp, far inside the f32 tolerance), and bf16 results are packed by the
// hardware conversion (pack_vec): at ~10 instructions per element this kernel is otherwise issue-bound. As in rmsnorm_cached, the grid is
// persistent and the next row's loads are issued before this row's reduction, so a block never waits a
// full DRAM latency per row.
// Log-softmax recomputes z − M − log S from the cached inputs (exact near the max). A NaN anywhere
// makes s_t NaN, which the merge carries to S, so the whole row is NaN as on the CPU; a fully masked
// row has M = −∞ and S = 0, and 0/0 gives NaN as torch does.
__device__ __forceinline__ void ms_merge_f(float& m, float& s, float mo, float so) {
  const float M = fmaxf(m, mo);
  if (M == -INFINITY) {
    s = s + so;  // both empty (0) unless a NaN is carried
  } else {
    s = s * expf(m - M) + so * expf(mo - M);
  }
  m = M;
}
template <class T, int VEC, int NV, bool LOGM, bool MASK>
__device__ void softmax_cached(int64_t rows, int64_t D, float sc, T* out, const T* x, const uint8_t* mask, int64_t mask_rows) {
  constexpr float LOG2E = 1.4426950408889634f;
  __shared__ float red_m[32], red_s[32];
  const int64_t nv = D / VEC;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  Vec<T, VEC> cache[NV], nxt[NV];
  Vec<uint8_t, VEC> mk[NV], mn[NV];
  auto load = [&](int64_t row, Vec<T, VEC>* dx, Vec<uint8_t, VEC>* dm) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    const Vec<uint8_t, VEC>* mr = MASK ? reinterpret_cast<const Vec<uint8_t, VEC>*>(mask + (row % mask_rows) * D) : nullptr;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
        dx[c] = xr[j];
        if (MASK) dm[c] = mr[j];
      }
    }
  };
  // z = scale · x, or −∞ where masked out
  auto zval = [&](int c, int k) -> float {
    const float z = to_f<T>(cache[c].v[k]) * sc;
    return (MASK && mk[c].v[k] == 0) ? -INFINITY : z;
  };
  int64_t row = blockIdx.x;
  if (row < rows) load(row, cache, mk);
  for (; row < rows; row += gridDim.x) {
    if (row + gridDim.x < rows) load(row + gridDim.x, nxt, mn);  // next row in flight during this one
    float m = -INFINITY;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int k = 0; k < VEC; k++) m = fmaxf(m, zval(c, k));  // fmaxf skips NaN: NaN reaches s below
      }
    }
    // a thread with nothing unmasked contributes s = 0. A NaN z (or z = +inf, where inf − inf = NaN)
    // makes its 2^((z − m)·log2 e) NaN, so s, the merged S and then the whole row are NaN, as on the CPU.
    const float mt = m == -INFINITY ? 0.0f : m;
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int k = 0; k < VEC; k++) s += ex2_approx((zval(c, k) - mt) * LOG2E);
      }
    }
    float M = m;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ms_merge_f(M, s, __shfl_xor_sync(0xffffffffu, M, o), __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();  // the previous row's readers are done with red_m/red_s
    if (lane == 0) {
      red_m[wid] = M;
      red_s[wid] = s;
    }
    __syncthreads();
    M = lane < nw ? red_m[lane] : -INFINITY;
    s = lane < nw ? red_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ms_merge_f(M, s, __shfl_xor_sync(0xffffffffu, M, o), __shfl_xor_sync(0xffffffffu, s, o));
    const float Mz = M == -INFINITY ? 0.0f : M;
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
    const float logs = LOGM ? logf(s) : 0.0f;
    const float inv = 1.0f / s;
#pragma unroll
    for (int c = 0; c < NV; c++) {
      const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
      if (j < nv) {
        float f[VEC];
#pragma unroll
        for (int k = 0; k < VEC; k++) {
          const float d = zval(c, k) - Mz;  // z − M first: exact near the max
          f[k] = LOGM ? d - logs : ex2_approx(d * LOG2E) * inv;
        }
        orow[j] = pack_vec<T, VEC>(f);
      }
    }
#pragma unroll
    for (int c = 0; c < NV; c++) {
      cache[c] = nxt[c];
      if (MASK) mk[c] = mn[c];
    }
  }
}
// One entry per (mask, log) combination (suffixes _m, _l, _ml): each compiles to its own register budget,
// so the common unmasked softmax is not held to the masked log-softmax's register count.
#define SMC1(NAME, SFX, T, VEC, NV, LOGM, MASK)                                                                        \
  extern "C" __global__ void NAME##_r##NV##SFX(int64_t rows, int64_t D, double scale, T* out, const T* x,              \
                                               const uint8_t* mask, int64_t mask_rows, int logm) {                    \
    softmax_cached<T, VEC, NV, LOGM, MASK>(rows, D, (float)scale, out, x, mask, mask_rows);                            \
  }
#define SMC(NAME, T, VEC, NV)                     \
  SMC1(NAME, , T, VEC, NV, false, false)          \
  SMC1(NAME, _l, T, VEC, NV, true, false)         \
  SMC1(NAME, _m, T, VEC, NV, false, true)         \
  SMC1(NAME, _ml, T, VEC, NV, true, true)
SMC(softmax_f32_v4, float, 4, 1)
SMC(softmax_f32_v4, float, 4, 2)
SMC(softmax_f32_v4, float, 4, 4)
SMC(softmax_f32_v4, float, 4, 8)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 1)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 2)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 4)
SMC(softmax_bf16_v8, __nv_bfloat16, 8, 8)
