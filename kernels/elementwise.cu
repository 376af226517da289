// Elementwise kernels: unary (with a scalar alpha), binary (comparisons write bool) and where.
// Two paths each:
//  - generic: any dtypes and strides (broadcast = stride 0), dtype and op chosen at run time; the
//    branches are uniform across the grid, so they cost a few instructions per element, not divergence.
//  - *_vec_{f32,bf16}: every operand contiguous and of one dtype (b may be a broadcast scalar):
//    16-byte loads/stores, f32 math. These carry the memory-bound hot path (add, mul, silu, ...).
#include "common.cuh"

// op codes (order = UNARY_OPS / BINARY_OPS in src/backend/cuda/codes.ts)
#define U_NEG 0
#define U_EXP 1
#define U_LOG 2
#define U_SQRT 3
#define U_RSQRT 4
#define U_ABS 5
#define U_SIGMOID 6
#define U_SILU 7
#define U_RELU 8
#define U_TANH 9
#define U_SIGN 10
#define U_SQUARE 11
#define U_RECIP 12
#define U_FLOOR 13
#define U_CEIL 14
#define U_NOT 15
#define U_ADDS 16
#define U_MULS 17
#define U_POWS 18
#define U_RPOWS 19
#define U_CLAMPMIN 20
#define U_CLAMPMAX 21

#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_POW 4
#define B_MAXIMUM 5
#define B_MINIMUM 6
#define B_EQ 7
#define B_NE 8
#define B_LT 9
#define B_LE 10
#define B_GT 11
#define B_GE 12
#define B_AND 13
#define B_OR 14

template <class C>
__device__ __forceinline__ C unary_apply(int op, C x, C alpha) {
  switch (op) {
    case U_NEG: return -x;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SQRT: return sqrt(x);
    case U_RSQRT: return (C)1 / sqrt(x);
    case U_ABS: return fabs(x);
    case U_SIGMOID: return (C)1 / ((C)1 + exp(-x));
    case U_SILU: return x / ((C)1 + exp(-x));
    case U_RELU: return x > (C)0 ? x : (x != x ? x : (C)0);
    case U_TANH: return tanh(x);
    case U_SIGN: return x > (C)0 ? (C)1 : x < (C)0 ? (C)-1 : x == (C)0 ? (C)0 : x;
    case U_SQUARE: return x * x;
    case U_RECIP: return (C)1 / x;
    case U_FLOOR: return floor(x);
    case U_CEIL: return ceil(x);
    case U_NOT: return x == (C)0 ? (C)1 : (C)0;
    case U_ADDS: return x + alpha;
    case U_MULS: return x * alpha;
    case U_POWS: return alpha == (C)2 ? x * x : pow(x, alpha);
    case U_RPOWS: return pow(alpha, x);
    case U_CLAMPMIN: return x < alpha ? alpha : x;
    case U_CLAMPMAX: return x > alpha ? alpha : x;
  }
  return x;
}

template <class C>
__device__ __forceinline__ C binary_apply(int op, C a, C b) {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return pow(a, b);
    case B_MAXIMUM: return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b);
    case B_MINIMUM: return (a != a || b != b) ? (a != a ? a : b) : (a < b ? a : b);
    case B_EQ: return a == b ? (C)1 : (C)0;
    case B_NE: return a != b ? (C)1 : (C)0;
    case B_LT: return a < b ? (C)1 : (C)0;
    case B_LE: return a <= b ? (C)1 : (C)0;
    case B_GT: return a > b ? (C)1 : (C)0;
    case B_GE: return a >= b ? (C)1 : (C)0;
    case B_AND: return (a != (C)0 && b != (C)0) ? (C)1 : (C)0;
    case B_OR: return (a != (C)0 || b != (C)0) ? (C)1 : (C)0;
  }
  return a;
}

