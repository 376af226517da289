// The lightning indexer's logits on Hopper's FP8 tensor cores, fused (issue 11): wgmma e4m3 × e4m3 → f32 for
// the per-head dot products, and the relu · w head sum, the key scale and the range mask applied to the
// accumulators in registers, so only the [rows, keys] f32 logits reach device memory. Same contract as
// kernels/dsa_indexer.cu (src/tensor/ops/dsa-indexer.ts; CPU reference src/backend/cpu/dsa-indexer.ts):
//
//   out[i, t] = fround( Σ_h w[i,h] · relu(q[i,h,:] · k[t,:]) ) · scale[t]    t in [lo_i, hi_i),  −inf elsewhere
//
// Why fused: the cuBLASLt path (dsa_indexer_gemm.cu) writes the per-head scores S [rows·H, keys] in f32
// and reads them back, H·4 bytes per logit: a 1024-query chunk at 128K keys and 64 heads moves 2 × 34 GB,
// which bounded it at ~85 TFLOPS on an H100 (2026-12-06). Here each score lives only in a register.
//
// The GEMM, per CTA: a query block of QB = NT/H queries (NT = 64 or 256 columns: query-major, head-minor,
// the q rows [QB·H, 128] as they lie in memory) against a chunk of `chunk` keys (a multiple of 64 the
// launcher picks: 2048, less when the query blocks alone leave SMs idle, as in a small decode batch) in
// tiles of 64 keys (a tile is one paged-cache page). wgmma m64nNTk32: A = the key tile [64 keys × 128 B]
// and B = the q block [NT × 128 B], both K-major in shared memory with the 128-byte swizzle (a 128-byte row is exactly
// one e4m3 row of D = 128, so a tile is rows of 8 16-byte chunks, chunk c of row r stored at c ^ (r mod 8));
// four k32 steps cover D, each advancing both descriptors' start by 32 bytes. Accumulator fragment
// (thread = warp w of the warpgroup, lane l): d[i] is key row 16w + l/4 + 8·((i>>1)&1), column
// 8·(i>>2) + 2·(l&3) + (i&1) — so a query's H ≥ 8 columns sit in one quad of lanes: each thread sums its
// relu(d)·w in f32 over the query's column groups, two xor-shuffles (1, 2) finish the head sum, and lane
// l&3 = q mod 4 writes query q. H = 4 puts two queries in each 8-column group: one shuffle (xor 1).
//
// Warpgroups: two per CTA, sharing the q block, taking alternate key tiles of the chunk, each with its own
// four-stage cp.async ring (zero-filled past the keys or at an invalid page) and its own named barrier,
// so one warpgroup's MMAs overlap the other's epilogue. Tiles of the chunk outside every query's range
// (the causal upper triangle, past a sequence's context) are written −inf without an MMA.
//
// Numerics: Hopper's FP8 MMA accumulates e4m3 products with ~14 mantissa bits (as the cuBLASLt path and
// DeepGEMM's fp8_mqa_logits), and the head sum is f32 in the fragment's order rather than the reference's
// double in head order: the logits are expected ~1e-4 relative from the exact reference (as measured for
// the cuBLASLt path), so tests use a tolerance and a near-tied key can be selected differently from the
// CPU backend.
//
// Paged variant: row b·N + j (query j of sequence b) sees [0, ctx_b − N + j + 1); key tile i of sequence
// b is page block_table[b, i]: its 64 × 128 key bytes, then 64 f32 scales (DeepGEMM's layout, 132 B a
// key). A block id outside [0, num_blocks) or a page past the table reads zeros (the CPU throws).
// Heads: H in {4, 8, 16, 32, 64, 128} (instances at NT 64 and, from H 16, 256); the launcher
// (src/backend/cuda/dsa-indexer.ts) sends any other H to the other paths.
//
// Status: on by default since its first GPU run (H100, 2026-12-07): the tests of every indexer path
// against the CPU passed, and 4096 × 131072 × 64 heads ran at 460 TFLOPS (5.4× the FP8 cuBLASLt GEMM +
// reduce path; docs/benchmarks.md). Its logic also runs on the CPU in scripts/kernel-emu/run-indexer-mma.mjs,
// with wgmma, cp.async and the barriers modelled as stated there.
#include "common.cuh"
#include "wgmma.cuh"

