// Host driver of the emulated kernels/fp8_linear.cu (see run-fp8-linear.mjs), on the machinery of
// shim/driver.h (one std::thread per CUDA thread, CTAs one after another; __shared__ arrays become
// function statics).
//   emu M N K gridY bf16(0|1) q.bin sq.bin w.bin sw.bin out.bin
#include "kernel.cpp"  // kernels/fp8_linear.cu with its __shared__ declarations made host C++
#include "driver.h"
int main(int argc, char** argv) {
  if (argc != 11) { fprintf(stderr, "usage: emu M N K gridY bf16 q sq w sw out\n"); return 2; }
  const int64_t M = atoll(argv[1]), N = atoll(argv[2]), K = atoll(argv[3]);
  const unsigned gy = atoi(argv[4]);
  const bool bf = atoi(argv[5]);
  auto q = read_file(argv[6]), sq = read_file(argv[7]), w = read_file(argv[8]), sw = read_file(argv[9]);
  std::vector<unsigned char> out(M * N * (bf ? 2 : 4), 0x55);  // poisoned: an unwritten output shows
  launch((unsigned)((N + 63) / 64), gy, 256, [&] {
    const auto* qp = (const uint8_t*)q.data();
    const auto* wp = (const uint8_t*)w.data();
    if (bf) fp8_block_linear_bf16(M, N, K, (__nv_bfloat16*)out.data(), qp, (const float*)sq.data(), wp, (const float*)sw.data());
    else fp8_block_linear_f32(M, N, K, (float*)out.data(), qp, (const float*)sq.data(), wp, (const float*)sw.data());
  });
  write_file(argv[10], out.data(), out.size());
  return 0;
}
