// Sparse MLA forward in the absorbed-MQA form (DeepSeek Sparse Attention's attention core), its paged
// FP8 / bf16 latent-cache reader, and the cache writer. Contract: src/tensor/ops/sparse-mla.ts; CPU
// reference: src/backend/cpu/sparse-mla.ts. Correctness first: CUDA cores only, no tensor cores.
//
// Math, per query i and head h, over the valid entries t of indices[i] (−1 or outside [0, rows) = hole):
//   s_t = rnd(rnd(rnd(q[:dv]·kv_t[:dv]) + rnd(q[dv:]·kv_t[dv:])) · scale)     rnd = round to q's dtype
//   out = Σ_t softmax(s)_t · kv_t[:dv];  lse = ln Σ_t exp(s_t)  (natural log)
//   a row with no valid entry: out = 0, lse = −inf.
// The score roundings are those of the CPU reference (the model's host MQA path); `scale` arrives as f64
// and x·scale is formed in double then rounded, as the CPU does. The softmax differs from the CPU's only
// in order: online in f32 here, and p_t is not rounded to the activation dtype (the CPU rounds it, as the
// reference's bf16 softmax output is); f32 results agree to accumulation order, bf16 to ~1 output ulp.
//
// Work decomposition (sparse_mla_fwd): one CTA of 256 threads per (query i = blockIdx.x, group of HG = 16
// heads = blockIdx.y). Dynamic shared memory, all f32:
//   qs  [HG][D]   the group's query rows (D = dv + dr, runtime; at most 512 + 64 in the accumulator
//                 layout below: dv ≤ 512)
//   kvs [TK][D]   the current tile of TK = 16 selected key rows, decoded to f32 (zeros for holes)
//   ps  [HG][TK]  scores, then probabilities of the tile
//   m, l, alpha [HG]  running max, running sum, and the tile's rescale factor
//   tix [TK]      the tile's row indices (−1 for holes)
// (4·(TK·D + HG·D + HG·TK + 3·HG) + 4·TK bytes: 75 KB at D = 576, above the 48 KB default, so the host
// raises the kernel's dynamic shared-memory limit.)
// Loop over tiles of TK entries of indices[i]:
//   1. threads 0..TK−1 read the tile's indices; all threads decode the rows into kvs (loader below).
//   2. scores: the HG·TK (head, entry) pairs are spread over the 8 warps; a warp forms the latent and the
//      rope dot products of a pair lane-strided and reduces them with shuffles; lane 0 applies the
//      roundings and the scale; holes get −inf.
//   3. online softmax: one warp per head; m' = max(m, max_t s_t), alpha = exp(m − m'), p_t = exp(s_t − m'),
//      l = l·alpha + Σ p_t. While m' is still −inf (only holes so far) alpha = 1 and p = 0.
//   4. accumulate: thread tid owns output columns c = tid and tid + 256 (dv ≤ 512) of all HG heads, 32
//      f32 registers: acc[h][u] = acc[h][u]·alpha_h + Σ_t p[h][t]·kvs[t][c].
// Finally out = acc / l (0 when l = 0) and lse = m + ln l (−inf when l = 0).
//
// Key-row loaders (template KV): KV_F32 / KV_BF16 read a dense [rows, D] array (prefill, and the bf16
// cache, which is the same layout). KV_FP8 reads the FlashMLA "FP8 with scale" cache: token row r starts
// at byte r·W (W = dv + 4·⌈dv/128⌉ + 2·dr, 656 at dv 512, dr 64): dv e4m3 bytes, ⌈dv/128⌉ little-endian
// f32 scales (powers of two), dr bf16. A slot block·page + offset of a contiguous [blocks, page, W] cache
// is row block·page + offset, so the page size never enters the addressing. The loader reads bytes and
// assembles the scales and bf16 values itself, so no alignment is assumed for any dv; value =
// e4m3(b)·scale is exact in f32 (power-of-two scale), as on the CPU.
//
// The cache writer (mla_cache_write_fp8 / _bf16): one CTA of 128 threads per token n with slot s ≥ 0;
// for each 128-value block of the latent, amax (NaN-propagating) by a block reduction, the ue8m0 scale
// exactly as kernels/quant.cu and the CPU actQuant compute it, e4m3 of clamp(x·2^−e, ±448); then the
// scales and the bf16 rope. A slot outside the cache raises the device error word and is skipped.
//
// Performance ideas (not done; correctness first): wgmma tiles of 64 heads × 64 entries in bf16 (the
// kernel is CUDA-core bound now, far below the 400 TFLOPS target); TMA/cp.async gathers of the selected
// rows, double-buffered; keep kvs in bf16 (half the shared memory, twice the tile); dequantise FP8 into
// shared memory once per tile for all 128 heads (two CTAs of 64 heads in a cluster sharing the dequantised
// tile through distributed shared memory); exp2 with log2(e) folded into the scale; split-k over the
// selected entries for decode (B·s_q·H/64 CTAs is fewer than the SMs) with an lse-weighted combine.
#include "common.cuh"

