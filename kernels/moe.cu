// Mixture-of-experts on the device with no host read inside a step: routing, dispatch (a stable counting
// sort of the (token, slot) pairs by expert), a grouped GEMM over the expert segments, and the combine.
// Contract: src/tensor/ops/moe.ts; CPU reference: src/backend/cpu/moe.ts (bit-identical to the host model's
// src/model/gate.ts and moe.ts). SIMT kernels for every dtype; bf16 products also run on the tensor cores
// (grouped_matmul_tc_*: the forward and dx; grouped_matmul_dw_tc_*: dW).
//
// moe_route (one warp per token, 4 warps = 128 threads per CTA; dynamic shared memory 4·E floats of
// selection scores + 4·32 group scores; a warp only touches its own part, so __syncwarp suffices). For token t:
//   sel[e] = s[t, e] + bias[e] (__fadd_rn: one f32 rounding, as the CPU's fround; no contraction possible)
//   G > 1: lane g (looping by 32) forms group g's score from its E/G entries: max (no bias) or the sum of the
//     two largest values (__fadd_rn), i.e. the two best under the CPU's order (value desc, index asc: the
//     top-2 VALUES do not depend on how ties are broken). Then lane g ranks its group against all G (better =
//     larger score, tie → lower group) and, when the rank is ≥ topk_group, sets its experts' sel to −inf.
//   top-k: lane l owns entries e = l + 32·i (i < ⌈E/32⌉ ≤ 32, a bit mask of taken entries in one register);
//     k rounds of a warp arg-best under the strict total order (value desc, index asc): each lane scans its
//     untaken entries, a butterfly of shuffles leaves the same (value, index) on every lane, its owner marks
//     it taken. For NaN-free scores this total order makes the k winners exactly the host insertion top-k's
//     (selectExperts); −inf entries of dropped groups tie and fall back to index order, as on the host. NaN
//     scores (only from NaN activations) are outside the contract: the host's insertion rule is then
//     order-dependent and the two may differ.
//   output ascending: lane r < k holds winner r; its slot is the count of winners with a smaller id.
//   forced (route replay): lane j < k reads forced[t, j]; its slot is the count of smaller ids in the row; an
//     id outside [0, E) or repeated in the row raises the device error word (raise_index(err, id, E)) and is
//     not written.
//   Limits (checked by the launcher): E ≤ 1024, k ≤ 32, G ≤ 32.
//
// moe_dispatch (one CTA of 512 threads = 16 warps; dynamic shared memory (nw + 1)·(E + 1) ints):
//   the T·k pairs are cut into nw ≤ 16 contiguous ranges, one per warp (nw is chosen by the host so that the
//   per-warp count table fits in 48 KB: 16 up to E = 721, fewer beyond).
//   1. each warp counts its range per expert (shared atomics into its own row wc[w][·]; counts are order-
//      free); an id outside [0, E) raises the error word and the pair gets no position (rows[i] = −1);
//   2. totals per expert, an exclusive scan of them by warp 0 (lane l sums a contiguous chunk, shuffles scan
//      the 32 chunk sums) → offsets[0..E]; then wc[w][e] becomes offsets[e] + the counts of warps < w: the
//      first position of warp w's pairs of expert e;
//   3. stable scatter, every warp over its own range in pair order, 32 pairs at a time: __match_any_sync
//      groups the lanes holding the same expert, a lane's position is wc[w][e] + (its peers below it), and
//      the highest peer advances wc[w][e] by the peer count. Ranges are ordered and each is walked in
//      order, so every segment is ascending in pair index (moe.ts's loop order); pairs[pos] = i,
//      tokens[pos] = i / k, rows[i] = pos.
//   One CTA keeps the op free of scratch memory and host reads (graph-capturable); its cost is about
//   ⌈T·k/(32·nw)⌉ warp steps (256 for a 16K-token prefill at k = 8). Beyond (left): several CTAs with a
//   decoupled look-back over the per-CTA count rows.
//
// grouped_matmul (out [M, N] = x [M, K] · W[e]ᵀ, W [E, N, K], per segment [off[e], off[e+1])): a plain tiled
//   SIMT GEMM. The row tiles are cut per segment (a tile never straddles two experts), so the number of row
//   tiles is at most ⌈M/64⌉ + E + 2 (each segment adds at most one partial tile; the two extra "segments" are
//   the rows before off[0] and from off[E] on, which are written as zeros like the CPU reference). The grid
//   is sized for that worst case (grid.x over N tiles, grid.y over row tiles); a CTA first walks the offsets
//   to find its segment and row range, and exits when its tile index is past the last real tile. No host
//   read of the offsets is needed, so the launch is graph-capturable and the grid depends only on M, N, E.
//   Tile 64 × 64 × 16, 256 threads, each thread a 4 × 4 block of outputs in registers; x and W tiles staged
//   in shared memory as f32 (As[k][m], Bs[k][n], padded by 4 to spread banks); f32 FMA accumulation in k
//   order, rounded once to x's dtype. The CPU reference (the backend's sgemm) sums in another order, so f32
//   results agree to accumulation order and bf16 to one ulp, not bit for bit.
//   FP8 weights (grouped_matmul_fp8_*, e4m3 with 128 × 128 block scales): the same tiles with per-128-K-block
//   promotion, see below.
//   Backward (training with replayed routes): dx = g·W[e] is the same kernel reading W[e] transposed (strides
//   passed in), dw[e] = g_segᵀ·x_seg is grouped_matmul_dw (a CTA per expert and 64 × 64 tile of dw, reducing
//   over the segment's rows); neither reads the offsets on the host.
//   Performance (left): wgmma / TMA tiles per segment (a persistent scheduler over (segment, tile) pairs),
//   FP8 tensor-core MMA (e4m3 × e4m3 with the block scales applied on promotion, as DeepGEMM's grouped
//   GEMM), swap-AB for decode's few rows per expert.
//
// moe_combine (one thread per output element, grid-stride): acc = 0; for j < k in slot order (= ascending
//   expert id) acc = __fadd_rn(acc, __fmul_rn(ys[rows[t·k + j], d], w[t, j])); then acc = __fadd_rn(acc,
//   shared[t, d]); out = round(acc). Each product and sum is rounded separately (the intrinsics forbid FMA
//   contraction), exactly the CPU's fround(acc + fround(y·w)): the combine is bit-identical to the host.
//   ys, shared and out are read and written by runtime dtype code (f32 or bf16), weights are f32.
#include "common.cuh"
#include "segments.cuh"

