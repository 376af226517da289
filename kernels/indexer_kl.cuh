// What the indexer's training kernels share (kernels/indexer_train.cu, the CUDA-core path, and
// kernels/indexer_train_gemm.cu, the cuBLASLt path): which columns of a row are entries, and the end of
// the KL loss once each entry's target mass is known. One definition, so both paths select and normalise
// alike. Needs common.cuh (block_sum, block_max) and NT, the block size, before it.
#pragma once

// Key row of column `col` of row i, or −1 (outside the range / a hole): sparse rows name their keys in
// indices [Tq, N] (−1 = hole), dense rows take the keys [start_i, end_i) clamped to [0, Tk).
__device__ __forceinline__ int64_t entry_row(int64_t i, int64_t col, int64_t N, int64_t Tk, const int32_t* start, const int32_t* end,
                                             const int32_t* indices) {
  if (indices) {
    if (col >= N) return -1;
    const int32_t t = indices[i * N + col];
    return (t >= 0 && (int64_t)t < Tk) ? t : -1;
  }
  const int64_t s = min(max((int64_t)start[i], (int64_t)0), Tk);
  const int64_t e = min(max((int64_t)end[i], (int64_t)0), Tk);
  return (col >= s && col < e) ? col : -1;
}

// Row i of the KL loss, given g[c] = a_c, the head-summed attention mass of each entry c of [c0, c1):
//   p_c = a_c / P (P = Σ a), q = softmax(I) over the entries,
//   loss_i = Σ_{p_c > 0} p_c (log p_c − log q_c),  g_c ← q_c − p_c (∂loss/∂I_c) on the entries.
// In double: P sums up to 2048 masses of very different sizes, and p·log p needs log(P) to far below f32's
// rounding for the sum to match the CPU's f64 reference. A row with no entry or no mass (P = 0) gets loss 0
// and gradient 0. Every thread of the block calls it; non-entries of [c0, c1) keep their g.
__device__ __forceinline__ void indexer_kl_finish(int64_t i, int64_t c0, int64_t c1, int64_t N, int64_t Tk, const int32_t* start,
                                                  const int32_t* end, const int32_t* indices, const float* I, float* g, float* loss,
                                                  double* redd) {
  const int tid = threadIdx.x;
  double P = 0.0, m = -INFINITY;
  for (int64_t c = c0 + tid; c < c1; c += NT) {
    if (entry_row(i, c, N, Tk, start, end, indices) < 0) continue;
    P += (double)g[c];
    m = fmax(m, (double)I[c]);
  }
  P = block_sum(P, redd);
  m = block_max(m, redd);
  if (!(P > 0.0)) {
    for (int64_t c = c0 + tid; c < c1; c += NT) g[c] = 0.0f;
    if (tid == 0) loss[i] = 0.0f;
    return;
  }
  double Z = 0.0;
  for (int64_t c = c0 + tid; c < c1; c += NT)
    if (entry_row(i, c, N, Tk, start, end, indices) >= 0) Z += exp((double)I[c] - m);
  Z = block_sum(Z, redd);
  const double lz = m + log(Z);
  double L = 0.0;
  for (int64_t c = c0 + tid; c < c1; c += NT) {
    if (entry_row(i, c, N, Tk, start, end, indices) < 0) continue;
    const double p = (double)g[c] / P;
    const double lq = (double)I[c] - lz;
    if (p > 0.0) L += p * (log(p) - lq);
    g[c] = (float)(exp(lq) - p);
  }
  L = block_sum(L, redd);
  if (tid == 0) loss[i] = (float)L;
}
