// Host driver of the emulated kernels/sparse_mla_bwd.cu and kernels/indexer_train.cu (see
// run-dsa-train.mjs), on the machinery of shim/driver.h (one std::thread per CUDA thread, CTAs one after
// another). Buffers are raw files; an output file that exists is read first (accumulators start from it),
// then overwritten.
//   emu smla_bwd <f32|bf16> Tq H D dv k rows scale dq dkv dout q kv out lse idx
//   emu scores_fwd <f32|bf16> Tq H D Tk N out q k w start end idx      ("-" for an absent pointer)
//   emu scores_bwd <f32|bf16> Tq H D Tk N dq dk dw dout q k w start end idx
//   emu kl <f32|bf16> Tq H D dv Tk N scale loss grad scores q kv lse start end idx
#include "kernel.cpp"  // one kernel file made host C++ (-DEMU_SMLA: sparse_mla_bwd.cu, else indexer_train.cu)
#include "driver.h"
#include <map>
static std::map<std::string, std::vector<unsigned char>> bufs;
static char* rd(const char* p) {
  if (std::string(p) == "-") return nullptr;
  return (char*)(bufs[p] = read_file(p)).data();
}
static void wr(const char* p) { write_file(p, bufs[p].data(), bufs[p].size()); }
int main(int argc, char** argv) {
  std::string mode = argv[1], dt = argv[2];
  const bool bf = dt == "bf16";
  auto I = [&](int i) { return (int64_t)atoll(argv[i]); };
  if (false) {
#ifdef EMU_SMLA
  } else if (mode == "smla_bwd") {
    int64_t Tq = I(3), H = I(4), D = I(5), dv = I(6), k = I(7), rows = I(8);
    double scale = atof(argv[9]);
    void* dq = rd(argv[10]); float* dkv = (float*)rd(argv[11]);
    auto fn = bf ? sparse_mla_bwd_bf16 : sparse_mla_bwd_f32;
    const void *g = rd(argv[12]), *q = rd(argv[13]), *kv = rd(argv[14]), *o = rd(argv[15]);
    const float* lse = (const float*)rd(argv[16]); const int32_t* ix = (const int32_t*)rd(argv[17]);
    launch((unsigned)Tq, (unsigned)((H + 15) / 16), 256, [&] { fn(Tq, H, D, dv, k, rows, scale, dq, dkv, g, q, kv, o, lse, ix); });
    wr(argv[10]); wr(argv[11]);
#else
  } else if (mode == "scores_fwd") {
    int64_t Tq = I(3), H = I(4), D = I(5), Tk = I(6), N = I(7);
    float* out = (float*)rd(argv[8]);
    auto fn = bf ? indexer_scores_fwd_bf16 : indexer_scores_fwd_f32;
    const void *q = rd(argv[9]), *k = rd(argv[10]); const float* w = (const float*)rd(argv[11]);
    const int32_t *s = (const int32_t*)rd(argv[12]), *e = (const int32_t*)rd(argv[13]), *ix = (const int32_t*)rd(argv[14]);
    launch((unsigned)Tq, (unsigned)((N + 31) / 32), 256, [&] { fn(Tq, H, D, Tk, N, out, q, k, w, s, e, ix); });
    wr(argv[8]);
  } else if (mode == "scores_bwd") {
    int64_t Tq = I(3), H = I(4), D = I(5), Tk = I(6), N = I(7);
    void* dq = rd(argv[8]); float *dk = (float*)rd(argv[9]), *dw = (float*)rd(argv[10]);
    auto fn = bf ? indexer_scores_bwd_bf16 : indexer_scores_bwd_f32;
    const float* g = (const float*)rd(argv[11]); const void *q = rd(argv[12]), *k = rd(argv[13]); const float* w = (const float*)rd(argv[14]);
    const int32_t *s = (const int32_t*)rd(argv[15]), *e = (const int32_t*)rd(argv[16]), *ix = (const int32_t*)rd(argv[17]);
    launch((unsigned)Tq, 1, 256, [&] { fn(Tq, H, D, Tk, N, dq, dk, dw, g, q, k, w, s, e, ix); });
    wr(argv[8]); wr(argv[9]); wr(argv[10]);
  } else if (mode == "kl") {
    int64_t Tq = I(3), H = I(4), D = I(5), dv = I(6), Tk = I(7), N = I(8);
    double scale = atof(argv[9]);
    float *loss = (float*)rd(argv[10]), *grad = (float*)rd(argv[11]);
    auto fn = bf ? indexer_kl_loss_bf16 : indexer_kl_loss_f32;
    const float* sc = (const float*)rd(argv[12]); const void *q = rd(argv[13]), *kv = rd(argv[14]); const float* lse = (const float*)rd(argv[15]);
    const int32_t *s = (const int32_t*)rd(argv[16]), *e = (const int32_t*)rd(argv[17]), *ix = (const int32_t*)rd(argv[18]);
    launch((unsigned)Tq, 1, 256, [&] { fn(Tq, H, D, dv, Tk, N, scale, loss, grad, sc, q, kv, lse, s, e, ix); });
    wr(argv[10]); wr(argv[11]);
#endif
  } else { fprintf(stderr, "unknown mode %s\n", mode.c_str()); return 2; }
}
