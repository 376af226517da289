// Row normalisations over the last dim, one block per row; the row is re-read from L2 for the output
// pass.
//   layernorm:    y = (x − mean) / sqrt(var + eps) · w + b, biased variance from a second pass (no
//                 E[x²] − mean² cancellation); weight and bias the input dtype or f32 (template W).
//   rmsnorm_tree: y = x · 1/sqrt(mean(x²) + eps) · w in the reference's order and roundings, optionally
//                 on h = x + r with h written out (the pre-norm residual step): see its section below.
#include "common.cuh"

template <class T, class W, int VEC>
__device__ void layernorm_rows(int64_t rows, int64_t D, double eps, T* out, const T* x, const W* w, const W* b) {
  typedef typename Acc<T>::type A;
  __shared__ A red[33], red2[33];
  const int64_t nv = D / VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
    A s = 0;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> v = xr[j];
#pragma unroll
      for (int k = 0; k < VEC; k++) s += to_acc<T>(v.v[k]);
    }
    const A mean = block_sum(s, red) / (A)D;
    A q = 0;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> v = xr[j];
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        const A d = to_acc<T>(v.v[k]) - mean;
        q += d * d;
      }
    }
    const A inv = (A)1 / sqrt(block_sum(q, red2) / (A)D + (A)eps);
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      const Vec<T, VEC> v = xr[j];
      Vec<T, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; k++)
        o.v[k] = from_acc<T>((to_acc<T>(v.v[k]) - mean) * inv * (A)to_acc<W>(w[j * VEC + k]) + (A)to_acc<W>(b[j * VEC + k]));
      orow[j] = o;
    }
  }
}
#define LN(NAME, T, W, VEC)                                                                                      \
  extern "C" __global__ void NAME(int64_t rows, int64_t D, double eps, T* out, const T* x, const W* w, const W* b) { \
    layernorm_rows<T, W, VEC>(rows, D, eps, out, x, w, b);                                                        \
  }
LN(layernorm_f32, float, float, 1)
LN(layernorm_f32_v4, float, float, 4)
LN(layernorm_bf16, __nv_bfloat16, __nv_bfloat16, 1)
LN(layernorm_bf16_v8, __nv_bfloat16, __nv_bfloat16, 8)
LN(layernorm_bf16w32, __nv_bfloat16, float, 1)
LN(layernorm_f16, __half, __half, 1)
LN(layernorm_f64, double, double, 1)

// Register-cached layerNorm for the hot shapes: each thread holds its NV vectors of the row (all loads issued
// before any use, NV·16 bytes per thread), so the output pass reads registers instead of memory; the host
// picks NV so that NV · blockDim · VEC ≥ D. (The same layout ran the former register-cached RMSNorm at 91%
// of copy bandwidth with a persistent grid; RMSNorm is now rmsnorm_tree, in the reference's order.) The
// row is read once; the mean and then
// the biased variance Σ(x − mean)²/D are both taken from registers, so the variance never suffers the
// E[x²] − mean² cancellation that a large mean with a small spread would cause. Each reduction has its
// own shared scratch. Weight and bias come in as 16-byte vectors (the host checks their alignment).
template <class T, class W, int VEC, int NV>
__device__ void layernorm_cached(int64_t rows, int64_t D, double eps, T* out, const T* x, const W* w, const W* b) {
  typedef typename Acc<T>::type A;
  __shared__ A red_mean[33], red_var[33];
  const int64_t nv = D / VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const Vec<T, VEC>* xr = reinterpret_cast<const Vec<T, VEC>*>(x + row * D);
    Vec<T, VEC> cache[NV];
    row_vectors<NV>(nv, [&](int c, int64_t j) { cache[c] = xr[j]; });
    A s = 0;
    row_vectors<NV>(nv, [&](int c, int64_t j) {
#pragma unroll
      for (int k = 0; k < VEC; k++) s += to_acc<T>(cache[c].v[k]);
    });
    const A mean = block_sum(s, red_mean) / (A)D;
    A q = 0;
    row_vectors<NV>(nv, [&](int c, int64_t j) {
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        const A d = to_acc<T>(cache[c].v[k]) - mean;
        q += d * d;
      }
    });
    const A inv = (A)1 / sqrt(block_sum(q, red_var) / (A)D + (A)eps);
    Vec<T, VEC>* orow = reinterpret_cast<Vec<T, VEC>*>(out + row * D);
    row_vectors<NV>(nv, [&](int c, int64_t j) {
      const Vec<W, VEC> wv = reinterpret_cast<const Vec<W, VEC>*>(w)[j];
      const Vec<W, VEC> bv = reinterpret_cast<const Vec<W, VEC>*>(b)[j];
      Vec<T, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; k++)
        o.v[k] = from_acc<T>((to_acc<T>(cache[c].v[k]) - mean) * inv * (A)to_acc<W>(wv.v[k]) + (A)to_acc<W>(bv.v[k]));
      orow[j] = o;
    });
  }
}
#define LNC(NAME, T, W, VEC, NV)                                                                                            \
  extern "C" __global__ void NAME##_r##NV(int64_t rows, int64_t D, double eps, T* out, const T* x, const W* w, const W* b) { \
    layernorm_cached<T, W, VEC, NV>(rows, D, eps, out, x, w, b);                                                          \
  }
