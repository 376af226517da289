// sparse_mla_wg_<src>: sparse MLA forward on Hopper's warpgroup MMA for the wide-head shapes — the 671B
// layout's 128 heads (and 64) at D 576 = 512 latent + 64 RoPE, dv 512 — in prefill (bf16 rows) and in
// decode over the bf16 or the FP8 paged cache (656-byte rows decoded on the way into shared memory).
// Same contract as the other sparse MLA kernels (src/tensor/ops/sparse-mla.ts; CPU reference
// src/backend/cpu/sparse-mla.ts); the host (src/backend/cuda/sparse-mla.ts, sparseMlaTune.wg) sends it
// bf16 queries of at least 64 heads at exactly these dims.
//
// Why another kernel. The one-pass kernel (sparse_mla_flash.cu) takes 16 heads a CTA on mma.sync, so at
// 128 heads each selected row is gathered 8 times (72 TFLOPS at s_q 4 096, H100, 2026-12-06), and the
// gathered GEMMs write the rows out and read them back (135 TFLOPS). Here a CTA takes 64 heads: each row
// is gathered twice at 128 heads, once into shared memory per CTA, and both products run on wgmma.
//
// One CTA per (query n, group of 64 heads), three warpgroups (384 threads):
//   producer (warpgroup 2, 72 registers): gathers tile j's 64 selected rows [64 keys × 576] into stage
//     j mod 2 as nine 128-byte-swizzled blocks [64 keys × 64 columns] (block b = columns 64b … 64b + 63),
//     by cp.async (bf16 rows) or decoded through registers (FP8 rows: e4m3 · the block's power-of-two
//     scale, exact in bf16), with a valid flag per key; then arrives on FULL(stage).
//   consumers (warpgroups 0 and 1, 216 registers): w takes keys 32w … 32w + 31 of the tile for the
//     scores and output columns 256w … 256w + 255 for the values:
//       S_w = Q · K_wᵀ                 wgmma m64n32k16, A = Q [64 heads × 576] and B = the tile's rows 32w…,
//                                       both K-major: 9 blocks × 4 k16 steps (32 bytes each);
//       x = rnd_bf16(rnd_bf16(S)·scale), −inf at a hole;  row max of the two halves through shared memory;
//       m' = max(m, max x);  α = exp(m − m');  P = rnd_bf16(exp(x − m'))  → P [64 heads × 64 keys] in
//       shared memory (one swizzled block, each warpgroup its 32 keys);  l_w = α·l_w + Σ P (own half);
//       O_w = α·O_w + P · V_w          wgmma m64n256k16, A = P (K-major, 4 k16 steps), B = the tile's
//                                       blocks 4w … 4w + 3 read MN-major (row = key: LBO 8 KB between
//                                       the 64-column blocks, SBO 1 KB between 8-key groups);
//     then arrive on EMPTY(stage), which the producer waits on before refilling it.
//   out = rnd_bf16(O / (l_0 + l_1)), lse = m + ln l (0 and −inf for a row without a valid entry).
// The numerics are the one-pass kernel's (its header: p rounded to bf16 before normalising) but for two
// choices: the sums' order (wgmma's f32 accumulation, l summed per thread, quad and warpgroup), and the
// scale multiply in f32 with the scale rounded to f32 — PyTorch's bf16 tensor × scalar computes it so; the
// CPU reference and the other kernels multiply in double. The product can then land on the other side of
// a bf16 rounding boundary, one step of x. Why: with the double multiply (two f32↔f64 conversions a score, at
// the FP64 rate) and software bf16 roundings this kernel ran the 4096-query, 128-head prefill at 237 TFLOPS,
// with these at 307 (H100, calls C and D of docs/runs/2026-12-07-wgmma-mla-h100).
//
// Where the time goes, and what was tried (same runs): with every entry a hole but the last (no row
// gathered, the same MMAs) the prefill still takes 6.44 of its 7.61 ms, so the consumers' per-tile chain
// (scores, row-maximum exchange, softmax, P exchange, values) bounds it, not the gather. Tried and slower:
// issuing the next tile's scores behind the values before releasing the stage (−11 %: the producer waits
// longer for it); independent consumer warpgroups, each computing the whole tile's scores and softmax with
// P kept in registers as the values' A operand and no barrier between them (232–234 TFLOPS: the doubled
// score product costs more than the exchanges it removes); two producer warpgroups (ptxas cannot fit the
// values' 128 accumulators under the 128-register cap of a 512-thread launch). A third stage does not fit
// in shared memory (Q alone is 72 KB).
// Accumulator fragments (warp v of a warpgroup, lane l): d[i] is head 16v + l/4 + 8·((i>>1)&1), column
// 8·(i>>2) + 2·(l&3) + (i&1) — key of S_w, or output column of O_w.
// Shared memory: Q 72 KB + two 72 KB stages + P 8 KB + row maxima and valid flags: 231 424 bytes with
// the 1 024-byte alignment, one CTA per SM. Tiles past the row's last valid entry are skipped; a split
// launch (grid.z, flash decoding for few query rows) takes tiles [z·tps, (z+1)·tps) and writes normalised
// f32 partials for sparse_mla_flash.cu's combine.
#include "mla_rows.cuh"
#include "wgmma.cuh"
#ifdef __CUDA_ARCH__
#include <cuda_fp8.h>
#endif