#define ROUTE_WARPS 4
#define NONE 0x7fffffff

// (v, i) better than (bv, bi): larger value, ties to the lower index; bi == NONE is worse than anything.
__device__ __forceinline__ bool route_better(float v, int i, float bv, int bi) {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

extern "C" __global__ void __launch_bounds__(128) moe_route(int64_t T, int64_t E, int64_t k, int64_t G, int64_t TG, int32_t* out,
                                                            const float* scores, const float* bias, const int32_t* forced, int* err) {
  extern __shared__ float route_smem[];
  const int lane = threadIdx.x & 31;
  const int w = threadIdx.x >> 5;
  const int64_t t = blockIdx.x * (int64_t)ROUTE_WARPS + w;
  if (t >= T) return;  // whole warps leave together: no barrier below spans warps
  const int Ei = (int)E, ki = (int)k, Gi = (int)G;
  if (forced) {
    if (lane < ki) {
      const int e = forced[t * k + lane];
      int rank = 0, dup = 0;
      for (int i = 0; i < ki; i++) {
        const int o = forced[t * k + i];
        rank += o < e;
        dup += (o == e) && i != lane;
      }
      if (e < 0 || e >= Ei || dup) raise_index(err, e, E);
      else out[t * k + rank] = e;
    }
    return;
  }
  float* sel = route_smem + (int64_t)w * E;
  float* gs = route_smem + ROUTE_WARPS * E + w * 32;
  const float* s = scores + t * E;
  for (int e = lane; e < Ei; e += 32) sel[e] = bias ? __fadd_rn(s[e], bias[e]) : s[e];
  __syncwarp();
  if (Gi > 1) {
    const int per = Ei / Gi;
    // group scores (G ≤ 32, checked by the launcher): lane g scans group g's E/G entries
    if (lane < Gi) {
      float m1 = -INFINITY, m2 = -INFINITY;
      for (int j = 0; j < per; j++) {
        const float v = sel[lane * per + j];
        if (v > m1) {
          m2 = m1;
          m1 = v;
        } else if (v > m2) {
          m2 = v;
        }
      }
      gs[lane] = bias ? __fadd_rn(m1, m2) : m1;
    }
    __syncwarp();
    // G ≤ 32 (checked by the launcher): every group score sits in gs[0..G)
    if (lane < Gi) {
      const float gm = gs[lane];
      int rank = 0;
      for (int h = 0; h < Gi; h++) {
        const float o = gs[h];
        rank += (o > gm) || (o == gm && h < lane);
      }
      if (rank >= (int)TG)
        for (int j = 0; j < per; j++) sel[lane * per + j] = -INFINITY;
    }
    __syncwarp();
  }
  // k rounds of warp arg-best over the untaken entries
  uint32_t taken = 0;
  int mine = NONE;
  const int nper = (Ei + 31) >> 5;
  for (int r = 0; r < ki; r++) {
    float bv = -INFINITY;
    int bi = NONE;
    for (int i = 0; i < nper; i++) {
      const int e = lane + 32 * i;
      if (e < Ei && !((taken >> i) & 1u)) {
        const float v = sel[e];
        if (route_better(v, e, bv, bi)) {
          bv = v;
          bi = e;
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (route_better(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (bi != NONE && (bi & 31) == lane) taken |= 1u << (bi >> 5);
    if (lane == r) mine = bi;
  }
  int rank = 0;
  for (int i = 0; i < ki; i++) rank += __shfl_sync(0xffffffffu, mine, i) < mine;
  if (lane < ki) out[t * k + rank] = mine;
}

extern "C" __global__ void __launch_bounds__(512) moe_dispatch(int64_t n, int64_t k, int64_t E, int64_t nw, const int32_t* experts,
                                                               int32_t* pairs, int32_t* rows, int32_t* tokens, int32_t* offsets, int* err) {
  extern __shared__ int cnt[];  // cnt[E + 1], then wc[nw][E + 1]
  const int Ei = (int)E, E1 = Ei + 1, nwi = (int)nw;
  int* wc = cnt + E1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int e = threadIdx.x; e < E1 * (nwi + 1); e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  // 1. per-warp histograms of contiguous ranges (warp w: pairs [w·chunk, (w+1)·chunk))
  const int64_t chunk = (n + nw - 1) / nw;
  const int64_t lo = (int64_t)warp * chunk, hi = min(n, lo + chunk);
  if (warp < nwi)
    for (int64_t i = lo + lane; i < hi; i += 32) {
      const int e = experts[i];
      if (e < 0 || e >= Ei) raise_index(err, e, E);
      else atomicAdd(&wc[warp * E1 + e], 1);
    }
  __syncthreads();
  for (int e = threadIdx.x; e < Ei; e += blockDim.x) {
    int t = 0;
    for (int w = 0; w < nwi; w++) t += wc[w * E1 + e];
    cnt[e] = t;
  }
  __syncthreads();
  // 2. exclusive scan of the E + 1 totals (cnt[E] = 0) by warp 0: lane l owns a contiguous chunk
  if (warp == 0) {
    const int c = (E1 + 31) / 32;
    const int a = min(lane * c, E1), b = min(a + c, E1);
    int part = 0;
    for (int e = a; e < b; e++) part += cnt[e];
    int incl = part;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    int run = incl - part;
    for (int e = a; e < b; e++) {
      const int ce = cnt[e];
      cnt[e] = run;
      offsets[e] = run;
      run += ce;
    }
  }
  __syncthreads();
  // each warp's first position per expert: the expert's offset plus the counts of the warps before it
  for (int e = threadIdx.x; e < Ei; e += blockDim.x) {
    int run = cnt[e];
    for (int w = 0; w < nwi; w++) {
      const int t = wc[w * E1 + e];
      wc[w * E1 + e] = run;
      run += t;
    }
  }
  __syncthreads();
  // 3. stable scatter: each warp walks its own range in order, 32 pairs at a time
  if (warp >= nwi) return;
  int* cur = wc + warp * E1;
  const unsigned lt = (1u << lane) - 1u;
  for (int64_t base = lo; base < hi; base += 32) {
    const int64_t i = base + lane;
    int e = i < hi ? experts[i] : -1;
    if (e >= Ei) e = -1;
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    if (e >= 0) {
      const int pos = cur[e] + __popc(peers & lt);
      pairs[pos] = (int32_t)i;
      tokens[pos] = (int32_t)(i / k);
      rows[i] = pos;
    } else if (i < hi) {
      rows[i] = -1;
    }
    __syncwarp();
    if (e >= 0 && lane == 31 - __clz(peers)) cur[e] += __popc(peers);
    __syncwarp();
  }
}

#define GM_BM 64
#define GM_BN 64
#define GM_BK 16
#define GM_PAD 4

template <class T> __device__ __forceinline__ float gm_load(const T* p, int64_t i);
template <> __device__ __forceinline__ float gm_load<float>(const float* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float gm_load<uint16_t>(const uint16_t* p, int64_t i) { return bf16_bits_to_f32(p[i]); }
template <class T> __device__ __forceinline__ void gm_store(T* p, int64_t i, float v);
template <> __device__ __forceinline__ void gm_store<float>(float* p, int64_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void gm_store<uint16_t>(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16_bits(v); }


// W element (output column c, inner index i) of expert e is W[e·es + c·sc + i·si]: (sc, si, es) = (K, 1, N·K)
// for the forward (W[e] in nn.Linear layout [N, K]) and (1, C, I·C) for the backward's dx = g·W[e], where
// the output has C = K columns and the inner dim is I = N.
template <class XT, class WT>
__device__ void grouped_matmul(int64_t M, int64_t N, int64_t K, int64_t E, XT* out, const XT* x, const WT* W, const int32_t* off, int64_t sc,
                               int64_t si, int64_t es) {
  __shared__ float As[GM_BK][GM_BM + GM_PAD];
  __shared__ float Bs[GM_BK][GM_BN + GM_PAD];
  __shared__ int seg_s, r0_s, rows_s;
  if (threadIdx.x == 0) gm_find_tile<GM_BM>(M, E, off, &seg_s, &r0_s, &rows_s);
  __syncthreads();
  const int seg = seg_s;
  if (seg == -2) return;  // past the last real tile (the grid is sized for the worst case)
  const int64_t r0 = r0_s;
  const int rows = rows_s;
  const int64_t n0 = (int64_t)blockIdx.x * GM_BN;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
  if (seg >= 0 && seg < E) {
    const WT* We = W + (int64_t)seg * es;
    for (int64_t k0 = 0; k0 < K; k0 += GM_BK) {
      // 64 × 16 elements of each operand, 4 per thread; kk fastest so a warp reads two 16-wide row pieces
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int idx = threadIdx.x + u * 256;
        const int kk = idx & 15, r = idx >> 4;
        const int64_t kg = k0 + kk;
        As[kk][r] = (r < rows && kg < K) ? gm_load<XT>(x, (r0 + r) * K + kg) : 0.0f;
        Bs[kk][r] = (n0 + r < N && kg < K) ? gm_load<WT>(We, (n0 + r) * sc + kg * si) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < GM_BK; kk++) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; i++) a[i] = As[kk][ty * 4 + i];
#pragma unroll
        for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = ty * 4 + i;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int64_t n = n0 + tx * 4 + j;
      if (n < N) gm_store<XT>(out, (r0 + r) * N + n, acc[i][j]);
    }
  }
}

#define GMM(name, XT, WT)                                                                                                        \
  extern "C" __global__ void __launch_bounds__(256) name(int64_t M, int64_t N, int64_t K, int64_t E, void* out, const void* x, \
                                                         const void* W, const int32_t* off, int64_t sc, int64_t si, int64_t es) { \
    grouped_matmul<XT, WT>(M, N, K, E, (XT*)out, (const XT*)x, (const WT*)W, off, sc, si, es);                                 \
  }
GMM(grouped_matmul_f32_f32, float, float)
GMM(grouped_matmul_f32_bf16, float, uint16_t)
GMM(grouped_matmul_bf16_f32, uint16_t, float)
GMM(grouped_matmul_bf16_bf16, uint16_t, uint16_t)

// ---- grouped_matmul_tc_bf16: the tensor-core path for bf16 x and bf16 W ----------------------------------
// The same product and the same segment tiling as grouped_matmul (gm_find_tile with 128-row tiles: at most
// ⌈M/128⌉ + E + 2 row tiles, no host read of the offsets, graph-capturable), on mma.sync m16n8k16 (bf16 in,
// f32 accumulate). The SIMT kernel above ran the mid config's MoE at ~22 TFLOPS on an H100 (49 of a 16 384-token
// prefill's 330 ms); an expert segment of a prefill is thousands of rows, a plain GEMM per segment.
//   CTA tile 128 × 128 × 32, 8 warps as 2 (rows) × 4 (columns), each warp 64 × 32 = 4 × 4 m16n8 tiles
//   (64 f32 accumulators a thread). Operands reach shared memory by cp.async, 16 bytes a piece, in a
//   3-stage ring: the pieces of stage t + 2 are in flight while stage t is multiplied. Pieces outside the
//   segment's rows, past N or past K are zero-filled by the copy itself (src-size 0), so every tile edge
//   multiplies zeros. Fragments come from ldmatrix (x4: four 8 × 8 matrices a warp-wide instruction):
//   A rows and K-major B rows pitched at 40 bf16 (80 B), N-major B rows at 136 bf16 (272 B): the eight
//   16-byte rows of one 8 × 8 matrix then start in eight different 4-bank groups (80 B = 20 banks, 272 B =
//   68 ≡ 4 banks, mod 32), so no ldmatrix phase conflicts.
//   B_NMAJOR = false (the forward): W[e] is [N, K], each output column's inner dim contiguous (ldmatrix);
//   B_NMAJOR = true (dx = g·W[e]): the inner dim is W[e]'s rows, the columns contiguous (ldmatrix.trans).
//   The strides are those of grouped_matmul: W element (column c, inner i) = W[e·es + c·sc + i·si], with
//   si = 1 (K-major) or sc = 1 (N-major).
//   Rounding: one f32 sum per output (the tensor core's own order within a k16 step, steps in k order),
//   rounded once to bf16: the SIMT kernel's bf16 result to one ulp, as its header says of the CPU's.
//   Limits (the host falls back to grouped_matmul otherwise): K % 8 == 0 and N % 8 == 0 (whole 16-byte
//   pieces), operand addresses 16-byte aligned.
#define TC_BM 128
#define TC_BN 128
#define TC_BK 32
#define TC_ST 3
#define TC_AP (TC_BK + 8)
#define TC_BP (TC_BN + 8)
// bf16 elements of one stage: A [128][40], then B as [128][40] (K-major) or [32][136] (N-major)
#define TC_STAGE (2 * TC_BM * TC_AP)

// The tensor-core kernels' pipeline (this GEMM and grouped_matmul_dw_tc): n stages of TC_BK reduction steps
// through the TC_ST-deep cp.async ring. load(buf, t) issues stage t's copies into ring buffer buf; mul(buf)
// multiplies the stage held in buffer buf.
template <class Load, class Mul>
__device__ __forceinline__ void tc_ring(int n, Load load, Mul mul) {
#pragma unroll
  for (int s = 0; s < TC_ST - 1; s++) {
    if (s < n) load(s, s);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  for (int t = 0; t < n; t++) {
    // stage t has landed (at most TC_ST − 2 younger groups pending); the barrier also says every warp is
    // done with stage t − 1, whose buffer the next load overwrites
    asm volatile("cp.async.wait_group %0;\n" ::"n"(TC_ST - 2));
    __syncthreads();
    if (t + TC_ST - 1 < n) load((t + TC_ST - 1) % TC_ST, t + TC_ST - 1);
    asm volatile("cp.async.commit_group;\n" ::);
    mul(t % TC_ST);
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
}

// A warp's B fragments for its 32 columns [col0, col0 + 32) at reduction offset ks, from ldmatrix x4: the
// matrices q = lane / 8 are (n 0–7, k 0–7), (n 0–7, k 8–15), (n 8–15, k 0–7), (n 8–15, k 8–15) of each 16
// columns. K-major rows (column n's reduction dim contiguous, pitch TC_AP) by ldmatrix; N-major rows
// (reduction index k's columns contiguous, pitch TC_BP) by ldmatrix.trans.
template <bool NMAJOR>
__device__ __forceinline__ void tc_b_frags(uint32_t (&b)[4][2], const uint16_t* Bs, int ks, int col0, int lane) {
  const int q = lane >> 3, r = lane & 7;
#pragma unroll
  for (int jj = 0; jj < 2; jj++) {
    uint32_t t[4];
    if (!NMAJOR) ldmatrix_x4(t, Bs + (col0 + jj * 16 + ((q >> 1) << 3) + r) * TC_AP + ks + ((q & 1) << 3));
    else ldmatrix_x4_trans(t, Bs + (ks + ((q & 1) << 3) + r) * TC_BP + col0 + jj * 16 + ((q >> 1) << 3));
    b[jj * 2][0] = t[0];
    b[jj * 2][1] = t[1];
    b[jj * 2 + 1][0] = t[2];
    b[jj * 2 + 1][1] = t[3];
  }
}

// acc[i][j] += a[i] · b[j]: a warp's 4 × 4 m16n8 tiles for one k16 step
__device__ __forceinline__ void tc_mma_4x4(float (&acc)[4][4][4], const uint32_t (&a)[4][4], const uint32_t (&b)[4][2]) {
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) mma_bf16_16816(acc[i][j], a[i], b[j][0], b[j][1]);
}

template <bool B_NMAJOR>
__device__ void grouped_matmul_tc(int64_t M, int64_t N, int64_t K, int64_t E, uint16_t* out, const uint16_t* x, const uint16_t* W,
                                  const int32_t* off, int64_t sc, int64_t si, int64_t es) {
  extern __shared__ __align__(16) uint16_t tsm[];
  __shared__ int seg_s, r0_s, rows_s;
  if (threadIdx.x == 0) gm_find_tile<TC_BM>(M, E, off, &seg_s, &r0_s, &rows_s);
  __syncthreads();
  const int seg = seg_s;
  if (seg == -2) return;
  const int64_t r0 = r0_s;
  const int rows = rows_s;
  const int64_t n0 = (int64_t)blockIdx.x * TC_BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int u = 0; u < 4; u++) acc[i][j][u] = 0.0f;
  if (seg >= 0 && seg < E) {
    const uint16_t* We = W + (int64_t)seg * es;
    const int nk = (int)((K + TC_BK - 1) / TC_BK);
    // one stage: 128 × 32 of A and 32 × 128 of B, 512 + 512 pieces of 16 bytes, 2 + 2 a thread
    auto load = [&](int buf, int t) {
      const int64_t k0 = (int64_t)t * TC_BK;
      uint16_t* As = tsm + buf * TC_STAGE;
      uint16_t* Bs = As + TC_BM * TC_AP;
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int e = threadIdx.x + u * 256;
        const int r = e >> 2, c = (e & 3) << 3;
        const bool ok = r < rows && k0 + c < K;
        cp_async16_zfill(As + r * TC_AP + c, ok ? x + (r0 + r) * K + k0 + c : x, ok);
      }
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int e = threadIdx.x + u * 256;
        if (!B_NMAJOR) {
          const int n = e >> 2, c = (e & 3) << 3;
          const bool ok = n0 + n < N && k0 + c < K;
          cp_async16_zfill(Bs + n * TC_AP + c, ok ? We + (n0 + n) * sc + k0 + c : W, ok);
        } else {
          const int i = e >> 4, c = (e & 15) << 3;
          const bool ok = k0 + i < K && n0 + c < N;
          cp_async16_zfill(Bs + i * TC_BP + c, ok ? We + (k0 + i) * si + n0 + c : W, ok);
        }
      }
    };
    tc_ring(nk, load, [&](int buf) {
      const uint16_t* As = tsm + buf * TC_STAGE;
      const uint16_t* Bs = As + TC_BM * TC_AP;
#pragma unroll
      for (int ks = 0; ks < TC_BK; ks += 16) {
        uint32_t a[4][4], b[4][2];
#pragma unroll
        for (int i = 0; i < 4; i++) ldmatrix_x4(a[i], As + (wm * 64 + i * 16 + (lane & 15)) * TC_AP + ks + ((lane >> 4) << 3));
        tc_b_frags<B_NMAJOR>(b, Bs, ks, wn * 32, lane);
        tc_mma_4x4(acc, a, b);
      }
    });
  }
  // acc[i][j]: rows wm·64 + i·16 + g (+8 for u ≥ 2), columns wn·32 + j·8 + tig·2 + {0, 1}; N % 8 == 0, so a
  // column pair is wholly inside or outside
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = wm * 64 + i * 16 + g + half * 8;
      if (r >= rows) continue;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int64_t c = n0 + wn * 32 + j * 8 + tig * 2;
        if (c < N)
          *(uint32_t*)(out + (r0 + r) * N + c) =
              (uint32_t)f32_to_bf16_bits(acc[i][j][half * 2]) | ((uint32_t)f32_to_bf16_bits(acc[i][j][half * 2 + 1]) << 16);
      }
    }
}

#define GMMTC(name, NMAJ)                                                                                                        \
  extern "C" __global__ void __launch_bounds__(256) name(int64_t M, int64_t N, int64_t K, int64_t E, void* out, const void* x, \
                                                         const void* W, const int32_t* off, int64_t sc, int64_t si, int64_t es) { \
    grouped_matmul_tc<NMAJ>(M, N, K, E, (uint16_t*)out, (const uint16_t*)x, (const uint16_t*)W, off, sc, si, es);            \
  }
GMMTC(grouped_matmul_tc_bf16, false)
GMMTC(grouped_matmul_tc_bf16_nmajor, true)

// Backward weight gradient (grouped_matmul_dw_*): dw[e] [N, K] = Σ_{p in [off[e], off[e+1])} g[p, n]·x[p, k],
// one CTA per (expert e and 64-column K tile = blockIdx.x = e·⌈K/64⌉ + tile, 64-row N tile = blockIdx.y), looping over
// the segment's rows 16 at a time (the reduction dim); same 4 × 4 register blocks, f32 FMA accumulation,
// rounded once to w's dtype. An expert with no rows writes zeros. The offsets are read on the device only.
template <class XT, class OT>
__device__ void grouped_matmul_dw(int64_t M, int64_t N, int64_t K, OT* dw, const XT* g, const XT* x, const int32_t* off) {
  __shared__ float Gs[GM_BK][GM_BM + GM_PAD];
  __shared__ float Xs[GM_BK][GM_BN + GM_PAD];
  const int64_t ktiles = (K + GM_BN - 1) / GM_BN;
  const int64_t e = blockIdx.x / ktiles;
  const int64_t p0 = off[e], p1 = off[e + 1];
  const int64_t nt0 = (int64_t)blockIdx.y * GM_BM, kt0 = (int64_t)(blockIdx.x - e * ktiles) * GM_BN;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
  for (int64_t q0 = p0; q0 < p1; q0 += GM_BK) {
    // 16 rows × 64 columns of g (N tile) and of x (K tile); columns fastest: coalesced row pieces
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const int idx = threadIdx.x + u * 256;
      const int c = idx & 63, kk = idx >> 6;
      const int64_t p = q0 + kk;
      Gs[kk][c] = (p < p1 && nt0 + c < N) ? gm_load<XT>(g, p * N + nt0 + c) : 0.0f;
      Xs[kk][c] = (p < p1 && kt0 + c < K) ? gm_load<XT>(x, p * K + kt0 + c) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < GM_BK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = Gs[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = Xs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int64_t n = nt0 + ty * 4 + i;
    if (n >= N) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int64_t k = kt0 + tx * 4 + j;
      if (k < K) gm_store<OT>(dw, (e * N + n) * K + k, acc[i][j]);
    }
  }
}

#define GMMDW(name, XT, OT)                                                                                                       \
  extern "C" __global__ void __launch_bounds__(256) name(int64_t M, int64_t N, int64_t K, void* dw, const void* g, const void* x, \
                                                         const int32_t* off) {                                                     \
    grouped_matmul_dw<XT, OT>(M, N, K, (OT*)dw, (const XT*)g, (const XT*)x, off);                                                 \
  }
GMMDW(grouped_matmul_dw_f32_f32, float, float)
GMMDW(grouped_matmul_dw_f32_bf16, float, uint16_t)
GMMDW(grouped_matmul_dw_bf16_f32, uint16_t, float)
GMMDW(grouped_matmul_dw_bf16_bf16, uint16_t, uint16_t)

// ---- grouped_matmul_dw_tc_bf16_*: the weight gradient on the tensor cores (bf16 g and x) -------------------
// dw[e] [N, K] = g_segᵀ · x_seg, the segment's rows p ∈ [off[e], off[e+1]) being the reduction dim: per expert a
// plain GEMM C [N, K] = A [N, P] · B [P, K] with A = g_segᵀ (stored [P, N], N contiguous) and B = x_seg (stored
// [P, K], K contiguous). Training the mid config (B 2 × S 4 096, 32 experts, k 4) runs ~1 000 rows an expert.
//   Grid: blockIdx.x = e · ⌈K/128⌉ + k tile (expert-major, as the SIMT kernel), blockIdx.y = N tile. CTA tile
//   128 (n) × 128 (k), 8 warps as 2 × 4, each warp 64 × 32 = 4 × 4 m16n8 tiles, 32 rows of the segment a
//   stage in the forward kernel's 3-stage cp.async ring (its shared memory size: a stage here is 2 · 32 · 136
//   bf16 ≤ its 2 · 128 · 40). Both operands are staged as they are stored, rows of the segment by 128
//   columns pitched at 136 bf16 (272 B ≡ 4 banks: the 8 rows of an 8 × 8 matrix start in 8 different 4-bank
//   groups), and both fragments come from ldmatrix.trans: A's 8 × 8 matrices (n 0–7, p 0–7), (n 8–15, p 0–7),
//   (n 0–7, p 8–15), (n 8–15, p 8–15) are read from stored rows p, B's as the forward's N-major path reads
//   them. Rows past the segment's end and columns past N or K are zero-filled by the copy, so they add 0.
//   An expert with no rows writes zeros.
//   Rounding: one f32 sum per output (the tensor core's order within a k16 step, steps in row order), rounded
//   once to OT: the SIMT kernel's result to accumulation order (f32) or one ulp (bf16).
//   Limits (the host falls back to the SIMT kernel otherwise): N % 8 == 0 and K % 8 == 0, 16-byte aligned operands.
//   Off by default (moeTune.dwTc, DSV32_CUDA_GEMM word `moe-dw`) until a GPU run has checked it: written and
//   emulated on 2026-12-08 (scripts/kernel-emu/run-moe.mjs), when no device was lent.
template <class OT>
__device__ void grouped_matmul_dw_tc(int64_t N, int64_t K, OT* dw, const uint16_t* g, const uint16_t* x, const int32_t* off) {
  extern __shared__ __align__(16) uint16_t tsm[];
  const int64_t ktiles = (K + TC_BN - 1) / TC_BN;
  const int64_t e = blockIdx.x / ktiles;
  const int64_t k0 = (int64_t)(blockIdx.x - e * ktiles) * TC_BN, n0 = (int64_t)blockIdx.y * TC_BM;
  const int64_t p0 = off[e], p1 = off[e + 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tig = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int u = 0; u < 4; u++) acc[i][j][u] = 0.0f;
  const int np = p1 > p0 ? (int)((p1 - p0 + TC_BK - 1) / TC_BK) : 0;
  // one stage: 32 rows × 128 columns of g and of x, 512 + 512 pieces of 16 bytes, 2 + 2 a thread
  auto load = [&](int buf, int t) {
    const int64_t q0 = p0 + (int64_t)t * TC_BK;
    uint16_t* As = tsm + buf * TC_STAGE;
    uint16_t* Bs = As + TC_BK * TC_BP;
#pragma unroll
    for (int u = 0; u < 2; u++) {
      const int idx = threadIdx.x + u * 256;
      const int r = idx >> 4, c = (idx & 15) << 3;
      const int64_t p = q0 + r;
      const bool oka = p < p1 && n0 + c < N, okb = p < p1 && k0 + c < K;
      cp_async16_zfill(As + r * TC_BP + c, oka ? g + p * N + n0 + c : g, oka);
      cp_async16_zfill(Bs + r * TC_BP + c, okb ? x + p * K + k0 + c : x, okb);
    }
  };
  tc_ring(np, load, [&](int buf) {
    const uint16_t* As = tsm + buf * TC_STAGE;
    const uint16_t* Bs = As + TC_BK * TC_BP;
    const int q = lane >> 3, r = lane & 7;
#pragma unroll
    for (int ks = 0; ks < TC_BK; ks += 16) {
      uint32_t a[4][4], b[4][2];
      // A = g_segᵀ: its matrices (n 0–7, p 0–7), (n 8–15, p 0–7), (n 0–7, p 8–15), (n 8–15, p 8–15) from stored rows p
#pragma unroll
      for (int i = 0; i < 4; i++) ldmatrix_x4_trans(a[i], As + (ks + ((q >> 1) << 3) + r) * TC_BP + wm * 64 + i * 16 + ((q & 1) << 3));
      tc_b_frags<true>(b, Bs, ks, wn * 32, lane);
      tc_mma_4x4(acc, a, b);
    }
  });
  // acc[i][j]: n = n0 + wm·64 + i·16 + gq (+8 for u ≥ 2), k = k0 + wn·32 + j·8 + tig·2 + {0, 1} (K % 8 == 0: a pair
  // is wholly inside or outside)
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int64_t n = n0 + wm * 64 + i * 16 + gq + half * 8;
      if (n >= N) continue;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int64_t k = k0 + wn * 32 + j * 8 + tig * 2;
        if (k >= K) continue;
        const int64_t o = (e * N + n) * K + k;
        gm_store<OT>(dw, o, acc[i][j][half * 2]);
        gm_store<OT>(dw, o + 1, acc[i][j][half * 2 + 1]);
      }
    }
}

