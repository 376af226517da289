// The emulation machinery every driver (*-emu.cpp) shares, included once after "kernel.cpp": one
// std::thread per CUDA thread of a CTA, CTAs one after another; __syncthreads is a std::barrier over the
// CTA, __syncwarp one over the warp, and a warp shuffle or __match_any_sync an exchange through a per-warp
// array between two warp barriers; dynamic and static shared memory are process-wide (CTAs never
// overlap). Buffers come in and go out as raw files.
#pragma once
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>
thread_local dim3s threadIdx, blockIdx;
dim3s blockDim, gridDim;
alignas(16) float g_smem[1 << 17];
static std::unique_ptr<std::barrier<>> g_bar;
struct Warp { std::unique_ptr<std::barrier<>> bar; int64_t buf[32]; };
static Warp g_w[32];
void __syncthreads() { g_bar->arrive_and_wait(); }
void __syncwarp() { g_w[threadIdx.x / 32].bar->arrive_and_wait(); }
/** Lane l gets lane src(l)'s value; a source outside the warp keeps its own (as the hardware's shuffles). */
template <class V, class S> static V exchange(V v, S src) {
  Warp& w = g_w[threadIdx.x / 32];
  const int l = threadIdx.x % 32;
  int64_t raw = 0;
  memcpy(&raw, &v, sizeof(V));
  w.buf[l] = raw;
  w.bar->arrive_and_wait();
  const int s = src(l);
  V r = v;
  if (s >= 0 && s < 32) memcpy(&r, &w.buf[s], sizeof(V));
  w.bar->arrive_and_wait();
  return r;
}
float __shfl_xor_sync(unsigned, float v, int o) { return exchange(v, [o](int l) { return l ^ o; }); }
double __shfl_xor_sync(unsigned, double v, int o) { return exchange(v, [o](int l) { return l ^ o; }); }
int __shfl_xor_sync(unsigned, int v, int o) { return exchange(v, [o](int l) { return l ^ o; }); }
int __shfl_sync(unsigned, int v, int s) { return exchange(v, [s](int) { return s & 31; }); }
float __shfl_sync(unsigned, float v, int s) { return exchange(v, [s](int) { return s & 31; }); }
int __shfl_up_sync(unsigned, int v, int d) { return exchange(v, [d](int l) { return l - d; }); }
unsigned __match_any_sync(unsigned, int v) {
  Warp& w = g_w[threadIdx.x / 32];
  const int l = threadIdx.x % 32;
  w.buf[l] = v;
  w.bar->arrive_and_wait();
  unsigned m = 0;
  for (int i = 0; i < 32; i++) if ((int)w.buf[i] == v) m |= 1u << i;
  w.bar->arrive_and_wait();
  return m;
}
/** Runs f as a gx × gy (× gz) grid of CTAs of `threads` threads, one CTA at a time. */
template <class F> static void launch(unsigned gx, unsigned gy, unsigned threads, F f, unsigned gz = 1) {
  gridDim = {gx, gy, gz};
  blockDim = {threads, 1, 1};
  for (unsigned bz = 0; bz < gz; bz++)
    for (unsigned by = 0; by < gy; by++)
      for (unsigned bx = 0; bx < gx; bx++) {
        g_bar = std::make_unique<std::barrier<>>(threads);
        for (unsigned w = 0; w < (threads + 31) / 32; w++) g_w[w].bar = std::make_unique<std::barrier<>>(32);
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < threads; t++) ts.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, bz}; f(); });
        for (auto& t : ts) t.join();
      }
}
/** A file's bytes ("-": none, an empty vector), with `pad` zero bytes after them (reads a little past the end stay inside). */
static std::vector<unsigned char> read_file(const char* p, size_t pad = 0) {
  std::vector<unsigned char> v;
  if (std::string(p) == "-") return v;
  FILE* f = fopen(p, "rb");
  if (!f) { perror(p); exit(2); }
  fseek(f, 0, SEEK_END);
  const size_t n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  v.resize(n + pad);
  if (fread(v.data(), 1, n, f) != n) { perror(p); exit(2); }
  fclose(f);
  v.resize(n + pad);
  return v;
}
static void write_file(const char* p, const void* d, size_t n) {
  FILE* f = fopen(p, "wb");
  if (!f) { perror(p); exit(2); }
  fwrite(d, 1, n, f);
  fclose(f);
}
/** Prints a kernel's error record (int err[6]: code, pad, index, size) as "err <code> <index> <size>". */
static void print_err(const int* err) {
  long long rec[2];
  memcpy(rec, err + 2, 16);
  printf("err %d %lld %lld\n", err[0], rec[0], rec[1]);
}