#define WG_H 64                     // heads a CTA
#define WG_TK 64                    // keys a tile
#define WG_D 576                    // the only D and dv this kernel takes
#define WG_DV 512
#define WG_NB (WG_D / 64)           // 128-byte column blocks a row
#define WG_BLK (64 * 128)           // bytes of one block [64 rows × 128 B]
#define WG_TILE (WG_NB * WG_BLK)    // 73 728
#define WG_THREADS 384
#define WG_FULL 1                   // named barriers: FULL(s) = 1 + s, EMPTY(s) = 3 + s, the consumers' 5 and 6
#define WG_EMPTY 3
#define WG_MX 5
#define WG_PR 6

// x rounded to bf16 (nearest even), and two bf16-valued floats packed: the hardware's conversions on the GPU
// (a NaN becomes 0x7FFF rather than the CPU's sign|0x7FC0 — still a NaN), the reference's elsewhere
__device__ __forceinline__ float bf16r(float x) {
#ifdef __CUDA_ARCH__
  return __bfloat162float(__float2bfloat16_rn(x));
#else
  return bf16_bits_to_f32(f32_to_bf16_bits(x));
#endif
}
__device__ __forceinline__ uint32_t bf16x2_bits(float lo, float hi) {
#ifdef __CUDA_ARCH__
  const __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&b);
#else
  return pack2(f32_to_bf16_bits(lo), f32_to_bf16_bits(hi));
#endif
}

// Two e4m3 codes (the low byte first) times the block's power-of-two scale as two bf16 — exact, as an
// e4m3 value has 3 mantissa bits and the scale only moves its exponent within f32's (and bf16's) range.
// On the GPU through the hardware's e4m3x2 → f16x2 and f32x2 → bf16x2 conversions (a few instructions a
// pair; the reference decoder, ~15 a byte, made the producer the FP8 path's bottleneck on paper); elsewhere
// (the CPU emulation) through the reference decoder, to the same bits.
__device__ __forceinline__ uint32_t e4m3x2_scaled_bf16x2(uint32_t two, float s) {
#ifdef __CUDA_ARCH__
  const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(two & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&r));
  const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * s, f.y * s);
  return *reinterpret_cast<const uint32_t*>(&b);
#else
  return pack2(f32_to_bf16_bits(e4m3_bits_to_f32(two & 0xff) * s), f32_to_bf16_bits(e4m3_bits_to_f32((two >> 8) & 0xff) * s));
#endif
}

// ---- wgmma, bf16 (sm_90a) -------------------------------------------------------------------------------
// d (+)= A·B, f32 accumulators; accumulate = 0 overwrites d. n32: A and B K-major; n256 (_nb): B MN-major.
__device__ __forceinline__ void wgmma_m64n32k16_bf16(float (&d)[16], uint64_t da, uint64_t db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {" WGMMA_REGS16 "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
               : WGMMA_OUT16(d)
               : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_m64n256k16_bf16_nb(float (&d)[128], uint64_t da, uint64_t db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" WGMMA_REGS128 "}, %128, %129, p, 1, 1, 0, 1;\n}\n"
               : WGMMA_OUT128(d)
               : "l"(da), "l"(db), "r"(accumulate));
}

