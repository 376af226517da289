// Walsh–Hadamard transform (Sylvester order, unnormalised) over the last dim n (a power of two), times
// scale. Sylvester order H_2m = [[H_m, H_m], [H_m, −H_m]] is computed as log2(n) butterfly stages with
// doubling stride h: (a, b) → (a + b, a − b) for pairs j, j + h. One block per row; the row lives in
// dynamic shared memory (n · sizeof(A) bytes; the host raises the kernel's dynamic limit).
#include "common.cuh"

template <class T>
__device__ void hadamard(int64_t rows, int n, double scale, T* out, const T* x) {
  typedef typename Acc<T>::type A;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* v = reinterpret_cast<A*>(smem_raw);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    for (int j = threadIdx.x; j < n; j += blockDim.x) v[j] = to_acc<T>(x[row * n + j]);
    __syncthreads();
    for (int h = 1; h < n; h <<= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int i = (t / h) * 2 * h + (t % h);  // t-th pair of this stage
        const A a = v[i], b = v[i + h];
        v[i] = a + b;
        v[i + h] = a - b;
      }
      __syncthreads();
    }
    for (int j = threadIdx.x; j < n; j += blockDim.x) out[row * n + j] = from_acc<T>(v[j] * (A)scale);
    __syncthreads();
  }
}
#define HAD(NAME, T) \
  extern "C" __global__ void NAME(int64_t rows, int n, double scale, T* out, const T* x) { hadamard<T>(rows, n, scale, out, x); }
HAD(hadamard_f32, float)
HAD(hadamard_bf16, __nv_bfloat16)
HAD(hadamard_f16, __half)
HAD(hadamard_f64, double)
