// indexer_kl_flash: the indexer's sparse KL loss (the DSA sparse stage's) in one pass over each query's
// selected rows, for bf16 queries of at most 16 heads over bf16 rows — the mid config's main attention.
// src/backend/cuda/indexer-train.ts takes it where it applies (indexerTrainTune.flash); contract:
// src/tensor/ops/indexer-train.ts, CPU reference: src/backend/cpu/indexer-train.ts.
//
// Why. The gemm path (indexer_train_gemm.cu) gathers each query's k × D selected rows into a dense bf16
// block, writes the scores S [H, k] through cuBLASLt and reads both back: ~5 MB of device memory a query at
// k 2 048, D 576, for a GEMM with M = H = 16. Here each selected row is gathered once into shared memory
// (from L2) and the scores never leave the SM, as in sparse_mla_flash.cu, whose tiles and loader this uses.
// Measured on an H100 (2026-12-07, bench/dsa-train.ts: s_q 4 096, k 2 048, 16 heads): 3.0 ms against the
// gemm path's 8.3.
//
// Math (indexer_train_gemm.cu's, the same rounding of the score):
//   per tile of 64 entries c: s = q·g_cᵀ (16 heads), x = rnd_bf16(rnd_bf16(s)·scale),
//     a_c = Σ_h exp(x_{h,c} − lse_h) over heads with lse_h ≠ −∞ (0 for a hole), kept in grad[i, c];
//   then indexer_kl_finish (indexer_kl.cuh): p = a/Σa, q = softmax(I) over the entries, the row's loss
//   Σ p·(ln p − ln q) and grad = q − p on the entries (0 elsewhere).
// a_c sums the heads pairwise across the mma fragment's lanes instead of in head order: a different f32
// rounding of 16 positive terms (relative ~1e-7), far inside the op tests' bf16 bounds.
//
// One CTA of 8 warps per query row: warp w takes the tile's keys w·8 .. w·8 + 7 (scores16x8), each lane
// heads g and g + 8 of two keys, then the head sums by shuffles over the 8 lanes of each key pair.
// Shared memory at D 576, k 2 048: q 18.7 KB + 2 × 74.8 KB tiles + indices 8 KB ≈ 176 KB.
// Limits (the host checks them and otherwise takes the gemm path): H ≤ 16, D % 32 == 0, D ≤ 576, k ≤ 2 048,
// 16-byte aligned rows.
#include "mla_rows.cuh"

#define NT 256
#include "indexer_kl.cuh"

#define KF_HG 16
#define KF_TK 64

// q [Tq, H, D] bf16, kv [Tk, D] bf16, lse [Tq, H] f32, scores and grad [Tq, N] f32, loss [Tq] f32,
// indices [Tq, N] i32.
extern "C" __global__ void __launch_bounds__(NT) indexer_kl_flash(int64_t H, int64_t N, int64_t D, int64_t Tk, double scale, const uint16_t* q,
                                                                  const uint16_t* kv, const float* lse, const float* scores, float* loss,
                                                                  float* grad, const int32_t* indices) {
  extern __shared__ __align__(16) uint16_t ksm[];
  __shared__ double redd[33];
  __shared__ float Ls[KF_HG];
  __shared__ int last;
  const int Dp = (int)D + 8;  // an odd number of 16-byte units: ldmatrix rows on distinct banks
  const int kall = (int)((N + KF_TK - 1) / KF_TK) * KF_TK;
  uint16_t* Qs = ksm;                            // [16][Dp]
  uint16_t* Ks = Qs + KF_HG * Dp;                // 2 × [TK][Dp]
  int32_t* Is = (int32_t*)(Ks + 2 * KF_TK * Dp);  // [kall]
  const int64_t i = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;

  load_head_rows<NT>(Qs, Dp, q, i, H, 0, (int)D);
  if (threadIdx.x < KF_HG) Ls[threadIdx.x] = threadIdx.x < H ? lse[i * H + threadIdx.x] : -INFINITY;
  load_selection<NT>(Is, indices + i * N, kall, N, Tk, &last);
  __syncthreads();
  const int ntile = (last + KF_TK) / KF_TK;
  float* gr = grad + i * N;
  for (int64_t c = (int64_t)ntile * KF_TK + threadIdx.x; c < N; c += NT) gr[c] = 0.0f;  // past the last valid entry
  const float l_lo = Ls[g], l_hi = Ls[g + 8];

  for_each_key_tile<NT, KF_TK>(Ks, Dp, (int)D, kv, Is, ntile, [&](int j, const uint16_t* Kt) {
    float s[4];
    scores16x8(s, Qs, Dp, Kt, Dp, warp * 8, (int)D, lane);
    // s[u]: head g + (u / 2)·8, key warp·8 + tig·2 + u % 2
    float a[2] = {0.0f, 0.0f};
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const float l = u < 2 ? l_lo : l_hi;
      if (l != -INFINITY) a[u & 1] += expf(mla_score_x(s[u], scale) - l);
    }
    sum_heads(a);
    if (g == 0) {
#pragma unroll
      for (int v = 0; v < 2; v++) {
        const int c = j * KF_TK + warp * 8 + tig * 2 + v;
        if (c < N) gr[c] = Is[c] >= 0 ? a[v] : 0.0f;
      }
    }
  });
  __syncthreads();  // every mass written above is read back by other threads below
  indexer_kl_finish(i, 0, N, N, Tk, nullptr, nullptr, indices, scores + i * N, gr, loss, redd);
}
