// The DSA indexer's training kernels (unquantised: q, k in f32 or bf16, w and scores f32; FP8 is the
// inference path, kernels/dsa_indexer.cu): float indexer scores, their backward, and the KL loss against
// the main attention's head-summed distribution. Contract: src/tensor/ops/indexer-train.ts; CPU
// references: src/backend/cpu/indexer-train.ts. Correctness first: CUDA cores only.
//
// Row entries (both modes share every kernel): query i covers
//   dense  (indices == null): columns t in [start[i], end[i]) clamped to [0, Tk), column = key row t, N = Tk;
//   sparse (indices != null): columns j < N with key row t = indices[i, j], a hole when t ∉ [0, Tk).
//
// indexer_scores_fwd: I[i, col] = Σ_h w[i,h]·relu(q[i,h]·k[t]), −inf outside the range / at holes.
//   One CTA of 256 threads per (query i, tile of TK = 32 columns). Shared: qs [H][D] (the query's heads),
//   ws [H], ks [TK][D+1] (the tile's keys; the +1 pad puts lane j's row in bank j), red [8][TK].
//   Thread (j = lane, s = warp) scores column j over the heads h ≡ s (mod 8): l = Σ_c qs[h][c]·ks[j][c]
//   (qs reads are warp broadcasts), acc += l > 0 ? l·w : 0; the 8 partial sums of a column are added in
//   warp order. Agrees with the CPU (sgemm order, head sum in double) to f32 rounding.
//
// indexer_scores_bwd: one CTA per query row, over its entries in tiles of TK = 32:
//   l recomputed as in the forward; cs[h][j] = g·w[h] where l > 0 (g = dout[i, col]), rl[h][j] = g·relu(l);
//   dw[h] += Σ_j rl[h][j] (thread h, registers), dq[h][c] += Σ_j cs[h][j]·ks[j][c] (shared dqs [H][D], each
//   element owned by one thread), dk[t][c] += Σ_h cs[h][j]·qs[h][c] by f32 atomicAdd into dk (zeroed by
//   the host). Shared: qs, dqs [H][D], ks [TK][D+1], cs, rl [H][TK], ws [H], gs [TK], tix [TK].
//   Determinism: dq and dw are deterministic (one CTA per row, fixed order); dk receives one atomic add per
//   (row, key, dim) from every query that covers the key, in arrival order, so its last bits vary run to
//   run. A deterministic dk would be a second kernel over keys (transpose the roles: one CTA per key tile
//   looping over the queries that cover it, which in the dense causal case is every later query).
//
// indexer_kl_loss: one CTA per query row i (Σ_t p_t·(ln p_t − ln softmax(I)_t), the gradient
//   softmax(I) − p on the row's entries, 0 elsewhere):
//   A. target mass a_t = Σ_h exp(s_{h,t} − lse_h) with the main attention's score s (the sparse MLA
//      forward's roundings of q·kv), in head groups of HG = 16: qs [HG][D], kvs [TK=16][D], ps [HG][TK];
//      a warp per (head, entry) pair forms s by shuffles; thread j < TK adds the group's column sum into
//      grad[i, col] (used as the row's scratch; zeroed first). Heads with lse = −inf add nothing.
//   B. block reductions (double) of P = Σ a, the max m of I and Z = Σ exp(I − m) over the entries; then
//      per entry p = a/P, ln q = I − m − ln Z, loss += p·(ln p − ln q) (p > 0), grad = q − p.
//   A row with no entry or P = 0: loss 0, grad 0. No atomics: deterministic.
//
// bf16 inputs take the cuBLASLt paths of kernels/indexer_train_gemm.cu with indexerTrainTune.gemm on (its
// default since they passed their tests on an H100, 2026-12-06) (the scores and their backward as GEMMs with small kernels between, the KL target's attention scores as a GEMM); these kernels
// serve f32 and the switch indexerTrainTune.gemm. Further ideas (not done): the scores as one wgmma kernel
// with the relu·w epilogue in registers (DeepGEMM's fp8_mqa_logits shape, in bf16), so l never reaches
// memory; the KL target fused into the sparse MLA backward, which already forms p.
#include "common.cuh"

#define NT 256
#include "indexer_kl.cuh"
#define TKI 32
#define HG 16
#define TKL 16

