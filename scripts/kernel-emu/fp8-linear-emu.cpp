// Host driver of the emulated kernels/fp8_linear.cu (see run-fp8-linear.mjs): one std::thread per CUDA
// thread of a CTA, CTAs one after another; __syncthreads is a std::barrier over the CTA; __shared__ arrays
// become function statics (CTAs never overlap). The kernel source is included after a shim of the CUDA
// names it uses (common.cuh's e4m3 decode and bf16 rounding, copied here as host C++).
//   emu M N K gridY bf16(0|1) q.bin sq.bin w.bin sw.bin out.bin
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <barrier>
#include <memory>
#include <thread>
#include <vector>
using std::min;
struct dim3s { unsigned x = 0, y = 0, z = 0; };
thread_local dim3s threadIdx, blockIdx;
dim3s blockDim, gridDim;
static std::unique_ptr<std::barrier<>> g_bar;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
// single roundings, never contracted (the build passes -ffp-contract=off as well)
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
struct __nv_bfloat16 { uint16_t b; };
inline uint16_t f32_to_bf16_bits(float x) {
  const uint32_t b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((b >> 16) & 0x8000u) | 0x7fc0u);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
template <class T> T from_f(float v);
template <> float from_f<float>(float v) { return v; }
template <> __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return {f32_to_bf16_bits(v)}; }
inline float e4m3_bits_to_f32(uint8_t v) {
  const float s = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 3) & 0xf;
  const int m = v & 7;
  if (e == 15 && m == 7) return __uint_as_float(0x7fc00000u);
  if (e == 0) return s * (float)m * 0.001953125f;
  return s * ldexpf(1.0f + (float)m * 0.125f, e - 7);
}
#include "kernel.cpp"  // kernels/fp8_linear.cu after its #include "common.cuh"

static std::vector<char> rd(const char* p) {
  FILE* f = fopen(p, "rb");
  if (!f) { perror(p); exit(1); }
  fseek(f, 0, SEEK_END);
  const long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  std::vector<char> v(n);
  if (fread(v.data(), 1, n, f) != (size_t)n) exit(1);
  fclose(f);
  return v;
}
int main(int argc, char** argv) {
  if (argc != 11) { fprintf(stderr, "usage: emu M N K gridY bf16 q sq w sw out\n"); return 2; }
  const int64_t M = atoll(argv[1]), N = atoll(argv[2]), K = atoll(argv[3]);
  const unsigned gy = atoi(argv[4]);
  const bool bf = atoi(argv[5]);
  auto q = rd(argv[6]), sq = rd(argv[7]), w = rd(argv[8]), sw = rd(argv[9]);
  std::vector<char> out(M * N * (bf ? 2 : 4), 0x55);  // poisoned: an unwritten output shows
  const unsigned NTH = 256;
  blockDim = {NTH, 1, 1};
  gridDim = {(unsigned)((N + 63) / 64), gy, 1};
  g_bar = std::make_unique<std::barrier<>>(NTH);
  for (unsigned by = 0; by < gridDim.y; by++)
    for (unsigned bx = 0; bx < gridDim.x; bx++) {
      std::vector<std::thread> ts;
      for (unsigned t = 0; t < NTH; t++)
        ts.emplace_back([&, t] {
          threadIdx = {t, 0, 0};
          blockIdx = {bx, by, 0};
          const auto* qp = (const uint8_t*)q.data();
          const auto* wp = (const uint8_t*)w.data();
          if (bf) fp8_block_linear_bf16(M, N, K, (__nv_bfloat16*)out.data(), qp, (const float*)sq.data(), wp, (const float*)sw.data());
          else fp8_block_linear_f32(M, N, K, (float*)out.data(), qp, (const float*)sq.data(), wp, (const float*)sw.data());
        });
      for (auto& th : ts) th.join();
    }
  FILE* f = fopen(argv[10], "wb");
  fwrite(out.data(), 1, out.size(), f);
  fclose(f);
  return 0;
}
