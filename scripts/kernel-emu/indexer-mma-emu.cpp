// Host driver of the emulated kernels/dsa_indexer_mma.cu (see run-indexer-mma.mjs), on shim/driver.h. The
// runner replaces the kernel file's sm_90a section (wgmma, cp.async, the proxy fence, named barriers) with
// the definitions below, which do what this code assumes the hardware does:
//   - a shared-memory descriptor's start address (bits 0–13, >> 4) and 128-byte swizzle: byte kk of row r of
//     a K-major operand starting at s is at (s + r·128 + kk) with address bits 4–6 XORed with bits 7–9,
//     relative to a 1024-aligned shared window (the 8-row stride, 1024 B, is the descriptor's SBO);
//   - wgmma m64nNk32 e4m3: thread (warp w of its warpgroup, lane l) holds d[i] for A row
//     16w + l/4 + 8·((i>>1)&1) and B row (column of D) 8·(i>>2) + 2·(l&3) + (i&1); this emulation sums the
//     32 products of a k step in f32 in k order (the hardware's ~14-bit accumulation is not modelled);
//   - cp.async copies 16 bytes (zeros when invalid) at once; commits, waits and fences are then no-ops;
//   - bar.sync id, 128 waits for the 128 threads of one warpgroup.
//   emu dense H NT rows Tk chunk gridX gridY q.bin w.bin k.bin ks.bin start.bin end.bin out.bin
//   emu paged H NT rows maxCtx chunk next_n maxBlocks numBlocks gridX gridY q.bin w.bin cache.bin table.bin ctx.bin out.bin
#include "common.cuh"
#include <barrier>
#include <cstdio>
#include <functional>
#include <memory>
#include "wgmma-emu.h"
static std::unique_ptr<std::barrier<>> g_named[4];
inline uint8_t swizzled_byte(uint32_t s, int r, int kk) {
  uint32_t a = s + (uint32_t)r * 128 + (uint32_t)kk;
  a ^= ((a >> 7) & 7u) << 4;
  return *(const uint8_t*)(smem_origin() + a);
}
template <int N>
inline void wgmma_emu(float (&d)[N / 2], uint64_t da, uint64_t db, int accumulate) {
  if (((da >> 62) & 3) != 1 || ((db >> 62) & 3) != 1 || ((da >> 32) & 0x3FFF) != 64 || ((db >> 32) & 0x3FFF) != 64) {
    fprintf(stderr, "wgmma_emu: unexpected descriptor (swizzle or stride)\n");
    exit(3);
  }
  const uint32_t sa = (uint32_t)(da & 0x3FFF) << 4, sb = (uint32_t)(db & 0x3FFF) << 4;
  const int wt = threadIdx.x & 127, w = wt >> 5, l = wt & 31;
  for (int i = 0; i < N / 2; i++) {
    const int row = 16 * w + l / 4 + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * (l & 3) + (i & 1);
    float s = 0.0f;
    for (int kk = 0; kk < 32; kk++) s += e4m3_bits_to_f32(swizzled_byte(sa, row, kk)) * e4m3_bits_to_f32(swizzled_byte(sb, col, kk));
    d[i] = (accumulate ? d[i] : 0.0f) + s;
  }
}
inline void wgmma_m64n64k32_e4m3(float (&d)[32], uint64_t da, uint64_t db, int acc) { wgmma_emu<64>(d, da, db, acc); }
inline void wgmma_m64n256k32_e4m3(float (&d)[128], uint64_t da, uint64_t db, int acc) { wgmma_emu<256>(d, da, db, acc); }
inline void bar_sync(int id, int n) {
  if (n != 128) { fprintf(stderr, "bar_sync: %d threads\n", n); exit(3); }
  g_named[id]->arrive_and_wait();
}
#include "kernel.cpp"
#include "driver.h"

#define DENSE_CASE(H, NT) if (h == H && nt == NT) return [&] { indexer_logits_mma_h##H##_n##NT(rows, tk, chunk, q, w, k, ks, st, en, out); };
#define PAGED_CASE(H, NT) if (h == H && nt == NT) return [&] { indexer_logits_mma_paged_h##H##_n##NT(rows, width, chunk, next_n, max_blocks, num_blocks, q, w, k, table, ctx, out); };
#define EACH(C) C(4, 64) C(8, 64) C(16, 64) C(32, 64) C(64, 64) C(16, 256) C(32, 256) C(64, 256) C(128, 256)

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  for (auto& b : g_named) b = std::make_unique<std::barrier<>>(128);
  const bool paged = mode == "paged";
  if (!((mode == "dense" && argc == 16) || (paged && argc == 18))) {
    fprintf(stderr, "usage: emu dense … | emu paged … (see the header)\n");
    return 2;
  }
  const int h = atoi(argv[2]), nt = atoi(argv[3]);
  const int64_t rows = atoll(argv[4]), width = atoll(argv[5]), chunk = atoll(argv[6]);
  const int64_t next_n = paged ? atoll(argv[7]) : 1, max_blocks = paged ? atoll(argv[8]) : 0, num_blocks = paged ? atoll(argv[9]) : 0;
  const int a0 = paged ? 10 : 7;
  const unsigned gx = (unsigned)atoll(argv[a0]), gy = (unsigned)atoll(argv[a0 + 1]);
  auto qb = read_file(argv[a0 + 2]), wb = read_file(argv[a0 + 3]), kb = read_file(argv[a0 + 4], 16);
  std::vector<unsigned char> ksb, stb, enb, tb, cb;
  if (paged) {
    tb = read_file(argv[a0 + 5]);
    cb = read_file(argv[a0 + 6]);
  } else {
    ksb = read_file(argv[a0 + 5]);
    stb = read_file(argv[a0 + 6]);
    enb = read_file(argv[a0 + 7]);
  }
  std::vector<float> o(rows * width, __int_as_float(0x7fc00001));  // poisoned: every element must be written
  const uint8_t* q = qb.data();
  const float* w = (const float*)wb.data();
  const uint8_t* k = kb.data();
  const float* ks = (const float*)ksb.data();
  const int* st = (const int*)stb.data();
  const int* en = (const int*)enb.data();
  const int* table = (const int*)tb.data();
  const int* ctx = (const int*)cb.data();
  float* out = o.data();
  const int64_t tk = width;
  auto pick = [&]() -> std::function<void()> {
    if (paged) { EACH(PAGED_CASE) } else { EACH(DENSE_CASE) }
    return nullptr;
  };
  auto f = pick();
  if (!f) { fprintf(stderr, "no instance for H %d, NT %d\n", h, nt); return 2; }
  launch(gx, gy, 256, f);
  write_file(argv[argc - 1], o.data(), o.size() * 4);
  return 0;
}
