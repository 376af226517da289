// indexer_scores_flash: the lightning indexer's float scores over each query's selected keys (the DSA sparse
// stage's) and their backward, each in one pass, for bf16 q and k of at most 16 heads — the mid config's
// indexer (16 × 128) and dsv32-mini's (4 × 128). src/backend/cuda/indexer-train.ts takes them where they
// apply (indexerTrainTune.scoresFlash); contract: src/tensor/ops/indexer-train.ts, CPU reference:
// src/backend/cpu/indexer-train.ts.
//
// Why. The gemm path (indexer_train_gemm.cu) gathers each query's k × D selected rows into a dense bf16
// block G, writes l = q·Gᵀ [H, k] in f32 through cuBLASLt and reads it back for the head sum; the backward
// does it again, adds a bf16 coefficient block C [H, k], dq = C·G, and dG = Cᵀ·q [k, D] in f32 that a
// scatter kernel reads back and adds into dk: ~2.4 MB of device memory a query at k 2 048, H 16, D 128,
// for GEMMs with M = H = 16. In the mid config's sparse-stage step (H100, 2026-12-07, every op
// synchronised) the two took 85 ms of 900. Here each selected row is gathered once into shared memory (from
// L2: a sequence's keys are read by every later query) and l, C and dG never leave the SM. Measured on an
// H100 (2026-12-07, docs/runs/2026-12-07-late/call1): the two took 25 ms of that synchronised step, and the
// step itself went 516 → 438 ms (one timed step against the median of three).
//
// Math (the gemm path's, indexer_train_gemm.cu):
//   forward, per tile of 64 entries c: l = q·g_cᵀ (16 heads, f32 by mma.sync),
//     I_c = Σ_h (l > 0 ? l·w_h : 0) in double, stored f32; −inf for a hole (and past the row's last entry).
//   backward, with g = dout:
//     C[h, c] = (entry and l > 0) ? g_c·w_h : 0, rounded to bf16 (the gemm path's GEMM operand)
//     dw_h = Σ_c (entry and l > 0) g_c·l (double)
//     dq  += C (16 × 64) · G (64 × D)        tile_dq (mla_rows.cuh), f32 registers, bf16 at the end
//     dk[idx_c, :] += (Cᵀ · q)[c, :]         tile_dg, float4 atomics from registers, holes skipped
// The head sum and dw add their terms pairwise across the fragment's lanes instead of in head (or key) order:
// a different rounding of double sums whose terms are exact products of f32 values, so the f32 results
// differ from the gemm path's only where a double sum lies within ~1e-16 of an f32 rounding boundary. l is
// the mma's f32 accumulation (the gemm path's is cuBLASLt's): the relu mask can differ from it only where l
// is within rounding of 0, where relu's derivative is ambiguous anyway.
//
// One CTA of 8 warps per query row: warp w takes the tile's keys w·8 .. w·8 + 7 (scores16x8), each lane
// heads g and g + 8 of two keys; then, in the backward, tile_dq and tile_dg split the tile's products over
// the 8 warps as the sparse MLA backward does (sparse_mla_bwd_flash.cu; this is its softmax-free twin:
// the coefficients g·w·[l > 0] take the place of dS, and there is no P·dO term).
// Pipeline: two tile buffers; tile j + 1's rows are requested (cp.async) right after the barrier that starts
// tile j. Shared memory at D 128, k 2 048: q 4.3 KB + 2 × 17.4 KB tiles + C 2.3 KB + indices 8 KB ≈ 50 KB
// (four CTAs an SM). Tiles past a row's last valid entry are skipped.
// Limits (the host checks them and otherwise takes the gemm path): H ≤ 16, D % 64 == 0, D ≤ 256, k ≤ 2 048,
// 16-byte aligned rows. dk is not bitwise deterministic (atomic arrival order), as on the gemm path.
#include "mla_rows.cuh"

#define SF_NT 256
#define SF_HG 16
#define SF_TK 64
#define SF_QT (256 / 64)    // dq n-tiles a warp holds at most (D 256)
#define SF_PP (SF_TK + 8)   // C's row pitch: 144 bytes, an odd number of 16-byte units

// What both kernels stage before their tile loop: q's heads (zero rows past H) into Qs, w (0 past H) into
// Ws, the row's selection into Is; returns the number of tiles up to the last valid entry.
__device__ __forceinline__ int stage_row(uint16_t* Qs, int Dp, float* Ws, int32_t* Is, int* last, const uint16_t* q, const float* w,
                                         const int32_t* indices, int64_t i, int64_t H, int64_t N, int64_t D, int64_t Tk) {
  const int kall = (int)((N + SF_TK - 1) / SF_TK) * SF_TK;
  load_head_rows<SF_NT>(Qs, Dp, q, i, H, 0, (int)D);
  if (threadIdx.x < SF_HG) Ws[threadIdx.x] = threadIdx.x < H ? w[i * H + threadIdx.x] : 0.0f;
  load_selection<SF_NT>(Is, indices + i * N, kall, N, Tk, last);
  __syncthreads();
  return (*last + SF_TK) / SF_TK;
}