#define HG 16
#define TK 16
#define NT 256
#define NCOL 2  // output columns per thread: dv ≤ NT · NCOL = 512

#define KV_F32 0
#define KV_BF16 1
#define KV_FP8 2

// The activation dtype's rounding (the CPU's rnd): identity for f32, round-to-nearest-even bf16 otherwise.
template <class T> __device__ __forceinline__ float act_round(float x);
template <> __device__ __forceinline__ float act_round<float>(float x) { return x; }
template <> __device__ __forceinline__ float act_round<__nv_bfloat16>(float x) { return bf16_bits_to_f32(f32_to_bf16_bits(x)); }

__device__ __forceinline__ float load_f32_le(const uint8_t* p) {
  const uint32_t b = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
  return __uint_as_float(b);
}
__device__ __forceinline__ uint16_t load_u16_le(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

// Element c of key row r, as f32.
template <int KV>
__device__ __forceinline__ float kv_value(const void* kv, int64_t r, int c, int D, int dv, int64_t W) {
  if (KV == KV_F32) return ((const float*)kv)[r * D + c];
  if (KV == KV_BF16) return bf16_bits_to_f32(((const uint16_t*)kv)[r * D + c]);
  const uint8_t* row = (const uint8_t*)kv + r * W;
  if (c < dv) return e4m3_bits_to_f32(row[c]) * load_f32_le(row + dv + 4 * (c >> 7));
  const int nb = (dv + 127) >> 7;
  return bf16_bits_to_f32(load_u16_le(row + dv + 4 * nb + 2 * (c - dv)));
}

// q [Tq, H, D] (TQ), key rows (KV) of which `rows` exist, indices [Tq, k] i32 → out [Tq, H, dv] (TQ),
// lse [Tq, H] f32. W: bytes per cache row (KV_FP8 only).
template <class TQ, int KV>
__device__ void sparse_mla_fwd(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale,
                               TQ* out, float* lse, const TQ* q, const void* kv, const int32_t* indices) {
  extern __shared__ float smem[];
  float* qs = smem;                 // [HG][D]
  float* kvs = qs + HG * D;         // [TK][D]
  float* ps = kvs + TK * D;         // [HG][TK]
  float* ms = ps + HG * TK;         // [HG]
  float* ls = ms + HG;              // [HG]
  float* al = ls + HG;              // [HG]
  int* tix = (int*)(al + HG);       // [TK]

  const int64_t i = blockIdx.x;
  const int64_t h0 = (int64_t)blockIdx.y * HG;
  const int hc = (int)min((int64_t)HG, H - h0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int Di = (int)D, dvi = (int)dv;

  for (int e = tid; e < HG * Di; e += NT) {
    const int h = e / Di, c = e - h * Di;
    qs[e] = h < hc ? to_f<TQ>(q[((i * H) + h0 + h) * D + c]) : 0.0f;
  }
  if (tid < HG) {
    ms[tid] = -INFINITY;
    ls[tid] = 0.0f;
  }
  float acc[HG][NCOL];
#pragma unroll
  for (int h = 0; h < HG; h++)
#pragma unroll
    for (int u = 0; u < NCOL; u++) acc[h][u] = 0.0f;

  const int32_t* irow = indices + i * k;
  for (int64_t j0 = 0; j0 < k; j0 += TK) {
    __syncthreads();  // not needed for correctness (the barrier below already orders the kvs writes after step 4), kept for clarity
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
      kvs[e] = r >= 0 ? kv_value<KV>(kv, r, c, Di, dvi, W) : 0.0f;
    }
    __syncthreads();
    // 2. scores
    for (int pr = warp; pr < HG * TK; pr += NT / 32) {
      const int h = pr / TK, j = pr - h * TK;
      if (h >= hc) continue;  // warp-uniform
      const float* qr = qs + h * Di;
      const float* kr = kvs + j * Di;
      float d1 = 0.0f, d2 = 0.0f;
      for (int c = lane; c < dvi; c += 32) d1 = fmaf(qr[c], kr[c], d1);
      for (int c = dvi + lane; c < Di; c += 32) d2 = fmaf(qr[c], kr[c], d2);
      d1 = warp_sum(d1);
      d2 = warp_sum(d2);
      if (lane == 0) {
        float s = -INFINITY;
        if (tix[j] >= 0) {
          const float x = act_round<TQ>(act_round<TQ>(d1) + act_round<TQ>(d2));
          s = act_round<TQ>((float)((double)x * scale));
        }
        ps[h * TK + j] = s;
      }
    }
    __syncthreads();
    // 3. online softmax, one warp per head
    for (int h = warp; h < hc; h += NT / 32) {
      const float s = lane < TK ? ps[h * TK + lane] : -INFINITY;
      const float mo = ms[h];
      const float mn = fmaxf(mo, warp_max(s));
      float p = 0.0f, a = 1.0f;
      if (mn != -INFINITY) {
        p = expf(s - mn);  // exp(−inf) = 0 for holes
        a = expf(mo - mn);
      }
      const float ps_sum = warp_sum(p);
      if (lane < TK) ps[h * TK + lane] = p;
      if (lane == 0) {
        ms[h] = mn;
        ls[h] = ls[h] * a + ps_sum;
        al[h] = a;
      }
    }
    __syncthreads();
    // 4. accumulate
#pragma unroll
    for (int h = 0; h < HG; h++) {
      if (h < hc) {
        const float a = al[h];
#pragma unroll
        for (int u = 0; u < NCOL; u++) acc[h][u] *= a;
      }
    }
    for (int j = 0; j < TK; j++) {
      float v[NCOL];
#pragma unroll
      for (int u = 0; u < NCOL; u++) {
        const int c = tid + u * NT;
        v[u] = c < dvi ? kvs[j * Di + c] : 0.0f;
      }
#pragma unroll
      for (int h = 0; h < HG; h++) {
        if (h < hc) {
          const float p = ps[h * TK + j];
#pragma unroll
          for (int u = 0; u < NCOL; u++) acc[h][u] = fmaf(p, v[u], acc[h][u]);
        }
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < HG; h++) {
    if (h < hc) {
      const float l = ls[h];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
      for (int u = 0; u < NCOL; u++) {
        const int c = tid + u * NT;
        if (c < dvi) out[((i * H) + h0 + h) * dv + c] = from_f<TQ>(l > 0.0f ? acc[h][u] * inv : 0.0f);
      }
    }
  }
  if (tid < hc) {
    const float l = ls[tid];
    lse[i * H + h0 + tid] = l > 0.0f ? ms[tid] + logf(l) : -INFINITY;
  }
}

#define FWD(name, TQ, KV)                                                                                                    \
  extern "C" __global__ void __launch_bounds__(NT) name(int64_t Tq, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, \
                                                          int64_t W, double scale, void* out, float* lse, const void* q,       \
                                                          const void* kv, const int32_t* indices) {                            \
    sparse_mla_fwd<TQ, KV>(Tq, H, D, dv, k, rows, W, scale, (TQ*)out, lse, (const TQ*)q, kv, indices);                       \
  }
FWD(sparse_mla_fwd_f32_f32, float, KV_F32)
FWD(sparse_mla_fwd_bf16_bf16, __nv_bfloat16, KV_BF16)
FWD(sparse_mla_fwd_f32_bf16, float, KV_BF16)
FWD(sparse_mla_fwd_bf16_f32, __nv_bfloat16, KV_F32)
FWD(sparse_mla_fwd_f32_fp8, float, KV_FP8)
FWD(sparse_mla_fwd_bf16_fp8, __nv_bfloat16, KV_FP8)

// ---- cache writer ------------------------------------------------------------------------------------
__device__ __forceinline__ float nan_max(float a, float b) {
  float m;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
  return m;
}

// The ue8m0 exponent e of a block's scale 2^e, from amax as actQuant computes it (amax clamped to 1e-4
// unless NaN; e = exponent of amax·f32(1/448), plus one when its mantissa is not zero).
__device__ __forceinline__ int ue8m0_exponent(float amax) {
  amax = amax != amax ? amax : fmaxf(amax, 1e-4f);
  const uint32_t bits = __float_as_uint(amax * (1.0f / 448.0f));
  return (int)((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffff) ? 1 : 0);
}

template <class TL, class TR>
__device__ void mla_cache_write_fp8(int64_t N, int64_t dv, int64_t dr, int64_t cap, int64_t W, uint8_t* cache, const TL* lat, const TR* rope,
                                    const int32_t* slots, int* err) {
  __shared__ float red[33];
  const int64_t n = blockIdx.x;
  const int32_t s = slots[n];
  if (s == -1) return;
  if (s < 0 || (int64_t)s >= cap) {
    if (threadIdx.x == 0) raise_index(err, s, cap);
    return;
  }
  uint8_t* row = cache + (int64_t)s * W;
  const int nb = (int)((dv + 127) >> 7);
  for (int b = 0; b < nb; b++) {
    const int64_t c = (int64_t)b * 128 + threadIdx.x;
    const bool in = threadIdx.x < 128 && c < dv;
    const float x = in ? to_f<TL>(lat[n * dv + c]) : 0.0f;
    // block-wide NaN-propagating amax (128 threads = 4 warps)
    float a = fabsf(x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = nan_max(a, __shfl_xor_sync(0xffffffffu, a, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = a;
    __syncthreads();
    float amax = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) amax = nan_max(amax, red[w]);
    const int e = ue8m0_exponent(amax);
    if (in) {
      // x / 2^e exactly (2^−e is an exact f32, subnormal for e ≥ 127), as the CPU's f64 division then fround
      float y = x * ldexpf(1.0f, -e);
      y = y > 448.0f ? 448.0f : (y < -448.0f ? -448.0f : y);
      row[c] = f32_to_e4m3_bits(y);
    }
    if (threadIdx.x == 0) {
      const uint32_t sb = __float_as_uint(ldexpf(1.0f, e));  // 2^e; inf for e ≥ 128, as the CPU's f32 store
      uint8_t* sp = row + dv + 4 * b;
      sp[0] = sb & 0xff;
      sp[1] = (sb >> 8) & 0xff;
      sp[2] = (sb >> 16) & 0xff;
      sp[3] = sb >> 24;
    }
  }
  for (int64_t c = threadIdx.x; c < dr; c += blockDim.x) {
    const uint16_t v = f32_to_bf16_bits(to_f<TR>(rope[n * dr + c]));
    uint8_t* p = row + dv + 4 * nb + 2 * c;
    p[0] = v & 0xff;
    p[1] = v >> 8;
  }
}

template <class TL, class TR>
__device__ void mla_cache_write_bf16(int64_t N, int64_t dv, int64_t dr, int64_t cap, int64_t W, uint16_t* cache, const TL* lat, const TR* rope,
                                     const int32_t* slots, int* err) {
  const int64_t n = blockIdx.x;
  const int32_t s = slots[n];
  if (s == -1) return;
  if (s < 0 || (int64_t)s >= cap) {
    if (threadIdx.x == 0) raise_index(err, s, cap);
    return;
  }
  uint16_t* row = cache + (int64_t)s * W;
  for (int64_t c = threadIdx.x; c < dv; c += blockDim.x) row[c] = f32_to_bf16_bits(to_f<TL>(lat[n * dv + c]));
  for (int64_t c = threadIdx.x; c < dr; c += blockDim.x) row[dv + c] = f32_to_bf16_bits(to_f<TR>(rope[n * dr + c]));
}

// The f32 cache (the model's f32 numerics) is the dense row layout [blocks·page, dv + dr], values kept exact.
template <class TL, class TR>
__device__ void mla_cache_write_f32(int64_t N, int64_t dv, int64_t dr, int64_t cap, int64_t W, float* cache, const TL* lat, const TR* rope,
                                    const int32_t* slots, int* err) {
  const int64_t n = blockIdx.x;
  const int32_t s = slots[n];
  if (s == -1) return;
  if (s < 0 || (int64_t)s >= cap) {
    if (threadIdx.x == 0) raise_index(err, s, cap);
    return;
  }
  float* row = cache + (int64_t)s * W;
  for (int64_t c = threadIdx.x; c < dv; c += blockDim.x) row[c] = to_f<TL>(lat[n * dv + c]);
  for (int64_t c = threadIdx.x; c < dr; c += blockDim.x) row[dv + c] = to_f<TR>(rope[n * dr + c]);
}

#define WRITE(name, fn, TC, TL, TR)                                                                                      \
  extern "C" __global__ void __launch_bounds__(128) name(int64_t N, int64_t dv, int64_t dr, int64_t cap, int64_t W, void* cache, \
                                                           const void* lat, const void* rope, const int32_t* slots, int* err) { \
    fn<TL, TR>(N, dv, dr, cap, W, (TC*)cache, (const TL*)lat, (const TR*)rope, slots, err);                              \
  }
WRITE(mla_cache_write_fp8_f32_f32, mla_cache_write_fp8, uint8_t, float, float)
WRITE(mla_cache_write_fp8_bf16_bf16, mla_cache_write_fp8, uint8_t, __nv_bfloat16, __nv_bfloat16)
WRITE(mla_cache_write_fp8_bf16_f32, mla_cache_write_fp8, uint8_t, __nv_bfloat16, float)
WRITE(mla_cache_write_fp8_f32_bf16, mla_cache_write_fp8, uint8_t, float, __nv_bfloat16)
WRITE(mla_cache_write_bf16_f32_f32, mla_cache_write_bf16, uint16_t, float, float)
WRITE(mla_cache_write_bf16_bf16_bf16, mla_cache_write_bf16, uint16_t, __nv_bfloat16, __nv_bfloat16)
WRITE(mla_cache_write_bf16_bf16_f32, mla_cache_write_bf16, uint16_t, __nv_bfloat16, float)
WRITE(mla_cache_write_bf16_f32_bf16, mla_cache_write_bf16, uint16_t, float, __nv_bfloat16)
WRITE(mla_cache_write_f32_f32_f32, mla_cache_write_f32, float, float, float)
WRITE(mla_cache_write_f32_bf16_bf16, mla_cache_write_f32, float, __nv_bfloat16, __nv_bfloat16)
WRITE(mla_cache_write_f32_bf16_f32, mla_cache_write_f32, float, __nv_bfloat16, float)
WRITE(mla_cache_write_f32_f32_bf16, mla_cache_write_f32, float, float, __nv_bfloat16)
