// Sparse MLA backward (absorbed-MQA form): dq and dkv from the output gradient, using the lse the forward
// saved. Contract: src/tensor/ops/sparse-mla-train.ts; CPU reference: src/backend/cpu/sparse-mla-backward.ts.
// Correctness first: CUDA cores only, no tensor cores. This is the f32 path and the fallback; bf16 inputs
// take the gather + cuBLASLt path of sparse_mla_bwd_gemm.cu when sparseMlaBackwardTune.gemm is on (its
// default since it passed its tests on an H100, 2026-12-06).
//
// Math, per query i and head h over the valid entries t of indices[i] (−1 or outside [0, Tk) = hole):
//   s_t  = rnd(rnd(rnd(q[:dv]·kv_t[:dv]) + rnd(q[dv:]·kv_t[dv:])) · scale)   the forward's score and roundings
//   p_t  = exp(s_t − lse)          (0 for holes and when lse = −inf: a row the forward saw nothing in)
//   Δ    = Σ_c dout[c]·out[c]      (c < dv)
//   dp_t = Σ_c dout[c]·kv_t[c]     (c < dv)
//   ds_t = p_t·(dp_t − Δ)·scale
//   dq      = Σ_t ds_t·kv_t                                       (all D dims)
//   dkv_t  += Σ_h ds_t·q_h  (all D)  +  Σ_h p_t·dout_h  (c < dv)  (key and value roles)
//
// Work decomposition: one CTA of 256 threads per (query i = blockIdx.x, group of HG = 16 heads =
// blockIdx.y). Dynamic shared memory, all f32 (4·(2·HG·D + HG·dv + TK·D + 2·HG·TK + 2·HG) + 4·TK bytes:
// 106 KB at D = 576, dv = 512; the host raises the kernel's limit):
//   qs  [HG][D]    the group's query rows          dos [HG][dv]  their output gradients
//   kvs [TK][D]    the current tile of TK = 16 selected rows (zeros for holes)
//   ps, dss [HG][TK]  p_t and ds_t of the tile     dl, ls [HG]   Δ and lse per head;  tix [TK] rows
// Setup: qs, dos; Δ by one warp per head (a shuffle reduction over dv).
// Loop over tiles of TK entries:
//   1. tix, then kvs (coalesced along D).
//   2. one warp per (head, entry) pair: the score's two dot products and dp lane-strided, reduced with
//      shuffles; lane 0 applies the forward's roundings, p and ds.
//   3. dq: thread tid owns columns c = tid + u·256 (u < 3: D ≤ 768) of all HG heads in registers
//      (48 f32): acc[h][u] += Σ_t ds[h][t]·kvs[t][c].
//   4. dkv: the TK·D elements of the tile are spread over the threads; each sums its column over the
//      group's heads, Σ_h ds·q + p·dout, and atomically adds it to dkv[row, c] (f32, global).
// Finally dq is written in q's dtype.
//
// Determinism: dq is deterministic (one CTA owns a (query, head) row and sums in a fixed order). dkv is
// NOT bitwise deterministic: a row selected by many (query, head-group) CTAs receives their partial sums
// through f32 atomicAdd in arrival order, so the last bits vary run to run (the sum itself is exact up to
// f32 reassociation, ~1e-7 relative). A deterministic variant would write per-CTA partials to a
// [Tq·H/HG, k, D] workspace and reduce them per row in a second pass (or sort (row, CTA) pairs) —
// memory-heavy at k = 2048, left for when bitwise-reproducible training is required.
//
// Performance ideas (not done): wgmma tiles (64 heads × 64 entries) for the four products (s, dp, dq,
// dkv), as TileLang's sparse_mla_bwd does; bf16 tiles in shared memory; a dkv pass that accumulates a
// tile's rows over all 128 heads in one CTA before its atomics (two CTAs of 64 heads in a cluster), which
// halves the atomic traffic; the FP8 cache is never differentiated (training keeps kv in bf16).
#include "common.cuh"

#define HG 16
#define TK 16
#define NT 256
#define NCOLQ 3  // dq columns per thread: D ≤ NT · NCOLQ = 768

template <class T> __device__ __forceinline__ float act_round(float x);
template <> __device__ __forceinline__ float act_round<float>(float x) { return x; }
template <> __device__ __forceinline__ float act_round<__nv_bfloat16>(float x) { return bf16_bits_to_f32(f32_to_bf16_bits(x)); }

