// Host driver of the emulated one-pass DSA kernels (see run-dsa-flash.mjs), on the machinery of
// shim/driver.h (one std::thread per CUDA thread, CTAs one after another) and shim/mma-emu.h (ldmatrix and
// mma.sync). Buffers are raw files; an output file is read first (accumulators start from it), then
// overwritten.
//   emu scores_fwd Tq H N D Tk q k w out idx                            (-DEMU_SCORES: indexer_scores_flash.cu)
//   emu scores_bwd Tq H N D Tk dq dk dw dout q k w idx
//   emu mla_bwd N H D dv k rows scale dq dkv dout q kv out lse idx      (-DEMU_MLA: sparse_mla_bwd_flash.cu)
//   emu kl Tq H N D Tk scale q kv lse scores loss grad idx               (-DEMU_KL: indexer_kl_flash.cu)
//   emu mla_fwd N H D dv k rows scale tps out lse q kv idx              (-DEMU_FWD: sparse_mla_flash.cu, bf16 rows;
//                                                                        tps 0: one pass, else splits of tps tiles and the combine)
#include "kernel.cpp"
#include "driver.h"
#include "mma-emu.h"
#include <map>
static std::map<std::string, std::vector<unsigned char>> bufs;
template <class P = void> static P* rd(const char* p) { return (P*)(bufs[p] = read_file(p, 64)).data(); }
static void wr(const char* p) { write_file(p, bufs[p].data(), bufs[p].size() - 64); }
int main(int argc, char** argv) {
  std::string mode = argv[1];
  auto I = [&](int i) { return (int64_t)atoll(argv[i]); };
  if (false) {
#ifdef EMU_SCORES
  } else if (mode == "scores_fwd") {
    const int64_t Tq = I(2), H = I(3), N = I(4), D = I(5), Tk = I(6);
    auto q = rd<uint16_t>(argv[7]), k = rd<uint16_t>(argv[8]);
    auto w = rd<float>(argv[9]), out = rd<float>(argv[10]);
    auto ix = rd<int32_t>(argv[11]);
    launch((unsigned)Tq, 1, SF_NT, [&] { indexer_scores_flash(H, N, D, Tk, q, k, w, out, ix); });
    wr(argv[10]);
  } else if (mode == "scores_bwd") {
    const int64_t Tq = I(2), H = I(3), N = I(4), D = I(5), Tk = I(6);
    auto dq = rd<uint16_t>(argv[7]);
    auto dk = rd<float>(argv[8]), dw = rd<float>(argv[9]), g = rd<float>(argv[10]);
    auto q = rd<uint16_t>(argv[11]), k = rd<uint16_t>(argv[12]);
    auto w = rd<float>(argv[13]);
    auto ix = rd<int32_t>(argv[14]);
    launch((unsigned)Tq, 1, SF_NT, [&] { indexer_scores_bwd_flash(H, N, D, Tk, dq, dk, dw, g, q, k, w, ix); });
    wr(argv[7]); wr(argv[8]); wr(argv[9]);
#endif
#ifdef EMU_MLA
  } else if (mode == "mla_bwd") {
    const int64_t N = I(2), H = I(3), D = I(4), dv = I(5), k = I(6), rows = I(7);
    const double scale = atof(argv[8]);
    auto dq = rd<uint16_t>(argv[9]);
    auto dkv = rd<float>(argv[10]);
    auto g = rd<uint16_t>(argv[11]), q = rd<uint16_t>(argv[12]), kv = rd<uint16_t>(argv[13]), o = rd<uint16_t>(argv[14]);
    auto lse = rd<float>(argv[15]);
    auto ix = rd<int32_t>(argv[16]);
    launch((unsigned)N, (unsigned)((H + 15) / 16), BF_NT, [&] { sparse_mla_bwd_flash(N, H, D, dv, k, rows, scale, dq, dkv, g, q, kv, o, lse, ix); });
    wr(argv[9]); wr(argv[10]);
#endif
#ifdef EMU_KL
  } else if (mode == "kl") {
    const int64_t Tq = I(2), H = I(3), N = I(4), D = I(5), Tk = I(6);
    const double scale = atof(argv[7]);
    auto q = rd<uint16_t>(argv[8]), kv = rd<uint16_t>(argv[9]);
    auto lse = rd<float>(argv[10]), sc = rd<float>(argv[11]), loss = rd<float>(argv[12]), grad = rd<float>(argv[13]);
    auto ix = rd<int32_t>(argv[14]);
    launch((unsigned)Tq, 1, NT, [&] { indexer_kl_flash(H, N, D, Tk, scale, q, kv, lse, sc, loss, grad, ix); });
    wr(argv[12]); wr(argv[13]);
#endif
#ifdef EMU_FWD
  } else if (mode == "mla_fwd") {
    const int64_t N = I(2), H = I(3), D = I(4), dv = I(5), k = I(6), rows = I(7);
    const double scale = atof(argv[8]);
    const int64_t tps = I(9);
    auto out = rd<uint16_t>(argv[10]);
    auto lse = rd<float>(argv[11]);
    auto q = rd<uint16_t>(argv[12]), kv = rd<uint16_t>(argv[13]);
    auto ix = rd<int32_t>(argv[14]);
    const unsigned groups = (unsigned)((H + 15) / 16);
    if (tps == 0) {
      launch((unsigned)N, groups, FL_NT, [&] { sparse_mla_flash_bf16(N, H, D, dv, k, rows, 0, scale, out, lse, q, kv, ix); });
    } else {
      const int64_t tiles = (k + FL_TK - 1) / FL_TK, S = (tiles + tps - 1) / tps;
      std::vector<float> po(S * N * H * dv), plse(S * N * H);
      launch((unsigned)N, groups, FL_NT, [&] { sparse_mla_flash_split_bf16(N, H, D, dv, k, rows, 0, scale, q, kv, ix, tps, po.data(), plse.data()); }, (unsigned)S);
      launch((unsigned)((N * H + 7) / 8), 1, 256, [&] { sparse_mla_split_combine(N * H, dv, S, po.data(), plse.data(), out, lse); });
    }
    wr(argv[10]); wr(argv[11]);
#endif
  } else { fprintf(stderr, "unknown mode %s\n", mode.c_str()); return 2; }
}
