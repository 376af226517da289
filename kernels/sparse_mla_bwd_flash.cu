// sparse_mla_bwd_flash: the sparse MLA backward in one pass over each query's selected keys, for bf16
// queries of few heads over bf16 rows — the backward of sparse_mla_flash.cu, which the mid config's
// training forward takes at 16 heads. src/backend/cuda/sparse-mla-backward.ts takes it where it applies
// (sparseMlaBackwardTune.flash); contract: src/tensor/ops/sparse-mla-train.ts, CPU reference:
// src/backend/cpu/sparse-mla-backward.ts.
//
// Why. The gathered-GEMM path (sparse_mla_bwd_gemm.cu) writes each query's k × D selected rows as a dense
// bf16 block G, reads it three times (scores, dP, dq), writes dG [k, D] in f32 and reads it back for the
// scatter: ~19 MB of device memory per query at k 2 048, D 576. At 16 heads its GEMMs have M = 16, so that
// traffic is the whole cost (~23 TFLOPS in the mid config's sparse stage on an H100, 2026-12-07). Here each
// selected row is gathered once into shared memory (from L2: a sequence's latent rows are reused by every
// later query), every product reads it there, and dG goes from registers straight into the f32 atomics.
// Measured on an H100 (2026-12-07, bench/dsa-train.ts: s_q 8 192, k 2 048, 16 heads): 21.7 ms against the
// gemm path's 74.1 and torch's 169.7; 11.2 ms without the atomics (the benchmark's probe): they are half of it.
//
// Math (s, x, p exactly as the gemm backward recomputes them; the flash forward rounds x the same way):
//   per tile of TK = 64 entries t (rows idx[t] in shared memory, all D columns; holes are zero rows):
//     s_t  = q·g_tᵀ,  x_t = rnd_bf16(rnd_bf16(s_t)·scale),  p_t = exp(x_t − lse)         (0 for a hole)
//     dp_t = dO·g_t[:dv]ᵀ,  ds_t = p_t·(dp_t − Δ)·scale,  Δ = Σ_{c<dv} dO[c]·O[c]          (f32)
//     P, dS rounded once to bf16 (the gemm backward's SP, its header says why that is safe)
//     dq  += dS (16 × 64) · G (64 × D)                                                    (f32 registers)
//     dG   = dSᵀ (64 × 16) · q (16 × D)  +  Pᵀ (64 × 16) · [dO | 0] (16 × D)               (f32, one k16 step each)
//     dkv[idx[t], :] += dG[t, :]                                        (float4 atomics, valid rows only)
//   dq = rnd_bf16(dq) at the end.
// The lse is known, so p needs no running max: no cross-warp reduction sits between the products.
//
// Work split, one CTA of 8 warps per (query n, group of 16 heads):
//   scores and dP: warp w owns the tile's keys w·8 .. w·8 + 7: m16n8k16 chains over D for s (A = q)
//                  and over dv for dp (A = dO), sharing each B fragment (products16x8, mla_rows.cuh);
//                  p and dS go to P, dS [16][TK + 8] bf16 in shared memory;
//   dq, dG:        tile_dq and tile_dg (mla_rows.cuh, shared with indexer_scores_flash.cu): dq's columns split
//                  over the warps (D/64 n-tiles each, in registers to the end), dG's keys and column halves
//                  over the warps, each 16 × 8 piece added into dkv with one float4 atomic a lane.
// Pipeline: two tile buffers; tile j + 1's rows are requested (cp.async) right after the barrier that starts
// tile j. Shared memory at D 576, dv 512, k 2 048: q 18.7 KB + dO 16.6 KB + 2 × 74.8 KB tiles + P, dS 4.6 KB
// + indices 8 KB ≈ 197 KB: one CTA per SM. Tiles past a row's last valid entry are skipped.
// Limits (the host checks them and otherwise takes another path): D % 64 == 0, D ≤ 576, dv % 32 == 0,
// dv ≤ 512, dv ≤ D, k ≤ 2 048, 16-byte aligned rows.
// dkv is not bitwise deterministic (atomic arrival order), as on the other CUDA paths.
#include "mla_rows.cuh"

#define BF_HG 16
#define BF_NT 256
#define BF_TK 64
#define BF_QT (576 / 64)  // dq n-tiles a warp holds at most (D 576)
#define BF_PP (BF_TK + 8) // P and dS row pitch: 144 bytes, an odd number of 16-byte units