// q, kv, dout, out, dq: T; lse f32 [Tq, H]; indices i32 [Tq, k]; dkv f32 [Tk, D], zeroed by the host.
template <class T>
__device__ void sparse_mla_bwd(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, double scale,
                               T* dq, float* dkv, const T* dout, const T* q, const T* kv, const T* out, const float* lse,
                               const int32_t* indices) {
  extern __shared__ float smem[];
  const int Di = (int)D, dvi = (int)dv;
  float* qs = smem;              // [HG][D]
  float* dos = qs + HG * Di;     // [HG][dv]
  float* kvs = dos + HG * dvi;   // [TK][D]
  float* ps = kvs + TK * Di;     // [HG][TK]
  float* dss = ps + HG * TK;     // [HG][TK]
  float* dl = dss + HG * TK;     // [HG]
  float* lsh = dl + HG;          // [HG]
  int* tix = (int*)(lsh + HG);   // [TK]

  const int64_t i = blockIdx.x;
  const int64_t h0 = (int64_t)blockIdx.y * HG;
  const int hc = (int)min((int64_t)HG, H - h0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  for (int e = tid; e < HG * Di; e += NT) {
    const int h = e / Di, c = e - h * Di;
    qs[e] = h < hc ? to_f<T>(q[((i * H) + h0 + h) * D + c]) : 0.0f;
  }
  for (int e = tid; e < HG * dvi; e += NT) {
    const int h = e / dvi, c = e - h * dvi;
    dos[e] = h < hc ? to_f<T>(dout[((i * H) + h0 + h) * dv + c]) : 0.0f;
  }
  __syncthreads();
  for (int h = warp; h < HG; h += NT / 32) {
    float d = 0.0f;
    if (h < hc) {
      const T* orow = out + ((i * H) + h0 + h) * dv;
      for (int c = lane; c < dvi; c += 32) d = fmaf(dos[h * dvi + c], to_f<T>(orow[c]), d);
    }
    d = warp_sum(d);
    if (lane == 0) {
      dl[h] = d;
      lsh[h] = h < hc ? lse[i * H + h0 + h] : -INFINITY;
    }
  }

  float acc[HG][NCOLQ];
#pragma unroll
  for (int h = 0; h < HG; h++)
#pragma unroll
    for (int u = 0; u < NCOLQ; u++) acc[h][u] = 0.0f;

  const int32_t* irow = indices + i * k;
  for (int64_t j0 = 0; j0 < k; j0 += TK) {
    __syncthreads();  // the previous tile's kvs/ps/dss/tix are no longer read
    if (tid < TK) {
      int t = -1;
      if (j0 + tid < k) {
        const int32_t r = irow[j0 + tid];
        if (r >= 0 && (int64_t)r < rows) t = r;
      }
      tix[tid] = t;
    }
    __syncthreads();
    for (int e = tid; e < TK * Di; e += NT) {
      const int j = e / Di, c = e - j * Di;
      const int r = tix[j];
      kvs[e] = r >= 0 ? to_f<T>(kv[(int64_t)r * D + c]) : 0.0f;
    }
    __syncthreads();
    // 2. p and ds of every (head, entry) pair
    for (int pr = warp; pr < HG * TK; pr += NT / 32) {
      const int h = pr / TK, j = pr - h * TK;
      const float* qr = qs + h * Di;
      const float* dr = dos + h * dvi;
      const float* kr = kvs + j * Di;
      float d1 = 0.0f, d2 = 0.0f, dp = 0.0f;
      for (int c = lane; c < dvi; c += 32) {
        d1 = fmaf(qr[c], kr[c], d1);
        dp = fmaf(dr[c], kr[c], dp);
      }
      for (int c = dvi + lane; c < Di; c += 32) d2 = fmaf(qr[c], kr[c], d2);
      d1 = warp_sum(d1);
      d2 = warp_sum(d2);
      dp = warp_sum(dp);
      if (lane == 0) {
        float p = 0.0f, ds = 0.0f;
        const float l = lsh[h];
        if (h < hc && tix[j] >= 0 && l != -INFINITY) {
          const float x = act_round<T>(act_round<T>(d1) + act_round<T>(d2));
          const float s = act_round<T>((float)((double)x * scale));
          p = expf(s - l);
          ds = (float)((double)(p * (dp - dl[h])) * scale);
        }
        ps[pr] = p;
        dss[pr] = ds;
      }
    }
    __syncthreads();
    // 3. dq
    for (int j = 0; j < TK; j++) {
      float v[NCOLQ];
#pragma unroll
      for (int u = 0; u < NCOLQ; u++) {
        const int c = tid + u * NT;
        v[u] = c < Di ? kvs[j * Di + c] : 0.0f;
      }
#pragma unroll
      for (int h = 0; h < HG; h++) {
        const float ds = dss[h * TK + j];
#pragma unroll
        for (int u = 0; u < NCOLQ; u++) acc[h][u] = fmaf(ds, v[u], acc[h][u]);
      }
    }
    // 4. dkv (reads qs/dos/ps/dss only: no barrier needed after step 3)
    for (int e = tid; e < TK * Di; e += NT) {
      const int j = e / Di, c = e - j * Di;
      const int r = tix[j];
      if (r < 0) continue;
      float g = 0.0f;
#pragma unroll
      for (int h = 0; h < HG; h++) g = fmaf(dss[h * TK + j], qs[h * Di + c], g);
      if (c < dvi) {
#pragma unroll
        for (int h = 0; h < HG; h++) g = fmaf(ps[h * TK + j], dos[h * dvi + c], g);
      }
      if (g != 0.0f) atomicAdd(dkv + (int64_t)r * D + c, g);
    }
  }
#pragma unroll
  for (int h = 0; h < HG; h++) {
    if (h < hc) {
#pragma unroll
      for (int u = 0; u < NCOLQ; u++) {
        const int c = tid + u * NT;
        if (c < Di) dq[((i * H) + h0 + h) * D + c] = from_f<T>(acc[h][u]);
      }
    }
  }
}

#define BWD(name, T)                                                                                                          \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows,  \
                                                          double scale, void* dq, float* dkv, const void* dout, const void* q,  \
                                                          const void* kv, const void* out, const float* lse,                   \
                                                          const int32_t* indices) {                                            \
    sparse_mla_bwd<T>(Tq, H, D, dv, k, rows, scale, (T*)dq, dkv, (const T*)dout, (const T*)q, (const T*)kv, (const T*)out, lse, \
                      indices);                                                                                               \
  }
BWD(sparse_mla_bwd_f32, float)
BWD(sparse_mla_bwd_bf16, __nv_bfloat16)
