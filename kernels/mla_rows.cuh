// The latent rows the sparse MLA kernels read (sparse_mla_gemm.cu, sparse_mla_flash.cu): bf16 or f32 rows
// [rows, D], or the FlashMLA FP8 cache's 656-byte rows (W bytes a row: dv e4m3 values, ⌈dv/128⌉ f32
// scales, then D − dv bf16 RoPE values), decoded to bf16 on the way into shared memory.
#pragma once
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
    // whole vectors where the layout allows (the 656-byte rows of dv 512 / dr 64 always do: rows start on
    // 16 bytes, eight e4m3 values share one block scale, the RoPE part starts on 16 bytes); byte by byte
    // otherwise (odd test layouts). The same values either way.
    const uint8_t* sp = row + dv + 4 * (c >> 7);
    const uint8_t* rp = row + dv + 4 * nb + 2 * (c - dv);
    if (c + 8 <= dv && ((uintptr_t)(row + c) & 7) == 0 && ((uintptr_t)sp & 3) == 0) {
      const uint2 v = *(const uint2*)(row + c);
      const float sc = *(const float*)sp;
      const uint8_t* b = (const uint8_t*)&v;
#pragma unroll
      for (int u = 0; u < 8; u++) f[u] = e4m3_bits_to_f32(b[u]) * sc;
      return;
    }
    if (c >= dv && ((uintptr_t)rp & 15) == 0) {
      const uint4 v = *(const uint4*)rp;
      const uint16_t* h = (const uint16_t*)&v;
#pragma unroll
      for (int u = 0; u < 8; u++) f[u] = bf16_bits_to_f32(h[u]);
      return;
    }
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

// One stage of a fused kernel (NT threads): key rows Is[t0 + j] (j < nrow) of the source, columns col0 .. col0 + ncol, into dst [nrow][ldd]
// as bf16, zeros where Is is −1. Thread x takes rows x/8 + 32·i and 16-byte pieces x%8 + 8·u, so eight
// lanes copy 128 contiguous bytes of a row. bf16 rows go by cp.async (no registers, the whole stage in
// flight, not waited for here); a decoded source (f32 rows) four pieces a thread at a time through
// registers — the reason the FP8 cache, decoded the same way, stays on the gathered GEMMs. (One synchronous load a thread, the very first version, ran the mid config's 4 096-
// token prefill attention at ~54 ms on an H100, slower than the gathered GEMMs.)
template <int SRC, int NT>
__device__ __forceinline__ void gather_stage(uint16_t* dst, int ldd, int nrow, int col0, int ncol, int D, int dv, int64_t W,
                                            const void* src, const int32_t* Is, int t0) {
  const int chunks = ncol >> 3;
  const int p = threadIdx.x & 7;
  for (int j = threadIdx.x >> 3; j < nrow; j += NT / 8) {
    const int32_t r = Is[t0 + j];
    uint16_t* d = dst + j * ldd;
    if (SRC == SRC_BF16) {
      if (r < 0) {
        for (int c = p; c < chunks; c += 8) *(uint4*)(d + 8 * c) = make_uint4(0, 0, 0, 0);
      } else {
        const uint16_t* s = (const uint16_t*)src + (int64_t)r * D + col0;
        for (int c = p; c < chunks; c += 8) cp_async16(d + 8 * c, s + 8 * c);
      }
    } else {
      for (int c0 = p; c0 < chunks; c0 += 32) {
        float f[4][8];
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const int c = c0 + 8 * u;
          if (r < 0 || c >= chunks) {
#pragma unroll
            for (int v = 0; v < 8; v++) f[u][v] = 0.0f;
          } else {
            row8<SRC>(src, r, col0 + 8 * c, D, dv, W, f[u]);
          }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const int c = c0 + 8 * u;
          if (c < chunks) *(Vec<__nv_bfloat16, 8>*)(d + 8 * c) = pack_vec<__nv_bfloat16, 8>(f[u]);
        }
      }
    }
  }
}

