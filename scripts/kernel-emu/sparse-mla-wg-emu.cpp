// Host driver of the emulated kernels/sparse_mla_wgmma.cu (see run-sparse-mla-wg.mjs), on shim/driver.h.
// The runner removes the kernel's bf16 wgmma wrappers and wgmma.cuh's sm_90a section; this file defines
// them as what the kernel assumes the hardware does:
//   - shared memory is one window whose origin is g_smem rounded down to 1024 bytes; a descriptor holds
//     start >> 4 (bits 0–13), LBO >> 4 (16–29), SBO >> 4 (32–45), swizzle 1 = 128 B (62–63), and the
//     128-byte swizzle XORs address bits 4–6 with bits 7–9;
//   - K-major operand (row r, k index kk): byte start + (r / 8)·SBO + (r mod 8)·128 + 2·kk;
//   - MN-major operand B (k index kk, column n): byte start + (n / 64)·LBO + (kk / 8)·SBO + (kk mod 8)·128 + 2·(n mod 64);
//   - wgmma m64nNk16 bf16: thread (warp w of its warpgroup, lane l) holds d[i] for A row 16w + l/4 + 8·((i>>1)&1)
//     and column 8·(i>>2) + 2·(l&3) + (i&1); the 16 products of a step summed in f32 in k order;
//   - cp.async, fences, commits, waits and register budgets as shim/wgmma-emu.h has them;
//   - bar.sync / bar.arrive id, n: one std::barrier of n threads per id (arrive does not wait).
//   emu fwd|split <fp8?0:1 …> see main()
#include "common.cuh"
#include <barrier>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
// (float2, float4, uint2, uint4, their make_*, atomicMax, pack2 and __expf are the shim's)
struct alignas(8) int2 { int x, y; };
inline uint2 make_uint2(uint32_t x, uint32_t y) { return {x, y}; }
#include "wgmma-emu.h"
inline float bf16_at(uint32_t a) {
  a ^= ((a >> 7) & 7u) << 4;
  uint16_t h;
  memcpy(&h, (const void*)(smem_origin() + a), 2);
  return bf16_bits_to_f32(h);
}
struct Desc { uint32_t start, lbo, sbo; };
inline Desc desc(uint64_t d) {
  if (((d >> 62) & 3) != 1) { fprintf(stderr, "wgmma_emu: not a 128-byte swizzle descriptor\n"); exit(3); }
  return {(uint32_t)(d & 0x3FFF) << 4, (uint32_t)((d >> 16) & 0x3FFF) << 4, (uint32_t)((d >> 32) & 0x3FFF) << 4};
}
inline float kmajor(Desc d, int r, int kk) { return bf16_at(d.start + (r / 8) * d.sbo + (r % 8) * 128 + 2 * kk); }
inline float mnmajor(Desc d, int kk, int n) { return bf16_at(d.start + (n / 64) * d.lbo + (kk / 8) * d.sbo + (kk % 8) * 128 + 2 * (n % 64)); }
template <int N, bool MN_B>
inline void wgmma_emu(float (&d)[N / 2], uint64_t da, uint64_t db, int accumulate) {
  const Desc a = desc(da), b = desc(db);
  if (a.sbo != 1024 || b.sbo != 1024) { fprintf(stderr, "wgmma_emu: SBO %u/%u, expected 1024\n", a.sbo, b.sbo); exit(3); }
  const int wt = threadIdx.x & 127, w = wt >> 5, l = wt & 31;
  for (int i = 0; i < N / 2; i++) {
    const int row = 16 * w + l / 4 + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * (l & 3) + (i & 1);
    float s = 0.0f;
    for (int kk = 0; kk < 16; kk++) s += kmajor(a, row, kk) * (MN_B ? mnmajor(b, kk, col) : kmajor(b, col, kk));
    d[i] = (accumulate ? d[i] : 0.0f) + s;
  }
}
inline void wgmma_m64n32k16_bf16(float (&d)[16], uint64_t da, uint64_t db, int acc) { wgmma_emu<32, false>(d, da, db, acc); }
inline void wgmma_m64n256k16_bf16_nb(float (&d)[128], uint64_t da, uint64_t db, int acc) { wgmma_emu<256, true>(d, da, db, acc); }
static std::mutex g_named_mu;
static std::map<int, std::pair<int, std::unique_ptr<std::barrier<>>>> g_named;
inline std::barrier<>& named(int id, int n) {
  std::lock_guard<std::mutex> g(g_named_mu);
  auto& e = g_named[id];
  if (!e.second) e = {n, std::make_unique<std::barrier<>>(n)};
  if (e.first != n) { fprintf(stderr, "named barrier %d used with %d and %d threads\n", id, e.first, n); exit(3); }
  return *e.second;
}
inline void bar_sync(int id, int n) { named(id, n).arrive_and_wait(); }
inline void bar_arrive(int id, int n) { (void)named(id, n).arrive(); }
#include "kernel.cpp"
#include "driver.h"

// emu fwd  src N H k rows W scale tps S q.bin kv.bin idx.bin out.bin lse.bin     (src: bf16 | fp8; S = 1: the
// plain kernel, bf16 out and f32 lse; S > 1: the split kernel, f32 partials [S, N, H, 512] and [S, N, H])
int main(int argc, char** argv) {
  if (argc != 15) { fprintf(stderr, "usage: emu src N H k rows W scale tps S q kv idx out lse\n"); return 2; }
  const std::string src = argv[1];
  const int64_t N = atoll(argv[2]), H = atoll(argv[3]), k = atoll(argv[4]), rows = atoll(argv[5]), W = atoll(argv[6]);
  const double scale = atof(argv[7]);
  const int64_t tps = atoll(argv[8]), S = atoll(argv[9]);
  auto q = read_file(argv[10]), kv = read_file(argv[11], 16), idx = read_file(argv[12]);
  const bool split = S > 1;
  std::vector<unsigned char> out((split ? 4 * S : 2) * N * H * 512, 0x7f), lse(4 * (split ? S : 1) * N * H, 0x7f);
  const uint16_t* qp = (const uint16_t*)q.data();
  const int32_t* ip = (const int32_t*)idx.data();
  const unsigned gy = (unsigned)((H + 63) / 64);
  if (src != "bf16" && src != "fp8") { fprintf(stderr, "src %s\n", src.c_str()); return 2; }
  const bool fp8 = src == "fp8";
  if (!split)
    launch((unsigned)N, gy, 384, [&] {
      (fp8 ? sparse_mla_wg_fp8 : sparse_mla_wg_bf16)(N, H, 576, 512, k, rows, W, scale, (uint16_t*)out.data(), (float*)lse.data(), qp, kv.data(), ip);
    });
  else
    launch((unsigned)N, gy, 384, [&] {
      (fp8 ? sparse_mla_wg_split_fp8 : sparse_mla_wg_split_bf16)(N, H, 576, 512, k, rows, W, scale, qp, kv.data(), ip, tps, (float*)out.data(), (float*)lse.data());
    }, (unsigned)S);
  write_file(argv[13], out.data(), out.size());
  write_file(argv[14], lse.data(), lse.size());
  return 0;
}
