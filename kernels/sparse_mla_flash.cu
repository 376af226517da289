// sparse_mla_flash_<src>: sparse MLA in one pass over the selected keys (online softmax), for bf16 queries
// of few heads — the mid config's absorbed-MQA prefill and a small model's decode — over bf16 or f32 rows
// (a bf16 or f32 cache; f32 decoded to bf16 on the way into shared memory, mla_rows.cuh). The FP8 cache
// takes the gathered GEMMs (the host says why). src/backend/cuda/sparse-mla.ts takes this kernel where it
// applies (sparseMlaTune.flash); the two-pass kernel in sparse_mla_gemm.cu ("the fused few-head path")
// stays for shapes outside its limits and as the switch's other side.
//
// Why one pass. The two-pass kernel reproduces the reference's softmax bits given the scores (p rounded
// to bf16 after dividing by the final sum), so it must gather every selected key row twice: all D
// columns for the scores, then the dv value columns once the sums are known — 2 176 bytes a key at
// D 576, dv 512. Its time is that gather from L2 (44.8 TFLOPS at 16 heads on an H100, call 2 of
// 2026-12-06, ~2.8 TB/s of gathered rows). Here each key row is gathered once (1 152 bytes) and its
// value columns are read from the same shared-memory tile as its key columns:
//   per tile of TK = 64 keys (rows idx[t0 .. t0 + 63] in shared memory, all D columns):
//     s = rnd_bf16(q·gᵀ);  x = rnd_bf16(s·scale), −inf for a hole          (the two-pass kernel's x)
//     m' = max(m, max x);  α = exp(m − m');  p = rnd_bf16(exp(x − m'))      (−inf rows: α = 1, p = 0)
//     l' = α·l + Σ p;  O' = α·O + p·g[:, :dv]                                (f32 accumulators)
//   out = rnd_bf16(O / l), lse = m + ln l   (out = 0, lse = −inf when no entry is valid)
// Numerics against the reference's exp(x − m)/l rounded to bf16 then multiplied: the same x; p is rounded
// before its normalisation instead of after, so each product term differs by at most a bf16 rounding
// of p — the op tests' bf16 bounds (relative error 1e-2 against f64), as the gathered-GEMM path, which
// rounds its scores in another order, is held to.
//
// Work split, one CTA of 8 warps per (query n, group of 16 heads):
//   scores:  warp w owns keys w·8 .. w·8 + 7 of the tile, one m16n8k16 chain over D (ldmatrix, 32
//            columns a load); the 16 × 8 results go to S [16][64] f32 in shared memory;
//   softmax: warp w updates heads 2w, 2w + 1 (two scores a lane), writes P [16][64] bf16 and α;
//   values:  warp w owns output columns [w·dv/8, (w+1)·dv/8) (8 n-tiles at dv 512, 32 f32 registers),
//            rescales them by α and adds P·V over the tile's 4 k16 steps (V read transposed by ldmatrix).
// Pipeline: two tile buffers; tile j + 1's rows are requested (cp.async, 18 16-byte pieces a thread)
// right after the barrier that starts tile j, so one tile is always in flight behind the products.
// Shared memory at D 576, k 2 048: Q 18.3 KB + 2 × 73 KB tiles + S 4.3 KB + P 2.3 KB + indices 8 KB
// ≈ 183 KB: one CTA per SM. Tiles past a row's last valid entry are skipped (a causal prefill's early
// queries select fewer keys than k; the top-k pads its rows with −1 at the end).
// Limits (the host checks them and otherwise takes another path): D % 32 == 0, D ≤ 576, dv % 128 == 0,
// dv ≤ 512, dv ≤ D, k ≤ 2 048.
#include "mla_rows.cuh"

#define FL_HG 16
#define FL_NT 256
#define FL_TK 64
#define FL_DVMAX 512
#define FL_OT (FL_DVMAX / 64)  // output n-tiles of 8 columns a warp holds at most

