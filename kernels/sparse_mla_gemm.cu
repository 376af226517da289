// The tensor-core path of sparse MLA in bf16 (src/backend/cuda/sparse-mla.ts runs it for bf16 queries):
// the selected key rows are gathered into a dense bf16 block, and the two products become batched
// cuBLASLt GEMMs, one matrix per query — all H heads of a query share its k selected rows, so per query
//   S = q (H × D) · Gᵀ (D × k)          scores, bf16 out of an f32 accumulation
//   P = softmax(S · scale) over valid entries      (this file: sparse_softmax_lse)
//   out = P (H × k) · G[:, :dv] (k × dv)            bf16 out of an f32 accumulation
// with G [k, D] the query's gathered rows (this file: mla_gather_rows). At H = 128, k = 2048, D = 576 both
// GEMMs are tensor-core sized (M = 128), where the CUDA-core kernel in sparse_mla.cu measured 2.6–5.5
// TFLOPS on an H100 (2026-12-05). Numerics against the CPU reference: the score is rounded once to bf16
// (the reference rounds its latent and RoPE halves separately, then the scaled product), p is rounded to
// bf16 as the reference's bf16 softmax output is; both within the bf16 tolerance of the op tests.
//
// mla_gather_rows_<src>: G[e, :] = key row idx[e] decoded to bf16, zeros for a hole (idx < 0 or ≥ rows).
//   One warp per entry e; lane l writes 8 consecutive columns c = 8·(l + 32·i) as one 16-byte store
//   (D % 8 == 0, checked by the host). Sources: 'bf16' / 'f32' dense rows [rows, D] (f32 rounded to nearest
//   even bf16), 'fp8' the 656-byte FlashMLA cache rows (e4m3 · power-of-two scale is exact in bf16).
// sparse_softmax_lse: one warp per (query n, head h) row of k scores, in place:
//   x_t = rnd_bf16(s_t · scale) for valid entries, −inf for holes; m = max x; l = Σ exp(x − m);
//   p_t = rnd_bf16(exp(x_t − m) / l); lse = m + ln l (natural log), −inf with p = 0 when no entry is valid.
#include "mla_rows.cuh"

template <int SRC>
__device__ void mla_gather_rows(int64_t E, int64_t D, int64_t dv, int64_t rows, int64_t W, uint16_t* G, const void* src, const int32_t* idx) {
  const int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (e >= E) return;
  const int32_t r = idx[e];
  const bool hole = r < 0 || (int64_t)r >= rows;
  uint16_t* g = G + e * D;
  for (int c = 8 * lane; c < (int)D; c += 256) {
    float f[8];
    if (hole) {
#pragma unroll
      for (int u = 0; u < 8; u++) f[u] = 0.0f;
    } else {
      row8<SRC>(src, r, c, (int)D, (int)dv, W, f);
    }
    *(Vec<__nv_bfloat16, 8>*)(g + c) = pack_vec<__nv_bfloat16, 8>(f);
  }
}

#define GATHER(name, SRC)                                                                                     \
  extern "C" __global__ void __launch_bounds__(256) mla_gather_rows_##name(                                  \
      int64_t E, int64_t D, int64_t dv, int64_t rows, int64_t W, uint16_t* G, const void* src, const int32_t* idx) { \
    mla_gather_rows<SRC>(E, D, dv, rows, W, G, src, idx);                                                    \
  }
GATHER(bf16, SRC_BF16)
GATHER(f32, SRC_F32)
GATHER(fp8, SRC_FP8)

// S [N, H, k] bf16 (in: scores, out: probabilities), idx [N, k], lse [N, H] f32.
extern "C" __global__ void __launch_bounds__(256) sparse_softmax_lse(int64_t N, int64_t H, int64_t k, int64_t rows, double scale,
                                                                     uint16_t* S, float* lse, const int32_t* idx) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= N * H) return;
  const int64_t n = row / H;
  uint16_t* s = S + row * k;
  const int32_t* ir = idx + n * k;
  auto x_of = [&](int64_t t) -> float {
    const int32_t r = ir[t];
    if (r < 0 || (int64_t)r >= rows) return -INFINITY;
    return bf16_score_x(s[t], scale);
  };
  float m = -INFINITY;
  for (int64_t t = lane; t < k; t += 32) m = fmaxf(m, x_of(t));
  m = warp_max(m);
  float l = 0.0f;
  if (m != -INFINITY)
    for (int64_t t = lane; t < k; t += 32) {
      const float x = x_of(t);
      if (x != -INFINITY) l += __expf(x - m);
    }
  l = warp_sum(l);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t t = lane; t < k; t += 32) {
    const float x = x_of(t);
    s[t] = f32_to_bf16_bits(x == -INFINITY ? 0.0f : __expf(x - m) * inv);
  }
  if (lane == 0) lse[row] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// ---- the fused few-head path -------------------------------------------------------------------------
