// Top-k over the last dim, one block per row, exact and with the CPU's tie rule.
// Each element gets a unique 64-bit key: the high 32 bits order the values (larger first for largest=1,
// smaller first for largest=0; NaN counts as the largest value), the low 32 bits are 0xFFFFFFFF − index so that
// among equal values the lowest index ranks first. Because keys are unique, the k-th largest key
// splits the row into exactly k winners:
//  1. radix select: 8 passes of 8 bits over the row, each a shared-memory histogram of the next digit
//     among the elements that still match the prefix found so far;
//  2. gather the k elements with key ≥ that k-th key into scratch (global, k rounded up to a power of
//     two and padded with key 0, below every real key);
//  3. bitonic sort of the scratch descending, then decode value and index.
#include "common.cuh"

__device__ __forceinline__ uint32_t order_key(float v, int largest) {
  if (v != v) return largest ? 0xffffffffu : 0u;  // NaN is the largest value: first when largest, last otherwise
  const uint32_t b = __float_as_uint(v);
  const uint32_t o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // monotone map of floats onto uint32
  return largest ? o : ~o;
}

template <class T>
__device__ void topk_row(int64_t rows, int64_t n, int64_t k, int64_t kp2, int largest, T* values, int64_t* indices, const T* x,
                         unsigned long long* scratch) {
  __shared__ unsigned int hist[256];
  __shared__ unsigned long long prefix_s;
  __shared__ long long remaining_s;
  __shared__ unsigned int count_s;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    unsigned long long* sc = scratch + blockIdx.x * kp2;
    if (threadIdx.x == 0) {
      prefix_s = 0;
      remaining_s = k;
      count_s = 0;
    }
    unsigned long long mask = 0;
    for (int pass = 7; pass >= 0; pass--) {
      for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
      __syncthreads();
      const unsigned long long prefix = prefix_s;
      const int shift = pass * 8;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const unsigned long long key = ((unsigned long long)order_key(to_f<T>(xr[j]), largest) << 32) | (0xffffffffu - (uint32_t)j);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        long long rem = remaining_s;
        int d = 255;
        for (; d > 0; d--) {
          if ((long long)hist[d] >= rem) break;
          rem -= hist[d];
        }
        prefix_s = prefix | ((unsigned long long)d << shift);
        remaining_s = rem;
      }
      mask |= 0xffull << shift;
      __syncthreads();
    }
    const unsigned long long kth = prefix_s;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const unsigned long long key = ((unsigned long long)order_key(to_f<T>(xr[j]), largest) << 32) | (0xffffffffu - (uint32_t)j);
      if (key >= kth) sc[atomicAdd(&count_s, 1u)] = key;
    }
    __syncthreads();
    for (int64_t j = k + threadIdx.x; j < kp2; j += blockDim.x) sc[j] = 0;
    __syncthreads();
    // bitonic sort, descending
    for (int64_t size = 2; size <= kp2; size <<= 1) {
      for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
        for (int64_t t = threadIdx.x; t < kp2 / 2; t += blockDim.x) {
          const int64_t i = (t / stride) * 2 * stride + (t % stride);
          const int64_t jx = i + stride;
          const bool desc = (i & size) == 0;
          const unsigned long long a = sc[i], b = sc[jx];
          if ((a < b) == desc) {
            sc[i] = b;
            sc[jx] = a;
          }
        }
        __syncthreads();
      }
    }
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      const uint32_t idx = 0xffffffffu - (uint32_t)(sc[j] & 0xffffffffu);
      values[row * k + j] = xr[idx];
      indices[row * k + j] = idx;
    }
    __syncthreads();
  }
}
#define TOPK(NAME, T)                                                                                             \
  extern "C" __global__ void __launch_bounds__(512) NAME(int64_t rows, int64_t n, int64_t k, int64_t kp2, int largest, T* values, \
                                                          int64_t* indices, const T* x, unsigned long long* scratch) { \
    topk_row<T>(rows, n, k, kp2, largest, values, indices, x, scratch);                                            \
  }
TOPK(topk_f32, float)
TOPK(topk_bf16, __nv_bfloat16)
TOPK(topk_f16, __half)
