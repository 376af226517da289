// The sm_80 warp-wide tensor-core operations the one-pass kernels use (kernels/common.cuh: ldmatrix_x4,
// ldmatrix_x4_trans, mma_bf16_16816), for the emulation's one-host-thread-per-lane warps (driver.h's
// exchange through the warp's buffer between two warp barriers). Fragment layouts as the PTX ISA gives
// them, with g = lane / 4, t = lane % 4:
//   ldmatrix .x4: lane l names row l % 8 of matrix l / 8; matrix m arrives in r[m], lane l holding row g's
//     elements 2t, 2t + 1 (.trans: elements (2t, g) and (2t + 1, g) of the matrix as stored, i.e. its
//     transpose's row g);
//   mma m16n8k16 row.col: A (16 × 16) a[0] = (g, 2t..2t+1), a[1] = (g + 8, 2t..), a[2] = (g, 2t + 8..),
//     a[3] = (g + 8, 2t + 8..); B (16 × 8, k × n) b0 = (2t..2t+1, g), b1 = (2t + 8..2t + 9, g);
//     D (16 × 8) d[0..1] = (g, 2t..2t+1), d[2..3] = (g + 8, 2t..2t+1).
// The products of bf16 values are exact in f32; the sum here is a double over k, then one f32 rounding
// added to d (the tensor core's own order and internal width are not modelled: the runner's tolerances
// are the op tests').
#pragma once
static uint32_t lane_word(int64_t (&buf)[32], int lane_src, int col) {
  const uint16_t* row = (const uint16_t*)(intptr_t)buf[lane_src];
  return (uint32_t)row[col] | ((uint32_t)row[col + 1] << 16);
}
void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* p) {
  Warp& w = g_w[threadIdx.x / 32];
  const int l = threadIdx.x % 32;
  w.buf[l] = (int64_t)(intptr_t)p;
  w.bar->arrive_and_wait();
  for (int m = 0; m < 4; m++) r[m] = lane_word(w.buf, 8 * m + l / 4, 2 * (l % 4));
  w.bar->arrive_and_wait();
}
void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* p) {
  Warp& w = g_w[threadIdx.x / 32];
  const int l = threadIdx.x % 32;
  w.buf[l] = (int64_t)(intptr_t)p;
  w.bar->arrive_and_wait();
  for (int m = 0; m < 4; m++) {
    const uint16_t* r0 = (const uint16_t*)(intptr_t)w.buf[8 * m + 2 * (l % 4)];
    const uint16_t* r1 = (const uint16_t*)(intptr_t)w.buf[8 * m + 2 * (l % 4) + 1];
    r[m] = (uint32_t)r0[l / 4] | ((uint32_t)r1[l / 4] << 16);
  }
  w.bar->arrive_and_wait();
}
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Warp& w = g_w[threadIdx.x / 32];
  const int l = threadIdx.x % 32;
  static thread_local float A[16][16], B[16][8];
  // three rounds through the warp's 64-bit slots: a[0..1], a[2..3], b0..b1
  uint32_t mine[3][2] = {{a[0], a[1]}, {a[2], a[3]}, {b0, b1}};
  uint32_t all[3][32][2];
  for (int round = 0; round < 3; round++) {
    memcpy(&w.buf[l], mine[round], 8);
    w.bar->arrive_and_wait();
    for (int s = 0; s < 32; s++) memcpy(all[round][s], &w.buf[s], 8);
    w.bar->arrive_and_wait();
  }
  auto lo = [](uint32_t v) { return bf16_bits_to_f32((uint16_t)(v & 0xffff)); };
  auto hi = [](uint32_t v) { return bf16_bits_to_f32((uint16_t)(v >> 16)); };
  for (int s = 0; s < 32; s++) {
    const int g = s / 4, t = s % 4;
    const uint32_t* a01 = all[0][s];
    const uint32_t* a23 = all[1][s];
    A[g][2 * t] = lo(a01[0]); A[g][2 * t + 1] = hi(a01[0]);
    A[g + 8][2 * t] = lo(a01[1]); A[g + 8][2 * t + 1] = hi(a01[1]);
    A[g][2 * t + 8] = lo(a23[0]); A[g][2 * t + 9] = hi(a23[0]);
    A[g + 8][2 * t + 8] = lo(a23[1]); A[g + 8][2 * t + 9] = hi(a23[1]);
    B[2 * t][g] = lo(all[2][s][0]); B[2 * t + 1][g] = hi(all[2][s][0]);
    B[2 * t + 8][g] = lo(all[2][s][1]); B[2 * t + 9][g] = hi(all[2][s][1]);
  }
  const int g = l / 4, t = l % 4;
  for (int u = 0; u < 4; u++) {
    const int row = g + (u >> 1) * 8, col = 2 * t + (u & 1);
    double s = 0;
    for (int k = 0; k < 16; k++) s += (double)A[row][k] * (double)B[k][col];
    d[u] = (float)((double)d[u] + s);
  }
}
