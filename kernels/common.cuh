// Shared device helpers for every kernels/*.cu file: dtype codes, bit-exact conversions that match
// src/tensor/dtype.ts (the CPU reference), strided index decomposition and block reductions.
//
// The dtype codes and op codes below are mirrored in src/backend/cuda/codes.ts; test/cuda/codes.test.ts
// parses this file and fails when the two lists drift apart.
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

// dtype codes (order = DT_CODES in codes.ts)
#define DT_F32 0
#define DT_F64 1
#define DT_BF16 2
#define DT_F16 3
#define DT_F8E4M3 4
#define DT_I32 5
#define DT_I64 6
#define DT_U8 7
#define DT_BOOL 8

#define MAXR 8

// A strided iteration space shared by up to four operands (operand 0 is usually the output).
// Host code collapses dims that are contiguous for every operand at once, so the common all-contiguous
// case arrives as rank 1 with stride 1 and the index math is one multiply.
struct Iter {
  int32_t rank;
  int32_t pad_;
  int64_t size[MAXR];
  int64_t stride[4][MAXR];
  int64_t offset[4];
};

__device__ __forceinline__ void iter_offsets(const Iter& it, int64_t i, int nops, int64_t* off) {
  for (int o = 0; o < 4; o++) off[o] = it.offset[o];
  for (int d = it.rank - 1; d >= 0; d--) {
    const int64_t s = it.size[d];
    const int64_t q = i / s;
    const int64_t r = i - q * s;
    i = q;
#pragma unroll
    for (int o = 0; o < 4; o++)
      if (o < nops) off[o] += r * it.stride[o][d];
  }
}

// ---- scalar conversions (bit-exact with src/tensor/dtype.ts) ------------------------------------
// f32 → bf16: round to nearest even; NaN → 0x7FC0 with the sign kept (PyTorch c10 rule).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((b >> 16) & 0x8000u) | 0x7fc0u);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(((uint32_t)h) << 16); }
// The DSA attention kernels' scaled score: x = rnd_bf16(S·scale) of a bf16 score S (a GEMM's bf16 output, or
// an f32 accumulator rounded to bf16 first), the product in double — as the reference rounds its scores.
__device__ __forceinline__ float bf16_score_x(uint16_t s, double scale) {
  return bf16_bits_to_f32(f32_to_bf16_bits((float)((double)bf16_bits_to_f32(s) * scale)));
}

// f32 → f16: IEEE round to nearest even via the hardware conversion; NaN → 0x7E00 with the sign kept.
__device__ __forceinline__ uint16_t f32_to_f16_bits(float x) {
  if (x != x) return (uint16_t)(((__float_as_uint(x) >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(x));
}
__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// f32 → float8 e4m3fn exactly as c10::detail::fp8e4m3fn_from_fp32_value: no saturation; |x| ≥ 480,
// inf and NaN give the NaN code 0x7F (sign kept); below 2^-6 the subnormal grid has step 2^-9.
__device__ __forceinline__ uint8_t f32_to_e4m3_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  const uint32_t sign = (b >> 24) & 0x80u;
  const uint32_t a = b & 0x7fffffffu;
  if (a >= 0x43f00000u) return (uint8_t)(sign | 0x7fu);
  if (a < 0x3c800000u) {
    const float v = __uint_as_float(a) * 512.0f;  // exact: a power-of-two scale of a value below 2^-6
    return (uint8_t)(sign | (uint32_t)rintf(v));  // rintf rounds half to even
  }
  // rebias the exponent (127 → 7) and round the 23-bit mantissa to 3 bits, half to even
  const uint32_t odd = (a >> 20) & 1u;
  const uint32_t t = a + (uint32_t)((7 - 127) << 23) + 0x7ffffu + odd;
  return (uint8_t)(sign | ((t >> 20) & 0x7fu));
}
__device__ __forceinline__ float e4m3_bits_to_f32(uint8_t v) {
  const float s = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 3) & 0xf;
  const int m = v & 7;
  if (e == 15 && m == 7) return __uint_as_float(0x7fc00000u);
  if (e == 0) return s * (float)m * 0.001953125f;  // m · 2^-9
  return s * ldexpf(1.0f + (float)m * 0.125f, e - 7);
}

