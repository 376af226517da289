// Softmax / log-softmax over the last dim, one block per row, optional boolean mask and pre-scale:
//   z_j = scale · x_j, or −∞ where mask[(row mod mask_rows), j] == 0
//   softmax_j = exp(z_j − m) / Σ exp(z − m),  log-softmax_j = z_j − m − log Σ exp(z − m)
//   and, where lse is given, lse[row] = m + log Σ exp(z − m) (attention's log-sum-exp, for its backward)
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
__device__ void softmax_row(int64_t rows, int64_t D, double scale, T* out, const T* x, const uint8_t* mask, int64_t mask_rows, int logm,
                            typename Acc<T>::type* lse) {
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
    if (lse && threadIdx.x == 0) lse[row] = total.m + logs;  // log Σ exp(z): −∞ for a fully masked row
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
                                  int64_t mask_rows, int logm, typename Acc<T>::type* lse) {                    \
    softmax_row<T, VEC>(rows, D, scale, out, x, mask, mask_rows, logm, lse);                                    \
  }
SOFTMAX(softmax_f32, float, 1)
SOFTMAX(softmax_f32_v4, float, 4)
SOFTMAX(softmax_bf16, __nv_bfloat16, 1)
SOFTMAX(softmax_bf16_v8, __nv_bfloat16, 8)
SOFTMAX(softmax_f16, __half, 1)
SOFTMAX(softmax_f64, double, 1)