template <int SRC>
__device__ __forceinline__ void sparse_mla_wg(int64_t N, int64_t H, int64_t k, int64_t rows, int64_t W, double scale, uint16_t* out, float* lse,
                                              const uint16_t* q, const void* kv, const int32_t* idx, int64_t tps, float* po, float* plse) {
  extern __shared__ uint8_t wg_smem[];
  uint8_t* Qs = (uint8_t*)(((uintptr_t)wg_smem + 1023) & ~(uintptr_t)1023);
  uint8_t* KV = Qs + WG_TILE;      // two stages
  uint8_t* Ps = KV + 2 * WG_TILE;  // [64 heads × 64 keys] bf16
  float* Mx = (float*)(Ps + WG_BLK);  // [2][64] the warpgroups' row maxima (at the end their row sums)
  int* Vs = (int*)(Mx + 2 * WG_H);    // [2][64] the stage's valid keys
  __shared__ int last;
  const int tid = threadIdx.x, wg = tid >> 7, wt = tid & 127, warp = wt >> 5, lane = tid & 31;
  const int64_t n = blockIdx.x;
  const int h0 = blockIdx.y * WG_H;
  const int32_t* ir = idx + n * k;

  if (tid == 0) last = -1;
  // Q rows h0 … h0 + 63 (zeros past H), 72 chunks of 16 bytes a row
  for (int c = tid; c < WG_H * (WG_D / 8); c += WG_THREADS) {
    const int h = c / (WG_D / 8), cc = c - h * (WG_D / 8);
    const bool ok = h0 + h < H;
    cp_async16_zfill(sw128_at(Qs + (cc >> 3) * WG_BLK, h, cc & 7), ok ? q + ((n * H + h0 + h) * WG_D + cc * 8) : q, ok);
  }
  cp_async_commit();
  __syncthreads();  // `last` is reset
  {
    int mine = -1;
    for (int t = tid; t < k; t += WG_THREADS) {
      const int32_t r = ir[t];
      if (r >= 0 && r < rows) mine = t;
    }
    if (mine >= 0) atomicMax(&last, mine);
  }
  cp_async_wait<0>();
  fence_proxy_async();
  __syncthreads();
  const int ntile = (last + WG_TK) / WG_TK;  // tiles up to the last valid entry (0 when there is none)
  const int j0 = po ? min(ntile, (int)(blockIdx.z * tps)) : 0;
  const int j1 = po ? min(ntile, j0 + (int)tps) : ntile;

  if (wg == 2) {
    // ---- producer ----
    setmaxnreg_dec<72>();
    const int cq = wt & 7;  // this thread's 16-byte chunk of each 128-byte block row
    // the rows this thread moves in tile j: keys (wt >> 3) + 16u, u < 4 (−1: a hole); loaded a tile ahead,
    // so a tile's copies start without waiting for its indices
    auto rows_of = [&](int j, int32_t (&r)[4]) {
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int t = j * WG_TK + (wt >> 3) + 16 * u;
        const int32_t x = j < j1 && t < k ? ir[t] : -1;
        r[u] = x >= 0 && x < rows ? x : -1;
      }
    };
    int32_t cur[4], nxt[4];
    rows_of(j0, cur);
    for (int j = j0; j < j1; j++) {
      const int s = (j - j0) & 1;
      rows_of(j + 1, nxt);
      if (j - j0 >= 2) bar_sync(WG_EMPTY + s, WG_THREADS);  // the consumers are done with tile j − 2
      uint8_t* st = KV + s * WG_TILE;
      if (cq == 0)
#pragma unroll
        for (int u = 0; u < 4; u++) Vs[s * WG_TK + (wt >> 3) + 16 * u] = cur[u] >= 0;
      if (SRC == SRC_BF16) {
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const uint16_t* src = (const uint16_t*)kv + (cur[u] >= 0 ? (int64_t)cur[u] * WG_D : 0) + cq * 8;
#pragma unroll
          for (int b = 0; b < WG_NB; b++) cp_async16_zfill(sw128_at(st + b * WG_BLK, (wt >> 3) + 16 * u, cq), src + b * 64, cur[u] >= 0);
        }
        cp_async_commit();
        cp_async_wait<0>();
      } else {
        // SRC_FP8: 512 e4m3, 4 f32 scales (one a 128 columns), 64 bf16 RoPE values; W bytes a row. Two rows'
        // loads in flight at a time (the registers allow no more), then decoded into the stage.
#pragma unroll 1
        for (int u0 = 0; u0 < 4; u0 += 2) {
          uint2 e[2][8];
          float4 sc[2];
          uint4 rp[2];
#pragma unroll
          for (int v = 0; v < 2; v++) {
            // (a selection, not cur[u0 + v]: u0 is a loop variable, and an indexed array would live in local memory)
            const int32_t r = u0 + v == 0 ? cur[0] : u0 + v == 1 ? cur[1] : u0 + v == 2 ? cur[2] : cur[3];
            const uint8_t* row = (const uint8_t*)kv + (r >= 0 ? (int64_t)r * W : 0);
#pragma unroll
            for (int b = 0; b < 8; b++) e[v][b] = r >= 0 ? *(const uint2*)(row + b * 64 + cq * 8) : make_uint2(0, 0);
            sc[v] = r >= 0 ? *(const float4*)(row + WG_DV) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            rp[v] = r >= 0 ? *(const uint4*)(row + WG_DV + 16 + cq * 16) : make_uint4(0, 0, 0, 0);
          }
#pragma unroll
          for (int v = 0; v < 2; v++) {
            const int key = (wt >> 3) + 16 * (u0 + v);
#pragma unroll
            for (int b = 0; b < 8; b++) {
              const float f = b < 2 ? sc[v].x : b < 4 ? sc[v].y : b < 6 ? sc[v].z : sc[v].w;
              *(uint4*)sw128_at(st + b * WG_BLK, key, cq) = make_uint4(e4m3x2_scaled_bf16x2(e[v][b].x, f), e4m3x2_scaled_bf16x2(e[v][b].x >> 16, f),
                                                                       e4m3x2_scaled_bf16x2(e[v][b].y, f), e4m3x2_scaled_bf16x2(e[v][b].y >> 16, f));
            }
            *(uint4*)sw128_at(st + 8 * WG_BLK, key, cq) = rp[v];
          }
        }
      }
      fence_proxy_async();
      bar_arrive(WG_FULL + s, WG_THREADS);
#pragma unroll
      for (int u = 0; u < 4; u++) cur[u] = nxt[u];
    }
    return;
  }

  // ---- consumers ----
  setmaxnreg_inc<216>();
  const float NEG_INF = __int_as_float(0xff800000);
  const float fscale = (float)scale;
  const int r0 = 16 * warp + (lane >> 2);  // this thread's rows (heads) r0 and r0 + 8
  // descriptors: Q, P, and per stage this warpgroup's keys (K-major) and value columns (MN-major); an
  // instruction's operand is the base plus its block (8 KB: 512 in the descriptor's 16-byte units) and k step
  const uint64_t dq = sw128_desc((uint32_t)__cvta_generic_to_shared(Qs)), dp = sw128_desc((uint32_t)__cvta_generic_to_shared(Ps));
  const uint32_t sa0 = (uint32_t)__cvta_generic_to_shared(KV), sa1 = sa0 + WG_TILE;
  const uint64_t dk0 = sw128_desc(sa0 + wg * 32 * 128), dk1 = sw128_desc(sa1 + wg * 32 * 128);  // (selected, not indexed: no local memory)
  const uint64_t dv0 = sw128_desc_lbo(sa0 + 4 * wg * WG_BLK, WG_BLK, 1024), dv1 = sw128_desc_lbo(sa1 + 4 * wg * WG_BLK, WG_BLK, 1024);
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.0f;
  float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
  float sc[16];
  // S_w of tile j into sc, once its stage is full (issued, not waited for)
  auto scores = [&](int j) {
    const uint64_t k0 = ((j - j0) & 1) ? dk1 : dk0;
    bar_sync(WG_FULL + ((j - j0) & 1), WG_THREADS);
    wgmma_fence();
#pragma unroll
    for (int b = 0; b < WG_NB; b++)
#pragma unroll
      for (int kk = 0; kk < 4; kk++) wgmma_m64n32k16_bf16(sc, dq + (WG_BLK >> 4) * b + 2 * kk, k0 + (WG_BLK >> 4) * b + 2 * kk, b + kk > 0);
    wgmma_commit();
  };
  if (j0 < j1) {
    scores(j0);
    wgmma_wait<0>();
    fence_regs(sc);
  }
  for (int j = j0; j < j1; j++) {
    const int s = (j - j0) & 1;
    float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
    for (int g = 0; g < 4; g++) {
      const int2 ok = *(const int2*)(Vs + s * WG_TK + 32 * wg + 8 * g + 2 * (lane & 3));
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int i = 4 * g + u;
        const float x = ((u & 1) ? ok.y : ok.x) ? bf16r(bf16r(sc[i]) * fscale) : NEG_INF;
        sc[i] = x;
        mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], x);
      }
    }
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], 1));
      mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], 2));
      if ((lane & 3) == 0) Mx[wg * WG_H + r0 + 8 * hf] = mx[hf];
    }
    bar_sync(WG_MX, 256);
    float alpha[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      const int r = r0 + 8 * hf;
      const float mn = fmaxf(m[hf], fmaxf(Mx[r], Mx[WG_H + r]));
      alpha[hf] = mn == NEG_INF || m[hf] == NEG_INF ? (mn == NEG_INF ? 1.0f : 0.0f) : __expf(m[hf] - mn);
      m[hf] = mn;
      l[hf] *= alpha[hf];
    }
