// Block FP8 quantisation of activations (DeepSeek's act_quant) and its inverse.
// Per row, blocks of `block` consecutive elements of the last dim (a trailing partial block is its own):
//   amax = max(|x|, 1e-4); s = amax · (1/448) in f32, or 2^ceil(log2 s) when ue8m0 (a power of two,
//   exactly representable as an 8-bit exponent); q = e4m3(clamp(x / s, ±448)).
// One warp per block; the second read of the block hits L1. The _v4 kernels have each lane move 4
// consecutive elements (16 B of f32, 8 B of bf16) and store 4 codes at once; they need block % 128 == 0.
#include "common.cuh"
#include <cuda_fp8.h>

__device__ __forceinline__ float quant_scale(float amax, int ue8m0) {
  amax = amax != amax ? amax : fmaxf(amax, 1e-4f);
  float sc = amax * (1.0f / 448.0f);
  if (ue8m0) {
    const uint32_t bits = __float_as_uint(sc);
    const int e = (int)((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffff) ? 1 : 0);
    sc = exp2f((float)e);
  }
  return sc;
}
// With ue8m0 the CPU divides by 2^e in float64, where 2^128 and 2^129 (from an inf or NaN amax) are
// still finite even though the stored f32 scale is inf: x / 2^e is then tiny (or inf for x = inf, which
// saturates to 448). Multiplying by 2^-e reproduces that exactly: 2^-e is an exact f32 (a subnormal for
// e ≥ 127) and scaling by a power of two rounds once, like the CPU's fround of the float64 quotient.
__device__ __forceinline__ float quant_mul(float amax, int ue8m0) {
  if (!ue8m0) return 0.0f;
  amax = amax != amax ? amax : fmaxf(amax, 1e-4f);
  const uint32_t bits = __float_as_uint(amax * (1.0f / 448.0f));
  const int e = (int)((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffff) ? 1 : 0);
  return exp2f((float)-e);
}
__device__ __forceinline__ uint8_t quant_one(float v, float sc, float mul) {
  // a NaN keeps its sign, as on the CPU (x86 arithmetic passes a NaN operand through; the GPU's returns the
  // canonical +NaN, which turned −NaN's 0xFF into 0x7F: test/tensor/e4m3-sat.test.ts on an H100, 2026-12-07)
  if (v != v) return (uint8_t)(0x7fu | ((__float_as_uint(v) >> 24) & 0x80u));
  float y = mul != 0.0f ? v * mul : v / sc;
  y = y > 448.0f ? 448.0f : (y < -448.0f ? -448.0f : y);
  return f32_to_e4m3_bits(y);
}
// max that propagates NaN (PTX max.NaN, sm_80+): one instruction, where the compare-and-select version
// took four per element and made the amax the costliest part of the 128-block kernel.
__device__ __forceinline__ float amax_merge(float a, float b) {
  float m;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
  return m;
}

