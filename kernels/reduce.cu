// Reductions (sum, max, min) over any set of axes of a strided view.
// The host splits x's dims into kept dims (the output rows, an Iter with operand 0 = out, 1 = x) and
// reduced dims (their own Iter, operand 0 = x strides). Three schedules:
//  - reduce_rows: one block per output element; threads stride over the reduced elements. Best when
//    the reduced dims include x's fastest dim (coalesced reads along the row).
//  - reduce_cols: one thread per output element looping over the reduced elements. Best when the
//    kept dims hold the fastest dim (sumTo over a batch axis): neighbouring threads read neighbours.
//    Only nout threads work, so it needs nout large enough to fill the GPU by itself.
//  - reduce_cols_partial + reduce_cols_finish: the same column schedule split along R for a short,
//    tall reduction. The RMSNorm weight gradient sums [16384, 512] over axis 0: reduce_cols ran 512
//    threads (4 SMs' worth) each reading 16384 elements one after another, 8.7 ms where the 32 MB of
//    reads take ~11 µs at 3 TB/s. Pass 1 is a 2-D grid, x over column blocks of 256 threads and y over
//    C chunks of R: thread (col, c) combines x[j, col] for j in [c·L, min(R, (c+1)·L)), L = ⌈R / C⌉,
//    into ws[c, col] (f64). Pass 2 combines the C partials of each column in chunk order and stores
//    the output dtype. The host picks C so that nout · C ≈ 4 · SMs · 256 threads are in flight (enough
//    loads outstanding to cover DRAM latency) with L ≥ 64 (so that the workspace, C · nout · 8 bytes,
//    is ≤ 1/32 of an f32 input and ≤ 2 · 4 · SMs · 256 · 8 bytes ≈ 2 MB, and pass 2 reads little) and
//    C ≤ 65535 (gridDim.y); it keeps the single pass when R ≤ 512 or nout alone reaches that thread
//    count. [16384, 512] → C = 256, L = 64, a 1 MB workspace. Warps still read 32 neighbouring columns
//    of one row (128 B for f32, 64 B for bf16) as in reduce_cols. Column layouts with nout < 256, which
//    went to reduce_rows (a handful of blocks reading with a stride), take this path too, with blocks of
//    ⌈nout / 32⌉ · 32 threads.
// Sums accumulate in f64 (the CPU reference sums in f64 too), so the split changes only the order of
// f64 additions: a relative difference ~R·2^-53 before the final rounding, far below 1 ulp of f32 or
// bf16 (the results agree except where the f64 sum lies within that distance of a rounding tie).
// max/min propagate NaN and are exact in any order.
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

// Combines x[red j in [j0, j1)] for one column at x offset xo. A rank-1 reduced Iter (every
// contiguous-or-uniformly-strided R, the common case) is one multiply per element and an unrolled loop
// of independent loads; higher ranks walk the innermost reduced dim by adding its stride and redo the
// index decomposition only when it wraps. DT is the dtype code when known at compile time, -1 otherwise.
template <int DT>
__device__ __forceinline__ double reduce_chunk(const Iter& red, int64_t j0, int64_t j1, int op, const void* x, int64_t xo,
                                               int x_dt) {
  const int dt = DT >= 0 ? DT : x_dt;
  double acc = rinit(op);
  if (red.rank == 1) {
    const int64_t st = red.stride[0][0];
    const int64_t base = xo;  // the reduced Iter's offset is 0 (x's own offset is in keep's operand 1)
#pragma unroll 8
    for (int64_t j = j0; j < j1; j++) acc = rcombine(op, acc, load_as<double>(x, base + j * st, dt));
    return acc;
  }
  const int last = red.rank - 1;
  const int64_t isz = red.size[last], ist = red.stride[0][last];
  int64_t ro[4];
  iter_offsets(red, j0, 1, ro);
  int64_t off = xo + ro[0] - red.offset[0];
  int64_t k = j0 % isz;
  for (int64_t j = j0; j < j1; j++) {
    acc = rcombine(op, acc, load_as<double>(x, off, dt));
    if (++k == isz) {
      k = 0;
      iter_offsets(red, j + 1, 1, ro);
      off = xo + ro[0] - red.offset[0];
    } else {
      off += ist;
    }
  }
  return acc;
}

// Pass 1: grid (⌈nout / blockDim⌉, C); ws[c · nout + col] = combine of chunk c of column col.
extern "C" __global__ void __launch_bounds__(256) reduce_cols_partial(Iter keep, Iter red, int64_t nout, int64_t R, int64_t chunk, int op,
                                                                     double* ws, const void* x, int x_dt) {
  const int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (col >= nout) return;
  const int64_t j0 = blockIdx.y * chunk;
  const int64_t j1 = j0 + chunk < R ? j0 + chunk : R;
  int64_t ko[4];
  iter_offsets(keep, col, 2, ko);
  double acc;
  switch (x_dt) {
    case DT_F32: acc = reduce_chunk<DT_F32>(red, j0, j1, op, x, ko[1], x_dt); break;
    case DT_BF16: acc = reduce_chunk<DT_BF16>(red, j0, j1, op, x, ko[1], x_dt); break;
    default: acc = reduce_chunk<-1>(red, j0, j1, op, x, ko[1], x_dt); break;
  }
  ws[blockIdx.y * nout + col] = acc;
}

// Pass 2: blocks of 256 threads = 32 columns × 8 chunk lanes. Lane y combines partials y, y+8, … of its
// column (a warp reads 32 neighbouring columns of one workspace row: 256 B), then the 8 lanes combine
// through shared memory in lane order and thread y = 0 stores the output dtype at the kept Iter's
// operand-0 offset. The order is fixed, so results are deterministic run to run.
extern "C" __global__ void __launch_bounds__(256) reduce_cols_finish(Iter keep, int64_t nout, int64_t chunks, int op, void* out, int out_dt,
                                                                    const double* ws) {
  __shared__ double sm[8][32];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  for (int64_t c0 = blockIdx.x * 32ll; c0 < nout; c0 += gridDim.x * 32ll) {
    const int64_t col = c0 + tx;
    double acc = rinit(op);
    if (col < nout) {
#pragma unroll 4
      for (int64_t c = ty; c < chunks; c += 8) acc = rcombine(op, acc, ws[c * nout + col]);
    }
    sm[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && col < nout) {
      double t = sm[0][tx];
#pragma unroll
      for (int y = 1; y < 8; y++) t = rcombine(op, t, sm[y][tx]);
      int64_t ko[4];
      iter_offsets(keep, col, 1, ko);
      store_as<double>(out, ko[0], out_dt, t);
    }
    __syncthreads();
  }
}
