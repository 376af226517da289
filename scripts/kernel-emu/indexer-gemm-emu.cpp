// Host driver of the emulated kernels/dsa_indexer_gemm.cu (see run-indexer-gemm.mjs), on shim/driver.h.
//   emu gather B ctxPad maxBlocks numBlocks cache.bin table.bin ctx.bin K.bin KS.bin
//   emu reduce R H Tc ldS row0 ldOut b N S.bin w.bin ks.bin ctx.bin|- start.bin|- end.bin|- out.bin rowsOut
#include "kernel.cpp"
#include "driver.h"
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "gather" && argc == 11) {
    const int64_t B = atoll(argv[2]), ctxPad = atoll(argv[3]), maxBlocks = atoll(argv[4]), numBlocks = atoll(argv[5]);
    auto cache = read_file(argv[6]), table = read_file(argv[7]), ctx = read_file(argv[8]);
    std::vector<unsigned char> K(B * ctxPad * 128, 0x55), KS(B * ctxPad * 4, 0x55);  // poisoned
    launch((unsigned)((B * ctxPad * 32 + 255) / 256), 1, 256, [&] {
      indexer_gather_keys(B, ctxPad, maxBlocks, numBlocks, cache.data(), (const int32_t*)table.data(), (const int32_t*)ctx.data(), K.data(), (float*)KS.data());
    });
    write_file(argv[9], K.data(), K.size());
    write_file(argv[10], KS.data(), KS.size());
    return 0;
  }
  if (mode == "reduce" && argc == 18) {
    const int64_t R = atoll(argv[2]), H = atoll(argv[3]), Tc = atoll(argv[4]), ldS = atoll(argv[5]), row0 = atoll(argv[6]), ldOut = atoll(argv[7]);
    const int64_t b = atoll(argv[8]), N = atoll(argv[9]);
    auto S = read_file(argv[10]), w = read_file(argv[11]), ks = read_file(argv[12]);
    auto ctx = read_file(argv[13]), st = read_file(argv[14]), en = read_file(argv[15]);
    auto out = read_file(argv[16]);  // the output so far (other launches' rows stay)
    const int64_t rowsOut = atoll(argv[17]);
    if ((int64_t)out.size() != rowsOut * ldOut * 4) { fprintf(stderr, "out.bin has %zu bytes\n", out.size()); return 2; }
    launch((unsigned)((Tc + 255) / 256), (unsigned)R, 256, [&] {
      indexer_reduce(R, H, Tc, ldS, row0, ldOut, (const float*)S.data(), (const float*)w.data(), (const float*)ks.data(),
                     st.empty() ? nullptr : (const int32_t*)st.data(), en.empty() ? nullptr : (const int32_t*)en.data(),
                     ctx.empty() ? nullptr : (const int32_t*)ctx.data(), b, N, (float*)out.data());
    });
    write_file(argv[16], out.data(), out.size());
    return 0;
  }
  fprintf(stderr, "usage: emu gather ... | emu reduce ...\n");
  return 2;
}