#define GMMDWTC(name, OT)                                                                                                       \
  extern "C" __global__ void __launch_bounds__(256) name(int64_t M, int64_t N, int64_t K, void* dw, const void* g, const void* x, \
                                                         const int32_t* off) {                                                   \
    (void)M;                                                                                                                      \
    grouped_matmul_dw_tc<OT>(N, K, (OT*)dw, (const uint16_t*)g, (const uint16_t*)x, off);                                       \
  }
GMMDWTC(grouped_matmul_dw_tc_bf16_f32, float)
GMMDWTC(grouped_matmul_dw_tc_bf16_bf16, uint16_t)

// FP8 weights (grouped_matmul_fp8_*): q e4m3 [M, K] with sq f32 [M, ⌈K/128⌉] (actQuant of the sorted rows),
// w8 e4m3 [E, N, K] with sw f32 [E, ⌈N/128⌉, ⌈K/128⌉]. The same tiles; e4m3 codes are decoded exactly to f32
// in shared memory, and the product of each 128-wide K block (8 BK steps, or what is left of K) is summed
// in a separate f32 register block `part`, then promoted as fp8Linear does:
//   acc = __fadd_rn(acc, __fmul_rn(part, __fmul_rn(sq[m, kb], sw[e, ⌊n/128⌋, kb])))
// (a 64-column tile lies inside one 128-row scale tile, so the weight scale is one value per CTA and block).
template <class OT>
__device__ void grouped_matmul_fp8(int64_t M, int64_t N, int64_t K, int64_t E, OT* out, const uint8_t* q, const float* sq, const uint8_t* w8,
                                   const float* sw, const int32_t* off) {
  __shared__ float As8[GM_BK][GM_BM + GM_PAD];
  __shared__ float Bs8[GM_BK][GM_BN + GM_PAD];
  __shared__ int seg8_s, r08_s, rows8_s;
  if (threadIdx.x == 0) gm_find_tile<GM_BM>(M, E, off, &seg8_s, &r08_s, &rows8_s);
  __syncthreads();
  const int seg = seg8_s;
  if (seg == -2) return;
  const int64_t r0 = r08_s;
  const int rows = rows8_s;
  const int64_t n0 = (int64_t)blockIdx.x * GM_BN;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t nbK = (K + 127) / 128, nbN = (N + 127) / 128;
  float acc[4][4], part[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = part[i][j] = 0.0f;
  if (seg >= 0 && seg < E) {
    const uint8_t* We = w8 + (int64_t)seg * N * K;
    for (int64_t k0 = 0; k0 < K; k0 += GM_BK) {
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int idx = threadIdx.x + u * 256;
        const int kk = idx & 15, r = idx >> 4;
        const int64_t kg = k0 + kk;
        As8[kk][r] = (r < rows && kg < K) ? e4m3_bits_to_f32(q[(r0 + r) * K + kg]) : 0.0f;
        Bs8[kk][r] = (n0 + r < N && kg < K) ? e4m3_bits_to_f32(We[(n0 + r) * K + kg]) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < GM_BK; kk++) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; i++) a[i] = As8[kk][ty * 4 + i];
#pragma unroll
        for (int j = 0; j < 4; j++) b[j] = Bs8[kk][tx * 4 + j];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) part[i][j] = fmaf(a[i], b[j], part[i][j]);
      }
      __syncthreads();
      if (((k0 + GM_BK) & 127) == 0 || k0 + GM_BK >= K) {
        const int64_t kb = k0 >> 7;
        const float swv = n0 < N ? sw[((int64_t)seg * nbN + (n0 >> 7)) * nbK + kb] : 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int r = ty * 4 + i;
          const float sc = __fmul_rn(r < rows ? sq[(r0 + r) * nbK + kb] : 0.0f, swv);
#pragma unroll
          for (int j = 0; j < 4; j++) {
            acc[i][j] = __fadd_rn(acc[i][j], __fmul_rn(part[i][j], sc));
            part[i][j] = 0.0f;
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = ty * 4 + i;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int64_t n = n0 + tx * 4 + j;
      if (n < N) gm_store<OT>(out, (r0 + r) * N + n, acc[i][j]);
    }
  }
}