// The few-head one-pass training kernels' tile loop over a row's selected bf16 rows (indexer_kl_flash.cu,
// indexer_scores_flash.cu, sparse_mla_bwd_flash.cu): ntile tiles of TK rows Is[j·TK ..] (all D columns)
// through two buffers [TK][Dp] at Ks; tile j + 1 is requested (cp.async) right after the barrier that
// starts tile j, so its gather overlaps tile j's products; body(j, rows of tile j) runs on every thread.
// Every cp.async is waited for on return.
template <int NT, int TK, class Body>
__device__ __forceinline__ void for_each_key_tile(uint16_t* Ks, int Dp, int D, const uint16_t* src, const int32_t* Is, int ntile, Body body) {
  auto issue = [&](int j) {
    if (j < ntile) gather_stage<SRC_BF16, NT>(Ks + (j & 1) * TK * Dp, Dp, TK, 0, D, D, D, 0, src, Is, j * TK);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };
  issue(0);
  for (int j = 0; j < ntile; j++) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    issue(j + 1);
    body(j, (const uint16_t*)(Ks + (j & 1) * TK * Dp));
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// The scores of a key tile's 8 keys kr .. kr + 7 against 16 query rows, as the m16n8k16 C fragment s
// (rows g and g + 8, keys 2·tig and 2·tig + 1 of the 8): s = A [16][ap] · B[kr .. kr + 7][·]ᵀ over columns
// [0, D), D % 32 == 0, 32 columns a load (ldmatrix; B's rows are the keys, read as the col-major operand);
// the two 16-column halves go into separate accumulators (half the dependent mma chain), summed at the end.
// TWO: also t = A2 [16][a2p] · B[kr ..][0, D2)ᵀ (D2 ≤ D, D2 % 32 == 0) from the same B fragments (the
// backward's dp = dO·vᵀ beside s = q·kᵀ).
template <bool TWO>
__device__ __forceinline__ void products16x8(float (&s)[4], float (&t)[4], const uint16_t* A, int ap, const uint16_t* A2, int a2p, int D2,
                                             const uint16_t* B, int bp, int kr, int D, int lane) {
  float s2[4] = {0.0f, 0.0f, 0.0f, 0.0f}, t2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int u = 0; u < 4; u++) s[u] = t[u] = 0.0f;
  const uint16_t* qa = A + (lane & 15) * ap + ((lane >> 4) << 3);
  const uint16_t* oa = TWO ? A2 + (lane & 15) * a2p + ((lane >> 4) << 3) : nullptr;
  const uint16_t* kb = B + (kr + (lane & 7)) * bp + ((lane >> 3) << 3);
#pragma unroll 2
  for (int c0 = 0; c0 < D; c0 += 32) {
    uint32_t a0[4], a1[4], b[4];
    ldmatrix_x4(b, kb + c0);
    ldmatrix_x4(a0, qa + c0);
    ldmatrix_x4(a1, qa + c0 + 16);
    mma_bf16_16816(s, a0, b[0], b[1]);
    mma_bf16_16816(s2, a1, b[2], b[3]);
    if (TWO && c0 < D2) {
      ldmatrix_x4(a0, oa + c0);
      ldmatrix_x4(a1, oa + c0 + 16);
      mma_bf16_16816(t, a0, b[0], b[1]);
      mma_bf16_16816(t2, a1, b[2], b[3]);
    }
  }
#pragma unroll
  for (int u = 0; u < 4; u++) {
    s[u] += s2[u];
    t[u] += t2[u];
  }
}

__device__ __forceinline__ void scores16x8(float (&s)[4], const uint16_t* A, int ap, const uint16_t* B, int bp, int kr, int D, int lane) {
  float unused[4];
  products16x8<false>(s, unused, A, ap, nullptr, 0, 0, B, bp, kr, D, lane);
}

// The sum over the 16 heads of a key's per-head terms, after scores16x8: lane (g, tig) holds a[v] for heads
// g and g + 8 of key 2·tig + v; the 8 lanes of a tig (xor 4, 8, 16) add theirs, so every lane ends with
// its two keys' sums. (Pairwise across lanes, not in head order: a different rounding of the same terms.)
template <class A>
__device__ __forceinline__ void sum_heads(A (&a)[2]) {
#pragma unroll
  for (int v = 0; v < 2; v++) {
    a[v] += __shfl_xor_sync(0xffffffffu, a[v], 4);
    a[v] += __shfl_xor_sync(0xffffffffu, a[v], 8);
    a[v] += __shfl_xor_sync(0xffffffffu, a[v], 16);
  }
}

// x = rnd_bf16(rnd_bf16(s)·scale) of an f32 accumulator s: rounded to bf16 as the gemm paths' GEMM output
// is, then bf16_score_x (common.cuh).
__device__ __forceinline__ float mla_score_x(float s, double scale) { return bf16_score_x(f32_to_bf16_bits(s), scale); }