#define MMA_D 128
#define MMA_TILE 64
#define MMA_STAGES 4
#define MMA_WGS 2
#define MMA_THREADS (128 * MMA_WGS)
#define MMA_TILE_BYTES (MMA_TILE * MMA_D)
#define MMA_PAGE_BYTES (MMA_TILE * (MMA_D + 4))

// ---- wgmma, fp8 (sm_90a) ---------------------------------------------------------------------------------
// d (+)= A·Bᵀ with A [64 × 32] e4m3 and B [N × 32] e4m3 read through shared-memory descriptors; accumulate = 0
// overwrites d (the first k step of a tile).
__device__ __forceinline__ void wgmma_m64n64k32_e4m3(float (&d)[32], uint64_t da, uint64_t db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {" WGMMA_REGS32 "}, %32, %33, p, 1, 1;\n}\n"
               : WGMMA_OUT32(d)
               : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_m64n256k32_e4m3(float (&d)[128], uint64_t da, uint64_t db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 {" WGMMA_REGS128 "}, %128, %129, p, 1, 1;\n}\n"
               : WGMMA_OUT128(d)
               : "l"(da), "l"(db), "r"(accumulate));
}

template <int NT>
__device__ __forceinline__ void mma_tile(float (&d)[NT / 2], uint32_t a, uint32_t b) {
  const uint64_t da = sw128_desc(a), db = sw128_desc(b);
  wgmma_fence();
  fence_regs(d);
#pragma unroll
  for (int k = 0; k < MMA_D / 32; k++) {
    if constexpr (NT == 64) wgmma_m64n64k32_e4m3(d, da + 2 * k, db + 2 * k, k);
    else wgmma_m64n256k32_e4m3(d, da + 2 * k, db + 2 * k, k);
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(d);
}

template <int H, int NT, bool PAGED>
__device__ __forceinline__ void indexer_logits_mma_impl(int64_t rows, int64_t ncols, int64_t chunk, int64_t tk, int64_t next_n, int64_t max_blocks,
                                                        int64_t num_blocks, const uint8_t* __restrict__ q, const float* __restrict__ w,
                                                        const uint8_t* __restrict__ k, const float* __restrict__ ks,
                                                        const int* __restrict__ start, const int* __restrict__ end,
                                                        const int* __restrict__ block_table, const int* __restrict__ ctx,
                                                        float* __restrict__ out) {
  constexpr int QB = NT / H;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* qs = (uint8_t*)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);  // swizzle atoms need 1024-byte alignment
  uint8_t* kst = qs + NT * MMA_D;
  float* ws = (float*)(kst + MMA_WGS * MMA_STAGES * MMA_TILE_BYTES);
  int* los = (int*)(ws + NT);
  int* his = los + QB;
  const int tid = threadIdx.x, wg = tid >> 7, wt = tid & 127, warp = wt >> 5, lane = tid & 31;
  const float NEG_INF = __int_as_float(0xff800000);
  const int64_t width = ncols;
  const int64_t c0 = (int64_t)blockIdx.x * chunk;
  const int64_t cend = c0 + chunk < width ? c0 + chunk : width;
  if (c0 >= cend) return;
  const int64_t bps = PAGED ? (next_n + QB - 1) / QB : 0;  // query blocks per sequence
  const int64_t nblocks = PAGED ? (rows / next_n) * bps : (rows + QB - 1) / QB;
  uint8_t* ring = kst + wg * MMA_STAGES * MMA_TILE_BYTES;
  for (int64_t y = blockIdx.y; y < nblocks; y += gridDim.y) {
    int64_t seq = 0, rowBase, T;
    int nq;
    if constexpr (PAGED) {
      seq = y / bps;
      const int64_t j0 = (y % bps) * QB;
      nq = (int)(next_n - j0 < QB ? next_n - j0 : QB);
      rowBase = seq * next_n + j0;
      T = ctx[seq] < 0 ? 0 : ctx[seq];
      if (T > width) T = width;  // the op's contract: ctx ≤ max_ctx (the CPU reference throws otherwise)
    } else {
      rowBase = y * QB;
      nq = (int)(rows - rowBase < QB ? rows - rowBase : QB);
      T = tk;
    }
    __syncthreads();  // the previous query block's readers of qs, ws, los/his and the rings are done
    if (tid < QB) {
      int64_t s = 0, e = 0;
      if (tid < nq) {
        if constexpr (PAGED) {
          e = T - next_n + (rowBase - seq * next_n + tid) + 1;
          e = e < 0 ? 0 : (e > T ? T : e);
        } else {
          s = start[rowBase + tid];
          e = end[rowBase + tid];
          s = s < 0 ? 0 : (s > tk ? tk : s);
          e = e < s ? s : (e > tk ? tk : e);
        }
      }
      los[tid] = (int)s;
      his[tid] = (int)e;
    }
    {
      const uint8_t* qb = q + rowBase * H * MMA_D;
      const int valid = nq * H;
      for (int c = tid; c < NT * 8; c += MMA_THREADS) {
        const int r = c >> 3;
        cp_async16_zfill(sw128_at(qs, r, c & 7), r < valid ? qb + r * MMA_D + (c & 7) * 16 : qb, r < valid);
      }
      for (int c = tid; c < NT; c += MMA_THREADS) ws[c] = c < valid ? w[rowBase * H + c] : 0.0f;
      cp_async_commit();
      cp_async_wait<0>();
      fence_proxy_async();
    }
    __syncthreads();
    int64_t lo = cend, hi = c0;  // the keys of this chunk that some query of the block sees
    for (int i = 0; i < nq; i++)
      if (los[i] < his[i]) {
        lo = min(lo, (int64_t)los[i]);
        hi = max(hi, (int64_t)his[i]);
      }
    lo = max(lo, c0);
    hi = min(hi, cend);
    const int64_t i0 = c0 / MMA_TILE, i1 = (cend + MMA_TILE - 1) / MMA_TILE;
    const int64_t a0 = lo < hi ? lo / MMA_TILE : i0, a1 = lo < hi ? (hi + MMA_TILE - 1) / MMA_TILE : i0;
    // tiles outside [a0, a1): −inf, alternate tiles per warpgroup, one key per thread (coalesced)
    for (int64_t i = i0 + wg; i < i1; i += MMA_WGS) {
      if (i >= a0 && i < a1) continue;
      for (int x = wt; x < nq * MMA_TILE; x += 128) {
        const int64_t t = i * MMA_TILE + (x & (MMA_TILE - 1));
        if (t < cend) out[(rowBase + (x >> 6)) * width + t] = NEG_INF;
      }
    }
    const int64_t nj = a1 - a0 > wg ? (a1 - a0 - wg + MMA_WGS - 1) / MMA_WGS : 0;  // this warpgroup's tiles
    const int* tab = PAGED ? block_table + seq * max_blocks : nullptr;
    auto page_of = [&](int64_t i) -> const uint8_t* {  // the cache page of key tile i, or null
      const int64_t blk = i < max_blocks ? tab[i] : -1;
      return blk >= 0 && blk < num_blocks ? k + blk * (int64_t)MMA_PAGE_BYTES : nullptr;
    };
    auto load = [&](int64_t j) {
      if (j < nj) {
        const int64_t i = a0 + wg + MMA_WGS * j;
        uint8_t* dst = ring + (j % MMA_STAGES) * MMA_TILE_BYTES;
        if constexpr (PAGED) {
          const uint8_t* pg = page_of(i);
#pragma unroll
          for (int u = 0; u < 4; u++) {
            const int c = wt + 128 * u, r = c >> 3;
            cp_async16_zfill(sw128_at(dst, r, c & 7), pg ? pg + r * MMA_D + (c & 7) * 16 : k, pg != nullptr);
          }
        } else {
#pragma unroll
          for (int u = 0; u < 4; u++) {
            const int c = wt + 128 * u, r = c >> 3;
            const int64_t t = i * MMA_TILE + r;
            cp_async16_zfill(sw128_at(dst, r, c & 7), t < T ? k + t * MMA_D + (c & 7) * 16 : k, t < T);
          }
        }
      }
      cp_async_commit();  // empty groups too: the wait count below stays uniform
    };
#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; s++) load(s);
    const uint32_t qaddr = (uint32_t)__cvta_generic_to_shared(qs);
    const int r0 = 16 * warp + (lane >> 2);
    for (int64_t j = 0; j < nj; j++) {
      cp_async_wait<MMA_STAGES - 2>();
      fence_proxy_async();
      bar_sync(1 + wg, 128);  // tile j is in place, and every thread is past tile j − 1 (its stage is free)
      load(j + MMA_STAGES - 1);
      const int64_t i = a0 + wg + MMA_WGS * j;
      float d[NT / 2];
      mma_tile<NT>(d, (uint32_t)__cvta_generic_to_shared(ring + (j % MMA_STAGES) * MMA_TILE_BYTES), qaddr);
      const uint8_t* pg = PAGED ? page_of(i) : nullptr;
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        const int r = r0 + 8 * hf;
        const int64_t t = i * MMA_TILE + r;
        float sc = 0.0f;
        if (t < T) sc = PAGED ? (pg ? ((const float*)(pg + MMA_TILE * MMA_D))[r] : 0.0f) : ks[t];
        if constexpr (H >= 8) {
          float part[QB];
#pragma unroll
          for (int x = 0; x < QB; x++) part[x] = 0.0f;
#pragma unroll
          for (int g = 0; g < NT / 8; g++) {
            const float2 wv = *(const float2*)(ws + 8 * g + 2 * (lane & 3));
            float& p = part[(8 * g) / H];
            p = fmaf(fmaxf(d[4 * g + 2 * hf], 0.0f), wv.x, p);
            p = fmaf(fmaxf(d[4 * g + 2 * hf + 1], 0.0f), wv.y, p);
          }
#pragma unroll
          for (int x = 0; x < QB; x++) {
            part[x] += __shfl_xor_sync(0xffffffffu, part[x], 1);
            part[x] += __shfl_xor_sync(0xffffffffu, part[x], 2);
          }
          if (t < cend) {
#pragma unroll
            for (int x = 0; x < QB; x++)
              if ((x & 3) == (lane & 3) && x < nq)
                out[(rowBase + x) * width + t] = t >= los[x] && t < his[x] ? part[x] * sc : NEG_INF;
          }
        } else {  // H == 4: columns 8g … 8g + 3 are query 2g, 8g + 4 … 8g + 7 query 2g + 1
#pragma unroll
          for (int g = 0; g < NT / 8; g++) {
            const float2 wv = *(const float2*)(ws + 8 * g + 2 * (lane & 3));
            float p = fmaxf(d[4 * g + 2 * hf], 0.0f) * wv.x;
            p = fmaf(fmaxf(d[4 * g + 2 * hf + 1], 0.0f), wv.y, p);
            p += __shfl_xor_sync(0xffffffffu, p, 1);
            const int x = 2 * g + ((lane & 3) >> 1);
            if ((lane & 1) == 0 && x < nq && t < cend) out[(rowBase + x) * width + t] = t >= los[x] && t < his[x] ? p * sc : NEG_INF;
          }
        }
      }
    }
    cp_async_wait<0>();  // the ring's trailing (empty) groups, before the next query block
  }
}

