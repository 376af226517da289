// The tensor-core paths of the indexer's training ops in bf16 (src/backend/cuda/indexer-train.ts runs them
// for bf16 q and k/kv; contract: src/tensor/ops/indexer-train.ts, CPU reference:
// src/backend/cpu/indexer-train.ts): the KL loss (first), the scores and their backward (below).
//
// KL loss.
// The loss's cost is the main attention's score S = q·kvᵀ over each row's entries (H·D per entry), which
// becomes cuBLASLt GEMMs (f32 accumulation), as in the sparse MLA forward (kernels/sparse_mla_gemm.cu):
//   sparse (indices): the selected rows gathered into G [k, D] (mla_gather_rows_bf16 of sparse_mla_gemm.cu,
//            zero rows for holes), then per query S = q (H × D) · Gᵀ (D × k), bf16 out — the gemm forward's
//            score, rounded where it rounds it, so p = exp(x − lse) agrees with the lse that forward saved
//            (the same reason as in sparse_mla_bwd_gemm.cu, Numerics);
//   dense (start/end, no indices materialised): no gather; per chunk of n queries one GEMM
//            S [n·H, Tk] = q [n·H, D] · kvᵀ (D × Tk) over every key, f32 out, columns outside a row's range
//            never read. f32 because the dense warm-up's lse comes from causalMlaPrefillTrain
//            (src/tensor/ops/sparse-mla-train.ts), whose scores are f32 GEMMs of the same values, unrounded
//            to bf16: x = f32(S·scale) is that forward's score up to accumulation order.
// Then one CTA per query row (this file: indexer_kl_rows_<bf16|f32>), S laid out [n, H, N] with column c =
// the row's output column (the index slot j in sparse mode, the key t in dense mode):
//   A. a_c = Σ_h exp(x_{h,c} − lse_h) over heads with lse_h ≠ −∞ (f32 sum in head order), for the row's
//      entries c; x = rnd_bf16(f32(S·scale)) for a bf16 S, f32(S·scale) for an f32 S. a_c is kept in
//      grad[i, c] (the row's scratch; the thread that writes a column reads it back; 0 outside the entries).
//   B. as indexer_kl_loss of indexer_train.cu: block reductions (double) of P = Σ a, m = max I and
//      Z = Σ exp(I − m) over the entries; p = a/P, ln q = I − m − ln Z, loss_i = Σ_{p>0} p·(ln p − ln q),
//      grad = q − p on the entries, 0 elsewhere. A row with no entry or P = 0: loss 0, grad 0.
//   No atomics: deterministic for a given S. The CPU reference rounds the score's latent and RoPE halves
//   separately (dv); this path rounds once (sparse) or not at all (dense), so dv is not used.
// Row entries: as indexer_train.cu — dense: columns [start[i], end[i]) clamped to [0, Tk); sparse: column j
// with key row indices[i, j], a hole when outside [0, Tk).
//
// Scores I[i, c] = Σ_h w[i,h]·relu(l[i,h,c]) and their backward. l = q·kᵀ by cuBLASLt, f32 out (bf16
// operands, f32 accumulation: the products are exact, so l is the CPU reference's f32 l up to summation
// order), laid out L [n, H, N] per chunk of n queries like the KL's S — sparse: the selected rows gathered
// into G [k, D] and L = q·Gᵀ per query; dense: L [n·H, Tk] = q·kᵀ, one GEMM over every key.
//   indexer_scores_reduce: one thread per (row, column): I = Σ_h (l > 0 ? l·w : 0) in double in head
//     order, stored f32 (the CPU reference's sum); −inf off the entries (l not read there).
//   backward, with g = dout: indexer_scores_coef, one warp per (row i, head h):
//     C[i,h,c] = (entry and l > 0) ? g[i,c]·w[i,h] : 0, stored bf16 (a GEMM operand; relative 2⁻⁹, as the
//     sparse MLA backward's dS), dw[i,h] = Σ_c (entry and l > 0) g·l (double, lane-strided then shuffled);
//     then by cuBLASLt dq = C (H × N) · K (N × D), bf16 out straight into dq (K = G sparse, k dense), and
//     dk: sparse dG = Cᵀ (k × H) · q (H × D) f32 per query, scattered into dk by
//     sparse_mla_bwd_scatter_<v4|v1> (kernels/sparse_mla_bwd_gemm.cu: f32 atomics, skips holes); dense
//     dk = Cᵀ (Tk × n·H) · q (n·H × D) f32, one GEMM per chunk (added into dk after the first chunk).
//   The relu mask is the recomputed l's. The backward's chunks are smaller than the forward's (more
//   temporaries a query), so cuBLASLt may pick another algorithm and l differ in its last bits: the mask can
//   then differ only where |l| is within rounding of 0, where relu's derivative is ambiguous anyway (as on
//   the CPU, whose backward recomputes l in double). In a CPU emulation of these paths (2026-12-06) the
//   scores were 3e-8 from the f64 op, dw 4e-8, dq and dk 1–2.4e-3 (the bf16 C and dq; tolerance 1e-2).
#include "common.cuh"