// q, dout, out, dq: [N, H, ·] bf16 rows of D, dv, dv, D; lse [N, H] f32; kv [rows, D] bf16; idx [N, k] i32;
// dkv [rows, D] f32 (accumulated into).
// ADD = false is the benchmark's probe (bench/dsa-train.ts): everything but the dkv atomics, to time them.
template <bool ADD>
__device__ void sparse_mla_bwd_flash(int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, double scale, uint16_t* dq,
                                     float* dkv, const uint16_t* dout, const uint16_t* q, const uint16_t* kv, const uint16_t* out,
                                     const float* lse, const int32_t* idx) {
  extern __shared__ __align__(16) uint16_t bsm[];
  const int Dp = (int)D + 8;    // row pitch: an odd number of 16-byte units, so ldmatrix rows hit distinct banks
  const int Vp = (int)dv + 8;
  const int kall = (int)((k + BF_TK - 1) / BF_TK) * BF_TK;
  uint16_t* Qs = bsm;                          // [16][Dp]
  uint16_t* Os = Qs + BF_HG * Dp;              // [16][Vp] dO
  uint16_t* Ks = Os + BF_HG * Vp;              // 2 × [TK][Dp]
  uint16_t* Ps = Ks + 2 * BF_TK * Dp;          // [16][PP]
  uint16_t* Ss = Ps + BF_HG * BF_PP;           // [16][PP] dS
  float* Ls = (float*)(Ss + BF_HG * BF_PP);    // [16] lse
  float* Dl = Ls + BF_HG;                      // [16] Δ
  int32_t* Is = (int32_t*)(Dl + BF_HG);        // [kall]
  __shared__ int last;
  const int64_t n = blockIdx.x;
  const int h0 = blockIdx.y * BF_HG;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int32_t* ir = idx + n * k;

  // q and dO of the group's heads (zero rows past H)
  load_head_rows<BF_NT>(Qs, Dp, q, n, H, h0, (int)D);
  load_head_rows<BF_NT>(Os, Vp, dout, n, H, h0, (int)dv);
  // Δ and lse, heads 2·warp and 2·warp + 1 (a head past H: lse = −inf, so all its p are 0)
#pragma unroll
  for (int hh = 0; hh < 2; hh++) {
    const int h = warp * 2 + hh;
    float d = 0.0f, l = -INFINITY;
    if (h0 + h < H) {
      const int64_t row = n * H + h0 + h;
      for (int64_t c = lane; c < dv; c += 32) d = fmaf(bf16_bits_to_f32(dout[row * dv + c]), bf16_bits_to_f32(out[row * dv + c]), d);
      d = warp_sum(d);
      l = lse[row];
    }
    if (lane == 0) {
      Dl[h] = d;
      Ls[h] = l;
    }
  }
  load_selection<BF_NT>(Is, ir, kall, k, rows, &last);
  __syncthreads();
  const int ntile = (last + BF_TK) / BF_TK;  // tiles up to the last valid entry (0 when there is none)

  float acc[BF_QT + 1][4];       // one spare: a pair's second tile past the warp's last is computed and dropped
#pragma unroll
  for (int i = 0; i <= BF_QT; i++)
#pragma unroll
    for (int u = 0; u < 4; u++) acc[i][u] = 0.0f;
  const float lse_lo = Ls[g], lse_hi = Ls[g + 8], d_lo = Dl[g], d_hi = Dl[g + 8];
  float sink = 0.0f;  // the probe's use of dG, so that the compiler keeps its products

  for_each_key_tile<BF_NT, BF_TK>(Ks, Dp, (int)D, kv, Is, ntile, [&](int j, const uint16_t* Kt) {
    // s and dp of keys warp·8 .. +7, sharing the key rows' fragments
    {
      float s[4], dp[4];
      products16x8<true>(s, dp, Qs, Dp, Os, Vp, (int)dv, Kt, Dp, warp * 8, (int)D, lane);
      // s[u], dp[u]: head g + (u / 2)·8, key warp·8 + tig·2 + u % 2
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int h = g + (u >> 1) * 8;
        const int t = warp * 8 + tig * 2 + (u & 1);
        const float l = u < 2 ? lse_lo : lse_hi;
        float p = 0.0f, ds = 0.0f;
        if (Is[j * BF_TK + t] >= 0 && l != -INFINITY) {
          const float x = mla_score_x(s[u], scale);
          p = expf(x - l);
          ds = (float)((double)(p * (dp[u] - (u < 2 ? d_lo : d_hi))) * scale);
        }
        Ps[h * BF_PP + t] = f32_to_bf16_bits(p);
        Ss[h * BF_PP + t] = f32_to_bf16_bits(ds);
      }
    }
    __syncthreads();

    tile_dq<BF_QT>(acc, Ss, BF_PP, Kt, Dp, (int)D, warp, lane);                                       // dq += dS·G
    tile_dg<ADD, true>(dkv, D, Is + j * BF_TK, Ss, Ps, BF_PP, Qs, Dp, Os, Vp, (int)dv, warp, lane, sink);  // dkv += dSᵀ·q + Pᵀ·dO
  });
  if (!ADD && __float_as_uint(sink) == 0x7fc00001u) dkv[threadIdx.x] = sink;  // one NaN pattern: never in practice

  store_dq<BF_QT>(dq, acc, n, H, h0, (int)D, warp, lane);
}

#define BWD_FLASH_ENTRY(name, ADD)                                                                                         \
  extern "C" __global__ void __launch_bounds__(BF_NT)                                                                      \
      name(int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, double scale, uint16_t* dq, float* dkv,   \
           const uint16_t* dout, const uint16_t* q, const uint16_t* kv, const uint16_t* out, const float* lse, const int32_t* idx) { \
    sparse_mla_bwd_flash<ADD>(N, H, D, dv, k, rows, scale, dq, dkv, dout, q, kv, out, lse, idx);                            \
  }
BWD_FLASH_ENTRY(sparse_mla_bwd_flash, true)
BWD_FLASH_ENTRY(sparse_mla_bwd_flash_probe, false)
