// The tensor-core path of the lightning indexer's logits (src/backend/cuda/dsa-indexer.ts runs it when
// indexerTune.gemm is on): the per-head dot products of every (query, head) row with every key are one FP8
// GEMM, S = q8 [rows·H, 128] · k8ᵀ [128, keys] with f32 output (cuBLASLt, e4m3 × e4m3, scales 1: the q
// scale and the 1/√(H·D) are already folded into w, the key scale is applied here), and this file does
// the rest: where the CUDA-core kernel in dsa_indexer.cu forms each dot product with FMAs (10 TFLOPS on an
// H100, 2026-12-05), the GEMM runs on the FP8 tensor cores.
//
// indexer_gather_keys: the paged cache (per 64-token page: 64·128 e4m3 bytes, then 64 f32 scales) of
//   sequence b → K [B, ctxPad, 128] e4m3 and KS [B, ctxPad] f32, rows in position order. One warp per
//   (b, p); lane l moves bytes 4l..4l+3. A position at or past ctx[b], or whose block-table entry is not a
//   block of the cache, becomes a zero key with scale 0 (the reduce masks those positions anyway).
// indexer_reduce: out[g, t] = fround(fround(Σ_h (l > 0 ? l·w[g, h] : 0)) · ks[t]) with l = S[r·H + h, t],
//   the sum in double over h = 0 … H−1 in order — the CPU reference's expression (src/backend/cpu/
//   dsa-indexer.ts) — for t in [lo, hi) of row g, −inf elsewhere. Rows: g = row0 + r for the launch's
//   r < R. Bounds: dense (ctx null) lo = start[g], hi = end[g]; paged lo = 0, hi = ctx[b] − N + j + 1 with
//   j = g − b·N (query j of sequence b sees the keys before it and itself), at most the ldS keys the GEMM
//   of this chunk multiplied.
#include "common.cuh"

#define IDX_D 128
#define IDX_PAGE 64

extern "C" __global__ void __launch_bounds__(256) indexer_gather_keys(int64_t B, int64_t ctxPad, int64_t maxBlocks, int64_t numBlocks,
                                                                      const uint8_t* cache, const int32_t* table, const int32_t* ctx,
                                                                      uint8_t* K, float* KS) {
  const int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (e >= B * ctxPad) return;
  const int64_t b = e / ctxPad, p = e - b * ctxPad;
  const int64_t pg = p / IDX_PAGE;
  const int32_t blk = (p < (int64_t)ctx[b] && pg < maxBlocks) ? table[b * maxBlocks + pg] : -1;
  uint32_t v = 0;
  float s = 0.0f;
  if (blk >= 0 && (int64_t)blk < numBlocks) {
    const uint8_t* page = cache + (int64_t)blk * IDX_PAGE * (IDX_D + 4);
    const int64_t o = p % IDX_PAGE;
    v = *(const uint32_t*)(page + o * IDX_D + 4 * lane);
    if (lane == 0) s = *(const float*)(page + IDX_PAGE * IDX_D + 4 * o);
  }
  *(uint32_t*)(K + e * IDX_D + 4 * lane) = v;
  if (lane == 0) KS[e] = s;
}

extern "C" __global__ void __launch_bounds__(256) indexer_reduce(int64_t R, int64_t H, int64_t Tc, int64_t ldS, int64_t row0, int64_t ldOut,
                                                                 const float* S, const float* w, const float* ks,
                                                                 const int32_t* start, const int32_t* end, const int32_t* ctx, int64_t b, int64_t N,
                                                                 float* out) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t r = blockIdx.y;
  if (t >= Tc || r >= R) return;
  const int64_t g = row0 + r;
  int64_t lo, hi;
  if (ctx) {
    lo = 0;
    // the host multiplies only the keys a chunk's rows can reach (ldS of them, dsa-indexer.ts); a context
    // past the output's width (outside the op's contract, checked by the CPU reference) reads no further
    hi = min((int64_t)ctx[b] - N + (g - b * N) + 1, ldS);
  } else {
    lo = start[g];
    hi = end[g];
  }
  float v = -INFINITY;
  if (t >= lo && t < hi) {
    double acc = 0.0;
    const float* sr = S + r * H * ldS + t;
    const float* wr = w + g * H;
    for (int64_t h = 0; h < H; h++) {
      const float l = sr[h * ldS];
      if (l > 0.0f) acc += (double)l * (double)wr[h];
    }
    v = (float)acc * ks[t];
  }
  out[g * ldOut + t] = v;
}
