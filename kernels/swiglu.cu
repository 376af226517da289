// SwiGLU: out[r, j] = silu(g[r, j]) · u[r, j] with silu(g) = g / (1 + e^(−g)), in f32 (f64 for f64).
// g and u are row-strided views (row strides gs, us) so the two halves of one fused [rows, 2F]
// projection feed it without a copy; out is contiguous [rows, F]. The _v kernels move 16 bytes per
// access and need F, both row strides and every base address 16-byte aligned in elements.
#include "common.cuh"

template <class T, int VEC>
__device__ void swiglu(int64_t rows, int64_t F, T* out, const T* g, int64_t gs, const T* u, int64_t us) {
  typedef typename Acc<T>::type A;
  const int64_t fv = F / VEC;
  const int64_t n = rows * fv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / fv, j = i - r * fv;
    const Vec<T, VEC> a = reinterpret_cast<const Vec<T, VEC>*>(g + r * gs)[j];
    const Vec<T, VEC> b = reinterpret_cast<const Vec<T, VEC>*>(u + r * us)[j];
    Vec<T, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; k++) {
      const A x = to_acc<T>(a.v[k]);
      o.v[k] = from_acc<T>(x / ((A)1 + exp(-x)) * to_acc<T>(b.v[k]));
    }
    reinterpret_cast<Vec<T, VEC>*>(out + r * F)[j] = o;
  }
}
#define SWIGLU(NAME, T, VEC)                                                                                         \
  extern "C" __global__ void NAME(int64_t rows, int64_t F, T* out, const T* g, int64_t gs, const T* u, int64_t us) { \
    swiglu<T, VEC>(rows, F, out, g, gs, u, us);                                                                      \
  }
SWIGLU(swiglu_f32, float, 1)
SWIGLU(swiglu_f32_v4, float, 4)
SWIGLU(swiglu_bf16, __nv_bfloat16, 1)
SWIGLU(swiglu_bf16_v8, __nv_bfloat16, 8)
SWIGLU(swiglu_f16, __half, 1)
SWIGLU(swiglu_f64, double, 1)