// sparse_mla_fused_<src>: the same math as the three steps above for one query and a group of 16 heads
// per CTA, with no gathered block in global memory. At 16 heads (the mid config, the absorbed-MQA prefill
// and every decode of a small model) the batched GEMMs above have 16-row matrices while each query still
// writes and reads its k·D gathered bf16 values (2.4 MB at k = 2048, D = 576). Here the key rows are
// gathered stage by stage into shared memory, where the tensor cores (mma.sync m16n8k16, bf16 in, f32
// accumulate: a head group is one 16-row tile) read them:
//   pass 1, per tile of 64 keys:  s = rnd_bf16(q·gᵀ);  x = rnd_bf16(s·scale), −inf for a hole
//                                  into X [16, k] in shared memory (64 KB at k = 2048)
//   softmax, one warp per head:    m = max x;  l = Σ exp(x − m);  p = rnd_bf16(exp(x − m) / l) in place,
//                                  lse = m + ln l  (the lanes' order and the shuffles of sparse_softmax_lse,
//                                  so m, l and p are its bits given the same scores)
//   pass 2, per tile of 32 keys:  O += p·g[:, :dv]  (the keys gathered again, dv columns)
//   out = rnd_bf16(O)
// The score of one (head, key) is an f32 sum over D in another order than cuBLASLt's before its bf16
// rounding, so a score on a bf16 midpoint may round the other way: the op tests' bf16 tolerance.
//
// Pipeline. The kernel is bound by the gather (every key row comes from L2, ~37 KB a stage, against
// ~0.6 MFLOP of mma a stage), so what matters is that gathers are always in flight: a ring of FUSED_NS
// = 3 stage buffers, and while the tensor cores work on stage i, stages i + 1 and i + 2 are being
// copied. The first version waited for each 64-key tile (cp.async.wait_all, a barrier) before any of
// its products, so copies and products never overlapped. A stage is one of
//   pass 1: 64 keys × one half of D (columns [0, Dh) or [Dh, D), Dh = 16·⌈D/32⌉), two stages a key
//           tile; warp w keeps the 16 × 8 accumulator of keys w·8 .. w·8 + 7 across both halves, so
//           each score is still one chain of mma over D in column order (the bits of the first version)
//           and no partial sums are exchanged between warps (as they would be with stages of 32 keys ×
//           all of D, split over D between warps, the same 37 KB);
//   pass 2: 32 keys × dv columns; warp w owns output columns [w·dv/8, (w+1)·dv/8), two k16 steps a stage.
// Both passes are one sequence of stages, so pass 2's first stages are gathered during pass 1's last
// products and the softmax. Stage s: wait until this thread's copies of stage s are done
// (cp.async.wait_group NS − 2: one commit group a stage, empty ones included, so the count is fixed),
// one barrier (everybody's copies of stage s visible, and everybody done with stage s − 1), then issue
// stage s + NS − 1 into the buffer stage s − 1 used, then compute stage s: one barrier a stage. Holes
// and entries past k are zero-filled by plain 16-byte stores, made visible by the same barrier. The f32
// source decodes through registers, so its stages load synchronously in the same slot.
// Three buffers rather than two: two stages in flight cover the barrier and the products; the shared
// memory (Q 18 KB + 3 × 37 KB + X 64 KB + indices 8 KB = 202 KB at D 576, k 2 048) still leaves one
// CTA per SM, as the first version's 159 KB did (two CTAs would need ≤ 114 KB each).
// Shared rows are padded by 8 bf16 (16 bytes, an odd count of 16-byte units a row) so that the eight rows
// a fragment load touches fall in different banks. The key indices are staged once in shared memory, −1
// for a hole (idx < 0 or ≥ rows) and past k, so no copy waits on a global index load. Limits (the host
// falls back to the GEMM path outside them): D % 16 == 0 and D ≤ 576, dv % 64 == 0 and dv ≤ 512, k ≤ 2048.
// Measured (bench/sparse-mla-fused.ts, H100, 16 heads, D 576), the first, unpipelined version: 1.11–1.29×
// the gathered GEMMs from 128 query rows up to 4 096 (~28 TFLOPS), 0.24–0.73× at 16–64 rows, where one
// CTA per row leaves most SMs idle. The pipelined version (same bench, H100, 2026-12-06, k 2 048):
// 1.77–1.82× the gathered GEMMs from 256 to 4 096 rows (44.8 TFLOPS at 4 096), 1.00× at 64 rows
// (docs/benchmarks.md). The host now takes the one-pass kernel (sparse_mla_flash.cu, ~1.5× this one) where
// its layout fits, and this one for the other bf16/f32 shapes, both from 64 rows (sparseMlaTune).
#define FUSED_HG 16
#define FUSED_NT 256
#define FUSED_DVMAX 512
// keys of a pass-1 stage (half of D), of a pass-2 stage (dv columns); stage buffers in the ring
#define FUSED_TK1 64
#define FUSED_TK2 32
#define FUSED_NS 3
// output n-tiles of 8 columns a warp holds: dv/8 columns per warp at most FUSED_DVMAX/8
#define FUSED_OTILES (FUSED_DVMAX / 64)