template <class T> __device__ __forceinline__ float act_round(float x);
template <> __device__ __forceinline__ float act_round<float>(float x) { return x; }
template <> __device__ __forceinline__ float act_round<__nv_bfloat16>(float x) { return bf16_bits_to_f32(f32_to_bf16_bits(x)); }

// Columns [c0, c1) of row i that can hold entries (the clamped range in dense mode, all N in sparse).
__device__ __forceinline__ void entry_span(int64_t i, int64_t N, int64_t Tk, const int32_t* start, const int32_t* end, const int32_t* indices,
                                           int64_t* c0, int64_t* c1) {
  if (indices) {
    *c0 = 0;
    *c1 = N;
    return;
  }
  const int64_t s = min(max((int64_t)start[i], (int64_t)0), Tk);
  const int64_t e = min(max((int64_t)end[i], (int64_t)0), Tk);
  *c0 = s;
  *c1 = max(s, e);
}

// ---- scores ----------------------------------------------------------------------------------------
template <class T>
__device__ void indexer_scores_fwd(int64_t Tq, int64_t H, int64_t D, int64_t Tk, int64_t N, float* out, const T* q, const T* k, const float* w,
                                   const int32_t* start, const int32_t* end, const int32_t* indices) {
  extern __shared__ float smem[];
  const int Hi = (int)H, Di = (int)D, DP = Di + 1;
  float* qs = smem;            // [H][D]
  float* ws = qs + Hi * Di;    // [H]
  float* ks = ws + Hi;         // [TKI][D+1]
  float* red = ks + TKI * DP;  // [8][TKI]
  __shared__ int64_t tix[TKI];
  __shared__ int any;
  const int64_t i = blockIdx.x;
  const int64_t col0 = (int64_t)blockIdx.y * TKI;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) any = 0;
  __syncthreads();
  if (tid < TKI) {
    const int64_t t = entry_row(i, col0 + tid, N, Tk, start, end, indices);
    tix[tid] = t;
    if (t >= 0) atomicOr(&any, 1);
  }
  __syncthreads();
  if (!any) {  // a tile with no entry (e.g. above the causal diagonal): −inf only
    if (tid < TKI && col0 + tid < N) out[i * N + col0 + tid] = -INFINITY;
    return;
  }
  for (int e = tid; e < Hi * Di; e += NT) qs[e] = to_f<T>(q[i * H * D + e]);
  for (int h = tid; h < Hi; h += NT) ws[h] = w[i * H + h];
  for (int e = tid; e < TKI * Di; e += NT) {
    const int j = e / Di, c = e - j * Di;
    const int64_t t = tix[j];
    ks[j * DP + c] = t >= 0 ? to_f<T>(k[t * D + c]) : 0.0f;
  }
  __syncthreads();
  float acc = 0.0f;
  for (int h = warp; h < Hi; h += NT / 32) {
    const float* qr = qs + h * Di;
    const float* kr = ks + lane * DP;
    float l = 0.0f;
    for (int c = 0; c < Di; c++) l = fmaf(qr[c], kr[c], l);
    if (l > 0.0f) acc = fmaf(l, ws[h], acc);
  }
  red[warp * TKI + lane] = acc;
  __syncthreads();
  if (tid < TKI && col0 + tid < N) {
    float s = 0.0f;
#pragma unroll
    for (int v = 0; v < NT / 32; v++) s += red[v * TKI + tid];
    out[i * N + col0 + tid] = tix[tid] >= 0 ? s : -INFINITY;
  }
}