// ---- generic strided ------------------------------------------------------------------------------
template <class C>
__device__ void unary_generic(Iter it, int64_t n, int op, double alpha, void* out, int out_dt, const void* x, int x_dt) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 2, off);
    store_as<C>(out, off[0], out_dt, unary_apply<C>(op, load_as<C>(x, off[1], x_dt), (C)alpha));
  }
}
extern "C" __global__ void unary_strided_f(Iter it, int64_t n, int op, double alpha, void* out, int out_dt, const void* x, int x_dt) {
  unary_generic<float>(it, n, op, alpha, out, out_dt, x, x_dt);
}
extern "C" __global__ void unary_strided_d(Iter it, int64_t n, int op, double alpha, void* out, int out_dt, const void* x, int x_dt) {
  unary_generic<double>(it, n, op, alpha, out, out_dt, x, x_dt);
}

template <class C>
__device__ void binary_generic(Iter it, int64_t n, int op, void* out, int out_dt, const void* a, int a_dt, const void* b, int b_dt) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 3, off);
    store_as<C>(out, off[0], out_dt, binary_apply<C>(op, load_as<C>(a, off[1], a_dt), load_as<C>(b, off[2], b_dt)));
  }
}
extern "C" __global__ void binary_strided_f(Iter it, int64_t n, int op, void* out, int out_dt, const void* a, int a_dt, const void* b, int b_dt) {
  binary_generic<float>(it, n, op, out, out_dt, a, a_dt, b, b_dt);
}
extern "C" __global__ void binary_strided_d(Iter it, int64_t n, int op, void* out, int out_dt, const void* a, int a_dt, const void* b, int b_dt) {
  binary_generic<double>(it, n, op, out, out_dt, a, a_dt, b, b_dt);
}

template <class C>
__device__ void where_generic(Iter it, int64_t n, void* out, int out_dt, const void* c, int c_dt, const void* a, int a_dt, const void* b, int b_dt) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 4, off);
    const bool t = load_as<double>(c, off[1], c_dt) != 0.0;
    store_as<C>(out, off[0], out_dt, t ? load_as<C>(a, off[2], a_dt) : load_as<C>(b, off[3], b_dt));
  }
}
extern "C" __global__ void where_strided_f(Iter it, int64_t n, void* out, int out_dt, const void* c, int c_dt, const void* a, int a_dt, const void* b, int b_dt) {
  where_generic<float>(it, n, out, out_dt, c, c_dt, a, a_dt, b, b_dt);
}
extern "C" __global__ void where_strided_d(Iter it, int64_t n, void* out, int out_dt, const void* c, int c_dt, const void* a, int a_dt, const void* b, int b_dt) {
  where_generic<double>(it, n, out, out_dt, c, c_dt, a, a_dt, b, b_dt);
}

// ---- contiguous, vectorised -------------------------------------------------------------------------
// n elements; the first n - n % VEC go through 16-byte vectors, the tail element by element.
template <class T, int OP>
__device__ __forceinline__ void unary_vec_body(int64_t n, float alpha, T* __restrict__ out, const T* __restrict__ x) {
  constexpr int VEC = 16 / sizeof(T);
  const Vec<T, VEC>* xv = reinterpret_cast<const Vec<T, VEC>*>(x);
  Vec<T, VEC>* ov = reinterpret_cast<Vec<T, VEC>*>(out);
  grid_vectors<VEC>(
      n,
      [&](int64_t i) {
        const Vec<T, VEC> a = xv[i];
        Vec<T, VEC> r;
#pragma unroll
        for (int k = 0; k < VEC; k++) r.v[k] = from_f<T>(unary_apply<float>(OP, to_f<T>(a.v[k]), alpha));
        ov[i] = r;
      },
      [&](int64_t i) { out[i] = from_f<T>(unary_apply<float>(OP, to_f<T>(x[i]), alpha)); });
}