// Float → integer stores follow the CPU: truncate toward zero; i32 and u8 wrap (JS ToInt32 / & 0xff);
// bool is "not zero" (NaN counts as true).
template <class C>
__device__ __forceinline__ int64_t trunc_i64(C v) {
  if (v != v) return 0;
  return (int64_t)trunc((double)v);
}

// ---- generic loads/stores by runtime dtype code ------------------------------------------------
template <class C>
__device__ __forceinline__ C load_as(const void* p, int64_t i, int dt) {
  switch (dt) {
    case DT_F32: return (C)((const float*)p)[i];
    case DT_F64: return (C)((const double*)p)[i];
    case DT_BF16: return (C)bf16_bits_to_f32(((const uint16_t*)p)[i]);
    case DT_F16: return (C)f16_bits_to_f32(((const uint16_t*)p)[i]);
    case DT_F8E4M3: return (C)e4m3_bits_to_f32(((const uint8_t*)p)[i]);
    case DT_I32: return (C)((const int32_t*)p)[i];
    case DT_I64: return (C)((const int64_t*)p)[i];
    default: return (C)((const uint8_t*)p)[i];  // u8, bool
  }
}

// Narrowing to f32 first, then to the 16/8-bit format, matches the CPU, which also goes through f32.
template <class C>
__device__ __forceinline__ void store_as(void* p, int64_t i, int dt, C v) {
  switch (dt) {
    case DT_F32: ((float*)p)[i] = (float)v; break;
    case DT_F64: ((double*)p)[i] = (double)v; break;
    case DT_BF16: ((uint16_t*)p)[i] = f32_to_bf16_bits((float)v); break;
    case DT_F16: ((uint16_t*)p)[i] = f32_to_f16_bits((float)v); break;
    case DT_F8E4M3: ((uint8_t*)p)[i] = f32_to_e4m3_bits((float)v); break;
    case DT_I32: ((int32_t*)p)[i] = (int32_t)(uint32_t)(uint64_t)trunc_i64(v); break;
    case DT_I64: ((int64_t*)p)[i] = trunc_i64(v); break;
    case DT_U8: ((uint8_t*)p)[i] = (uint8_t)(trunc_i64(v) & 0xff); break;
    default: ((uint8_t*)p)[i] = (v != (C)0) ? 1 : 0; break;  // bool
  }
}

// ---- typed element access for the specialised kernels (T = float, double, __nv_bfloat16, __half) ----
template <class T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<double>(double v) { return (float)v; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return bf16_bits_to_f32(__bfloat16_as_ushort(v)); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }

template <class T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_f<double>(float v) { return (double)v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __ushort_as_bfloat16(f32_to_bf16_bits(v)); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __ushort_as_half(f32_to_f16_bits(v)); }

// The accumulation type of a storage type: f64 stays f64, everything else computes in f32.
template <class T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

template <class T> __device__ __forceinline__ typename Acc<T>::type to_acc(T v) { return to_f<T>(v); }
template <> __device__ __forceinline__ double to_acc<double>(double v) { return v; }
template <class T> __device__ __forceinline__ T from_acc(typename Acc<T>::type v) { return from_f<T>(v); }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// 16-byte vector of VEC elements of T (VEC · sizeof(T) == 16), or a single element when VEC == 1.
template <class T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

// ---- loop shapes shared by the kernels ------------------------------------------------------------
// Grid-stride over n elements as 16-byte vectors of VEC: vf(i) for vector i < n / VEC, then tf(i) for each
// element i of the n mod VEC tail.
template <int VEC, class VecFn, class TailFn>
__device__ __forceinline__ void grid_vectors(int64_t n, VecFn vf, TailFn tf) {
  const int64_t nv = n / VEC;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (int64_t i = t; i < nv; i += stride) vf(i);
  for (int64_t i = nv * VEC + t; i < n; i += stride) tf(i);
}
// The register-cached row kernels: thread t holds vectors j = t + c·blockDim (c < NV) of a row of nv
// vectors; f(c, j) for each that exists.
template <int NV, class F>
__device__ __forceinline__ void row_vectors(int64_t nv, F f) {
#pragma unroll
  for (int c = 0; c < NV; c++) {
    const int64_t j = threadIdx.x + (int64_t)c * blockDim.x;
    if (j < nv) f(c, j);
  }
}

