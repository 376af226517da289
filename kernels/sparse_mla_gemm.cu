// The tensor-core path of sparse MLA in bf16 (src/backend/cuda/sparse-mla.ts runs it for bf16 queries):
// the selected key rows are gathered into a dense bf16 block, and the two products become batched
// cuBLASLt GEMMs, one matrix per query — all H heads of a query share its k selected rows, so per query
//   S = q (H × D) · Gᵀ (D × k)          scores, bf16 out of an f32 accumulation
//   P = softmax(S · scale) over valid entries      (this file: sparse_softmax_lse)
//   out = P (H × k) · G[:, :dv] (k × dv)            bf16 out of an f32 accumulation
// with G [k, D] the query's gathered rows (this file: mla_gather_rows). At H = 128, k = 2048, D = 576 both
// GEMMs are tensor-core sized (M = 128), where the CUDA-core kernel in sparse_mla.cu measured 2.6–5.5
// TFLOPS on an H100 (2026-12-05). Numerics against the CPU reference: the score is rounded once to bf16
// (the reference rounds its latent and RoPE halves separately, then the scaled product), p is rounded to
// bf16 as the reference's bf16 softmax output is; both within the bf16 tolerance of the op tests.
//
// mla_gather_rows_<src>: G[e, :] = key row idx[e] decoded to bf16, zeros for a hole (idx < 0 or ≥ rows).
//   One warp per entry e; lane l writes 8 consecutive columns c = 8·(l + 32·i) as one 16-byte store
//   (D % 8 == 0, checked by the host). Sources: 'bf16' / 'f32' dense rows [rows, D] (f32 rounded to nearest
//   even bf16), 'fp8' the 656-byte FlashMLA cache rows (e4m3 · power-of-two scale is exact in bf16).
// sparse_softmax_lse: one warp per (query n, head h) row of k scores, in place:
//   x_t = rnd_bf16(s_t · scale) for valid entries, −inf for holes; m = max x; l = Σ exp(x − m);
//   p_t = rnd_bf16(exp(x_t − m) / l); lse = m + ln l (natural log), −inf with p = 0 when no entry is valid.
#include "common.cuh"

#define SRC_BF16 0
#define SRC_F32 1
#define SRC_FP8 2

__device__ __forceinline__ float load_f32_unaligned(const uint8_t* p) {
  const uint32_t b = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
  return __uint_as_float(b);
}

// Row r's columns c .. c+7 as f32.
template <int SRC>
__device__ __forceinline__ void row8(const void* src, int64_t r, int c, int D, int dv, int64_t W, float (&f)[8]) {
  if (SRC == SRC_BF16) {
    const uint4 v = *(const uint4*)((const uint16_t*)src + r * D + c);
    const uint16_t* h = (const uint16_t*)&v;
#pragma unroll
    for (int u = 0; u < 8; u++) f[u] = bf16_bits_to_f32(h[u]);
  } else if (SRC == SRC_F32) {
    const float* p = (const float*)src + r * D + c;
#pragma unroll
    for (int u = 0; u < 8; u++) f[u] = p[u];
  } else {
    const uint8_t* row = (const uint8_t*)src + r * W;
    const int nb = (dv + 127) >> 7;
#pragma unroll
    for (int u = 0; u < 8; u++) {
      const int cc = c + u;
      if (cc < dv) {
        f[u] = e4m3_bits_to_f32(row[cc]) * load_f32_unaligned(row + dv + 4 * (cc >> 7));
      } else {
        const uint8_t* p = row + dv + 4 * nb + 2 * (cc - dv);
        f[u] = bf16_bits_to_f32((uint16_t)(p[0] | (p[1] << 8)));
      }
    }
  }
}

template <int SRC>
__device__ void mla_gather_rows(int64_t E, int64_t D, int64_t dv, int64_t rows, int64_t W, uint16_t* G, const void* src, const int32_t* idx) {
  const int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (e >= E) return;
  const int32_t r = idx[e];
  const bool hole = r < 0 || (int64_t)r >= rows;
  uint16_t* g = G + e * D;
  for (int c = 8 * lane; c < (int)D; c += 256) {
    float f[8];
    if (hole) {
#pragma unroll
      for (int u = 0; u < 8; u++) f[u] = 0.0f;
    } else {
      row8<SRC>(src, r, c, (int)D, (int)dv, W, f);
    }
    *(Vec<__nv_bfloat16, 8>*)(g + c) = pack_vec<__nv_bfloat16, 8>(f);
  }
}

#define GATHER(name, SRC)                                                                                     \
  extern "C" __global__ void __launch_bounds__(256) mla_gather_rows_##name(                                  \
      int64_t E, int64_t D, int64_t dv, int64_t rows, int64_t W, uint16_t* G, const void* src, const int32_t* idx) { \
    mla_gather_rows<SRC>(E, D, dv, rows, W, G, src, idx);                                                    \
  }
GATHER(bf16, SRC_BF16)
GATHER(f32, SRC_F32)
GATHER(fp8, SRC_FP8)

// S [N, H, k] bf16 (in: scores, out: probabilities), idx [N, k], lse [N, H] f32.
extern "C" __global__ void __launch_bounds__(256) sparse_softmax_lse(int64_t N, int64_t H, int64_t k, int64_t rows, double scale,
                                                                     uint16_t* S, float* lse, const int32_t* idx) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= N * H) return;
  const int64_t n = row / H;
  uint16_t* s = S + row * k;
  const int32_t* ir = idx + n * k;
  auto x_of = [&](int64_t t) -> float {
    const int32_t r = ir[t];
    if (r < 0 || (int64_t)r >= rows) return -INFINITY;
    return bf16_bits_to_f32(f32_to_bf16_bits((float)((double)bf16_bits_to_f32(s[t]) * scale)));
  };
  float m = -INFINITY;
  for (int64_t t = lane; t < k; t += 32) m = fmaxf(m, x_of(t));
  m = warp_max(m);
  float l = 0.0f;
  if (m != -INFINITY)
    for (int64_t t = lane; t < k; t += 32) {
      const float x = x_of(t);
      if (x != -INFINITY) l += __expf(x - m);
    }
  l = warp_sum(l);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t t = lane; t < k; t += 32) {
    const float x = x_of(t);
    s[t] = f32_to_bf16_bits(x == -INFINITY ? 0.0f : __expf(x - m) * inv);
  }
  if (lane == 0) lse[row] = l > 0.0f ? m + logf(l) : -INFINITY;
}