#define NT 256
#include "indexer_kl.cuh"

__device__ __forceinline__ float kl_x(uint16_t s, double scale) { return bf16_score_x(s, scale); }
__device__ __forceinline__ float kl_x(float s, double scale) { return (float)((double)s * scale); }

// One CTA per row i of the chunk. S [n, H, N] (ST: uint16_t = bf16 bits, or float), lse [n, H], scores and
// grad [n, N], loss [n]; start/end [n] or indices [n, N] (all offset to the chunk by the host).
// Dynamic shared memory: lse of the row, H floats.
template <class ST>
__device__ void indexer_kl_rows(int64_t H, int64_t N, int64_t Tk, double scale, const ST* S, const float* lse, const float* scores, float* loss,
                                float* grad, const int32_t* start, const int32_t* end, const int32_t* indices) {
  extern __shared__ float lsh[];  // [H]
  __shared__ double redd[33];
  const int64_t i = blockIdx.x;
  const int tid = threadIdx.x;
  for (int64_t h = tid; h < H; h += NT) lsh[h] = lse[i * H + h];
  int64_t c0 = 0, c1 = N;
  if (!indices) {
    c0 = min(max((int64_t)start[i], (int64_t)0), Tk);
    c1 = max(c0, min(max((int64_t)end[i], (int64_t)0), Tk));
  }
  float* g = grad + i * N;
  const float* I = scores + i * N;
  const ST* s = S + i * H * N;
  for (int64_t c = tid; c < c0; c += NT) g[c] = 0.0f;
  for (int64_t c = c1 + tid; c < N; c += NT) g[c] = 0.0f;
  __syncthreads();  // lsh
  // A. target mass per entry (into g)
  for (int64_t c = c0 + tid; c < c1; c += NT) {
    float a = 0.0f;
    if (entry_row(i, c, N, Tk, start, end, indices) >= 0) {
#pragma unroll 4
      for (int64_t h = 0; h < H; h++) {
        const float l = lsh[h];
        if (l != -INFINITY) a += expf(kl_x(s[h * N + c], scale) - l);
      }
    }
    g[c] = a;
  }
  // B. the row's normalisers, then loss and gradient (each thread reads back only the columns it wrote)
  indexer_kl_finish(i, c0, c1, N, Tk, start, end, indices, I, g, loss, redd);
}

#define KL_ROWS(name, ST)                                                                                                     \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t H, int64_t N, int64_t Tk, double scale, const void* S,          \
                                                          const float* lse, const float* scores, float* loss, float* grad,      \
                                                          const int32_t* start, const int32_t* end, const int32_t* indices) {   \
    indexer_kl_rows<ST>(H, N, Tk, scale, (const ST*)S, lse, scores, loss, grad, start, end, indices);                       \
  }
KL_ROWS(indexer_kl_rows_bf16, uint16_t)
KL_ROWS(indexer_kl_rows_f32, float)

// ---- scores ---------------------------------------------------------------------------------------------
// L [n, H, N] f32, w [n, H] f32, out [n, N] f32; start/end [n] or indices [n, N] (offset to the chunk).
extern "C" __global__ void __launch_bounds__(256) indexer_scores_reduce(int64_t n, int64_t H, int64_t N, int64_t Tk, const float* L, const float* w,
                                                                      float* out, const int32_t* start, const int32_t* end, const int32_t* indices) {
  const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= n * N) return;
  const int64_t i = e / N, c = e - i * N;
  if (entry_row(i, c, N, Tk, start, end, indices) < 0) {
    out[e] = -INFINITY;
    return;
  }
  const float* l = L + i * H * N + c;
  const float* wr = w + i * H;
  double acc = 0.0;
  for (int64_t h = 0; h < H; h++) {
    const float x = l[h * N];
    if (x > 0.0f) acc += (double)x * (double)wr[h];
  }
  out[e] = (float)acc;
}

// L [n, H, N] f32, w [n, H] f32, g [n, N] f32 → C [n, H, N] bf16 (every column written), dw [n, H] f32.
extern "C" __global__ void __launch_bounds__(256) indexer_scores_coef(int64_t n, int64_t H, int64_t N, int64_t Tk, const float* L, const float* w,
                                                                    const float* g, uint16_t* C, float* dw, const int32_t* start, const int32_t* end,
                                                                    const int32_t* indices) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;  // uniform per warp
  const int lane = threadIdx.x & 31;
  if (row >= n * H) return;
  const int64_t i = row / H;
  const float wv = w[row];
  const float* l = L + row * N;
  const float* gi = g + i * N;
  uint16_t* co = C + row * N;
  double s = 0.0;
#pragma unroll 1
  for (int64_t c = lane; c < N; c += 32) {
    float cv = 0.0f;
    const float x = l[c];
    if (x > 0.0f && entry_row(i, c, N, Tk, start, end, indices) >= 0) {
      const float gg = gi[c];
      s += (double)gg * (double)x;
      cv = gg * wv;
    }
    co[c] = f32_to_bf16_bits(cv);
  }
  s = warp_sum(s);
  if (lane == 0) dw[row] = (float)s;
}