#define GMM8(name, OT)                                                                                                             \
  extern "C" __global__ void __launch_bounds__(256) name(int64_t M, int64_t N, int64_t K, int64_t E, void* out, const uint8_t* q,  \
                                                         const float* sq, const uint8_t* w8, const float* sw, const int32_t* off) { \
    grouped_matmul_fp8<OT>(M, N, K, E, (OT*)out, q, sq, w8, sw, off);                                                              \
  }
GMM8(grouped_matmul_fp8_f32, float)
GMM8(grouped_matmul_fp8_bf16, uint16_t)

extern "C" __global__ void __launch_bounds__(256) moe_combine(int64_t T, int64_t k, int64_t D, void* out, int out_dt, const void* ys, int ys_dt,
                                                              const float* weights, const int32_t* rows, const void* shared, int sh_dt, int* err) {
  const int64_t n = T * D;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t t = i / D, d = i - t * D;
    float acc = 0.0f;
    for (int64_t j = 0; j < k; j++) {
      const int32_t p = rows[t * k + j];
      if (p < 0 || p >= T * k) {
        raise_index(err, p, T * k);
        continue;
      }
      acc = __fadd_rn(acc, __fmul_rn(load_as<float>(ys, (int64_t)p * D + d, ys_dt), weights[t * k + j]));
    }
    if (shared) acc = __fadd_rn(acc, load_as<float>(shared, i, sh_dt));
    store_as<float>(out, i, out_dt, acc);
  }
}