template <int SRC>
__device__ void sparse_mla_fused(int64_t N, int64_t H, int64_t D, int64_t dv, int64_t k, int64_t rows, int64_t W, double scale,
                                 uint16_t* out, float* lse, const uint16_t* q, const void* src, const int32_t* idx) {
  extern __shared__ __align__(16) uint16_t fsm[];
  const int Dp = (int)D + 8;
  const int ksteps = (int)(D >> 4);
  const int ks0 = (ksteps + 1) >> 1;  // k16 steps of pass 1's first half
  const int Dh = ks0 << 4;
  const int ld1 = Dh + 8, ld2 = (int)dv + 8;
  const int stage = max(FUSED_TK1 * ld1, FUSED_TK2 * ld2);
  const int kt = (int)((k + FUSED_TK1 - 1) / FUSED_TK1) * FUSED_TK1;
  const int kp = kt + 8;
  uint16_t* Qs = fsm;                           // [16][Dp]
  uint16_t* Bs = Qs + FUSED_HG * Dp;            // FUSED_NS × stage
  uint16_t* Xs = Bs + FUSED_NS * stage;         // [16][kp]
  int32_t* Is = (int32_t*)(Xs + FUSED_HG * kp);  // [kt]
  const int64_t n = blockIdx.x;
  const int h0 = blockIdx.y * FUSED_HG;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int32_t* ir = idx + n * k;
  const int n1 = 2 * (kt / FUSED_TK1);                     // pass-1 stages
  const int n2 = (int)((k + FUSED_TK2 - 1) / FUSED_TK2);  // pass-2 stages

  // the head group's queries, zero rows past H; the key indices, −1 for a hole and past k
  for (int e = threadIdx.x; e < FUSED_HG * (int)(D >> 3); e += FUSED_NT) {
    const int h = e / (int)(D >> 3);
    const int c = (e - h * (int)(D >> 3)) << 3;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (h0 + h < H) v = *(const uint4*)(q + (n * H + h0 + h) * D + c);
    *(uint4*)(Qs + h * Dp + c) = v;
  }
  for (int t = threadIdx.x; t < kt; t += FUSED_NT) {
    const int32_t r = t < k ? ir[t] : -1;
    Is[t] = r < 0 || (int64_t)r >= rows ? -1 : r;
  }
  __syncthreads();

  auto issue = [&](int s) {
    uint16_t* dst = Bs + (s % FUSED_NS) * stage;
    if (s < n1) {
      const int half = s & 1;
      gather_stage<SRC, FUSED_NT>(dst, ld1, FUSED_TK1, half * Dh, half ? (int)D - Dh : Dh, (int)D, (int)dv, W, src, Is, (s >> 1) * FUSED_TK1);
    } else if (s < n1 + n2) {
      gather_stage<SRC, FUSED_NT>(dst, ld2, FUSED_TK2, 0, (int)dv, (int)D, (int)dv, W, src, Is, (s - n1) * FUSED_TK2);
    }
    if (SRC == SRC_BF16) asm volatile("cp.async.commit_group;\n" ::: "memory");
  };
  // stage s landed for every thread, and every warp is done with stage s − 1 (whose buffer is refilled next)
  auto ready = [&]() {
    if (SRC == SRC_BF16) asm volatile("cp.async.wait_group %0;\n" ::"n"(FUSED_NS - 2) : "memory");
    __syncthreads();
  };
  for (int s = 0; s < FUSED_NS - 1; s++) issue(s);

  // pass 1: scaled bf16 scores of every entry into Xs
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int s = 0; s < n1; s++) {
    ready();
    issue(s + FUSED_NS - 1);
    const int half = s & 1;
    const uint16_t* kb = Bs + (s % FUSED_NS) * stage + (warp * 8 + g) * ld1 + tig * 2;
    const uint16_t* qa = Qs + g * Dp + half * Dh + tig * 2;
    const int steps = half ? ksteps - ks0 : ks0;
    if (!half)
#pragma unroll
      for (int u = 0; u < 4; u++) acc[u] = 0.0f;
#pragma unroll 4
    for (int i = 0; i < steps; i++) {
      const int c0 = i << 4;
      const uint32_t a[4] = {lds32(qa + c0), lds32(qa + 8 * Dp + c0), lds32(qa + c0 + 8), lds32(qa + 8 * Dp + c0 + 8)};
      mma_bf16_16816(acc, a, lds32(kb + c0), lds32(kb + c0 + 8));
    }
    if (!half) continue;
    // acc: heads g and g + 8, keys t0 + warp·8 + tig·2 + {0, 1}
#pragma unroll
    for (int u = 0; u < 4; u++) {
      const int h = g + (u >> 1) * 8;
      const int t = (s >> 1) * FUSED_TK1 + warp * 8 + tig * 2 + (u & 1);
      float x = -INFINITY;
      if (Is[t] >= 0) x = mla_score_x(acc[u], scale);
      Xs[h * kp + t] = f32_to_bf16_bits(x);
    }
  }
  __syncthreads();

  // softmax per head row, as sparse_softmax_lse (holes are −inf in Xs: bf16 keeps −inf exactly)
  for (int h = warp; h < FUSED_HG; h += FUSED_NT / 32) {
    uint16_t* xr = Xs + h * kp;
    float m = -INFINITY;
    for (int64_t t = lane; t < k; t += 32) m = fmaxf(m, bf16_bits_to_f32(xr[t]));
    m = warp_max(m);
    float l = 0.0f;
    if (m != -INFINITY)
      for (int64_t t = lane; t < k; t += 32) {
        const float x = bf16_bits_to_f32(xr[t]);
        if (x != -INFINITY) l += __expf(x - m);
      }
    l = warp_sum(l);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t t = lane; t < k; t += 32) {
      const float x = bf16_bits_to_f32(xr[t]);
      xr[t] = f32_to_bf16_bits(x == -INFINITY ? 0.0f : __expf(x - m) * inv);
    }
    // the padded tail of the last tile holds −inf: zero probabilities there (pass 2 reads up to ⌈k/32⌉·32)
    for (int64_t t = k + lane; t < kt; t += 32) xr[t] = 0;
    if (lane == 0 && h0 + h < H) lse[n * H + h0 + h] = l > 0.0f ? m + logf(l) : -INFINITY;
  }

  // pass 2: O = P · G[:, :dv]; warp w owns columns [w·cw, (w+1)·cw), cw = dv/8 (≤ FUSED_OTILES n-tiles);
  // the first ready() also orders the softmax's writes of Xs before these reads
  const int cw = (int)(dv >> 3);
  const int ntiles = cw >> 3;
  const int col0 = warp * cw;
  float o[FUSED_OTILES][4];