// q [Tq, H, D] bf16, k [Tk, D] bf16, w [Tq, H] f32, out [Tq, N] f32, indices [Tq, N] i32.
extern "C" __global__ void __launch_bounds__(SF_NT) indexer_scores_flash(int64_t H, int64_t N, int64_t D, int64_t Tk, const uint16_t* q,
                                                                         const uint16_t* k, const float* w, float* out, const int32_t* indices) {
  extern __shared__ __align__(16) uint16_t fsm[];
  __shared__ float Ws[SF_HG];
  __shared__ int last;
  const int Dp = (int)D + 8;  // an odd number of 16-byte units: ldmatrix rows on distinct banks
  uint16_t* Qs = fsm;                             // [16][Dp]
  uint16_t* Ks = Qs + SF_HG * Dp;                 // 2 × [TK][Dp]
  int32_t* Is = (int32_t*)(Ks + 2 * SF_TK * Dp);  // [k rounded up to TK]
  const int64_t i = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int ntile = stage_row(Qs, Dp, Ws, Is, &last, q, w, indices, i, H, N, D, Tk);
  float* o = out + i * N;
  for (int64_t c = (int64_t)ntile * SF_TK + threadIdx.x; c < N; c += SF_NT) o[c] = -INFINITY;  // past the last valid entry
  const double w_lo = Ws[g], w_hi = Ws[g + 8];

  for_each_key_tile<SF_NT, SF_TK>(Ks, Dp, (int)D, k, Is, ntile, [&](int j, const uint16_t* Kt) {
    float s[4];
    scores16x8(s, Qs, Dp, Kt, Dp, warp * 8, (int)D, lane);
    // s[u]: head g + (u / 2)·8, key warp·8 + tig·2 + u % 2
    double a[2] = {0.0, 0.0};
#pragma unroll
    for (int u = 0; u < 4; u++)
      if (s[u] > 0.0f) a[u & 1] += (double)s[u] * (u < 2 ? w_lo : w_hi);
    sum_heads(a);
    if (g == 0) {
#pragma unroll
      for (int v = 0; v < 2; v++) {
        const int c = j * SF_TK + warp * 8 + tig * 2 + v;
        if (c < N) o[c] = Is[c] >= 0 ? (float)a[v] : -INFINITY;
      }
    }
  });
}

// dq [Tq, H, D] bf16 (written), dk [Tk, D] f32 (accumulated into: zeroed by the host), dw [Tq, H] f32
// (written), dout [Tq, N] f32; q, k, w, indices as the forward's.
extern "C" __global__ void __launch_bounds__(SF_NT) indexer_scores_bwd_flash(int64_t H, int64_t N, int64_t D, int64_t Tk, uint16_t* dq, float* dk,
                                                                             float* dw, const float* dout, const uint16_t* q, const uint16_t* k,
                                                                             const float* w, const int32_t* indices) {
  extern __shared__ __align__(16) uint16_t fsm[];
  __shared__ float Ws[SF_HG];
  __shared__ double dws[SF_NT / 32][SF_HG];
  __shared__ int last;
  const int Dp = (int)D + 8;
  uint16_t* Qs = fsm;                             // [16][Dp]
  uint16_t* Ks = Qs + SF_HG * Dp;                 // 2 × [TK][Dp]
  uint16_t* Cs = Ks + 2 * SF_TK * Dp;             // [16][PP] the tile's coefficients
  int32_t* Is = (int32_t*)(Cs + SF_HG * SF_PP);   // [k rounded up to TK]
  const int64_t i = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int ntile = stage_row(Qs, Dp, Ws, Is, &last, q, w, indices, i, H, N, D, Tk);
  const float* gi = dout + i * N;
  const float w_lo = Ws[g], w_hi = Ws[g + 8];

  float acc[SF_QT + 1][4];
#pragma unroll
  for (int t = 0; t <= SF_QT; t++)
#pragma unroll
    for (int u = 0; u < 4; u++) acc[t][u] = 0.0f;
  double dwl[2] = {0.0, 0.0};  // heads g and g + 8 over this lane's keys
  float sink = 0.0f;           // tile_dg's probe output, unused here

  for_each_key_tile<SF_NT, SF_TK>(Ks, Dp, (int)D, k, Is, ntile, [&](int j, const uint16_t* Kt) {
    {
      float s[4];
      scores16x8(s, Qs, Dp, Kt, Dp, warp * 8, (int)D, lane);
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int t = warp * 8 + tig * 2 + (u & 1);
        float cv = 0.0f;
        if (Is[j * SF_TK + t] >= 0 && s[u] > 0.0f) {
          const float gg = gi[j * SF_TK + t];
          cv = gg * (u < 2 ? w_lo : w_hi);
          dwl[u >> 1] += (double)gg * (double)s[u];
        }
        Cs[(g + (u >> 1) * 8) * SF_PP + t] = f32_to_bf16_bits(cv);
      }
    }
    __syncthreads();
    tile_dq<SF_QT>(acc, Cs, SF_PP, Kt, Dp, (int)D, warp, lane);                                            // dq += C·G
    tile_dg<true, false>(dk, D, Is + j * SF_TK, Cs, nullptr, SF_PP, Qs, Dp, nullptr, 0, 0, warp, lane, sink);  // dk += Cᵀ·q
  });
  store_dq<SF_QT>(dq, acc, i, H, 0, (int)D, warp, lane);
  // dw: the quad's lanes hold other keys of the same two heads; then the 8 warps in order
#pragma unroll
  for (int v = 0; v < 2; v++) {
    dwl[v] += __shfl_xor_sync(0xffffffffu, dwl[v], 1);
    dwl[v] += __shfl_xor_sync(0xffffffffu, dwl[v], 2);
  }
  if (tig == 0) {
    dws[warp][g] = dwl[0];
    dws[warp][g + 8] = dwl[1];
  }
  __syncthreads();
  if (threadIdx.x < H) {
    double s = 0.0;
#pragma unroll
    for (int v = 0; v < SF_NT / 32; v++) s += dws[v][threadIdx.x];
    dw[i * H + threadIdx.x] = (float)s;
  }
}
