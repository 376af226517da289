// Expert segments of a grouped GEMM's rows (kernels/moe.cu's grouped_matmul*, kernels/gemv.cu's
// grouped_gemv): the rows [off[e], off[e+1]) of expert e, cut into tiles of at most BM rows, one tile per
// blockIdx.y, found by walking the offsets on the device (no host read, so the launch is graph-capturable).
#pragma once
#include "common.cuh"

// The segment, first row and row count of row tile blockIdx.y (segments −1 = rows before off[0], 0..E−1 =
// experts, E = rows from off[E] on; each cut into tiles of BM rows); seg = −2 past the last tile.
template <int BM>
__device__ __forceinline__ void gm_find_tile(int64_t M, int64_t E, const int32_t* off, int* seg_o, int* r0_o, int* rows_o) {
  int64_t tile = blockIdx.y, seg = -2, r0 = 0, rows = 0;
  for (int64_t s = -1; s <= E; s++) {
    const int64_t a = s < 0 ? 0 : off[s];
    const int64_t b = s < 0 ? off[0] : (s == E ? M : off[s + 1]);
    const int64_t len = b > a ? b - a : 0;
    const int64_t nt = (len + BM - 1) / BM;
    if (tile < nt) {
      seg = s;
      r0 = a + tile * BM;
      rows = min((int64_t)BM, len - tile * BM);
      break;
    }
    tile -= nt;
  }
  *seg_o = (int)seg;
  *r0_o = (int)r0;
  *rows_o = (int)rows;
}