template <class T>
__device__ void act_quant(int64_t rows, int64_t N, int64_t block, int ue8m0, uint8_t* q, float* s, const T* x) {
  const int64_t nb = (N + block - 1) / block;
  const int64_t warps = rows * nb;
  const int lane = threadIdx.x & 31;
  for (int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; w < warps; w += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    const int64_t r = w / nb, b = w - r * nb;
    const int64_t lo = r * N + b * block;
    const int64_t len = min(block, N - b * block);
    float amax = 0.0f;
    for (int64_t j = lane; j < len; j += 32) amax = amax_merge(amax, fabsf(to_f<T>(x[lo + j])));
    for (int o = 16; o > 0; o >>= 1) amax = amax_merge(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float sc = quant_scale(amax, ue8m0), mul = quant_mul(amax, ue8m0);
    if (lane == 0) s[w] = sc;
    for (int64_t j = lane; j < len; j += 32) q[lo + j] = quant_one(to_f<T>(x[lo + j]), sc, mul);
  }
}

template <class T>
__device__ void act_quant_v4(int64_t rows, int64_t N, int64_t block, int ue8m0, uint8_t* q, float* s, const T* x) {
  const int64_t nb = N / block;
  const int64_t warps = rows * nb;
  const int lane = threadIdx.x & 31;
  for (int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; w < warps; w += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    const int64_t lo = w * block;  // N is a multiple of block: blocks tile the flattened rows
    float amax = 0.0f;
    for (int64_t j = lane * 4; j < block; j += 128) {
      const Vec<T, 4> v = *reinterpret_cast<const Vec<T, 4>*>(x + lo + j);
#pragma unroll
      for (int k = 0; k < 4; k++) amax = amax_merge(amax, fabsf(to_f<T>(v.v[k])));
    }
    for (int o = 16; o > 0; o >>= 1) amax = amax_merge(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float sc = quant_scale(amax, ue8m0), mul = quant_mul(amax, ue8m0);
    if (lane == 0) s[w] = sc;
    for (int64_t j = lane * 4; j < block; j += 128) {
      const Vec<T, 4> v = *reinterpret_cast<const Vec<T, 4>*>(x + lo + j);
      uchar4 c;
      c.x = quant_one(to_f<T>(v.v[0]), sc, mul);
      c.y = quant_one(to_f<T>(v.v[1]), sc, mul);
      c.z = quant_one(to_f<T>(v.v[2]), sc, mul);
      c.w = quant_one(to_f<T>(v.v[3]), sc, mul);
      *reinterpret_cast<uchar4*>(q + lo + j) = c;
    }
  }
}

#define AQ(NAME, FN, T)                                                                                              \
  extern "C" __global__ void NAME(int64_t rows, int64_t N, int64_t block, int ue8m0, uint8_t* q, float* s, const T* x) { \
    FN<T>(rows, N, block, ue8m0, q, s, x);                                                                            \
  }
AQ(act_quant_f32, act_quant, float)
AQ(act_quant_bf16, act_quant, __nv_bfloat16)
AQ(act_quant_f32_v4, act_quant_v4, float)
AQ(act_quant_bf16_v4, act_quant_v4, __nv_bfloat16)

// out[r, j] = e4m3(q[r, j]) · s[r, j / block]
template <class T>
__device__ void act_dequant(int64_t rows, int64_t N, int64_t block, T* out, const uint8_t* q, const float* s) {
  const int64_t nb = (N + block - 1) / block;
  const int64_t n = rows * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / N, j = i - r * N;
    out[i] = from_f<T>(e4m3_bits_to_f32(q[i]) * s[r * nb + j / block]);
  }
}
extern "C" __global__ void act_dequant_f32(int64_t rows, int64_t N, int64_t block, float* out, const uint8_t* q, const float* s) {
  act_dequant<float>(rows, N, block, out, q, s);
}
extern "C" __global__ void act_dequant_bf16(int64_t rows, int64_t N, int64_t block, __nv_bfloat16* out, const uint8_t* q, const float* s) {
  act_dequant<__nv_bfloat16>(rows, N, block, out, q, s);
}

// Block size 128 over rows whose length is a multiple of 128 (DeepSeek's activations): a half-warp
// owns one block, each lane 8 consecutive elements (16 B of bf16, 32 B of f32) held in registers, and
// every half-warp has U blocks' loads in flight before reducing, to keep enough bytes moving.
// The per-element work is what limits this kernel, not the bytes, so it is kept to a multiply and half
// a conversion instruction:
//  - with ue8m0 the scale is a power of two 2^e, so x / s == x · 2^-e exactly (quant_mul);
//  - the hardware's cvt.rn.satfinite.e4m3x2.f32 rounds to nearest even like f32_to_e4m3_bits, and its
//    saturation to ±448 is the clamp the CPU applies first (anything above 448 rounds to 448 or to 480
//    and then saturates to 448 either way).
// A block whose scale is not finite (an inf or NaN input) takes the scalar path, which keeps the CPU's
// NaN codes with their signs.
__device__ __forceinline__ uint32_t e4m3x4_hw(float a, float b, float c, float d) {
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}
template <class T, int U>
__device__ void act_quant_b128(int64_t nblk, int ue8m0, uint8_t* q, float* s, const T* x) {
  const int lane = threadIdx.x & 15;
  const int64_t hw = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 4;
  const int64_t nhw = ((int64_t)gridDim.x * blockDim.x) >> 4;
  for (int64_t b0 = hw; b0 < nblk; b0 += nhw * U) {
    Vec<T, 8> v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int64_t b = b0 + u * nhw;
      if (b < nblk) v[u] = *reinterpret_cast<const Vec<T, 8>*>(x + b * 128 + lane * 8);
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int64_t b = b0 + u * nhw;
      float f[8];
#pragma unroll
      for (int k = 0; k < 8; k++) f[k] = to_f<T>(v[u].v[k]);
      float amax = 0.0f;
#pragma unroll
      for (int k = 0; k < 8; k++) amax = amax_merge(amax, fabsf(f[k]));
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) amax = amax_merge(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      if (b < nblk) {
        const float sc = quant_scale(amax, ue8m0), mul = quant_mul(amax, ue8m0);
        if (lane == 0) s[b] = sc;
        uint2 c;
        if (isfinite(sc)) {
          float y[8];
          if (ue8m0) {
#pragma unroll
            for (int k = 0; k < 8; k++) y[k] = f[k] * mul;
          } else {
#pragma unroll
            for (int k = 0; k < 8; k++) y[k] = __fdiv_rn(f[k], sc);
          }
          c.x = e4m3x4_hw(y[0], y[1], y[2], y[3]);
          c.y = e4m3x4_hw(y[4], y[5], y[6], y[7]);
        } else {
          c.x = (uint32_t)quant_one(f[0], sc, mul) | ((uint32_t)quant_one(f[1], sc, mul) << 8) | ((uint32_t)quant_one(f[2], sc, mul) << 16) |
                ((uint32_t)quant_one(f[3], sc, mul) << 24);
          c.y = (uint32_t)quant_one(f[4], sc, mul) | ((uint32_t)quant_one(f[5], sc, mul) << 8) | ((uint32_t)quant_one(f[6], sc, mul) << 16) |
                ((uint32_t)quant_one(f[7], sc, mul) << 24);
        }
        *reinterpret_cast<uint2*>(q + b * 128 + lane * 8) = c;
      }
    }
  }
}
extern "C" __global__ void act_quant_bf16_b128(int64_t nblk, int ue8m0, uint8_t* q, float* s, const __nv_bfloat16* x) {
  act_quant_b128<__nv_bfloat16, 4>(nblk, ue8m0, q, s, x);
}
extern "C" __global__ void act_quant_f32_b128(int64_t nblk, int ue8m0, uint8_t* q, float* s, const float* x) {
  act_quant_b128<float, 2>(nblk, ue8m0, q, s, x);
}
