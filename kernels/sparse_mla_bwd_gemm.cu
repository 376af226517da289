// The tensor-core path of the sparse MLA backward in bf16 (src/backend/cuda/sparse-mla-backward.ts runs it
// for bf16 inputs; contract: src/tensor/ops/sparse-mla-train.ts, CPU reference:
// src/backend/cpu/sparse-mla-backward.ts). As in the forward (sparse_mla_gemm.cu), each query's k selected
// rows are gathered into a dense bf16 block G [k, D] (mla_gather_rows_bf16 of sparse_mla_gemm.cu, zero rows
// for holes), and the products become batched cuBLASLt GEMMs, one matrix per query (f32 accumulation):
//   S  = q (H × D) · Gᵀ (D × k)                 bf16 out: the gemm forward's score, rounded as it rounds it
//   dP = dO (H × dv) · G[:, :dv]ᵀ (dv × k)       f32 out (dP − Δ cancels: never rounded to bf16)
//   P, dS                                        this file: sparse_mla_bwd_softmax (f32 math, stored bf16)
//   dq = dS (H × k) · G (k × D)                  bf16 out, straight into dq
//   dG = [dS; P]ᵀ (k × 2H) · [q; dO | 0] (2H × D)   f32 out: the key role dSᵀ·q and the value role Pᵀ·dO
//                                                 summed in one f32 accumulation (dO padded with zeros to D)
//   dkv[idx[t], :] += dG[t, :] for the valid entries t   this file: sparse_mla_bwd_scatter (f32 atomics)
// The stacked operands live in two buffers laid out per query as SP [2H, k] (rows 0..H−1 dS, H..2H−1 P)
// and QD [2H, D] (rows 0..H−1 q, H..2H−1 dO with columns dv..D−1 zero), so dq reads SP's first H rows and
// the dG GEMM reads SP transposed with K = 2H.
//
// Numerics. P is the gemm forward's probability exp(rnd_bf16(rnd_bf16(S)·scale) − lse), from the same bf16
// score that forward rounded (up to GEMM accumulation order), so it is consistent with the lse and O the
// forward saved. The CPU reference and the CUDA-core kernels round the score's latent and RoPE halves
// separately (the CUDA-core backward follows them); rounding that way here, against a gemm forward's lse,
// moved the result further from the CPU op, not closer, in a CPU emulation of this path at the test's
// shapes (2026-12-06) — so the tests pair each backward path with its own forward. In that emulation the
// gemm pair was 3–6e-3 from the f64 gradients (the CUDA-core pair 4–6e-3) and 3–6.2e-3 from the CPU op
// (bf16 tolerance 1e-2); bf16 P and dS added at most 5e-4 of that.
// Δ = Σ dO·O, dP and dS = P·(dP − Δ)·scale are f32; P and dS are then rounded once to bf16 (relative
// 2⁻⁹) as GEMM operands, as the forward rounds P for P·V, and as every bf16 flash-attention backward does:
// since Σ_t dS_t = 0, dq = Σ_t dS_t·(G_t − Ḡ), and each dS_t's rounding error is relative to |dS_t|, so the
// error of dq and dG relative to their size stays ~2⁻⁹ unless the selected rows are nearly all equal.
//
// sparse_mla_bwd_softmax: one warp per (query n, head h):
//   Δ = Σ_{c<dv} dO[c]·O[c] (f32, lane-strided, shuffle reduction);
//   for each entry t: valid = 0 ≤ idx[n, t] < rows and lse ≠ −∞;
//     x = rnd_bf16(S[t] · scale) (S already bf16: the gemm forward's sparse_softmax_lse does exactly this),
//     p = exp(x − lse), ds = p·(dP[t] − Δ)·scale, both 0 when not valid;
//   SP[n, h, t] = bf16(ds), SP[n, H + h, t] = bf16(p).
// sparse_mla_bwd_scatter_<v4|v1>: one warp per entry e = (n, t) of the chunk: for a valid row r = idx[e],
//   dkv[r, :] += dG[e, :] by atomics (v4: sm_90's float4 atomicAdd, 4 consecutive f32 per atomic, needs
//   D % 4 == 0 and a 16-byte aligned dkv, checked by the host; v1: one f32 per atomic). A row repeated
//   within a query's selection has identical dG rows at both entries and is added once per occurrence, as
//   in the reference.
//   dkv is not bitwise deterministic (atomic arrival order), as with the CUDA-core kernel.
#include "common.cuh"