template <class T>
__device__ void indexer_scores_bwd(int64_t Tq, int64_t H, int64_t D, int64_t Tk, int64_t N, T* dq, float* dk, float* dw, const float* dout, const T* q,
                                   const T* k, const float* w, const int32_t* start, const int32_t* end, const int32_t* indices) {
  extern __shared__ float smem[];
  const int Hi = (int)H, Di = (int)D, DP = Di + 1;
  float* qs = smem;             // [H][D]
  float* dqs = qs + Hi * Di;    // [H][D]
  float* ks = dqs + Hi * Di;    // [TKI][D+1]
  float* cs = ks + TKI * DP;    // [H][TKI]
  float* rl = cs + Hi * TKI;    // [H][TKI]
  float* ws = rl + Hi * TKI;    // [H]
  float* gs = ws + Hi;          // [TKI]
  __shared__ int64_t tix[TKI];
  const int64_t i = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int e = tid; e < Hi * Di; e += NT) {
    qs[e] = to_f<T>(q[i * H * D + e]);
    dqs[e] = 0.0f;
  }
  for (int h = tid; h < Hi; h += NT) ws[h] = w[i * H + h];
  float dwacc = 0.0f;  // thread h < H owns dw[i, h]
  int64_t c0, c1;
  entry_span(i, N, Tk, start, end, indices, &c0, &c1);
  for (int64_t j0 = c0; j0 < c1; j0 += TKI) {
    __syncthreads();  // previous tile fully consumed (and the setup above done)
    if (tid < TKI) {
      int64_t t = j0 + tid < c1 ? entry_row(i, j0 + tid, N, Tk, start, end, indices) : -1;
      const float g = t >= 0 ? dout[i * N + j0 + tid] : 0.0f;
      if (g == 0.0f) t = -1;  // no gradient through this entry
      tix[tid] = t;
      gs[tid] = g;
    }
    __syncthreads();
    for (int e = tid; e < TKI * Di; e += NT) {
      const int j = e / Di, c = e - j * Di;
      const int64_t t = tix[j];
      ks[j * DP + c] = t >= 0 ? to_f<T>(k[t * D + c]) : 0.0f;
    }
    __syncthreads();
    for (int h = warp; h < Hi; h += NT / 32) {
      const float* qr = qs + h * Di;
      const float* kr = ks + lane * DP;
      float l = 0.0f;
      for (int c = 0; c < Di; c++) l = fmaf(qr[c], kr[c], l);
      const bool on = tix[lane] >= 0 && l > 0.0f;
      const float g = gs[lane];
      cs[h * TKI + lane] = on ? g * ws[h] : 0.0f;
      rl[h * TKI + lane] = on ? g * l : 0.0f;
    }
    __syncthreads();
    for (int h = tid; h < Hi; h += NT) {
      float s = 0.0f;
      for (int j = 0; j < TKI; j++) s += rl[h * TKI + j];
      dwacc += s;  // h == tid when H ≤ NT (checked by the host)
    }
    for (int e = tid; e < Hi * Di; e += NT) {
      const int h = e / Di, c = e - h * Di;
      float s = dqs[e];
      for (int j = 0; j < TKI; j++) s = fmaf(cs[h * TKI + j], ks[j * DP + c], s);
      dqs[e] = s;
    }
    for (int e = tid; e < TKI * Di; e += NT) {
      const int j = e / Di, c = e - j * Di;
      const int64_t t = tix[j];
      if (t < 0) continue;
      float s = 0.0f;
      for (int h = 0; h < Hi; h++) s = fmaf(cs[h * TKI + j], qs[h * Di + c], s);
      if (s != 0.0f) atomicAdd(dk + t * D + c, s);
    }
  }
  __syncthreads();
  for (int e = tid; e < Hi * Di; e += NT) dq[i * H * D + e] = from_f<T>(dqs[e]);
  if (tid < Hi) dw[i * H + tid] = dwacc;
}