// One instance per (H, NT): NT = 64 for the narrow blocks (decode's one or two queries a sequence; H ≤ 8),
// 256 for the wide ones (prefill at H ≥ 16).
#define INDEXER_MMA(H, NT)                                                                                                           \
  extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)                                                                        \
      indexer_logits_mma_h##H##_n##NT(int64_t rows, int64_t tk, int64_t chunk, const uint8_t* q, const float* w, const uint8_t* k,  \
                                      const float* ks, const int* start, const int* end, float* out) {                                 \
    indexer_logits_mma_impl<H, NT, false>(rows, tk, chunk, tk, 1, 0, 0, q, w, k, ks, start, end, nullptr, nullptr, out);            \
  }                                                                                                                                    \
  extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)                                                                        \
      indexer_logits_mma_paged_h##H##_n##NT(int64_t rows, int64_t max_ctx, int64_t chunk, int64_t next_n, int64_t max_blocks,        \
                                            int64_t num_blocks, const uint8_t* q, const float* w, const uint8_t* cache,               \
                                            const int* block_table, const int* ctx, float* out) {                                     \
    indexer_logits_mma_impl<H, NT, true>(rows, max_ctx, chunk, 0, next_n, max_blocks, num_blocks, q, w, cache, nullptr, nullptr, nullptr, \
                                         block_table, ctx, out);                                                                      \
  }
INDEXER_MMA(4, 64)
INDEXER_MMA(8, 64)
INDEXER_MMA(16, 64)
INDEXER_MMA(32, 64)
INDEXER_MMA(64, 64)
INDEXER_MMA(16, 256)
INDEXER_MMA(32, 256)
INDEXER_MMA(64, 256)
INDEXER_MMA(128, 256)