// The backward half of a one-pass kernel's key tile (sparse_mla_bwd_flash.cu, indexer_scores_flash.cu), 8
// warps over a tile of 64 keys whose rows G [64][gp] (D columns, D % 64 == 0) are in shared memory, with
// the tile's coefficients A [16 heads][64 keys] (bf16, pitch ap: the softmax's dS, or the indexer's g·w):
//   tile_dq: dq (16 × D) += A (16 × 64) · G (64 × D); warp w owns columns [w·D/8, (w+1)·D/8) as D/64 n-tiles
//            acc[i] (QT ≥ D/64; one spare: an odd pair's second tile is computed and dropped), K = the tile's
//            64 keys in four k16 steps, G read transposed by ldmatrix;
//   tile_dg: dG (64 × D) = Aᵀ (64 × 16) · Q (16 × D) + (TWO) Pᵀ · [O | 0] (columns < dv, dv % 32 == 0),
//            one k16 step each; warp w owns keys (w % 4)·16 .. +15 and the column half w / 4 (D % 32 == 0),
//            A and P read as Aᵀ, Pᵀ by ldmatrix.trans; each 16 × 8 result is added into dst row It[key]
//            (holes: It < 0, skipped) with one float4 atomic a lane — a quad's lanes swap halves so that
//            each holds four consecutive columns of one row. !ADD (a benchmark probe): summed into sink.
template <int QT>
__device__ __forceinline__ void tile_dq(float (&acc)[QT + 1][4], const uint16_t* A, int ap, const uint16_t* G, int gp, int D, int warp, int lane) {
  const int qw = D >> 6, qc0 = warp * (D >> 3);
  const int qd = lane >> 3, r8 = lane & 7;
#pragma unroll
  for (int kk = 0; kk < 64; kk += 16) {
    uint32_t a[4];
    ldmatrix_x4(a, A + (lane & 15) * ap + kk + ((lane >> 4) << 3));
    const uint16_t* vb = G + (kk + ((qd & 1) << 3) + r8) * gp + qc0 + ((qd >> 1) << 3);
#pragma unroll
    for (int i = 0; i < QT; i += 2) {
      if (i < qw) {
        uint32_t t[4];
        ldmatrix_x4_trans(t, vb + i * 8);  // past the warp's columns: the next warp's, or the row's pitch padding
        mma_bf16_16816(acc[i], a, t[0], t[1]);
        mma_bf16_16816(acc[i + 1], a, t[2], t[3]);
      }
    }
  }
}

// tile_dq's acc (rows g and g + 8 of the 16 heads h0 .., columns qc0 + i·8 + tig·2 + {0, 1}) rounded to
// bf16 into dq [·, H, D] row n (heads past H dropped).
template <int QT>
__device__ __forceinline__ void store_dq(uint16_t* dq, const float (&acc)[QT + 1][4], int64_t n, int64_t H, int h0, int D, int warp, int lane) {
  const int qw = D >> 6, qc0 = warp * (D >> 3), g = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int h = h0 + g + hf * 8;
    if (h >= H) continue;
#pragma unroll
    for (int i = 0; i < QT; i++) {
      if (i < qw) {
        const int c = qc0 + i * 8 + tig * 2;
        *(uint32_t*)(dq + (n * H + h) * D + c) = pack2(f32_to_bf16_bits(acc[i][hf * 2]), f32_to_bf16_bits(acc[i][hf * 2 + 1]));
      }
    }
  }
}