#pragma unroll
  for (int i = 0; i < FUSED_OTILES; i++)
#pragma unroll
    for (int u = 0; u < 4; u++) o[i][u] = 0.0f;
  for (int s = n1; s < n1 + n2; s++) {
    ready();
    issue(s + FUSED_NS - 1);
    const int t0 = (s - n1) * FUSED_TK2;
    const uint16_t* Vs = Bs + (s % FUSED_NS) * stage;
#pragma unroll
    for (int kk = 0; kk < FUSED_TK2; kk += 16) {
      const uint16_t* pa = Xs + g * kp + t0 + kk + tig * 2;
      const uint32_t a[4] = {lds32(pa), lds32(pa + 8 * kp), lds32(pa + 8), lds32(pa + 8 * kp + 8)};
      const uint16_t* vb = Vs + (kk + tig * 2) * ld2 + col0 + g;
#pragma unroll
      for (int i = 0; i < FUSED_OTILES; i++) {
        if (i < ntiles) {
          const uint16_t* v = vb + i * 8;
          mma_bf16_16816(o[i], a, pack2(v[0], v[ld2]), pack2(v[8 * ld2], v[9 * ld2]));
        }
      }
    }
  }
  // o[i]: heads g and g + 8, columns col0 + i·8 + tig·2 + {0, 1}
#pragma unroll
  for (int i = 0; i < FUSED_OTILES; i++) {
    if (i < ntiles) {
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int h = h0 + g + half * 8;
        if (h < H) {
          const int c = col0 + i * 8 + tig * 2;
          *(uint32_t*)(out + (n * H + h) * dv + c) = pack2(f32_to_bf16_bits(o[i][half * 2]), f32_to_bf16_bits(o[i][half * 2 + 1]));
        }
      }
    }
  }
}

MLA_SOURCE_ENTRIES(sparse_mla_fused, sparse_mla_fused, FUSED_NT)
