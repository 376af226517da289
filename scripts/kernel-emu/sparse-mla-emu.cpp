// Host driver of the emulated kernels/sparse_mla.cu (see run-sparse-mla.mjs), on the machinery of
// shim/driver.h (one std::thread per CUDA thread, CTAs one after another). Buffers are raw files.
//   emu fwd <kernel> Tq H D dv k rows W scale q.bin kv.bin idx.bin out.bin lse.bin
//   emu write <kernel> N dv dr cap W cache.bin(in and out) lat.bin rope.bin slots.bin   (prints the error record)
#include "kernel.cpp"  // kernels/sparse_mla.cu with its __shared__ declarations and PTX asm made host C++
#include "driver.h"
int main(int argc, char** argv) {
  std::string mode = argv[1];
  if (mode == "fwd") {
    std::string name = argv[2];
    int64_t Tq = atoll(argv[3]), H = atoll(argv[4]), D = atoll(argv[5]), dv = atoll(argv[6]), k = atoll(argv[7]), rows = atoll(argv[8]), W = atoll(argv[9]);
    double scale = atof(argv[10]);
    auto q = read_file(argv[11]), kv = read_file(argv[12]), idx = read_file(argv[13]);
    const size_t osz = (name.find("fwd_bf16") != std::string::npos ? 2 : 4) * Tq * H * dv;
    std::vector<unsigned char> out(osz, 0x7f), lse(4 * Tq * H, 0x7f);
    typedef void (*Fn)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, void*, float*, const void*, const void*, const int32_t*);
    Fn fn = nullptr;
#define K(n) if (name == #n) fn = n;
    K(sparse_mla_fwd_f32_f32) K(sparse_mla_fwd_bf16_bf16) K(sparse_mla_fwd_f32_bf16) K(sparse_mla_fwd_bf16_f32) K(sparse_mla_fwd_f32_fp8) K(sparse_mla_fwd_bf16_fp8)
    if (!fn) { fprintf(stderr, "unknown kernel %s\n", name.c_str()); return 2; }
    launch((unsigned)Tq, (unsigned)((H + 15) / 16), 256, [&] { fn(Tq, H, D, dv, k, rows, W, scale, out.data(), (float*)lse.data(), q.data(), kv.data(), (const int32_t*)idx.data()); });
    write_file(argv[14], out.data(), out.size()); write_file(argv[15], lse.data(), lse.size());
  } else {
    std::string name = argv[2];
    int64_t N = atoll(argv[3]), dv = atoll(argv[4]), dr = atoll(argv[5]), cap = atoll(argv[6]), W = atoll(argv[7]);
    auto cache = read_file(argv[8]), lat = read_file(argv[9]), rope = read_file(argv[10]), slots = read_file(argv[11]);
    int err[6] = {0, 0, 0, 0, 0, 0};
    typedef void (*Fn)(int64_t, int64_t, int64_t, int64_t, int64_t, void*, const void*, const void*, const int32_t*, int*);
    Fn fn = nullptr;
    K(mla_cache_write_fp8_f32_f32) K(mla_cache_write_fp8_bf16_bf16) K(mla_cache_write_fp8_bf16_f32) K(mla_cache_write_fp8_f32_bf16)
    K(mla_cache_write_bf16_f32_f32) K(mla_cache_write_bf16_bf16_bf16) K(mla_cache_write_bf16_bf16_f32) K(mla_cache_write_bf16_f32_bf16)
    K(mla_cache_write_f32_f32_f32) K(mla_cache_write_f32_bf16_bf16) K(mla_cache_write_f32_bf16_f32) K(mla_cache_write_f32_f32_bf16)
    if (!fn) { fprintf(stderr, "unknown kernel %s\n", name.c_str()); return 2; }
    launch((unsigned)N, 1, 128, [&] { fn(N, dv, dr, cap, W, cache.data(), lat.data(), rope.data(), (const int32_t*)slots.data(), err); });
    write_file(argv[8], cache.data(), cache.size());
    print_err(err);
  }
}
