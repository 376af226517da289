// Sparse attention, MHA form (src/tensor/ops/sparse-mha.ts): the reference's prefill path of MLA, every
// head with its own key k_h = [k_nope(h) | k_pe] and value v_h. For query i, head h, over the valid
// entries t of indices[i] (−1 or outside [0, Tk) is a hole):
//   s_t = rnd(rnd(q·k_t)·scale);  p_t = rnd(exp(s_t − m)/z);  out = rnd(Σ_t p_t·v_t);  lse = m + ln z
// with rnd the rounding to q's dtype (the reference's bf16 einsums and softmax), dots and sums in f32.
//
// One CTA of 128 threads (4 warps) per (i, h): grid (Tq, H).
//   1. scores: warp w takes entries j = w, w+4, ...; its lanes stride over the dq dims and reduce with
//      shuffles; the scores go to shared memory sc[kk] (a hole is −inf);
//   2. m = block max, z = block sum of exp(s − m), then p_j = rnd(exp(s_j − m)/z) in place;
//   3. thread c accumulates out[c] = Σ_j p_j·v[t_j, h, c] for c = tid, tid+128, ... in entry order.
// This is a reference-mode kernel (the reference prefill, for parity), not the fast path: production
// prefill runs the absorbed form (kernels/sparse_mla.cu). Versus the CPU, which sums in double, the dots
// and sums here are f32, so results agree to f32 accumulation order (bf16: to about one ulp).
#include "common.cuh"

template <class T>
__device__ __forceinline__ float rnd_to(float x) {
  return to_f<T>(from_f<T>(x));
}

template <class T>
__device__ void sparse_mha_fwd(int64_t Tq, int64_t H, int64_t Tk, int64_t dq, int64_t dv, int64_t kk, double scale, T* out, float* lse,
                               const T* q, const T* k, const T* v, const int32_t* idx) {
  extern __shared__ float sc[];  // [kk]
  __shared__ float red[33];
  const int64_t i = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const T* qi = q + (i * H + h) * dq;
  for (int64_t j = warp; j < kk; j += nwarps) {
    const int32_t t = idx[i * kk + j];
    float s = -INFINITY;
    if (t >= 0 && (int64_t)t < Tk) {
      const T* kt = k + ((int64_t)t * H + h) * dq;
      float d = 0.f;
      for (int64_t c = lane; c < dq; c += 32) d += to_f<T>(qi[c]) * to_f<T>(kt[c]);
      d = warp_sum(d);
      s = rnd_to<T>(rnd_to<T>(d) * (float)scale);
    }
    if (lane == 0) sc[j] = s;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < kk; j += blockDim.x) m = fmaxf(m, sc[j]);
  m = block_max(m, red);
  T* o = out + (i * H + h) * dv;
  if (m == -INFINITY) {  // no valid entry
    for (int64_t c = threadIdx.x; c < dv; c += blockDim.x) o[c] = from_f<T>(0.f);
    if (threadIdx.x == 0) lse[i * H + h] = -INFINITY;
    return;
  }
  float z = 0.f;
  for (int64_t j = threadIdx.x; j < kk; j += blockDim.x) z += sc[j] == -INFINITY ? 0.f : expf(sc[j] - m);
  z = block_sum(z, red);
  __syncthreads();
  for (int64_t j = threadIdx.x; j < kk; j += blockDim.x) sc[j] = sc[j] == -INFINITY ? 0.f : rnd_to<T>(expf(sc[j] - m) / z);
  __syncthreads();
  for (int64_t c = threadIdx.x; c < dv; c += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < kk; j++) {
      const float p = sc[j];
      if (p == 0.f) continue;
      acc += p * to_f<T>(v[((int64_t)idx[i * kk + j] * H + h) * dv + c]);
    }
    o[c] = from_f<T>(acc);
  }
  if (threadIdx.x == 0) lse[i * H + h] = m + logf(z);
}

#define MHA(name, T)                                                                                                   \
  extern "C" __global__ void __launch_bounds__(128) name(int64_t Tq, int64_t H, int64_t Tk, int64_t dq, int64_t dv, int64_t kk, \
                                                           double scale, void* out, float* lse, const void* q, const void* k, \
                                                           const void* v, const int32_t* idx) {                        \
    sparse_mha_fwd<T>(Tq, H, Tk, dq, dv, kk, scale, (T*)out, lse, (const T*)q, (const T*)k, (const T*)v, idx);           \
  }
MHA(sparse_mha_fwd_f32, float)
MHA(sparse_mha_fwd_bf16, __nv_bfloat16)
