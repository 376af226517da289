// Host driver of the emulated kernels/sparse_mla.cu (see run-sparse-mla.mjs): one std::thread per CUDA
// thread of a CTA, CTAs one after another; __syncthreads is a std::barrier over the CTA, a warp shuffle
// an exchange through a per-warp array between two barriers of the warp's 32 threads; dynamic shared
// memory is one global array (CTAs never overlap). Buffers come in and go out as raw files.
//   emu fwd <kernel> Tq H D dv k rows W scale q.bin kv.bin idx.bin out.bin lse.bin
//   emu write <kernel> N dv dr cap W cache.bin(in and out) lat.bin rope.bin slots.bin   (prints the error record)
#include "kernel.cpp"  // kernels/sparse_mla.cu with its __shared__ declarations and PTX asm made host C++
#include <barrier>
#include <thread>
#include <vector>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <memory>
thread_local dim3s threadIdx, blockIdx;
dim3s blockDim, gridDim;
alignas(16) float g_smem[1 << 17];
static std::unique_ptr<std::barrier<>> g_bar;
struct Warp { std::unique_ptr<std::barrier<>> bar; float buf[32]; };
static Warp g_w[32];
void __syncthreads() { g_bar->arrive_and_wait(); }
float __shfl_xor_sync(unsigned, float v, int o) {
  Warp& w = g_w[threadIdx.x / 32]; const int l = threadIdx.x % 32;
  w.buf[l] = v; w.bar->arrive_and_wait(); float r = w.buf[l ^ o]; w.bar->arrive_and_wait(); return r;
}
template <class F> void launch(unsigned gx, unsigned gy, unsigned threads, F f) {
  gridDim = {gx, gy, 1}; blockDim = {threads, 1, 1};
  for (unsigned by = 0; by < gy; by++) for (unsigned bx = 0; bx < gx; bx++) {
    g_bar = std::make_unique<std::barrier<>>(threads);
    for (unsigned w = 0; w < threads / 32; w++) g_w[w].bar = std::make_unique<std::barrier<>>(32);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; t++) ts.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, 0}; f(); });
    for (auto& t : ts) t.join();
  }
}
static std::vector<char> rd(const char* p) { FILE* f = fopen(p, "rb"); std::vector<char> v; char b[65536]; size_t n; while ((n = fread(b, 1, sizeof b, f)) > 0) v.insert(v.end(), b, b + n); fclose(f); return v; }
static void wr(const char* p, const void* d, size_t n) { FILE* f = fopen(p, "wb"); fwrite(d, 1, n, f); fclose(f); }
int main(int argc, char** argv) {
  std::string mode = argv[1];
  if (mode == "fwd") {
    std::string name = argv[2];
    int64_t Tq = atoll(argv[3]), H = atoll(argv[4]), D = atoll(argv[5]), dv = atoll(argv[6]), k = atoll(argv[7]), rows = atoll(argv[8]), W = atoll(argv[9]);
    double scale = atof(argv[10]);
    auto q = rd(argv[11]), kv = rd(argv[12]), idx = rd(argv[13]);
    const size_t osz = (name.find("fwd_bf16") != std::string::npos ? 2 : 4) * Tq * H * dv;
    std::vector<char> out(osz, (char)0x7f), lse(4 * Tq * H, (char)0x7f);
    typedef void (*Fn)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, void*, float*, const void*, const void*, const int32_t*);
    Fn fn = nullptr;
#define K(n) if (name == #n) fn = n;
    K(sparse_mla_fwd_f32_f32) K(sparse_mla_fwd_bf16_bf16) K(sparse_mla_fwd_f32_bf16) K(sparse_mla_fwd_bf16_f32) K(sparse_mla_fwd_f32_fp8) K(sparse_mla_fwd_bf16_fp8)
    if (!fn) { fprintf(stderr, "unknown kernel %s\n", name.c_str()); return 2; }
    launch((unsigned)Tq, (unsigned)((H + 15) / 16), 256, [&] { fn(Tq, H, D, dv, k, rows, W, scale, out.data(), (float*)lse.data(), q.data(), kv.data(), (const int32_t*)idx.data()); });
    wr(argv[14], out.data(), out.size()); wr(argv[15], lse.data(), lse.size());
  } else {
    std::string name = argv[2];
    int64_t N = atoll(argv[3]), dv = atoll(argv[4]), dr = atoll(argv[5]), cap = atoll(argv[6]), W = atoll(argv[7]);
    auto cache = rd(argv[8]), lat = rd(argv[9]), rope = rd(argv[10]), slots = rd(argv[11]);
    int err[6] = {0, 0, 0, 0, 0, 0};
    typedef void (*Fn)(int64_t, int64_t, int64_t, int64_t, int64_t, void*, const void*, const void*, const int32_t*, int*);
    Fn fn = nullptr;
    K(mla_cache_write_fp8_f32_f32) K(mla_cache_write_fp8_bf16_bf16) K(mla_cache_write_fp8_bf16_f32) K(mla_cache_write_fp8_f32_bf16)
    K(mla_cache_write_bf16_f32_f32) K(mla_cache_write_bf16_bf16_bf16) K(mla_cache_write_bf16_bf16_f32) K(mla_cache_write_bf16_f32_bf16)
    K(mla_cache_write_f32_f32_f32) K(mla_cache_write_f32_bf16_bf16) K(mla_cache_write_f32_bf16_f32) K(mla_cache_write_f32_f32_bf16)
    if (!fn) { fprintf(stderr, "unknown kernel %s\n", name.c_str()); return 2; }
    launch((unsigned)N, 1, 128, [&] { fn(N, dv, dr, cap, W, cache.data(), lat.data(), rope.data(), (const int32_t*)slots.data(), err); });
    wr(argv[8], cache.data(), cache.size());
    printf("err %d %lld %lld\n", err[0], *(long long*)(err + 2), *(long long*)(err + 4));
  }
}