LNC(layernorm_f32_v4, float, float, 4, 1)
LNC(layernorm_f32_v4, float, float, 4, 2)
LNC(layernorm_f32_v4, float, float, 4, 4)
LNC(layernorm_f32_v4, float, float, 4, 8)
LNC(layernorm_bf16_v8, __nv_bfloat16, __nv_bfloat16, 8, 1)
LNC(layernorm_bf16_v8, __nv_bfloat16, __nv_bfloat16, 8, 2)
LNC(layernorm_bf16_v8, __nv_bfloat16, __nv_bfloat16, 8, 4)
LNC(layernorm_bf16_v8, __nv_bfloat16, __nv_bfloat16, 8, 8)
LNC(layernorm_bf16w32_v8, __nv_bfloat16, float, 8, 1)
LNC(layernorm_bf16w32_v8, __nv_bfloat16, float, 8, 2)
LNC(layernorm_bf16w32_v8, __nv_bfloat16, float, 8, 4)
LNC(layernorm_bf16w32_v8, __nv_bfloat16, float, 8, 8)

// ---- rmsnorm_tree: the reference's RMSNorm, rounding for rounding ------------------------------------------
// The model's RMSNorm (src/model/norm.ts says why each step is what it is) in one launch instead of its
// ~20 elementwise ops (a tree of log2 D adds, square, ÷ D, + eps, sqrt, 1 ÷, two products, casts): 17 norms
// a forward of the mid config were ~340 of its ~650 launches, the main cost of a CUDA-graph decode step.
//   h_j = x_j in the math type A (f32, or f64 for f64 rows: a bf16/f16 x widens exactly), or with a residual
//         r (the pre-norm residual step, rmsNormResidual) h_j = rnd(x_j + r_j), written out rounded to the
//         output dtype as the new residual stream while the norm reads the unrounded sum (the reference's
//         RMSNorm(x, residual): x = residual = x.float() + residual.float() … residual.to(dtype))
//   s_j = rnd(h_j·h_j); the row sum as the halving tree: for n > 1, s_j = rnd(s_j + s_{j+⌊n/2⌋}) for
//         j < ⌊n/2⌋, an odd n's last element moves to index ⌊n/2⌋, n = ⌈n/2⌉
//   inv = rnd(1 / rnd(sqrt(rnd(rnd(s_0 · rnd(1/D)) + eps))))  (ATen's f32 rsqrt: 1/sqrt, each rounded)
//   y_j = rnd_out(rnd(w_j · rnd(h_j · inv)))
// The mean is a product with the f32 reciprocal 1/D, as torch's CUDA mean (MeanOps' factor) and as this
// backend's composed form (div by a number is muls by its reciprocal); the CPU backend rounds the double
// product once, so for a width that is not a power of two the two devices may differ by an f32 ulp there
// (on an H100, 2026-12-06, a quotient form failed the op-by-op test), as torch's
// CPU and CUDA means do. Every operation is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn,
// __fdiv_rn, __fsqrt_rn), so no FMA contraction can change a bit: on each device the op equals the
// composed form bit for bit (test/tensor/norm-rope-hadamard.test.ts). One block per row (grid-stride); a
// level's adds write [0, n/2) and read [n/2, n), so one barrier a level in shared memory.
template <class A> __device__ __forceinline__ A rn_mul(A a, A b);
template <> __device__ __forceinline__ float rn_mul(float a, float b) { return __fmul_rn(a, b); }
template <> __device__ __forceinline__ double rn_mul(double a, double b) { return __dmul_rn(a, b); }
template <class A> __device__ __forceinline__ A rn_add(A a, A b);
template <> __device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
template <> __device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
template <class A> __device__ __forceinline__ A rn_div(A a, A b);
template <> __device__ __forceinline__ float rn_div(float a, float b) { return __fdiv_rn(a, b); }
template <> __device__ __forceinline__ double rn_div(double a, double b) { return __ddiv_rn(a, b); }
template <class A> __device__ __forceinline__ A rn_sqrt(A a);
template <> __device__ __forceinline__ float rn_sqrt(float a) { return __fsqrt_rn(a); }
template <> __device__ __forceinline__ double rn_sqrt(double a) { return __dsqrt_rn(a); }