// Register-cached single-pass variant (NV vectors per thread, NV · blockDim · VEC ≥ D): the row is read
// once. Everything runs in base 2 with the pre-scale folded in: u = x · c with c = scale · log2 e, so
//   softmax_j = 2^(u_j − K) / Σ 2^(u − K)   for any shift K (the shift cancels; K = max u avoids overflow)
//   log-softmax_j = (u_j − K)·ln 2 − ln Σ 2^(u − K) = x_j · scale − (K·ln 2 + ln S)
// Each thread takes its shift K_t from its own registers (K_t = c · max x when c ≥ 0, c · min x when not:
// the max of the raw inputs costs half an instruction per bf16 pair with the packed max) and its sum
// s_t = Σ 2^(x·c − K_t) (one FFMA and one MUFU ex2 per element); the block merges the (K, s) pairs once,
//   K = max K_t,  S = Σ s_t · 2^(K_t − K),
// and the output pass recomputes 2^(x·c − K) / S from the cached inputs (FFMA, ex2, FMUL per element).
// Caching the exponentials instead needs NV·VEC more registers and was measured slower (fewer blocks per
// SM). ex2.approx has ~2 ulp error, far inside the f32 tolerance; bf16 results are packed by the hardware
// conversion (pack_vec). As in rmsnorm_cached, the grid is persistent and the next row's loads are issued
// before this row's reduction, so a block never waits a full DRAM latency per row.
// A NaN anywhere makes s_t NaN (x·c − K_t is NaN), which the merge carries to S, so the whole row is NaN
// as on the CPU; so does +inf (inf − inf). A fully masked row has K = −∞ and S = 0, and 0/0 gives NaN as
// torch does. Masked elements are u = −∞, which 2^(−∞ − K) turns into 0.
__device__ __forceinline__ void ks_merge(float& K, float& s, float Ko, float so) {
  const float M = fmaxf(K, Ko);
  if (M == -INFINITY) {
    s = s + so;  // both empty (0) unless a NaN is carried
  } else {
    s = s * ex2_approx(K - M) + so * ex2_approx(Ko - M);
  }
  K = M;
}
// Max (or min, for a negative scale) of a 16-byte vector of raw inputs: packed bf16x2 compares for bf16.
template <class T, int VEC>
__device__ __forceinline__ float vec_extreme(const Vec<T, VEC>& v, bool hi) {
  float m = to_f<T>(v.v[0]);
#pragma unroll
  for (int k = 1; k < VEC; k++) m = hi ? fmaxf(m, to_f<T>(v.v[k])) : fminf(m, to_f<T>(v.v[k]));
  return m;
}
template <>
__device__ __forceinline__ float vec_extreme<__nv_bfloat16, 8>(const Vec<__nv_bfloat16, 8>& v, bool hi) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(v.v);
  __nv_bfloat162 a = hi ? __hmax2(p[0], p[1]) : __hmin2(p[0], p[1]);
  __nv_bfloat162 b = hi ? __hmax2(p[2], p[3]) : __hmin2(p[2], p[3]);
  a = hi ? __hmax2(a, b) : __hmin2(a, b);
  const float x = __low2float(a), y = __high2float(a);
  return hi ? fmaxf(x, y) : fminf(x, y);
}
template <class T, int VEC, int NV, bool LOGM, bool MASK>
__device__ void softmax_cached(int64_t rows, int64_t D, float sc, T* out, const T* x, const uint8_t* mask, int64_t mask_rows, float* lse) {
  constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;
  const float c = sc * LOG2E;
  const bool hi = c >= 0.0f;
  __shared__ float red_k[32], red_s[32];
  const int64_t nv = D / VEC;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  Vec<T, VEC> cache[NV], nxt[NV];
  Vec<uint8_t, VEC> mk[NV], mn[NV];
  auto load = [&](int64_t row, Vec<T, VEC>* dx, Vec<uint8_t, VEC>* dm) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    const Vec<uint8_t, VEC>* mr = MASK ? reinterpret_cast<const Vec<uint8_t, VEC>*>(mask + (row % mask_rows) * D) : nullptr;
    row_vectors<NV>(nv, [&](int c2, int64_t j) {
      dx[c2] = xr[j];
      if (MASK) dm[c2] = mr[j];
    });
  };
  // u − K for element k of cached vector i, or −∞ where masked out
  auto shifted = [&](int i, int k, float K) -> float {
    const float d = fmaf(to_f<T>(cache[i].v[k]), c, -K);
    return (MASK && mk[i].v[k] == 0) ? -INFINITY : d;
  };
  int64_t row = blockIdx.x;
  if (row < rows) load(row, cache, mk);
  for (; row < rows; row += gridDim.x) {
    if (row + gridDim.x < rows) load(row + gridDim.x, nxt, mn);  // next row in flight during this one
    // the thread's shift: the extreme raw input (unmasked only) times c
    float e = hi ? -INFINITY : INFINITY;
    row_vectors<NV>(nv, [&](int i, int64_t j) {
      if (MASK) {
#pragma unroll
        for (int k = 0; k < VEC; k++) {
          const float v = mk[i].v[k] ? to_f<T>(cache[i].v[k]) : (hi ? -INFINITY : INFINITY);
          e = hi ? fmaxf(e, v) : fminf(e, v);
        }
      } else {
        const float v = vec_extreme<T, VEC>(cache[i], hi);
        e = hi ? fmaxf(e, v) : fminf(e, v);
      }
    });
    // fmaxf/fminf skip NaN: a NaN input reaches s below. A thread with nothing unmasked has K_t = −∞ and
    // s = 0 (its shift is taken as 0 so that 2^(−∞ − 0) = 0 rather than NaN).
    float K = e * c;
    if (K != K) K = -INFINITY;  // c = 0 with an infinite extreme: 0 · inf
    const float Kt = K == -INFINITY ? 0.0f : K;
    float s = 0.0f;
    row_vectors<NV>(nv, [&](int i, int64_t j) {
#pragma unroll
      for (int k = 0; k < VEC; k++) s += ex2_approx(shifted(i, k, Kt));
    });
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ks_merge(K, s, __shfl_xor_sync(0xffffffffu, K, o), __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();  // the previous row's readers are done with red_k/red_s
    if (lane == 0) {
      red_k[wid] = K;
      red_s[wid] = s;
    }
    __syncthreads();
    K = lane < nw ? red_k[lane] : -INFINITY;
    s = lane < nw ? red_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ks_merge(K, s, __shfl_xor_sync(0xffffffffu, K, o), __shfl_xor_sync(0xffffffffu, s, o));
    const float Kz = K == -INFINITY ? 0.0f : K;
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
    const float inv = 1.0f / s;
    const float off = Kz * LN2 + logf(s);  // log-softmax: x·scale − (K ln 2 + ln S)
    if (lse && threadIdx.x == 0) lse[row] = K == -INFINITY ? -INFINITY : off;  // log Σ exp(x·scale)
    row_vectors<NV>(nv, [&](int i, int64_t j) {
      float f[VEC];
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        if (LOGM) {
          // a masked element is −∞ − off: −∞ in a row with anything unmasked, NaN in a fully masked row
          // (off = −∞ there), as the CPU's z − m − log s gives
          f[k] = (MASK && mk[i].v[k] == 0) ? -INFINITY - off : fmaf(to_f<T>(cache[i].v[k]), sc, -off);
        } else {
          f[k] = ex2_approx(shifted(i, k, Kz)) * inv;
        }
      }
      orow[j] = pack_vec<T, VEC>(f);
    });
#pragma unroll
    for (int i = 0; i < NV; i++) {
      cache[i] = nxt[i];
      if (MASK) mk[i] = mn[i];
    }
  }
}
// One entry per (mask, log) combination (suffixes _m, _l, _ml): each compiles to its own register budget,
// so the common unmasked softmax is not held to the masked log-softmax's register count.
#define SMC1(NAME, SFX, T, VEC, NV, LOGM, MASK)                                                                        \
  extern "C" __global__ void NAME##_r##NV##SFX(int64_t rows, int64_t D, double scale, T* out, const T* x,              \
                                               const uint8_t* mask, int64_t mask_rows, int logm, float* lse) {        \
    softmax_cached<T, VEC, NV, LOGM, MASK>(rows, D, (float)scale, out, x, mask, mask_rows, lse);                       \
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

// Softmax's backward over the last dim, one block per row (grid-stride over rows), from the forward's
// output y and the incoming gradient g (scale: the forward's pre-scale, whose chain rule is one more product):
//   dx_j = y_j · (g_j − Δ) · scale,   Δ = Σ_i g_i · y_i
// Pass 1 sums g·y per thread in the accumulation type (f32; f64 for f64), then across the block; pass 2
// re-reads the row (from L2) and writes. One kernel instead of the four passes of the composed formula
// (mul, row sum, sub, mul) and their three row-sized temporaries: the dense training attention's
// [B, S·H, S] f32 blocks (2 GiB each for the mid config) are read twice and written once.
template <class T, int VEC>
__device__ void softmax_bwd_row(int64_t rows, int64_t D, double scale, T* dx, const T* y, const T* g) {
  typedef typename Acc<T>::type A;
  __shared__ A red[32];
  __shared__ A total;
  const int64_t nv = D / VEC;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Vec<T, VEC>* yr = reinterpret_cast<const Vec<T, VEC>*>(y + row * D);
    const Vec<T, VEC>* gr = reinterpret_cast<const Vec<T, VEC>*>(g + row * D);
    Vec<T, VEC>* xr = reinterpret_cast<Vec<T, VEC>*>(dx + row * D);
    A acc = (A)0;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> a = yr[j], b = gr[j];
#pragma unroll
      for (int k = 0; k < VEC; k++) acc += to_acc<T>(a.v[k]) * to_acc<T>(b.v[k]);
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) red[wid] = acc;
    __syncthreads();
    if (wid == 0) {
      A t = lane < nw ? red[lane] : (A)0;
      for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
      if (lane == 0) total = t;
    }
    __syncthreads();
    const A delta = total;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> a = yr[j], b = gr[j];
      Vec<T, VEC> r;
#pragma unroll
      for (int k = 0; k < VEC; k++) r.v[k] = from_acc<T>(to_acc<T>(a.v[k]) * (to_acc<T>(b.v[k]) - delta) * (A)scale);
      xr[j] = r;
    }
    __syncthreads();  // red/total are reused by the next row
  }
}

#define SOFTMAX_BWD(NAME, T, VEC)                                                                              \
  extern "C" __global__ void NAME(int64_t rows, int64_t D, double scale, T* dx, const T* y, const T* g) {     \
    softmax_bwd_row<T, VEC>(rows, D, scale, dx, y, g);                                                         \
  }
SOFTMAX_BWD(softmax_bwd_f32, float, 1)
SOFTMAX_BWD(softmax_bwd_f32_v4, float, 4)
SOFTMAX_BWD(softmax_bwd_bf16, __nv_bfloat16, 1)
SOFTMAX_BWD(softmax_bwd_bf16_v8, __nv_bfloat16, 8)
SOFTMAX_BWD(softmax_bwd_f16, __half, 1)
SOFTMAX_BWD(softmax_bwd_f64, double, 1)