#pragma unroll
    for (int i = 0; i < 16; i += 2) {
      const int hf = (i >> 1) & 1, r = r0 + 8 * hf;
      const int t = 32 * wg + 8 * (i >> 2) + 2 * (lane & 3);
      const float p0 = sc[i] == NEG_INF ? 0.0f : bf16r(__expf(sc[i] - m[hf]));
      const float p1 = sc[i + 1] == NEG_INF ? 0.0f : bf16r(__expf(sc[i + 1] - m[hf]));
      l[hf] += p0 + p1;
      *(uint32_t*)(sw128_at(Ps, r, t >> 3) + 2 * (t & 7)) = bf16x2_bits(p0, p1);
    }
    if (alpha[0] != 1.0f || alpha[1] != 1.0f)  // most tiles once the maxima settle: no rescale
#pragma unroll
      for (int i = 0; i < 128; i++) o[i] *= alpha[(i >> 1) & 1];
    fence_proxy_async();
    bar_sync(WG_PR, 256);  // P complete (both halves)
    wgmma_fence();
    fence_regs(o);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wgmma_m64n256k16_bf16_nb(o, dp + 2 * kk, (s ? dv1 : dv0) + (2048 >> 4) * kk, 1);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(o);
    // the stage goes back to the producer first: issuing the next tile's scores behind these values (waiting
    // for its stage before this one is released) made the 4096-query prefill 11% slower (H100, call B)
    if (j + 2 < j1) bar_arrive(WG_EMPTY + s, WG_THREADS);
    if (j + 1 < j1) {
      scores(j + 1);
      wgmma_wait<0>();
      fence_regs(sc);
    }
  }
  // row sums: the quad's, then both warpgroups' (Mx is free: both are past their last reads of it)
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    l[hf] += __shfl_xor_sync(0xffffffffu, l[hf], 1);
    l[hf] += __shfl_xor_sync(0xffffffffu, l[hf], 2);
    if ((lane & 3) == 0) Mx[wg * WG_H + r0 + 8 * hf] = l[hf];
  }
  bar_sync(WG_MX, 256);
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int r = r0 + 8 * hf, h = h0 + r;
    if (h >= H) continue;
    const float L = Mx[r] + Mx[WG_H + r];
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
#pragma unroll
    for (int i = 0; i < 128; i += 4) {
      const int c = 256 * wg + 8 * (i >> 2) + 2 * (lane & 3);
      const float a = o[i + 2 * hf] * inv, b = o[i + 2 * hf + 1] * inv;
      if (po) *(float2*)(po + (n * H + h) * WG_DV + c) = make_float2(a, b);
      else *(uint32_t*)(out + (n * H + h) * WG_DV + c) = pack2(f32_to_bf16_bits(a), f32_to_bf16_bits(b));
    }
    if (wg == 0 && (lane & 3) == 0) (po ? plse : lse)[n * H + h] = L > 0.0f ? m[hf] + logf(L) : NEG_INF;
  }
}

// Entry points with the host's FWD_SIG and SPLIT_SIG (src/backend/cuda/sparse-mla.ts); D and dv are 576 and
// 512 (the host checks), passed for the common signature.
#define WG_ENTRIES(name, SRC)                                                                                                      \
  extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) sparse_mla_wg_##name(                                               \
      int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale, uint16_t* out, float* lse,     \
      const uint16_t* q, const void* src, const int32_t* idx) {                                                                     \
    sparse_mla_wg<SRC>(N, H, k, rows, W, scale, out, lse, q, src, idx, 0, nullptr, nullptr);                                        \
  }                                                                                                                                 \
  extern "C" __global__ void __launch_bounds__(WG_THREADS, 1) sparse_mla_wg_split_##name(                                         \
      int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale, const uint16_t* q,             \
      const void* src, const int32_t* idx, int64_t tps, float* po, float* plse) {                                                   \
    const int64_t z = blockIdx.z;                                                                                                   \
    sparse_mla_wg<SRC>(N, H, k, rows, W, scale, nullptr, nullptr, q, src, idx, tps, po + z * N * H * WG_DV, plse + z * N * H);       \
  }
WG_ENTRIES(bf16, SRC_BF16)
WG_ENTRIES(fp8, SRC_FP8)