template <int SRC>
__device__ void sparse_mla_flash(int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale,
                                 uint16_t* out, float* lse, const uint16_t* q, const void* kv, const int32_t* idx,
                                 int64_t tps = 0, float* po = nullptr, float* plse = nullptr) {
  extern __shared__ __align__(16) uint16_t fsm[];
  const int Dp = (int)D + 8;        // row pitch: an odd number of 16-byte units, so ldmatrix rows hit distinct banks
  // this CTA's selection entries [t0, t0 + kt): all of them, or split blockIdx.z's tps tiles (split mode)
  const int kall = (int)((k + FL_TK - 1) / FL_TK) * FL_TK;
  const int t0 = po ? min((int)(blockIdx.z * tps * FL_TK), kall) : 0;
  const int kt = po ? min((int)(tps * FL_TK), kall - t0) : kall;
  uint16_t* Qs = fsm;                              // [16][Dp]
  uint16_t* Ks = Qs + FL_HG * Dp;                  // 2 × [TK][Dp]
  uint16_t* Ps = Ks + 2 * FL_TK * Dp;              // [16][TK + 8] bf16
  float* Ss = (float*)(Ps + FL_HG * (FL_TK + 8));  // [16][TK + 4]
  float* Al = Ss + FL_HG * (FL_TK + 4);            // [16] α of the tile
  float* Ml = Al + FL_HG;                          // [16] running max
  float* Ll = Ml + FL_HG;                          // [16] running sum
  int32_t* Is = (int32_t*)(Ll + FL_HG);            // [kt]
  __shared__ int last;
  const int64_t n = blockIdx.x;
  const int h0 = blockIdx.y * FL_HG;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int32_t* ir = idx + n * k + t0;
  const int64_t kr = k - t0;  // entries of the row from t0 on

  load_head_rows<FL_NT>(Qs, Dp, q, n, H, h0, (int)D);
  if (threadIdx.x < FL_HG) {
    Ml[threadIdx.x] = -INFINITY;
    Ll[threadIdx.x] = 0.0f;
  }
  load_selection<FL_NT>(Is, ir, kt, kr, rows, &last);
  __syncthreads();
  const int ntile = (last + FL_TK) / FL_TK;  // tiles up to the last valid entry (0 when there is none)

  // tile j's rows into buffer j % 2 (bf16 rows by cp.async, in flight until the next wait; f32 rows decoded
  // through registers, visible after the barrier that starts tile j)
  auto issue = [&](int j) {
    if (j < ntile) gather_stage<SRC, FL_NT>(Ks + (j & 1) * FL_TK * Dp, Dp, FL_TK, 0, (int)D, (int)D, (int)dv, W, kv, Is, j * FL_TK);
    if (SRC == SRC_BF16) asm volatile("cp.async.commit_group;\n" ::: "memory");
  };

  const int cw = (int)(dv >> 3);  // output columns a warp owns
  const int col0 = warp * cw;
  float o[FL_OT][4];
#pragma unroll
  for (int i = 0; i < FL_OT; i++)
#pragma unroll
    for (int u = 0; u < 4; u++) o[i][u] = 0.0f;

  issue(0);
  for (int j = 0; j < ntile; j++) {
    // tile j landed (this thread's copies, then everybody's), and every warp is done with tile j − 1,
    // whose buffer tile j + 1 now fills
    if (SRC == SRC_BF16) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    issue(j + 1);
    const uint16_t* Kt = Ks + (j & 1) * FL_TK * Dp;

    // scores of keys warp·8 .. +7
    float acc[4];
    scores16x8(acc, Qs, Dp, Kt, Dp, warp * 8, (int)D, lane);
    // acc: heads g and g + 8, keys warp·8 + tig·2 + {0, 1}
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const int h = g + (u >> 1) * 8;
      const int t = warp * 8 + tig * 2 + (u & 1);
      float x = -INFINITY;
      if (Is[j * FL_TK + t] >= 0) x = mla_score_x(acc[u], scale);
      Ss[h * (FL_TK + 4) + t] = x;
    }
    __syncthreads();

    // online softmax, heads 2·warp and 2·warp + 1
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
      const int h = warp * 2 + hh;
      const float x0 = Ss[h * (FL_TK + 4) + lane], x1 = Ss[h * (FL_TK + 4) + lane + 32];
      const float mo = Ml[h];
      const float mn = fmaxf(mo, warp_max(fmaxf(x0, x1)));
      float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f;
      if (mn != -INFINITY) {
        alpha = mo == -INFINITY ? 0.0f : __expf(mo - mn);
        p0 = x0 == -INFINITY ? 0.0f : bf16_bits_to_f32(f32_to_bf16_bits(__expf(x0 - mn)));
        p1 = x1 == -INFINITY ? 0.0f : bf16_bits_to_f32(f32_to_bf16_bits(__expf(x1 - mn)));
      }
      const float ps = warp_sum(p0 + p1);
      Ps[h * (FL_TK + 8) + lane] = f32_to_bf16_bits(p0);
      Ps[h * (FL_TK + 8) + lane + 32] = f32_to_bf16_bits(p1);
      if (lane == 0) {
        Al[h] = alpha;
        Ml[h] = mn;
        Ll[h] = Ll[h] * alpha + ps;
      }
    }
    __syncthreads();

    // O = α·O + P·V over the tile's keys, this warp's columns
    const float a_lo = Al[g], a_hi = Al[g + 8];
#pragma unroll
    for (int i = 0; i < FL_OT; i++) {
      o[i][0] *= a_lo;
      o[i][1] *= a_lo;
      o[i][2] *= a_hi;
      o[i][3] *= a_hi;
    }
