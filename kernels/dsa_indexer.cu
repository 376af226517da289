// DSA lightning-indexer logits and the paged indexer-key cache (issue 11). CPU reference and contract:
// src/backend/cpu/dsa-indexer.ts and src/tensor/ops/dsa-indexer.ts.
//
//   out[i, t] = fround( fround( Σ_h w[i,h] · relu(q[i,h,:] · k[t,:]) ) · scale[t] )   t in [start_i, end_i)
//   out[i, t] = −inf                                                                     elsewhere
// q, k are e4m3 (D = 128), w and scale f32. The operation order follows the host model
// (src/model/indexer.ts):
//   - the dot product l = q·k in f32, one fmaf per element, d = 0 … 127 in order (the order of a
//     sequential-FMA sgemm such as OpenBLAS's Haswell kernel; the CPU reference uses whatever its GEMM
//     path does, so the two agree to an ulp or two of l, not always bit for bit);
//   - relu by `l > 0` (a NaN l is skipped, as on the host);
//   - the head sum in double, h = 0 … H−1 in order: acc += (double)l·(double)w (the product is exact in
//     double, so this is the host's JS arithmetic exactly), then one rounding to f32 and one f32 multiply.
//
// indexer_logits / indexer_logits_paged (one template):
//   grid.y walks query rows (grid-stride), grid.x chunks of CHUNK = 256 key columns; 256 threads.
//   Per CTA: q[i] (H × 128 e4m3) is decoded once into shared memory as f32 [H][128], w[i] as f32 [H].
//   The chunk is processed in tiles of 32 keys:
//     1. the tile's 32 × 128 key bytes are loaded (16 bytes per thread) and decoded into ksm[32][132]
//        (row stride 132 floats: float4 reads of 8 consecutive rows hit distinct bank groups);
//     2. thread (t = tid mod 32, g = tid / 32) computes the dots of key t with heads g, g+8, … (≤ 16 heads,
//        so H ≤ 128) with float4 reads (the q reads are warp-wide broadcasts), and stores them in lsm[32][H+1];
//     3. warp 0 does the ordered head sum for its key and writes the output column.
//   Tiles entirely outside the row's range are written as −inf without computing.
//   Paged: row r = b·N + j sees [0, ctx_b − N + j + 1) and columns up to max_ctx; key position p is read
//   from page block_table[b, p/64], offset p mod 64, in the page layout below. A block id outside
//   [0, num_blocks), or a page beyond the table, reads zeros (the CPU reference throws on both).
//   Shared memory (dynamic): 4·(128·H + 32·132 + 32·(H+1) + H) bytes = 58 KB at H = 64, 99 KB at H = 128.
//
// Performance: this is a CUDA-core f32 kernel (one FMA per element per query-key-head, ~10–20% of the
// H200's f32 peak at best); the issue's target (≥ 600 TFLOPS) needs FP8 wgmma: q tile [64 heads × 128] ×
// key tile [128 × N] per warpgroup with f32 accumulation, keys streamed by TMA through a multi-stage
// mbarrier pipeline, the relu·w head reduction done on the accumulator fragments, and several queries per
// CTA sharing each key tile (DeepGEMM's fp8_mqa_logits shape). Its accumulation order is the tensor
// core's, so its tests against the CPU must use a tolerance (and top-k comparisons must allow swaps
// among near-ties). Not implemented here.
//
// indexer_cache_write: one warp per key copies its D e4m3 bytes and f32 scale into the paged cache
//   page layout (DeepGEMM): [64 × D e4m3, token-major][64 × f32 scale]  = 64·(D+4) bytes per page,
//   slot = block·64 + offset; slot −1 is skipped; a slot beyond the cache is skipped (the CPU throws).
#include "common.cuh"

#define IDX_D 128
#define IDX_TILE 32
#define IDX_KSTRIDE 132
#define IDX_CHUNK 256
#define IDX_THREADS 256
#define IDX_HPT 16  // heads per thread: H ≤ 8 · 16 = 128
#define IDX_PAGE 64