template <class T>
__device__ __forceinline__ void unary_vec(int64_t n, int op, float alpha, T* out, const T* x) {
  switch (op) {
#define CASE(O) case O: unary_vec_body<T, O>(n, alpha, out, x); break;
    CASE(U_NEG) CASE(U_EXP) CASE(U_LOG) CASE(U_SQRT) CASE(U_RSQRT) CASE(U_ABS) CASE(U_SIGMOID) CASE(U_SILU)
    CASE(U_RELU) CASE(U_TANH) CASE(U_SIGN) CASE(U_SQUARE) CASE(U_RECIP) CASE(U_FLOOR) CASE(U_CEIL) CASE(U_NOT)
    CASE(U_ADDS) CASE(U_MULS) CASE(U_POWS) CASE(U_RPOWS) CASE(U_CLAMPMIN) CASE(U_CLAMPMAX)
#undef CASE
  }
}
extern "C" __global__ void unary_vec_f32(int64_t n, int op, float alpha, float* out, const float* x) { unary_vec<float>(n, op, alpha, out, x); }
extern "C" __global__ void unary_vec_bf16(int64_t n, int op, float alpha, __nv_bfloat16* out, const __nv_bfloat16* x) {
  unary_vec<__nv_bfloat16>(n, op, alpha, out, x);
}

// b_scalar != 0: b is one element broadcast over a.
template <class T, int OP>
__device__ __forceinline__ void binary_vec_body(int64_t n, int b_scalar, T* __restrict__ out, const T* __restrict__ a, const T* __restrict__ b) {
  constexpr int VEC = 16 / sizeof(T);
  const Vec<T, VEC>* av = reinterpret_cast<const Vec<T, VEC>*>(a);
  const Vec<T, VEC>* bv = reinterpret_cast<const Vec<T, VEC>*>(b);
  Vec<T, VEC>* ov = reinterpret_cast<Vec<T, VEC>*>(out);
  if (b_scalar) {
    const float s = to_f<T>(b[0]);
    grid_vectors<VEC>(
        n,
        [&](int64_t i) {
          const Vec<T, VEC> x = av[i];
          Vec<T, VEC> r;
#pragma unroll
          for (int k = 0; k < VEC; k++) r.v[k] = from_f<T>(binary_apply<float>(OP, to_f<T>(x.v[k]), s));
          ov[i] = r;
        },
        [&](int64_t i) { out[i] = from_f<T>(binary_apply<float>(OP, to_f<T>(a[i]), s)); });
  } else {
    grid_vectors<VEC>(
        n,
        [&](int64_t i) {
          const Vec<T, VEC> x = av[i], y = bv[i];
          Vec<T, VEC> r;
#pragma unroll
          for (int k = 0; k < VEC; k++) r.v[k] = from_f<T>(binary_apply<float>(OP, to_f<T>(x.v[k]), to_f<T>(y.v[k])));
          ov[i] = r;
        },
        [&](int64_t i) { out[i] = from_f<T>(binary_apply<float>(OP, to_f<T>(a[i]), to_f<T>(b[i]))); });
  }
}
// Only the ops whose result has the operands' dtype (comparisons write bool and take the generic path).
template <class T>
__device__ __forceinline__ void binary_vec(int64_t n, int op, int b_scalar, T* out, const T* a, const T* b) {
  switch (op) {
#define CASE(O) case O: binary_vec_body<T, O>(n, b_scalar, out, a, b); break;
    CASE(B_ADD) CASE(B_SUB) CASE(B_MUL) CASE(B_DIV) CASE(B_POW) CASE(B_MAXIMUM) CASE(B_MINIMUM)
#undef CASE
  }
}
extern "C" __global__ void binary_vec_f32(int64_t n, int op, int b_scalar, float* out, const float* a, const float* b) {
  binary_vec<float>(n, op, b_scalar, out, a, b);
}
extern "C" __global__ void binary_vec_bf16(int64_t n, int op, int b_scalar, __nv_bfloat16* out, const __nv_bfloat16* a, const __nv_bfloat16* b) {
  binary_vec<__nv_bfloat16>(n, op, b_scalar, out, a, b);
}
