// Host driver of the emulated kernels/adamw.cu (see run-adamw.mjs), on the machinery of shim/driver.h
// (one std::thread per CUDA thread, CTAs one after another). The intrinsics that adamw.cu uses beyond the
// shared shim (which has float4) are defined here, each one correctly rounded f32 operation (the build passes
// -ffp-contract=off; x86-64 SSE arithmetic and sqrtf are IEEE round-to-nearest, without flush-to-zero).
// The four files are whole storages, updated in place at element offsets (misaligned addresses as on the GPU).
//   emu n gridX threads offP offG offM offV decay lerp w oneMinusW b2 oneMinusB2 bc2Sqrt eps negStepSize p.bin g.bin m.bin v.bin
// (the f32 scalars as their uint32 bit patterns, so they arrive exactly)
#include <cstdint>
#include <cmath>
#include <cstring>
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float a) { volatile float r = std::sqrt(a); return r; }
#include "kernel.cpp"  // kernels/adamw.cu as host C++
#include "driver.h"
static float bits(const char* s) {
  const uint32_t u = (uint32_t)strtoul(s, nullptr, 10);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
int main(int argc, char** argv) {
  if (argc != 21) { fprintf(stderr, "usage: emu n gridX threads offP offG offM offV decay lerp w 1-w b2 1-b2 bc2 eps nss p g m v\n"); return 2; }
  const int64_t n = atoll(argv[1]);
  const unsigned gx = atoi(argv[2]), threads = atoi(argv[3]);
  const int64_t op = atoll(argv[4]), og = atoll(argv[5]), om = atoll(argv[6]), ov = atoll(argv[7]);
  const float decay = bits(argv[8]);
  const int lerp = atoi(argv[9]);
  const float w = bits(argv[10]), omw = bits(argv[11]), b2 = bits(argv[12]), omb2 = bits(argv[13]), bc2 = bits(argv[14]), eps = bits(argv[15]), nss = bits(argv[16]);
  auto P = read_file(argv[17]), G = read_file(argv[18]), M = read_file(argv[19]), V = read_file(argv[20]);
  float* p = (float*)P.data() + op;
  const float* g = (const float*)G.data() + og;
  float* m = (float*)M.data() + om;
  float* v = (float*)V.data() + ov;
  launch(gx, 1, threads, [&] { adamw_f32(n, p, g, m, v, decay, lerp, w, omw, b2, omb2, bc2, eps, nss); });
  write_file(argv[17], P.data(), P.size());
  write_file(argv[19], M.data(), M.size());
  write_file(argv[20], V.data(), V.size());
  return 0;
}
