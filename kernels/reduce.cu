// Reductions (sum, max, min) over any set of axes of a strided view.
// The host splits x's dims into kept dims (the output rows, an Iter with operand 0 = out, 1 = x) and
// reduced dims (their own Iter, operand 0 = x strides). Two schedules:
//  - reduce_rows: one block per output element; threads stride over the reduced elements. Best when
//    the reduced dims include x's fastest dim (coalesced reads along the row).
//  - reduce_cols: one thread per output element looping over the reduced elements. Best when the
//    kept dims hold the fastest dim (sumTo over a batch axis): neighbouring threads read neighbours.
// Sums accumulate in f64 (the CPU reference sums in f64 too); max/min propagate NaN.
#include "common.cuh"

#define R_SUM 0
#define R_MAX 1
#define R_MIN 2

__device__ __forceinline__ double rcombine(int op, double a, double b) {
  if (op == R_SUM) return a + b;
  if (a != a) return a;
  if (b != b) return b;
  return op == R_MAX ? (a > b ? a : b) : (a < b ? a : b);
}
__device__ __forceinline__ double rinit(int op) { return op == R_SUM ? 0.0 : op == R_MAX ? -INFINITY : INFINITY; }

extern "C" __global__ void __launch_bounds__(256) reduce_rows(Iter keep, Iter red, int64_t nout, int64_t R, int op,
                                                             void* out, int out_dt, const void* x, int x_dt) {
  __shared__ double sm[32];
  for (int64_t row = blockIdx.x; row < nout; row += gridDim.x) {
    int64_t ko[4];
    iter_offsets(keep, row, 2, ko);
    double acc = rinit(op);
    for (int64_t j = threadIdx.x; j < R; j += blockDim.x) {
      int64_t ro[4];
      iter_offsets(red, j, 1, ro);
      acc = rcombine(op, acc, load_as<double>(x, ko[1] + ro[0] - red.offset[0], x_dt));
    }
    // warp then block combine
    for (int o = 16; o > 0; o >>= 1) acc = rcombine(op, acc, __shfl_xor_sync(0xffffffffu, acc, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sm[wid] = acc;
    __syncthreads();
    if (wid == 0) {
      double t = lane < (int)(blockDim.x >> 5) ? sm[lane] : rinit(op);
      for (int o = 16; o > 0; o >>= 1) t = rcombine(op, t, __shfl_xor_sync(0xffffffffu, t, o));
      if (lane == 0) store_as<double>(out, ko[0], out_dt, t);
    }
  }
}

extern "C" __global__ void reduce_cols(Iter keep, Iter red, int64_t nout, int64_t R, int op,
                                       void* out, int out_dt, const void* x, int x_dt) {
  for (int64_t row = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; row < nout; row += (int64_t)gridDim.x * blockDim.x) {
    int64_t ko[4];
    iter_offsets(keep, row, 2, ko);
    double acc = rinit(op);
    for (int64_t j = 0; j < R; j++) {
      int64_t ro[4];
      iter_offsets(red, j, 1, ro);
      acc = rcombine(op, acc, load_as<double>(x, ko[1] + ro[0] - red.offset[0], x_dt));
    }
    store_as<double>(out, ko[0], out_dt, acc);
  }
}
