// Host stand-in for kernels/common.cuh when kernels/sparse_mla_bwd.cu and kernels/indexer_train.cu are
// emulated on the CPU (scripts/kernel-emu/run-dsa-train.mjs): the sparse MLA shim (../shim/common.cuh)
// plus what these kernels use beyond it — f32 atomicAdd and atomicOr on host atomics, double warp
// shuffles, max, and common.cuh's block reductions (same code, on the emulated barriers).
#pragma once
#include "../shim/common.cuh"
#include <atomic>
double __shfl_xor_sync(unsigned, double v, int o);
template <class A, class B> inline auto max(A a, B b) { return a < b ? b : a; }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
template <class A>
inline A block_sum(A v, A* red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[wid] = v;
  __syncthreads();
  A t = lane < (int)nw ? red[lane] : (A)0;
  return warp_sum(t);
}
template <class A>
inline A block_max(A v, A* red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[wid] = v;
  __syncthreads();
  A t = lane < (int)nw ? red[lane] : (A)(-INFINITY);
  return warp_max(t);
}
