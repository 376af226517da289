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
//   dq:            warp w owns columns [w·D/8, (w+1)·D/8) (D/64 n-tiles, ≤ 9 at D 576: 36 f32 registers
//                  and a spare tile, the odd pair's second half),
//                  K = the tile's 64 keys (four k16 steps, G read transposed by ldmatrix);
//   dG:            warp w owns keys (w % 4)·16 .. +15 and the column half w / 4; A = dSᵀ, Pᵀ by ldmatrix.trans
//                  from the [16][TK + 8] blocks, B = q, dO by ldmatrix.trans; each 16 × 8 result is added
//                  into dkv with one float4 atomic a lane (a quad's lanes swap halves so that each holds four
//                  consecutive columns of one row).
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

  if (threadIdx.x == 0) last = -1;
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

  auto issue = [&](int j) {
    if (j < ntile) gather_stage<SRC_BF16, BF_NT>(Ks + (j & 1) * BF_TK * Dp, Dp, BF_TK, 0, (int)D, (int)D, (int)dv, 0, kv, Is, j * BF_TK);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };

  const int qw = (int)(D >> 6);  // dq n-tiles of this warp
  const int qc0 = warp * (int)(D >> 3);
  float acc[BF_QT + 1][4];       // one spare: a pair's second tile past the warp's last is computed and dropped
#pragma unroll
  for (int i = 0; i <= BF_QT; i++)
#pragma unroll
    for (int u = 0; u < 4; u++) acc[i][u] = 0.0f;
  const float lse_lo = Ls[g], lse_hi = Ls[g + 8], d_lo = Dl[g], d_hi = Dl[g + 8];
  float sink = 0.0f;  // the probe's use of dG, so that the compiler keeps its products
  const int qd = lane >> 3, r8 = lane & 7;  // ldmatrix: this lane's matrix and row within it

  issue(0);
  for (int j = 0; j < ntile; j++) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    issue(j + 1);
    const uint16_t* Kt = Ks + (j & 1) * BF_TK * Dp;

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

    // dq += dS·G over this warp's columns
#pragma unroll
    for (int kk = 0; kk < BF_TK; kk += 16) {
      uint32_t a[4];
      ldmatrix_x4(a, Ss + (lane & 15) * BF_PP + kk + ((lane >> 4) << 3));
      const uint16_t* vb = Kt + (kk + ((qd & 1) << 3) + r8) * Dp + qc0 + ((qd >> 1) << 3);
#pragma unroll
      for (int i = 0; i < BF_QT; i += 2) {
        if (i < qw) {
          uint32_t t[4];
          ldmatrix_x4_trans(t, vb + i * 8);  // past the warp's columns: the next warp's, or the row's pitch padding
          mma_bf16_16816(acc[i], a, t[0], t[1]);
          mma_bf16_16816(acc[i + 1], a, t[2], t[3]);
        }
      }
    }

    // dG of keys (warp % 4)·16 .. +15, columns of half warp / 4, into dkv
    {
      const int kb0 = (warp & 3) * 16;
      // A = dSᵀ and Pᵀ (key m × head k) from the [head][key] blocks: matrix qd holds heads (qd / 2)·8 ..,
      // keys kb0 + (qd % 2)·8 ..
      uint32_t as[4], ap[4];
      ldmatrix_x4_trans(as, Ss + (((qd >> 1) << 3) + r8) * BF_PP + kb0 + ((qd & 1) << 3));
      ldmatrix_x4_trans(ap, Ps + (((qd >> 1) << 3) + r8) * BF_PP + kb0 + ((qd & 1) << 3));
      const int32_t rlo = Is[j * BF_TK + kb0 + g], rhi = Is[j * BF_TK + kb0 + g + 8];
      const int half = (int)(D >> 1);
      const int cbeg = (warp >> 2) * half;
      // B = q and dO (head k × column n), rows = heads
      const uint16_t* qb = Qs + (((qd & 1) << 3) + r8) * Dp + ((qd >> 1) << 3);
      const uint16_t* ob = Os + (((qd & 1) << 3) + r8) * Vp + ((qd >> 1) << 3);
      const bool even = (tig & 1) == 0;
      float* dlo = dkv + (int64_t)(rlo < 0 ? 0 : rlo) * D;
      float* dhi = dkv + (int64_t)(rhi < 0 ? 0 : rhi) * D;
#pragma unroll 2
      for (int c = cbeg; c < cbeg + half; c += 16) {
        float o[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        uint32_t t[4];
        ldmatrix_x4_trans(t, qb + c);
        mma_bf16_16816(o[0], as, t[0], t[1]);
        mma_bf16_16816(o[1], as, t[2], t[3]);
        if (c < (int)dv) {  // dv % 32 == 0 and half % 16 == 0: a 16-column pair lies wholly inside or outside dv
          ldmatrix_x4_trans(t, ob + c);
          mma_bf16_16816(o[0], ap, t[0], t[1]);
          mma_bf16_16816(o[1], ap, t[2], t[3]);
        }
        // o[i][0..1]: key row g, columns c + 8i + 2·tig + {0, 1}; o[i][2..3]: row g + 8. Lanes tig and tig ^ 1
        // swap halves: the even lane then holds row g's four columns from c + 8i + 2·tig, the odd lane row
        // g + 8's four from c + 8i + 2·(tig − 1).
#pragma unroll
        for (int i = 0; i < 2; i++) {
          const float s0 = even ? o[i][2] : o[i][0], s1 = even ? o[i][3] : o[i][1];
          const float r0 = __shfl_xor_sync(0xffffffffu, s0, 1), r1 = __shfl_xor_sync(0xffffffffu, s1, 1);
          const int col = c + 8 * i + 2 * (tig & ~1);
          if (!ADD) {
            sink += (even ? o[i][0] + o[i][1] : o[i][2] + o[i][3]) + r0 + r1;
          } else if (even) {
            if (rlo >= 0) atomicAdd((float4*)(dlo + col), make_float4(o[i][0], o[i][1], r0, r1));
          } else {
            if (rhi >= 0) atomicAdd((float4*)(dhi + col), make_float4(r0, r1, o[i][2], o[i][3]));
          }
        }
      }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  if (!ADD && __float_as_uint(sink) == 0x7fc00001u) dkv[threadIdx.x] = sink;  // one NaN pattern: never in practice

  // acc[i]: heads g and g + 8, columns qc0 + i·8 + tig·2 + {0, 1}
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int h = h0 + g + hf * 8;
    if (h >= H) continue;
#pragma unroll
    for (int i = 0; i < BF_QT; i++) {
      if (i < qw) {
        const int c = qc0 + i * 8 + tig * 2;
        *(uint32_t*)(dq + (n * H + h) * D + c) = pack2(f32_to_bf16_bits(acc[i][hf * 2]), f32_to_bf16_bits(acc[i][hf * 2 + 1]));
      }
    }
  }
}

#define BWD_FLASH_ENTRY(name, ADD)                                                                                         \
  extern "C" __global__ void __launch_bounds__(BF_NT)                                                                      \
      name(int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, double scale, uint16_t* dq, float* dkv,   \
           const uint16_t* dout, const uint16_t* q, const uint16_t* kv, const uint16_t* out, const float* lse, const int32_t* idx) { \
    sparse_mla_bwd_flash<ADD>(N, H, D, dv, k, rows, scale, dq, dkv, dout, q, kv, out, lse, idx);                            \
  }
BWD_FLASH_ENTRY(sparse_mla_bwd_flash, true)
BWD_FLASH_ENTRY(sparse_mla_bwd_flash_probe, false)
