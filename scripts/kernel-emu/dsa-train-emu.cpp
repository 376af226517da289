// Host driver of the emulated kernels/sparse_mla_bwd.cu and kernels/indexer_train.cu (see
// run-dsa-train.mjs), built like sparse-mla-emu.cpp: one std::thread per CUDA thread of a CTA, CTAs one
// after another, __syncthreads a std::barrier over the CTA, a warp shuffle an exchange through a per-warp
// array between two barriers of its 32 threads, dynamic shared memory one global array. Buffers are raw
// files; an output file that exists is read first (accumulators start from it), then overwritten.
//   emu smla_bwd <f32|bf16> Tq H D dv k rows scale dq dkv dout q kv out lse idx
//   emu scores_fwd <f32|bf16> Tq H D Tk N out q k w start end idx      ("-" for an absent pointer)
//   emu scores_bwd <f32|bf16> Tq H D Tk N dq dk dw dout q k w start end idx
//   emu kl <f32|bf16> Tq H D dv Tk N scale loss grad scores q kv lse start end idx
#include "kernel.cpp"  // one kernel file made host C++ (-DEMU_SMLA: sparse_mla_bwd.cu, else indexer_train.cu)
#include <barrier>
#include <thread>
#include <vector>
#include <string>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <memory>
thread_local dim3s threadIdx, blockIdx;
dim3s blockDim, gridDim;
alignas(16) float g_smem[1 << 16];
static std::unique_ptr<std::barrier<>> g_bar;
struct Warp { std::unique_ptr<std::barrier<>> bar; double buf[32]; };
static Warp g_w[32];
void __syncthreads() { g_bar->arrive_and_wait(); }
template <class V> static V shfl(V v, int o) {
  Warp& w = g_w[threadIdx.x / 32]; const int l = threadIdx.x % 32;
  w.buf[l] = (double)v; w.bar->arrive_and_wait(); V r = (V)w.buf[l ^ o]; w.bar->arrive_and_wait(); return r;
}
float __shfl_xor_sync(unsigned, float v, int o) { return shfl(v, o); }
double __shfl_xor_sync(unsigned, double v, int o) { return shfl(v, o); }
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
static std::map<std::string, std::vector<char>> bufs;
static char* rd(const char* p) {
  if (std::string(p) == "-") return nullptr;
  std::vector<char>& v = bufs[p];
  FILE* f = fopen(p, "rb");
  if (!f) { fprintf(stderr, "missing %s\n", p); exit(2); }
  char b[65536]; size_t n;
  while ((n = fread(b, 1, sizeof b, f)) > 0) v.insert(v.end(), b, b + n);
  fclose(f);
  return v.data();
}
static void wr(const char* p) { std::vector<char>& v = bufs[p]; FILE* f = fopen(p, "wb"); fwrite(v.data(), 1, v.size(), f); fclose(f); }
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
