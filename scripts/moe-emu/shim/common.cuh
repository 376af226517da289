// Host stand-in for kernels/common.cuh when kernels/moe.cu is emulated on the CPU (scripts/moe-emu): the
// CUDA qualifiers become nothing, threadIdx/blockIdx are per host thread, the conversions are common.cuh's
// own bit-exact code; barriers, shuffles and __match_any_sync come from the driver (moe-emu.cpp). Only what
// kernels/moe.cu uses is here.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
struct dim3s { unsigned x = 0, y = 0, z = 0; };
extern thread_local dim3s threadIdx, blockIdx;
extern dim3s blockDim, gridDim;
extern unsigned char g_smem[];
#define DT_F32 0
#define DT_BF16 2
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint16_t f32_to_bf16_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((b >> 16) & 0x8000u) | 0x7fc0u);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
inline float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(((uint32_t)h) << 16); }
inline float e4m3_bits_to_f32(uint8_t v) {
  const float s = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 3) & 0xf, m = v & 7;
  if (e == 15 && m == 7) return __uint_as_float(0x7fc00000u);
  if (e == 0) return s * (float)m * 0.001953125f;
  return s * ldexpf(1.0f + (float)m * 0.125f, e - 7);
}
template <class C> inline C load_as(const void* p, int64_t i, int dt) {
  return dt == DT_BF16 ? (C)bf16_bits_to_f32(((const uint16_t*)p)[i]) : (C)((const float*)p)[i];
}
template <class C> inline void store_as(void* p, int64_t i, int dt, C v) {
  if (dt == DT_BF16) ((uint16_t*)p)[i] = f32_to_bf16_bits((float)v);
  else ((float*)p)[i] = (float)v;
}
#define ERR_INDEX 1
inline void raise_index(int* err, int64_t k, int64_t size) {
  int z = 0;
  if (err && __atomic_compare_exchange_n(err, &z, ERR_INDEX, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    long long* rec = reinterpret_cast<long long*>(err + 2);
    rec[0] = (long long)k;
    rec[1] = (long long)size;
  }
}
template <class T> inline T min(T a, T b) { return a < b ? a : b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
void __syncthreads();
void __syncwarp();
float __shfl_xor_sync(unsigned, float v, int o);
int __shfl_xor_sync(unsigned, int v, int o);
int __shfl_sync(unsigned, int v, int src);
int __shfl_up_sync(unsigned, int v, int d);
unsigned __match_any_sync(unsigned, int v);