// ---- packing f32 results into a 16-byte vector ---------------------------------------------------
// bf16 pairs go through the hardware cvt.rn.bf16x2.f32 (one instruction for two values instead of the
// ~6-instruction software rounding). It rounds to nearest even exactly like f32_to_bf16_bits, but turns
// every NaN into 0x7FFF; a pair holding a NaN is redone in software so NaNs stay sign|0x7FC0 as on the CPU.
template <class T, int VEC>
__device__ __forceinline__ Vec<T, VEC> pack_vec(const float (&f)[VEC]) {
  Vec<T, VEC> o;
#pragma unroll
  for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(f[k]);
  return o;
}
template <>
__device__ __forceinline__ Vec<__nv_bfloat16, 8> pack_vec<__nv_bfloat16, 8>(const float (&f)[8]) {
  Vec<__nv_bfloat16, 8> o;
#pragma unroll
  for (int k = 0; k < 8; k += 2) {
    if (f[k] != f[k] || f[k + 1] != f[k + 1]) {
      o.v[k] = from_f<__nv_bfloat16>(f[k]);
      o.v[k + 1] = from_f<__nv_bfloat16>(f[k + 1]);
    } else {
      const __nv_bfloat162 p = __floats2bfloat162_rn(f[k], f[k + 1]);
      o.v[k] = p.x;
      o.v[k + 1] = p.y;
    }
  }
  return o;
}

// 2^x on the MUFU unit (ex2.approx.ftz: ~2 ulp, results below 2^-126 flush to 0); 2^-inf = 0, NaN stays NaN.
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// ---- block reductions (blockDim.x a multiple of 32, at most 1024) --------------------------------
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Every thread gets the block-wide sum. `red` is shared scratch of at least 33 elements.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[wid] = v;
  __syncthreads();
  A t = lane < nw ? red[lane] : (A)0;
  t = warp_sum(t);
  return t;
}
template <class A>
__device__ __forceinline__ A block_max(A v, A* red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[wid] = v;
  __syncthreads();
  A t = lane < nw ? red[lane] : (A)(-INFINITY);
  t = warp_max(t);
  return t;
}

// Sticky device error word: a kernel that meets an out-of-range index stores a code here instead of
// touching memory out of bounds; the host reads it at synchronize() and throws a typed error.
// Layout of the error record: int code, int pad, int64 offending index, int64 dim size (the first
// kernel to fail wins the CAS and fills in its index, so the host can name it as the CPU does).
#define ERR_INDEX 1
__device__ __forceinline__ void raise_index(int* err, int64_t k, int64_t size) {
  if (err && atomicCAS(err, 0, ERR_INDEX) == 0) {
    long long* rec = reinterpret_cast<long long*>(err + 2);
    rec[0] = (long long)k;
    rec[1] = (long long)size;
  }
}

// ---- tensor-core building blocks (sm_80+ mma.sync, cp.async, ldmatrix), shared by the bf16 GEMM kernels ----
// D += A·B for one m16n8k16 tile: A 16×16 bf16 (row), B 16×8 bf16 (col), f32 accumulators in the PTX
// fragment layout (thread g = lane/4, t = lane%4 holds rows g and g+8, columns 2t and 2t+1).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t lds32(const uint16_t* p) { return *(const uint32_t*)p; }
__device__ __forceinline__ uint32_t pack2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
// 16 bytes global → shared, asynchronous (cp.async.cg: L2 only); the zfill form copies `valid ? 16 : 0`
// bytes and zero-fills the rest, so a piece outside the operand needs no separate store.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
// Four 8×8 b16 matrices from shared memory, lane l giving the address of row l%8 of matrix l/8; .trans
// hands each thread the transposed fragment (for an operand stored the other way round).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* p) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* p) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
