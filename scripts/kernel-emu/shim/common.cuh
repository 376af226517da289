// Host stand-in for kernels/common.cuh when a kernel is emulated on the CPU (scripts/kernel-emu): the CUDA
// qualifiers become nothing, threadIdx/blockIdx are per host thread, the conversions are common.cuh's own
// bit-exact code (rintf → nearbyint, same rounding), atomics are host atomics, and common.cuh's block
// reductions are the same code on the emulated barriers. Barriers, warp shuffles and __match_any_sync are
// defined by the driver (shim/driver.h). One shim for every emulated kernel: kernels/sparse_mla.cu,
// sparse_mla_bwd.cu, indexer_train.cu, fp8_linear.cu and moe.cu; only what those use is here.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#include <atomic>
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
struct dim3s { unsigned x = 0, y = 0, z = 0; };
extern thread_local dim3s threadIdx, blockIdx;
extern dim3s blockDim, gridDim;
extern float g_smem[];  // dynamic shared memory (CTAs never overlap)
#define DT_F32 0
#define DT_BF16 2
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
// single roundings, never contracted (the builds that need it pass -ffp-contract=off as well)
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
struct __nv_bfloat16 { uint16_t b; };
inline uint16_t f32_to_bf16_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((b >> 16) & 0x8000u) | 0x7fc0u);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
inline float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(((uint32_t)h) << 16); }
inline uint8_t f32_to_e4m3_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  const uint32_t sign = (b >> 24) & 0x80u;
  const uint32_t a = b & 0x7fffffffu;
  if (a >= 0x43f00000u) return (uint8_t)(sign | 0x7fu);
  if (a < 0x3c800000u) { const float v = __uint_as_float(a) * 512.0f; return (uint8_t)(sign | (uint32_t)std::nearbyint(v)); }
  const uint32_t odd = (a >> 20) & 1u;
  const uint32_t t = a + (uint32_t)((7 - 127) << 23) + 0x7ffffu + odd;
  return (uint8_t)(sign | ((t >> 20) & 0x7fu));
}
inline float e4m3_bits_to_f32(uint8_t v) {
  const float s = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 3) & 0xf, m = v & 7;
  if (e == 15 && m == 7) return __uint_as_float(0x7fc00000u);
  if (e == 0) return s * (float)m * 0.001953125f;
  return s * ldexpf(1.0f + (float)m * 0.125f, e - 7);
}
template <class T> inline float to_f(T v);
template <> inline float to_f<float>(float v) { return v; }
template <> inline float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return bf16_bits_to_f32(v.b); }
template <class T> inline T from_f(float v);
template <> inline float from_f<float>(float v) { return v; }
template <> inline __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __nv_bfloat16{f32_to_bf16_bits(v)}; }
template <class C> inline C load_as(const void* p, int64_t i, int dt) {
  return dt == DT_BF16 ? (C)bf16_bits_to_f32(((const uint16_t*)p)[i]) : (C)((const float*)p)[i];
}
template <class C> inline void store_as(void* p, int64_t i, int dt, C v) {
  if (dt == DT_BF16) ((uint16_t*)p)[i] = f32_to_bf16_bits((float)v);
  else ((float*)p)[i] = (float)v;
}
template <class A, class B> inline auto min(A a, B b) { return a < b ? a : b; }
template <class A, class B> inline auto max(A a, B b) { return a < b ? b : a; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
#define ERR_INDEX 1
inline void raise_index(int* err, int64_t k, int64_t size) {  // common.cuh: atomicCAS(err, 0, ERR_INDEX) == 0
  int z = 0;
  if (err && __atomic_compare_exchange_n(err, &z, ERR_INDEX, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    long long* rec = reinterpret_cast<long long*>(err + 2);
    rec[0] = (long long)k;
    rec[1] = (long long)size;
  }
}
// ---- defined by the driver (shim/driver.h) ----
void __syncthreads();
void __syncwarp();
float __shfl_xor_sync(unsigned, float v, int o);
double __shfl_xor_sync(unsigned, double v, int o);
int __shfl_xor_sync(unsigned, int v, int o);
int __shfl_sync(unsigned, int v, int src);
float __shfl_sync(unsigned, float v, int src);
int __shfl_up_sync(unsigned, int v, int d);
unsigned __match_any_sync(unsigned, int v);
// ---- common.cuh's warp and block reductions ----
template <class A> inline A warp_sum(A v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
template <class A> inline A warp_max(A v) { for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
template <class A, class W>
inline A block_reduce(A v, A* red, W warp_op, A idle) {  // common.cuh's block_sum / block_max
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_op(v);
  __syncthreads();
  if (lane == 0) red[wid] = v;
  __syncthreads();
  A t = lane < (int)nw ? red[lane] : idle;
  return warp_op(t);
}
template <class A> inline A block_sum(A v, A* red) { return block_reduce(v, red, [](A x) { return warp_sum(x); }, (A)0); }
template <class A> inline A block_max(A v, A* red) { return block_reduce(v, red, [](A x) { return warp_max(x); }, (A)(-INFINITY)); }
// ---- the one-pass kernels' pieces (mla_rows.cuh): vectors, the score rounding, sm_80 tensor-core ops ----
#define __align__(n) alignas(n)
struct float2 { float x, y; };
struct alignas(8) uint2 { uint32_t x, y; };
struct alignas(16) uint4 { uint32_t x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float4 atomicAdd(float4* p, float4 v) {  // sm_90's vector atomic: four independent f32 adds here
  float* f = (float*)p;
  float4 old{atomicAdd(f, v.x), atomicAdd(f + 1, v.y), atomicAdd(f + 2, v.z), atomicAdd(f + 3, v.w)};
  return old;
}
inline int atomicMax(int* p, int v) {
  std::atomic_ref<int> a(*p);
  int o = a.load();
  while (o < v && !a.compare_exchange_weak(o, v)) {}
  return o;
}
template <class T, int VEC> struct alignas(sizeof(T) * VEC) Vec { T v[VEC]; };
template <class T, int VEC> inline Vec<T, VEC> pack_vec(const float (&f)[VEC]) {
  Vec<T, VEC> o;
  for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(f[k]);
  return o;
}
// common.cuh's scaled-score rounding x = rnd_bf16(rnd_bf16(s)·scale) of a bf16 score s
inline float bf16_score_x(uint16_t s, double scale) { return bf16_bits_to_f32(f32_to_bf16_bits((float)((double)bf16_bits_to_f32(s) * scale))); }
inline float __expf(float x) { return expf(x); }  // the hardware's approximation is not modelled
inline uint32_t pack2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
// cp.async completes at once here (a copy), so the commit and wait edits are empty: the tiles' barriers are
// what orders them, as on the GPU; a read of a tile before its wait would not show.
inline void cp_async16(void* smem, const void* gmem) { memcpy(smem, gmem, 16); }
inline void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  if (valid) memcpy(smem, gmem, 16);
  else memset(smem, 0, 16);
}
// warp-wide (mma-emu.h, the driver's): ldmatrix .x4 (.trans) and mma.sync m16n8k16 bf16 → f32
void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* p);
void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* p);
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