// ---- KL loss -----------------------------------------------------------------------------------------
template <class T>
__device__ void indexer_kl_loss(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t Tk, int64_t N, double scale, float* loss, float* grad,
                                const float* scores, const T* q, const T* kv, const float* lse, const int32_t* start, const int32_t* end,
                                const int32_t* indices) {
  extern __shared__ float smem[];
  const int Di = (int)D, dvi = (int)dv;
  float* qs = smem;              // [HG][D]
  float* kvs = qs + HG * Di;     // [TKL][D]
  float* ps = kvs + TKL * Di;    // [HG][TKL]
  float* lsh = ps + HG * TKL;    // [HG]
  __shared__ int64_t tix[TKL];
  __shared__ double redd[33];
  const int64_t i = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float* g = grad + i * N;
  const float* I = scores + i * N;
  for (int64_t c = tid; c < N; c += NT) g[c] = 0.0f;
  int64_t c0, c1;
  entry_span(i, N, Tk, start, end, indices, &c0, &c1);
  // A. target mass per entry, accumulated in g
  for (int64_t hg = 0; hg < H; hg += HG) {
    const int hc = (int)min((int64_t)HG, H - hg);
    __syncthreads();
    for (int e = tid; e < HG * Di; e += NT) {
      const int h = e / Di, c = e - h * Di;
      qs[e] = h < hc ? to_f<T>(q[(i * H + hg + h) * D + c]) : 0.0f;
    }
    if (tid < HG) lsh[tid] = tid < hc ? lse[i * H + hg + tid] : -INFINITY;
    for (int64_t j0 = c0; j0 < c1; j0 += TKL) {
      __syncthreads();
      if (tid < TKL) tix[tid] = j0 + tid < c1 ? entry_row(i, j0 + tid, N, Tk, start, end, indices) : -1;
      __syncthreads();
      for (int e = tid; e < TKL * Di; e += NT) {
        const int j = e / Di, c = e - j * Di;
        const int64_t t = tix[j];
        kvs[e] = t >= 0 ? to_f<T>(kv[t * D + c]) : 0.0f;
      }
      __syncthreads();
      for (int pr = warp; pr < HG * TKL; pr += NT / 32) {
        const int h = pr / TKL, j = pr - h * TKL;
        const float* qr = qs + h * Di;
        const float* kr = kvs + j * Di;
        float d1 = 0.0f, d2 = 0.0f;
        for (int c = lane; c < dvi; c += 32) d1 = fmaf(qr[c], kr[c], d1);
        for (int c = dvi + lane; c < Di; c += 32) d2 = fmaf(qr[c], kr[c], d2);
        d1 = warp_sum(d1);
        d2 = warp_sum(d2);
        if (lane == 0) {
          float p = 0.0f;
          const float l = lsh[h];
          if (tix[j] >= 0 && l != -INFINITY) {
            const float x = act_round<T>(act_round<T>(d1) + act_round<T>(d2));
            p = expf(act_round<T>((float)((double)x * scale)) - l);
          }
          ps[pr] = p;
        }
      }
      __syncthreads();
      if (tid < TKL && tix[tid] >= 0) {
        float s = 0.0f;
        for (int h = 0; h < HG; h++) s += ps[h * TKL + tid];
        g[j0 + tid] += s;  // this thread alone owns column j0 + tid
      }
    }
  }
  __syncthreads();
  // B. the row's normalisers, then loss and gradient
  indexer_kl_finish(i, c0, c1, N, Tk, start, end, indices, I, g, loss, redd);
}

// ---- entry points ------------------------------------------------------------------------------------
#define SCORES(name, T)                                                                                                        \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t Tq, int64_t H, int64_t D, int64_t Tk, int64_t N, float* out,      \
                                                          const void* q, const void* k, const float* w, const int32_t* start,    \
                                                          const int32_t* end, const int32_t* indices) {                          \
    indexer_scores_fwd<T>(Tq, H, D, Tk, N, out, (const T*)q, (const T*)k, w, start, end, indices);                             \
  }
SCORES(indexer_scores_fwd_f32, float)
SCORES(indexer_scores_fwd_bf16, __nv_bfloat16)

#define SCORES_BWD(name, T)                                                                                                     \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t Tq, int64_t H, int64_t D, int64_t Tk, int64_t N, void* dq,        \
                                                          float* dk, float* dw, const float* dout, const void* q, const void* k, \
                                                          const float* w, const int32_t* start, const int32_t* end,             \
                                                          const int32_t* indices) {                                             \
    indexer_scores_bwd<T>(Tq, H, D, Tk, N, (T*)dq, dk, dw, dout, (const T*)q, (const T*)k, w, start, end, indices);            \
  }
SCORES_BWD(indexer_scores_bwd_f32, float)
SCORES_BWD(indexer_scores_bwd_bf16, __nv_bfloat16)

#define KL(name, T)                                                                                                             \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t Tk, int64_t N,     \
                                                          double scale, float* loss, float* grad, const float* scores,          \
                                                          const void* q, const void* kv, const float* lse, const int32_t* start, \
                                                          const int32_t* end, const int32_t* indices) {                          \
    indexer_kl_loss<T>(Tq, H, D, dv, Tk, N, scale, loss, grad, scores, (const T*)q, (const T*)kv, lse, start, end, indices);   \
  }
KL(indexer_kl_loss_f32, float)
KL(indexer_kl_loss_bf16, __nv_bfloat16)
