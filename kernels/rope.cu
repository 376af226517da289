// Rotary position embedding on x [N, S, H, D] (contiguous) with cos/sin [S, D/2] in f32.
// Pair i of a head is (x[2i], x[2i+1]) when interleaved (the DeepSeek/Meta layout), else (x[i], x[i+D/2])
// (the NeoX "half-split" layout). Forward rotates by +θ, inverse by −θ (the backward of the forward):
//   y0 = x0·cos θ − x1·sin θ,   y1 = x1·cos θ + x0·sin θ
// One thread per pair; consecutive threads take consecutive pairs, so the interleaved layout reads
// whole 8-byte (f32) / 4-byte (bf16) pairs.
#include "common.cuh"

template <class T>
__device__ void rope(int64_t npairs, int64_t S, int64_t H, int64_t D, int interleaved, int inverse, T* out, const T* x,
                     const float* cs, const float* sn) {
  typedef typename Acc<T>::type A;
  const int64_t half = D / 2;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < npairs; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / half;  // (n, s, h) flattened
    const int64_t p = i - row * half;
    const int64_t t = (row / H) % S;
    const A c = (A)cs[t * half + p];
    const A s = inverse ? -(A)sn[t * half + p] : (A)sn[t * half + p];
    const int64_t i0 = interleaved ? row * D + 2 * p : row * D + p;
    const int64_t i1 = interleaved ? i0 + 1 : i0 + half;
    const A x0 = to_acc<T>(x[i0]), x1 = to_acc<T>(x[i1]);
    out[i0] = from_acc<T>(x0 * c - x1 * s);
    out[i1] = from_acc<T>(x1 * c + x0 * s);
  }
}
#define ROPE(NAME, T)                                                                                          \
  extern "C" __global__ void NAME(int64_t npairs, int64_t S, int64_t H, int64_t D, int interleaved, int inverse, \
                                  T* out, const T* x, const float* cs, const float* sn) {                       \
    rope<T>(npairs, S, H, D, interleaved, inverse, out, x, cs, sn);                                             \
  }
ROPE(rope_f32, float)
ROPE(rope_bf16, __nv_bfloat16)
ROPE(rope_f16, __half)
ROPE(rope_f64, double)