__device__ __forceinline__ void decode16(uint4 v, float* dst) {
#pragma unroll
  for (int b = 0; b < 4; b++) {
    dst[b] = e4m3_bits_to_f32((uint8_t)(v.x >> (8 * b)));
    dst[4 + b] = e4m3_bits_to_f32((uint8_t)(v.y >> (8 * b)));
    dst[8 + b] = e4m3_bits_to_f32((uint8_t)(v.z >> (8 * b)));
    dst[12 + b] = e4m3_bits_to_f32((uint8_t)(v.w >> (8 * b)));
  }
}

template <bool PAGED>
__device__ void indexer_logits_impl(int64_t rows, int64_t H, int64_t ncols, int64_t tk, int64_t next_n, int64_t max_blocks,
                                    int64_t num_blocks, const uint8_t* __restrict__ q, const float* __restrict__ w,
                                    const uint8_t* __restrict__ k, const float* __restrict__ ks, const int* __restrict__ start,
                                    const int* __restrict__ end, const int* __restrict__ block_table, const int* __restrict__ ctx,
                                    float* __restrict__ out) {
  extern __shared__ __align__(16) float smem[];
  float* qsm = smem;                              // [H][128]
  float* ksm = qsm + H * IDX_D;                   // [32][132]
  float* lsm = ksm + IDX_TILE * IDX_KSTRIDE;      // [32][H+1]
  float* wsm = lsm + IDX_TILE * (H + 1);          // [H]
  __shared__ float scale_s[IDX_TILE];
  const int tid = threadIdx.x;
  const int64_t c0 = (int64_t)blockIdx.x * IDX_CHUNK;
  const float NEG_INF = __int_as_float(0xff800000);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    int64_t s, e, width, seq = 0, T;
    if (PAGED) {
      seq = row / next_n;
      const int64_t j = row % next_n;
      T = ctx[seq] < 0 ? 0 : ctx[seq];
      s = 0;
      e = T - next_n + j + 1;
      width = ncols;
      if (T > width) T = width;  // the op's contract: ctx ≤ max_ctx (the CPU reference throws otherwise)
      e = e < 0 ? 0 : (e > T ? T : e);
    } else {
      T = tk;
      s = start[row];
      e = end[row];
      s = s < 0 ? 0 : (s > tk ? tk : s);
      e = e < s ? s : (e > tk ? tk : e);
      width = tk;
    }
    const int64_t cend = c0 + IDX_CHUNK < width ? c0 + IDX_CHUNK : width;
    if (c0 >= cend) continue;
    float* orow = out + row * width;
    const bool any = s < e && c0 < e && cend > s;
    if (!any) {
      for (int64_t t = c0 + tid; t < cend; t += blockDim.x) orow[t] = NEG_INF;
      continue;
    }
    __syncthreads();  // the previous row's readers of qsm/wsm are done
    const uint8_t* qr = q + row * H * IDX_D;
    for (int64_t i = tid * 16; i < H * IDX_D; i += blockDim.x * 16) decode16(*(const uint4*)(qr + i), qsm + i);
    for (int64_t h = tid; h < H; h += blockDim.x) wsm[h] = w[row * H + h];
    for (int64_t t0 = c0; t0 < cend; t0 += IDX_TILE) {
      const int64_t tn = cend - t0 < IDX_TILE ? cend - t0 : IDX_TILE;
      if (t0 + tn <= s || t0 >= e) {  // tile outside the range (uniform)
        if (tid < tn) orow[t0 + tid] = NEG_INF;
        continue;
      }
      __syncthreads();  // previous tile's ksm/lsm readers are done
      {
        const int kt = tid >> 3;      // key of the tile
        const int part = tid & 7;     // 16-byte part of its 128 bytes
        const int64_t t = t0 + kt;
        uint4 v = make_uint4(0, 0, 0, 0);
        float sc = 0.f;
        if (kt < tn && t < T) {
          const uint8_t* src = nullptr;
          const float* scp = nullptr;
          if (PAGED) {
            const int64_t pg = t / IDX_PAGE;
            const int64_t blk = pg < max_blocks ? block_table[seq * max_blocks + pg] : -1;
            if (blk >= 0 && blk < num_blocks) {
              const uint8_t* page = k + blk * (int64_t)(IDX_PAGE * (IDX_D + 4));
              src = page + (t % IDX_PAGE) * IDX_D;
              scp = (const float*)(page + IDX_PAGE * IDX_D) + (t % IDX_PAGE);
            }
          } else {
            src = k + t * IDX_D;
            scp = ks + t;
          }
          if (src) {
            v = *(const uint4*)(src + part * 16);
            sc = *scp;
          }
        }
        decode16(v, ksm + kt * IDX_KSTRIDE + part * 16);
        if (part == 0) scale_s[kt] = sc;
      }
      __syncthreads();
      {
        const int t = tid & 31;
        const int g = tid >> 5;
        float acc[IDX_HPT];
#pragma unroll
        for (int j = 0; j < IDX_HPT; j++) acc[j] = 0.f;
        const float* kr = ksm + t * IDX_KSTRIDE;
#pragma unroll 1
        for (int d = 0; d < IDX_D; d += 4) {
          const float4 kv = *(const float4*)(kr + d);
#pragma unroll
          for (int j = 0; j < IDX_HPT; j++) {
            const int h = g + 8 * j;
            if (h < H) {
              const float4 qv = *(const float4*)(qsm + h * IDX_D + d);
              acc[j] = fmaf(qv.x, kv.x, acc[j]);
              acc[j] = fmaf(qv.y, kv.y, acc[j]);
              acc[j] = fmaf(qv.z, kv.z, acc[j]);
              acc[j] = fmaf(qv.w, kv.w, acc[j]);
            }
          }
        }
#pragma unroll
        for (int j = 0; j < IDX_HPT; j++) {
          const int h = g + 8 * j;
          if (h < H) lsm[t * (H + 1) + h] = acc[j];
        }
      }
      __syncthreads();
      if (tid < tn) {
        const int64_t t = t0 + tid;
        float o = NEG_INF;
        if (t >= s && t < e) {
          double a = 0.0;
          const float* lr = lsm + tid * (H + 1);
          for (int h = 0; h < H; h++) {
            const float l = lr[h];
            if (l > 0.f) a = __dadd_rn(a, __dmul_rn((double)l, (double)wsm[h]));
          }
          o = __fmul_rn(__double2float_rn(a), scale_s[tid]);
        }
        orow[t] = o;
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(IDX_THREADS) indexer_logits(int64_t rows, int64_t H, int64_t tk, const uint8_t* q, const float* w,
                                                                         const uint8_t* k, const float* ks, const int* start, const int* end,
                                                                         float* out) {
  indexer_logits_impl<false>(rows, H, tk, tk, 1, 0, 0, q, w, k, ks, start, end, nullptr, nullptr, out);
}

extern "C" __global__ void __launch_bounds__(IDX_THREADS) indexer_logits_paged(int64_t rows, int64_t H, int64_t max_ctx, int64_t next_n,
                                                                               int64_t max_blocks, int64_t num_blocks, const uint8_t* q,
                                                                               const float* w, const uint8_t* cache, const int* block_table,
                                                                               const int* ctx, float* out) {
  indexer_logits_impl<true>(rows, H, max_ctx, 0, next_n, max_blocks, num_blocks, q, w, cache, nullptr, nullptr, nullptr, block_table, ctx, out);
}

extern "C" __global__ void __launch_bounds__(256) indexer_cache_write(int64_t T, int64_t D, int64_t num_blocks, uint8_t* cache, const uint8_t* k,
                                                                      const float* ks, const int* slots) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  const int64_t page = IDX_PAGE * (D + 4);
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < T; i += warps) {
    const int64_t slot = slots[i];
    if (slot < 0 || slot / IDX_PAGE >= num_blocks) continue;
    uint8_t* pg = cache + (slot / IDX_PAGE) * page;
    const int64_t off = slot % IDX_PAGE;
    for (int64_t d = lane; d < D; d += 32) pg[off * D + d] = k[i * D + d];
    if (lane == 0) ((float*)(pg + IDX_PAGE * D))[off] = ks[i];
  }
}