// The first L levels run in registers (L = 0, 3 or 5, chosen by the host where 2^L divides D): with
// n_L = D / 2^L, the tree's entry j < n_L after L levels sums the squares of x[j + m·n_L], m < 2^L, and
// level l (n = D / 2^(l−1), half n/2 = 2^(L−l)·n_L) adds the element m + 2^(L−l) onto m — the same adds in
// the same order, so the same bits. Thread t takes entries j = t, t + blockDim, …, loading x[j + m·n_L]
// (coalesced across the warp for each m) and folding its 2^L squares without a barrier; only the last
// log2 n_L levels go through shared memory, the ones at n ≤ 64 within warp 0 (__syncwarp). At D 7168 that is
// 9 block barriers instead of 14 and 224 shared words instead of 7168 (L = 0 is the plain tree).
// v[m] += v[m + H] for m < H, then the same at H/2, …, 1 (compile-time bounds: v stays in registers)
template <class A, int H>
__device__ __forceinline__ void tree_fold(A* v) {
  if constexpr (H > 0) {
#pragma unroll
    for (int m = 0; m < H; m++) v[m] = rn_add<A>(v[m], v[m + H]);
    tree_fold<A, H / 2>(v);
  }
}
template <class TI, class TO, int L, int V>
__device__ void rmsnorm_tree_rows(int64_t rows, int64_t D, double eps, TO* out, TO* hout, const TI* x, const TI* r,
                                  const typename Acc<TI>::type* w) {
  typedef typename Acc<TI>::type A;
  constexpr int M = 1 << L;
  extern __shared__ __align__(16) unsigned char tree_smem[];
  A* s = reinterpret_cast<A*>(tree_smem);
  const int n0 = (int)(D >> L);
  // the row's value: x, or with the residual the sum x + r in A (the norm reads the unrounded sum)
  auto h_of = [&](const TI* xr, const TI* rr, int j) -> A { return rr ? rn_add<A>(to_acc<TI>(xr[j]), to_acc<TI>(rr[j])) : to_acc<TI>(xr[j]); };
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const TI* xr = x + row * D;
    const TI* rr = r ? r + row * D : nullptr;
    for (int j = threadIdx.x; j < n0; j += blockDim.x) {
      // all loads first, then the stores: a store to hout between them could alias x or r (no restrict), which
      // kept the compiler from issuing the loads together (the residual kernel ran at half the plain one's speed)
      A v[M];
#pragma unroll
      for (int m = 0; m < M; m++) v[m] = h_of(xr, rr, j + m * n0);
      if (rr) {
#pragma unroll
        for (int m = 0; m < M; m++) hout[row * D + j + m * n0] = from_acc<TO>(v[m]);
      }
#pragma unroll
      for (int m = 0; m < M; m++) v[m] = rn_mul<A>(v[m], v[m]);
      tree_fold<A, M / 2>(v);
      s[j] = v[0];
    }
    __syncthreads();
    int n = n0;
    for (; n > 64;) {
      const int half = n >> 1;
      for (int j = threadIdx.x; j < half; j += blockDim.x) s[j] = rn_add<A>(s[j], s[j + half]);
      __syncthreads();
      if (n & 1) {
        if (threadIdx.x == 0) s[half] = s[n - 1];
        __syncthreads();
      }
      n = half + (n & 1);
    }
    // n ≤ 64: warp 0 alone; a level's adds write [0, n/2) and read [n/2, n)
    if (threadIdx.x < 32) {
      for (; n > 1;) {
        const int half = n >> 1;
        if ((int)threadIdx.x < half) s[threadIdx.x] = rn_add<A>(s[threadIdx.x], s[threadIdx.x + half]);
        __syncwarp();
        if (n & 1) {
          if (threadIdx.x == 0) s[half] = s[n - 1];
          __syncwarp();
        }
        n = half + (n & 1);
      }
    }
    __syncthreads();
    const A inv = rn_div<A>((A)1, rn_sqrt<A>(rn_add<A>(rn_mul<A>(s[0], (A)(1.0 / (double)D)), (A)eps)));
    TO* orow = out + row * D;
    const int T = blockDim.x;
    if constexpr (V > 1) {
      // V elements a thread per 16-byte load of x (and r): two vectors' loads before their stores
      const int nv = (int)(D / V);
      const Vec<TI, V>* xv = reinterpret_cast<const Vec<TI, V>*>(xr);
      const Vec<TI, V>* rv = reinterpret_cast<const Vec<TI, V>*>(rr);
      const Vec<A, V>* wv = reinterpret_cast<const Vec<A, V>*>(w);
      Vec<TO, V>* ov = reinterpret_cast<Vec<TO, V>*>(orow);
      for (int i0 = threadIdx.x; i0 < nv; i0 += 2 * T) {
        Vec<TO, V> y[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
          const int i = i0 + u * T;
          if (i < nv) {
            const Vec<TI, V> a = xv[i];
            const Vec<A, V> ww = wv[i];
            Vec<TI, V> b;
            if (rr) b = rv[i];
#pragma unroll
            for (int k = 0; k < V; k++) {
              const A h = rr ? rn_add<A>(to_acc<TI>(a.v[k]), to_acc<TI>(b.v[k])) : to_acc<TI>(a.v[k]);
              y[u].v[k] = from_acc<TO>(rn_mul<A>(ww.v[k], rn_mul<A>(h, inv)));
            }
          }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
          const int i = i0 + u * T;
          if (i < nv) ov[i] = y[u];
        }
      }
    } else {
      // four elements' loads before their stores (a store may alias the next loads for all the compiler
      // knows; each thread reads and writes only its own indices, so out may be x)
      for (int j0 = threadIdx.x; j0 < (int)D; j0 += 4 * T) {
        A y[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const int j = j0 + u * T;
          if (j < (int)D) y[u] = rn_mul<A>(w[j], rn_mul<A>(h_of(xr, rr, j), inv));
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const int j = j0 + u * T;
          if (j < (int)D) orow[j] = from_acc<TO>(y[u]);
        }
      }
    }
    __syncthreads();  // s[0] read by every thread before the next row's squares overwrite it
  }
}
// _l<L>: the register depth; _v: the output pass in 16-byte vectors of x (the host checks D and alignment)
#define RMST1(NAME, TI, TO, L, V, SFX)                                                                                     \
  extern "C" __global__ void NAME##_l##L##SFX(int64_t rows, int64_t D, double eps, TO* out, TO* hout, const TI* x,         \
                                              const TI* r, const typename Acc<TI>::type* w) {                             \
    rmsnorm_tree_rows<TI, TO, L, V>(rows, D, eps, out, hout, x, r, w);                                                    \
  }
#define RMST(NAME, TI, TO)                                                                                   \
  RMST1(NAME, TI, TO, 0, 1, ) RMST1(NAME, TI, TO, 3, 1, ) RMST1(NAME, TI, TO, 5, 1, )                       \
  RMST1(NAME, TI, TO, 3, 16 / sizeof(TI), _v) RMST1(NAME, TI, TO, 5, 16 / sizeof(TI), _v)
RMST(rmsnorm_tree_f32_f32, float, float)
RMST(rmsnorm_tree_f32_bf16, float, __nv_bfloat16)
RMST(rmsnorm_tree_bf16_bf16, __nv_bfloat16, __nv_bfloat16)
RMST(rmsnorm_tree_bf16_f32, __nv_bfloat16, float)
RMST(rmsnorm_tree_f16_f16, __half, __half)
RMST(rmsnorm_tree_f64_f64, double, double)