#pragma unroll
    for (int kk = 0; kk < FL_TK; kk += 16) {
      uint32_t a[4];
      ldmatrix_x4(a, Ps + (lane & 15) * (FL_TK + 8) + kk + ((lane >> 4) << 3));
      const int qd = lane >> 3, r = lane & 7;
      const uint16_t* vb = Kt + (kk + ((qd & 1) << 3) + r) * Dp + col0 + ((qd >> 1) << 3);
#pragma unroll
      for (int i = 0; i < FL_OT; i += 2) {
        if (i * 8 < cw) {
          uint32_t t[4];
          ldmatrix_x4_trans(t, vb + i * 8);
          mma_bf16_16816(o[i], a, t[0], t[1]);
          mma_bf16_16816(o[i + 1], a, t[2], t[3]);
        }
      }
    }
  }
  if (SRC == SRC_BF16) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();

  // o[i]: heads g and g + 8, columns col0 + i·8 + tig·2 + {0, 1}
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int hl = g + half * 8;
    const int h = h0 + hl;
    if (h >= H) continue;
    const float l = Ll[hl];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < FL_OT; i++) {
      if (i * 8 < cw) {
        const int c = col0 + i * 8 + tig * 2;
        if (po) *(float2*)(po + (n * H + h) * dv + c) = make_float2(o[i][half * 2] * inv, o[i][half * 2 + 1] * inv);
        else *(uint32_t*)(out + (n * H + h) * dv + c) = pack2(f32_to_bf16_bits(o[i][half * 2] * inv), f32_to_bf16_bits(o[i][half * 2 + 1] * inv));
      }
    }
    if (warp == 0 && tig == 0) (po ? plse : lse)[n * H + h] = l > 0.0f ? Ml[hl] + logf(l) : -INFINITY;
  }
}

MLA_SOURCE_ENTRIES(sparse_mla_flash, sparse_mla_flash, FL_NT)

// Split mode (flash decoding), for few query rows: with N × ⌈H/16⌉ CTAs far below the SM count, one CTA
// walking all k keys leaves most SMs idle (one row: 0.136 ms at k 2 048 on an H100, where the gathered
// GEMMs took 0.039). Split, 16 rows took 0.048 ms (unsplit 0.139, GEMMs 0.069) and 64 rows 0.084 (0.141,
// 0.205), but one row 0.068: the combine below, a warp per row and head with one load per lane in flight
// over the splits, then costs more than the split saves, so the host splits from 16 rows (sparseMlaTune,
// H100, 2026-12-06). grid.z = S splits of tps tiles each; split z writes its own normalised partial
// o_z = O_z / l_z (f32) and lse_z = m_z + ln l_z over its keys to po [S, N, H, dv], plse [S, N, H], and
// sparse_mla_split_combine merges them:
//   lse = ln Σ_z e^{lse_z},   out = rnd_bf16(Σ_z e^{lse_z − lse} · o_z)    (out = 0, lse = −inf with no valid key)
// which is Σ_z e^{m_z}·O_z / Σ_z e^{m_z}·l_z, the one-pass result up to each split's p being rounded against
// its own running max — the same class of difference as the one-pass kernel's against the reference.
#define FLASH_SPLIT(name, SRC)                                                                                         \
  extern "C" __global__ void __launch_bounds__(FL_NT) sparse_mla_flash_split_##name(                                \
      int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale, const uint16_t* q, \
      const void* src, const int32_t* idx, int64_t tps, float* po, float* plse) {                                   \
    const int64_t z = blockIdx.z;                                                                                   \
    sparse_mla_flash<SRC>(N, H, D, dv, k, rows, W, scale, nullptr, nullptr, q, src, idx, tps, po + z * N * H * dv, plse + z * N * H); \
  }
FLASH_SPLIT(bf16, SRC_BF16)
FLASH_SPLIT(f32, SRC_F32)

// One warp per (row n, head h): lane z < S holds lse_z; the warp's max and Σ e^{lse_z − max} by shuffles;
// each lane then sums its output columns (c = lane, lane + 32, …) over the S partials in z order.
extern "C" __global__ void sparse_mla_split_combine(int64_t NH, int64_t dv, int64_t S, const float* po, const float* plse, uint16_t* out, float* lse) {
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= NH) return;
  const float lz = lane < S ? plse[lane * NH + r] : -INFINITY;
  const float m = warp_max(lz);
  if (m == -INFINITY) {
    for (int64_t c = lane; c < dv; c += 32) out[r * dv + c] = 0;
    if (lane == 0) lse[r] = -INFINITY;
    return;
  }
  const float wz = lz == -INFINITY ? 0.0f : __expf(lz - m);
  const float L = warp_sum(wz);
  for (int64_t c = lane; c < dv; c += 32) {
    float a = 0.0f;
    for (int z = 0; z < S; z++) {
      const float w = __shfl_sync(0xffffffffu, wz, z);
      if (w != 0.0f) a = fmaf(w, po[(z * NH + r) * dv + c], a);
    }
    out[r * dv + c] = f32_to_bf16_bits(a / L);
  }
  if (lane == 0) lse[r] = m + logf(L);
}