// S, dP: [N, H, k] (bf16, f32); SP [N, 2H, k] bf16 (written); dout, out [N, H, dv] bf16; lse [N, H] f32;
// idx [N, k] i32.
extern "C" __global__ void __launch_bounds__(256) sparse_mla_bwd_softmax(int64_t N, int64_t H, int64_t k, int64_t dv, int64_t rows,
                                                                         double scale, const uint16_t* S, const float* dP, uint16_t* SP,
                                                                         const uint16_t* dout, const uint16_t* out, const float* lse,
                                                                         const int32_t* idx) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;  // uniform per warp
  const int lane = threadIdx.x & 31;
  if (row >= N * H) return;
  const int64_t n = row / H;
  const int64_t h = row - n * H;
  const uint16_t* go = dout + row * dv;
  const uint16_t* o = out + row * dv;
  float delta = 0.0f;
  for (int64_t c = lane; c < dv; c += 32) delta = fmaf(bf16_bits_to_f32(go[c]), bf16_bits_to_f32(o[c]), delta);
  delta = warp_sum(delta);
  const float l = lse[row];
  const uint16_t* s = S + row * k;
  const float* dp = dP + row * k;
  uint16_t* dso = SP + (n * 2 * H + h) * k;
  uint16_t* po = SP + (n * 2 * H + H + h) * k;
  const int32_t* ir = idx + n * k;
  for (int64_t t = lane; t < k; t += 32) {
    const int32_t r = ir[t];
    float p = 0.0f, ds = 0.0f;
    if (r >= 0 && (int64_t)r < rows && l != -INFINITY) {
      const float x = bf16_score_x(s[t], scale);
      p = expf(x - l);
      ds = (float)((double)(p * (dp[t] - delta)) * scale);
    }
    dso[t] = f32_to_bf16_bits(ds);
    po[t] = f32_to_bf16_bits(p);
  }
}

// dG [E, D] f32 (row e = entry e of the chunk), idx [E] i32 (the chunk's rows of indices, flattened),
// dkv [rows, D] f32 (accumulated into).
template <bool V4>
__device__ void sparse_mla_bwd_scatter(int64_t E, int64_t D, int64_t rows, float* dkv, const float* dG, const int32_t* idx) {
  const int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (e >= E) return;
  const int32_t r = idx[e];
  if (r < 0 || (int64_t)r >= rows) return;
  const float* g = dG + e * D;
  float* d = dkv + (int64_t)r * D;
  if (V4) {
    for (int64_t c = 4 * lane; c < D; c += 128) {
      atomicAdd((float4*)(d + c), *(const float4*)(g + c));  // sm_90: one vector atomic, global memory only
    }
  } else {
    for (int64_t c = lane; c < D; c += 32) atomicAdd(d + c, g[c]);
  }
}

extern "C" __global__ void __launch_bounds__(256) sparse_mla_bwd_scatter_v4(int64_t E, int64_t D, int64_t rows, float* dkv, const float* dG,
                                                                            const int32_t* idx) {
  sparse_mla_bwd_scatter<true>(E, D, rows, dkv, dG, idx);
}
extern "C" __global__ void __launch_bounds__(256) sparse_mla_bwd_scatter_v1(int64_t E, int64_t D, int64_t rows, float* dkv, const float* dG,
                                                                            const int32_t* idx) {
  sparse_mla_bwd_scatter<false>(E, D, rows, dkv, dG, idx);
}
