// Tokens picked from rows of logits (contract: src/tensor/ops/pick.ts; CPU reference, bit for bit the
// engine's host sampler: src/backend/cpu/pick.ts). Per row of f32 logits z [rows, V], temperature τ
// (0: greedy, computed at τ = 1) and uniform u:
//   zmax    = max z / τ, token −1 when a z is NaN or every z is −∞
//   e_v     = exp(z_v/τ − zmax) in f64,   S = Σ_v e_v,   logZ = zmax + log S
//   token   = greedy: the first index of max z;   else: the first v with Σ_{w ≤ v} e_w > u·S
//             (the last v with e_v > 0 if rounding leaves none)
//   logprob = z_token/τ − logZ
//
// One CTA per row (grid-stride over rows). Pass 1, coalesced: each thread keeps (max, first index) over
// its strided elements; a warp shuffle and a shared-memory merge take the larger value, equal values the
// lower index, so the tie rule is the host's first-index scan whatever the thread order; a NaN sets a
// flag (it compares false, as on the host). Pass 2: thread t owns the contiguous chunk
// [t·c, (t+1)·c), c = ⌈V/threads⌉, and sums its e_v in id order; an exclusive scan of the chunk sums
// (a warp scan, then one over the warps) gives each chunk its starting mass and S. Pass 3 (τ > 0 only):
// the thread whose chunk holds the crossing walks it again from its starting mass; the lowest index
// found over the CTA is the token (chunks wholly after the crossing report their first index, so the
// minimum is the crossing's chunk). Chunked reads are uncoalesced, but a row is at most ~0.5 MB and a
// warp's lines stay in L1 over its next iterations.
// Against the host: the same e_v up to an ulp of exp (and of z/τ, taken as z·(1/τ); exact at τ = 1);
// the host sums them in id order, this kernel in chunks and a scan, so S and the starting masses differ by
// rounding (≤ V·2⁻⁵³ relative): a greedy token is exact; a drawn one differs only when u·S lies within
// that rounding of a cumulative boundary.
// Measured (H100, bench/pick-tokens.js, 2026-12-06): 64 rows × 129 280 in 141 µs greedy, 177 µs at τ 1
// (12.7× and 15.9× the time of reading the logits once at the copy bandwidth); one row of 32 000 in 50 µs
// (one CTA on one SM: latency-bound; more CTAs a row is what small batches would need).
#include "common.cuh"

constexpr int PT_THREADS = 512;
constexpr int PT_WARPS = PT_THREADS / 32;

struct Scan {
  double before, total;
};
/** Exclusive prefix sum of v over the CTA (thread order) and the sum of all. Calls __syncthreads. */
__device__ __forceinline__ Scan cta_exclusive_scan(double v, double* s_warp) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  double inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const double n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  if (lane == 31) s_warp[wid] = inc;
  __syncthreads();
  double before = 0.0, all = 0.0;
  for (int w = 0; w < PT_WARPS; w++) {
    if (w < wid) before += s_warp[w];
    all += s_warp[w];
  }
  return Scan{before + inc - v, all};
}

extern "C" __global__ void __launch_bounds__(PT_THREADS) pick_tokens_f32(int64_t rows, int64_t V, const float* __restrict__ x,
                                                                          const double* __restrict__ temperature, const double* __restrict__ uniform,
                                                                          int* __restrict__ token, double* __restrict__ logprob) {
  __shared__ float s_val[PT_WARPS];
  __shared__ int64_t s_idx[PT_WARPS];
  __shared__ double s_warp[PT_WARPS];
  __shared__ int64_t s_pick[PT_WARPS];
  __shared__ int64_t s_last[PT_WARPS];
  __shared__ int s_nan;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* z = x + row * V;
    __syncthreads();  // the previous row's readers of the shared arrays are done
    if (threadIdx.x == 0) s_nan = 0;
    // pass 1: (max, first index) and NaN
    float best = -INFINITY;
    int64_t bi = INT64_MAX;
    bool nan = false;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const float a = z[v];
      if (a > best || (a == best && v < bi)) {
        best = a;
        bi = v;
      } else if (a != a) {
        nan = true;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ob > best || (ob == best && oi < bi)) {
        best = ob;
        bi = oi;
      }
    }
    __syncthreads();  // s_nan's reset is seen
    if (nan) s_nan = 1;
    if (lane == 0) {
      s_val[wid] = best;
      s_idx[wid] = bi;
    }
    __syncthreads();
    best = s_val[0];
    bi = s_idx[0];
    for (int w = 1; w < PT_WARPS; w++) {
      if (s_val[w] > best || (s_val[w] == best && s_idx[w] < bi)) {
        best = s_val[w];
        bi = s_idx[w];
      }
    }
    const double t_in = temperature[row];
    const bool greedy = t_in == 0.0;
    const double tau = greedy ? 1.0 : t_in;
    // z/τ as z·(1/τ): within an ulp of the host's quotient (f64 division would bring ptxas's slow-path
    // subroutine and its stack frame); exact at τ = 1, so greedy rows are the host's bit for bit
    const double rt = greedy ? 1.0 : __drcp_rn(tau);
    const double zmax = (double)best * rt;
    // every thread holds the same (best, bi, s_nan): the whole CTA skips a bad row
    if (s_nan != 0 || zmax == -INFINITY) {
      if (threadIdx.x == 0) {
        token[row] = -1;
        logprob[row] = __longlong_as_double(0x7ff8000000000000ll);
      }
      continue;
    }
    // pass 2: chunk sums in id order, their exclusive scan, S; each chunk's last id of positive mass
    const int64_t c = (V + blockDim.x - 1) / blockDim.x;
    const int64_t lo = min(V, (int64_t)threadIdx.x * c), hi = min(V, lo + c);
    double part = 0.0;
    int64_t lastPos = -1;
    for (int64_t v = lo; v < hi; v++) {
      const double e = exp((double)z[v] * rt - zmax);
      part += e;
      if (e > 0.0) lastPos = v;
    }
    const Scan sc = cta_exclusive_scan(part, s_warp);
    const double start = sc.before, S = sc.total;
    int64_t pick = bi;
    if (!greedy) {
      // pass 3: the first v whose cumulative mass exceeds u·S (chunks whose end does not pass it skip)
      const double target = uniform[row] * S;
      int64_t mine = INT64_MAX;
      if (start + part > target) {
        double cum = start;
        for (int64_t v = lo; v < hi; v++) {
          cum += exp((double)z[v] * rt - zmax);
          if (cum > target) {
            mine = v;
            break;
          }
        }
      }
      for (int o = 16; o > 0; o >>= 1) {
        mine = min(mine, (int64_t)__shfl_xor_sync(0xffffffffu, mine, o));
        lastPos = max(lastPos, (int64_t)__shfl_xor_sync(0xffffffffu, lastPos, o));
      }
      if (lane == 0) {
        s_pick[wid] = mine;
        s_last[wid] = lastPos;
      }
      __syncthreads();
      pick = INT64_MAX;
      int64_t last = -1;
      for (int w = 0; w < PT_WARPS; w++) {
        pick = min(pick, s_pick[w]);
        last = max(last, s_last[w]);
      }
      // no crossing (u·S within rounding of S): the host's fallback, the last id of positive mass (the
      // argmax has e = 1, so there is one)
      if (pick == INT64_MAX) pick = last;
    }
    if (threadIdx.x == 0) {
      const double logZ = zmax + log(S);
      token[row] = (int)pick;
      logprob[row] = (double)z[pick] * rt - logZ;
    }
  }
}
