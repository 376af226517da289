// Indexing along one axis, with the CPU backend's index arithmetic (outer · axis · inner flattening):
//   gather:      out[a, j, c] = x[a, idx[a, j, c], c]                      (torch.gather)
//   scatter_add: out[a, idx[a, j, c], c] += src[a, j, c]                   (torch.scatter_add_)
//   index_select: out[a, j, c] = x[a, idx[j], c]
//   index_add:   out[a, idx[j], c] += src[a, j, c]
// Indices are i64, i32 or u8 (dtype code); an index outside [0, size) raises the device error word
// instead of touching memory, and the host throws at the next synchronize. Adds are atomic (order of
// accumulation is not fixed); moves copy raw elements of `W` bytes.
#include "common.cuh"

__device__ __forceinline__ int64_t ld_index(const void* p, int64_t i, int dt) {
  switch (dt) {
    case DT_I64: return ((const int64_t*)p)[i];
    case DT_I32: return ((const int32_t*)p)[i];
    default: return ((const uint8_t*)p)[i];
  }
}

// Runs act(p, a, j, k) for every position p = (a·J + j)·inner + c of an [outer, J, inner] index space, with
// k read from idx at p (BY_POS: one index per position, gather/scatter_add) or at j (one per slice,
// index_select/index_add). An index outside [0, X) is reported through err and its position skipped.
template <bool BY_POS, class Act>
__device__ __forceinline__ void for_each_index(int64_t n, int64_t J, int64_t inner, int64_t X, const void* idx, int idx_dt, int* err, Act act) {
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
    const int64_t a = p / (J * inner), j = (p / inner) % J;
    const int64_t k = ld_index(idx, BY_POS ? p : j, idx_dt);
    if (k < 0 || k >= X) {
      raise_index(err, k, X);
      continue;
    }
    act(p, a, j, k);
  }
}

template <class W>
__device__ void gather(int64_t n, int64_t J, int64_t inner, int64_t X, int64_t x_inner, W* out, const W* x, const void* idx, int idx_dt, int* err) {
  for_each_index<true>(n, J, inner, X, idx, idx_dt, err, [&](int64_t p, int64_t a, int64_t, int64_t k) { out[p] = x[(a * X + k) * x_inner + p % inner]; });
}
template <class W>
__device__ void index_select(int64_t n, int64_t J, int64_t inner, int64_t X, W* out, const W* x, const void* idx, int idx_dt, int* err) {
  for_each_index<false>(n, J, inner, X, idx, idx_dt, err, [&](int64_t p, int64_t a, int64_t, int64_t k) { out[p] = x[(a * X + k) * inner + p % inner]; });
}
#define MOVE(W, S)                                                                                                     \
  extern "C" __global__ void gather_##S(int64_t n, int64_t J, int64_t inner, int64_t X, int64_t x_inner, W* out, const W* x, \
                                        const void* idx, int idx_dt, int* err) {                                     \
    gather<W>(n, J, inner, X, x_inner, out, x, idx, idx_dt, err);                                                    \
  }                                                                                                                    \
  extern "C" __global__ void index_select_##S(int64_t n, int64_t J, int64_t inner, int64_t X, W* out, const W* x,      \
                                              const void* idx, int idx_dt, int* err) {                               \
    index_select<W>(n, J, inner, X, out, x, idx, idx_dt, err);                                                       \
  }
MOVE(uint8_t, 1)
MOVE(uint16_t, 2)
MOVE(uint32_t, 4)
MOVE(uint64_t, 8)

__device__ __forceinline__ void atomic_add_t(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_t(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_t(__nv_bfloat16* p, __nv_bfloat16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_t(__half* p, __half v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_t(int32_t* p, int32_t v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add_t(int64_t* p, int64_t v) { atomicAdd((unsigned long long*)p, (unsigned long long)v); }

// scatter_add: p runs over idx ([outer, J, inner]); out has X along the axis (o_inner after it), src has S.
template <class T>
__device__ void scatter_add(int64_t n, int64_t J, int64_t inner, int64_t X, int64_t o_inner, int64_t S, int64_t s_inner, T* out,
                            const void* idx, int idx_dt, const T* src, int* err) {
  for_each_index<true>(n, J, inner, X, idx, idx_dt, err, [&](int64_t p, int64_t a, int64_t j, int64_t k) {
    const int64_t c = p % inner;
    atomic_add_t(out + (a * X + k) * o_inner + c, src[(a * S + j) * s_inner + c]);
  });
}
// index_add: p runs over src ([outer, J, inner]).
template <class T>
__device__ void index_add(int64_t n, int64_t J, int64_t inner, int64_t X, T* out, const void* idx, int idx_dt, const T* src, int* err) {
  for_each_index<false>(n, J, inner, X, idx, idx_dt, err, [&](int64_t p, int64_t a, int64_t, int64_t k) { atomic_add_t(out + (a * X + k) * inner + p % inner, src[p]); });
}
#define ADDS(T, S)                                                                                                     \
  extern "C" __global__ void scatter_add_##S(int64_t n, int64_t J, int64_t inner, int64_t X, int64_t o_inner, int64_t Sd, \
                                             int64_t s_inner, T* out, const void* idx, int idx_dt, const T* src, int* err) { \
    scatter_add<T>(n, J, inner, X, o_inner, Sd, s_inner, out, idx, idx_dt, src, err);                                 \
  }                                                                                                                    \
  extern "C" __global__ void index_add_##S(int64_t n, int64_t J, int64_t inner, int64_t X, T* out, const void* idx, int idx_dt, \
                                           const T* src, int* err) {                                                 \
    index_add<T>(n, J, inner, X, out, idx, idx_dt, src, err);                                                        \
  }
ADDS(float, f32)
ADDS(double, f64)
ADDS(__nv_bfloat16, bf16)
ADDS(__half, f16)
ADDS(int32_t, i32)
ADDS(int64_t, i64)