template <bool ADD, bool TWO>
__device__ __forceinline__ void tile_dg(float* dst, int64_t D, const int32_t* It, const uint16_t* A, const uint16_t* P, int ap, const uint16_t* Q, int qp,
                                        const uint16_t* O, int op, int dv, int warp, int lane, float& sink) {
  const int g = lane >> 2, tig = lane & 3, qd = lane >> 3, r8 = lane & 7;
  const int kb0 = (warp & 3) * 16;
  // Aᵀ and Pᵀ (key m × head k) from the [head][key] blocks: matrix qd holds heads (qd / 2)·8 .., keys kb0 + (qd % 2)·8 ..
  uint32_t as[4], aq[4];
  ldmatrix_x4_trans(as, A + (((qd >> 1) << 3) + r8) * ap + kb0 + ((qd & 1) << 3));
  if (TWO) ldmatrix_x4_trans(aq, P + (((qd >> 1) << 3) + r8) * ap + kb0 + ((qd & 1) << 3));
  const int32_t rlo = It[kb0 + g], rhi = It[kb0 + g + 8];
  const int half = (int)(D >> 1);
  const int cbeg = (warp >> 2) * half;
  // B = Q and O (head k × column n), rows = heads
  const uint16_t* qb = Q + (((qd & 1) << 3) + r8) * qp + ((qd >> 1) << 3);
  const uint16_t* ob = TWO ? O + (((qd & 1) << 3) + r8) * op + ((qd >> 1) << 3) : nullptr;
  const bool even = (tig & 1) == 0;
  float* dlo = dst + (int64_t)(rlo < 0 ? 0 : rlo) * D;
  float* dhi = dst + (int64_t)(rhi < 0 ? 0 : rhi) * D;
#pragma unroll 2
  for (int c = cbeg; c < cbeg + half; c += 16) {
    float o[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    uint32_t t[4];
    ldmatrix_x4_trans(t, qb + c);
    mma_bf16_16816(o[0], as, t[0], t[1]);
    mma_bf16_16816(o[1], as, t[2], t[3]);
    if (TWO && c < dv) {  // dv % 32 == 0 and half % 16 == 0: a 16-column pair lies wholly inside or outside dv
      ldmatrix_x4_trans(t, ob + c);
      mma_bf16_16816(o[0], aq, t[0], t[1]);
      mma_bf16_16816(o[1], aq, t[2], t[3]);
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

// Heads h0 .. h0 + 15 of query n of a [·, H, C] bf16 block (rows of C values, C % 8 == 0, 16-byte aligned)
// into S [16][pitch] in shared memory, zero rows past H.
template <int NT>
__device__ __forceinline__ void load_head_rows(uint16_t* S, int pitch, const uint16_t* src, int64_t n, int64_t H, int h0, int C) {
  for (int e = threadIdx.x; e < 16 * (C >> 3); e += NT) {
    const int h = e / (C >> 3);
    const int c = (e - h * (C >> 3)) << 3;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (h0 + h < H) v = *(const uint4*)(src + (n * H + h0 + h) * C + c);
    *(uint4*)(S + h * pitch + c) = v;
  }
}

// A row's selection entries [0, kt) into shared Is: the row's first kr entries, −1 for a hole (an index
// outside [0, rows)) and for entries past kr; *last (shared) becomes the last valid entry's position, −1
// when there is none. Called by every thread of the CTA; the caller's barrier after it makes both visible.
// (*last is reset here, before a barrier: a reset by thread 0 alone, unordered with the other warps'
// atomicMax, could land after one of them and lose it.)
template <int NT>
__device__ __forceinline__ void load_selection(int32_t* Is, const int32_t* ir, int kt, int64_t kr, int64_t rows, int* last) {
  if (threadIdx.x == 0) *last = -1;
  __syncthreads();
  int mine = -1;
  for (int t = threadIdx.x; t < kt; t += NT) {
    const int32_t r = t < kr ? ir[t] : -1;
    const int32_t v = r < 0 || (int64_t)r >= rows ? -1 : r;
    Is[t] = v;
    if (v >= 0) mine = t;
  }
  if (mine >= 0) atomicMax(last, mine);
}

// The entry points of a fused sparse MLA kernel template fn<SRC>, one per dense-row source, all with the
// host's FWD_SIG (src/backend/cuda/sparse-mla.ts): prefix_bf16, prefix_f32.
#define MLA_ENTRY(prefix, name, fn, NT, SRC)                                                                          \
  extern "C" __global__ void __launch_bounds__(NT) prefix##_##name(                                                 \
      int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale, uint16_t* out, \
      float* lse, const uint16_t* q, const void* src, const int32_t* idx) {                                         \
    fn<SRC>(N, H, D, dv, k, rows, W, scale, out, lse, q, src, idx);                                                 \
  }
// (No FP8 entries: the host sends the FP8 cache to the gathered GEMMs, measured 1.8–3.2× faster there than
// the one-pass kernel and 3.7–6.8× than the two-pass one, H100, 16 heads, 64 and 1 024 rows.)
#define MLA_SOURCE_ENTRIES(prefix, fn, NT) MLA_ENTRY(prefix, bf16, fn, NT, SRC_BF16) MLA_ENTRY(prefix, f32, fn, NT, SRC_F32)
