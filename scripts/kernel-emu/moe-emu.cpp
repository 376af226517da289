// Host driver of the emulated kernels/moe.cu (see run-moe.mjs), on the machinery of shim/driver.h (one
// std::thread per CUDA thread, CTAs one after another; __syncwarp, shuffles and __match_any_sync through
// per-warp barriers). Buffers come in and go out as raw files.
//   emu route T E k G TG scores.bin bias.bin|- forced.bin|- out.bin
//   emu dispatch T k E experts.bin pairs.bin rows.bin tokens.bin offsets.bin
//   emu gmm xdt wdt M N K E x.bin w.bin off.bin out.bin          (dt: f32 | bf16)
//   emu gmmdx xdt wdt M N K E g.bin w.bin off.bin out.bin      (out [M, N] = g [M, K]·W[e], W [E, K, N])
//   emu gmmdw xdt odt M N K E g.bin x.bin off.bin dw.bin       (dw [E, N, K] = Σ_seg g[p, n]·x[p, k])
//   emu gmmtc fwd|dx M N K E x.bin w.bin off.bin out.bin      (the tensor-core kernels, bf16; dx: W [E, K, N])
//   emu gmmdwtc odt M N K E g.bin x.bin off.bin dw.bin         (the tensor-core dw, bf16 g and x)
//   emu gmm8 odt M N K E q.bin sq.bin w8.bin sw.bin off.bin out.bin
//   emu combine T k D out_dt ys_dt sh_dt ys.bin w.bin rows.bin sh.bin|- out.bin
// Each prints the device error record "err <code> <index> <size>".
#include "kernel.cpp"  // kernels/moe.cu with its __shared__ declarations made host C++
#include "driver.h"
#include "mma-emu.h"
#include <algorithm>
static int err_rec[6];
int main(int argc, char** argv) {
  const std::string cmd = argv[1];
  int* err = err_rec;
  auto I = [&](int i) { return (int64_t)atoll(argv[i]); };
  if (cmd == "route") {
    const int64_t T = I(2), E = I(3), k = I(4), G = I(5), TG = I(6);
    auto s = read_file(argv[7], 16), b = read_file(argv[8], 16), f = read_file(argv[9], 16);
    std::vector<int32_t> out(T * k, -7);
    const unsigned grid = (unsigned)((T + 3) / 4);
    launch(grid, 1, 128, [&] { moe_route(T, E, k, G, TG, out.data(), (const float*)s.data(), b.empty() ? nullptr : (const float*)b.data(),
                                         f.empty() ? nullptr : (const int32_t*)f.data(), err); });
    write_file(argv[10], out.data(), out.size() * 4);
  } else if (cmd == "dispatch") {
    const int64_t T = I(2), k = I(3), E = I(4);
    auto ex = read_file(argv[5], 16);
    std::vector<int32_t> pairs(T * k, -7), rows(T * k, -7), tokens(T * k, -7), offs(E + 1, -7);
    const int64_t nw = std::min<int64_t>(16, 12288 / (E + 1) - 1);  // as the launcher
    launch(1, 1, 512, [&] { moe_dispatch(T * k, k, E, nw, (const int32_t*)ex.data(), pairs.data(), rows.data(), tokens.data(), offs.data(), err); });
    write_file(argv[6], pairs.data(), pairs.size() * 4);
    write_file(argv[7], rows.data(), rows.size() * 4);
    write_file(argv[8], tokens.data(), tokens.size() * 4);
    write_file(argv[9], offs.data(), offs.size() * 4);
  } else if (cmd == "gmm" || cmd == "gmmdx") {
    const bool dxmode = cmd == "gmmdx";
    const std::string xdt = argv[2], wdt = argv[3];
    const int64_t M = I(4), N = I(5), K = I(6), E = I(7);
    auto x = read_file(argv[8], 16), w = read_file(argv[9], 16), off = read_file(argv[10], 16);
    const size_t osz = xdt == "bf16" ? 2 : 4;
    std::vector<unsigned char> out(M * N * osz, 0xAB);
    const unsigned gx = (unsigned)((N + 63) / 64), gy = (unsigned)((M + 63) / 64 + E + 2);
    launch(gx, gy, 256, [&] {
      const void *xp = x.data(), *wp = w.data();
      const int32_t* op = (const int32_t*)off.data();
      // forward: W[e] [N, K] row-major; "dx": out [M, N] = x [M, K] · W[e] with W[e] stored [K, N] (the backward)
      const int64_t sc = dxmode ? 1 : K, si = dxmode ? N : 1, es = N * K;
      if (xdt == "f32" && wdt == "f32") grouped_matmul_f32_f32(M, N, K, E, out.data(), xp, wp, op, sc, si, es);
      else if (xdt == "f32") grouped_matmul_f32_bf16(M, N, K, E, out.data(), xp, wp, op, sc, si, es);
      else if (wdt == "f32") grouped_matmul_bf16_f32(M, N, K, E, out.data(), xp, wp, op, sc, si, es);
      else grouped_matmul_bf16_bf16(M, N, K, E, out.data(), xp, wp, op, sc, si, es);
    });
    write_file(argv[11], out.data(), out.size());
  } else if (cmd == "gmmdw") {
    const std::string xdt = argv[2], odt = argv[3];
    const int64_t M = I(4), N = I(5), K = I(6), E = I(7);
    auto g = read_file(argv[8], 16), x = read_file(argv[9], 16), off = read_file(argv[10], 16);
    std::vector<unsigned char> out(E * N * K * (odt == "bf16" ? 2 : 4), 0xAB);
    launch((unsigned)(E * ((K + 63) / 64)), (unsigned)((N + 63) / 64), 256, [&] {
      const int32_t* op = (const int32_t*)off.data();
      if (xdt == "f32" && odt == "f32") grouped_matmul_dw_f32_f32(M, N, K, out.data(), g.data(), x.data(), op);
      else if (xdt == "f32") grouped_matmul_dw_f32_bf16(M, N, K, out.data(), g.data(), x.data(), op);
      else if (odt == "f32") grouped_matmul_dw_bf16_f32(M, N, K, out.data(), g.data(), x.data(), op);
      else grouped_matmul_dw_bf16_bf16(M, N, K, out.data(), g.data(), x.data(), op);
    });
    write_file(argv[11], out.data(), out.size());
  } else if (cmd == "gmmtc") {
    // the tensor-core kernels, bf16 only: "fwd" W[e] stored [N, K]; "dx" W[e] stored [K, N] (ldmatrix.trans)
    const bool dxmode = std::string(argv[2]) == "dx";
    const int64_t M = I(3), N = I(4), K = I(5), E = I(6);
    auto x = read_file(argv[7], 16), w = read_file(argv[8], 16), off = read_file(argv[9], 16);
    std::vector<unsigned char> out(M * N * 2, 0xAB);
    launch((unsigned)((N + 127) / 128), (unsigned)((M + 127) / 128 + E + 2), 256, [&] {
      const int64_t sc = dxmode ? 1 : K, si = dxmode ? N : 1;
      if (dxmode) grouped_matmul_tc_bf16_nmajor(M, N, K, E, out.data(), x.data(), w.data(), (const int32_t*)off.data(), sc, si, N * K);
      else grouped_matmul_tc_bf16(M, N, K, E, out.data(), x.data(), w.data(), (const int32_t*)off.data(), sc, si, N * K);
    });
    write_file(argv[10], out.data(), out.size());
  } else if (cmd == "gmmdwtc") {
    const std::string odt = argv[2];
    const int64_t M = I(3), N = I(4), K = I(5), E = I(6);
    auto g = read_file(argv[7], 16), x = read_file(argv[8], 16), off = read_file(argv[9], 16);
    std::vector<unsigned char> out(E * N * K * (odt == "bf16" ? 2 : 4), 0xAB);
    launch((unsigned)(E * ((K + 127) / 128)), (unsigned)((N + 127) / 128), 256, [&] {
      if (odt == "f32") grouped_matmul_dw_tc_bf16_f32(M, N, K, out.data(), g.data(), x.data(), (const int32_t*)off.data());
      else grouped_matmul_dw_tc_bf16_bf16(M, N, K, out.data(), g.data(), x.data(), (const int32_t*)off.data());
    });
    write_file(argv[10], out.data(), out.size());
  } else if (cmd == "gmm8") {
    const std::string odt = argv[2];
    const int64_t M = I(3), N = I(4), K = I(5), E = I(6);
    auto q = read_file(argv[7], 16), sq = read_file(argv[8], 16), w8 = read_file(argv[9], 16), sw = read_file(argv[10], 16), off = read_file(argv[11], 16);
    const size_t osz = odt == "bf16" ? 2 : 4;
    std::vector<unsigned char> out(M * N * osz, 0xAB);
    const unsigned gx = (unsigned)((N + 63) / 64), gy = (unsigned)((M + 63) / 64 + E + 2);
    launch(gx, gy, 256, [&] {
      const int32_t* op = (const int32_t*)off.data();
      if (odt == "f32") grouped_matmul_fp8_f32(M, N, K, E, out.data(), q.data(), (const float*)sq.data(), w8.data(), (const float*)sw.data(), op);
      else grouped_matmul_fp8_bf16(M, N, K, E, out.data(), q.data(), (const float*)sq.data(), w8.data(), (const float*)sw.data(), op);
    });
    write_file(argv[12], out.data(), out.size());
  } else if (cmd == "combine") {
    const int64_t T = I(2), k = I(3), D = I(4);
    const int odt = atoi(argv[5]), ydt = atoi(argv[6]), sdt = atoi(argv[7]);
    auto ys = read_file(argv[8], 16), w = read_file(argv[9], 16), rows = read_file(argv[10], 16), sh = read_file(argv[11], 16);
    std::vector<unsigned char> out(T * D * (odt == 2 ? 2 : 4), 0xAB);
    const unsigned grid = (unsigned)std::max<int64_t>(1, std::min<int64_t>((T * D + 255) / 256, 3));  // few CTAs: exercises the grid stride
    launch(grid, 1, 256, [&] { moe_combine(T, k, D, out.data(), odt, ys.data(), ydt, (const float*)w.data(), (const int32_t*)rows.data(),
                                           sh.empty() ? nullptr : sh.data(), sdt, err); });
    write_file(argv[12], out.data(), out.size());
  } else {
    fprintf(stderr, "unknown command %s\n", argv[1]);
    return 2;
  }
  print_err(err_rec);
  return 0;
}
