// AdamW's update in one elementwise pass over f32 parameters (Backend.adamwStep), in place on p, m, v,
// reading g; bit for bit the CPU backend's adamwStepCpu (src/backend/cpu/adamw.ts), which is bit for bit
// the op-by-op update of src/train/optim.ts. Per element, with the step's scalars already rounded to f32
// by the host (AdamWScalars):
//   x  = decay == 1 ? p : p·decay                              decoupled weight decay, 1 − lr·wd
//   d  = g − m
//   m' = lerp ? m + d·w : g − d·(1 − w)                        torch's lerp(m, g, w), w = 1 − β₁, by |w| < 0.5
//   v' = v·β₂ + (g·(1 − β₂))·g
//   p' = x + (m'·(−lr / (1 − β₁ᵗ))) / (√v' / √(1 − β₂ᵗ) + eps)
// Each operation above is one f32 operation rounded once to nearest even, in exactly this order and
// association: the CPU computes each in f64 on f32 values and rounds once with Math.fround, which equals
// the correctly rounded f32 operation for + − × ÷ and √ (f64 has more than 2·24 + 2 significand bits, so
// the double rounding is innocuous). So the GPU result is identical to the CPU's as long as every
// operation here is itself correctly rounded and nothing is fused or reassociated:
//  - nvcc contracts a·b + c into one FMA by default (-fmad=true), which rounds once instead of twice and
//    can change the last bit of m', v' and p'. The __fmul_rn / __fadd_rn / __fsub_rn
//    intrinsics are never contracted, so every product is rounded before it is added.
//  - __fdiv_rn and __fsqrt_rn are the IEEE round-to-nearest division and square root whatever
//    -prec-div / -prec-sqrt / --use_fast_math say (plain '/' and sqrtf become approximations under
//    fast math).
//  - Subnormals are kept: scripts/build-kernels.mjs compiles without -ftz (the CPU does not flush them;
//    g·(1 − β₂)·g is subnormal for |g| around 1e-19 at β₂ = 0.95, and (g − m)·w for |g − m| ≲ 1e-37).
// The decay == 1 test and the lerp choice are the CPU's, made per launch (a template per combination, no
// per-element branch).
//
// Layout: four contiguous f32 arrays of n elements at any element offset. When p, g, m, v share their
// address mod 16 (the common case: one allocator, offsets in multiples of 4 elements, or views at the
// same offset), a scalar head of ≤ 3 elements brings them to a 16-byte boundary and the rest goes as
// float4 loads/stores in a grid-stride loop, with a scalar tail of n mod 4; otherwise the whole range
// is a scalar grid-stride loop. Memory-bound: 7 × 4 bytes per element (read p, g, m, v; write p, m, v).
#include "common.cuh"

struct AdamWH {
  float decay, w, one_minus_w, b2, one_minus_b2, bc2_sqrt, eps, neg_step_size;
};

template <bool LERP, bool DECAY>
__device__ __forceinline__ void adamw_elem(float& p, float g, float& m, float& v, const AdamWH& h) {
  const float x = DECAY ? __fmul_rn(p, h.decay) : p;
  const float d = __fsub_rn(g, m);
  const float mi = LERP ? __fadd_rn(m, __fmul_rn(d, h.w)) : __fsub_rn(g, __fmul_rn(d, h.one_minus_w));
  const float vi = __fadd_rn(__fmul_rn(v, h.b2), __fmul_rn(__fmul_rn(g, h.one_minus_b2), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), h.bc2_sqrt), h.eps);
  p = __fadd_rn(x, __fdiv_rn(__fmul_rn(mi, h.neg_step_size), denom));
  m = mi;
  v = vi;
}

template <bool LERP, bool DECAY>
__device__ __forceinline__ void adamw_range(int64_t n, float* p, const float* g, float* m, float* v, const AdamWH& h) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  auto one = [&](int64_t i) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_elem<LERP, DECAY>(pi, g[i], mi, vi, h);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  };
  const uintptr_t mis = (uintptr_t)p & 15;
  const bool vec = ((uintptr_t)g & 15) == mis && ((uintptr_t)m & 15) == mis && ((uintptr_t)v & 15) == mis && (mis & 3) == 0;
  if (!vec) {
    for (int64_t i = t; i < n; i += stride) one(i);
    return;
  }
  const int64_t head = min(n, (int64_t)(((16 - mis) & 15) >> 2));  // elements before the 16-byte boundary
  for (int64_t i = t; i < head; i += stride) one(i);
  const int64_t nv = (n - head) >> 2;
  float4* pv = reinterpret_cast<float4*>(p + head);
  const float4* gv = reinterpret_cast<const float4*>(g + head);
  float4* mv = reinterpret_cast<float4*>(m + head);
  float4* vv = reinterpret_cast<float4*>(v + head);
  for (int64_t i = t; i < nv; i += stride) {
    float4 P = pv[i], M = mv[i], V = vv[i];
    const float4 G = gv[i];
    adamw_elem<LERP, DECAY>(P.x, G.x, M.x, V.x, h);
    adamw_elem<LERP, DECAY>(P.y, G.y, M.y, V.y, h);
    adamw_elem<LERP, DECAY>(P.z, G.z, M.z, V.z, h);
    adamw_elem<LERP, DECAY>(P.w, G.w, M.w, V.w, h);
    pv[i] = P;
    mv[i] = M;
    vv[i] = V;
  }
  for (int64_t i = head + nv * 4 + t; i < n; i += stride) one(i);
}

// lerp != 0: m' = m + (g − m)·w; else m' = g − (g − m)·one_minus_w. decay == 1: no weight decay.
// __launch_bounds__(1024): the host launches 1024-thread blocks where the registers allow (streamLaunch);
// the bound holds the kernel to ≤ 64 registers (63, no spills; 70 unbounded, which allowed only 512).
extern "C" __global__ void __launch_bounds__(1024) adamw_f32(int64_t n, float* p, const float* g, float* m, float* v, float decay, int lerp,
                                                            float w, float one_minus_w, float b2, float one_minus_b2, float bc2_sqrt,
                                                            float eps, float neg_step_size) {
  const AdamWH h{decay, w, one_minus_w, b2, one_minus_b2, bc2_sqrt, eps, neg_step_size};
  if (lerp) {
    if (decay != 1.0f) adamw_range<true, true>(n, p, g, m, v, h);
    else adamw_range<true, false>(n, p, g, m, v, h);
  } else {
    if (decay != 1.0f) adamw_range<false, true>(n, p, g, m, v, h);
    else adamw_range<false, false>(n, p, g, m, v, h);
  }
}
