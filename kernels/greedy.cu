// Greedy decoding's pick (contract and CPU reference: src/tensor/ops/greedy.ts, src/backend/cpu/greedy.ts):
// per row of f32 logits z [rows, V]
//   token   = the first index of max z                     (−1 when a z is NaN or every z is −∞)
//   logprob = max z − (max z + log Σ_v exp(z_v − max z))   in f64, the host sampler's own expression
//
// One CTA per row (grid-stride over rows), two passes over the row:
//   1. each thread keeps (max, first index) over its strided elements, then a warp-shuffle and a
//      shared-memory merge: larger value wins, equal values → lower index, so the tie rule is the host's
//      first-index scan whatever the thread order; a NaN sets a flag (it compares false, as on the host);
//   2. each thread sums exp((double)z − zmax) in f64 over its elements, then the same tree reduction.
//      The host adds the same terms in id order: the sums differ only by rounding (≤ V·2⁻⁵³ relative,
//      terms in [0, 1]), so the logprobs agree to about V·2⁻⁵² — the token, a comparison, is exact.
// Pass 2 re-reads the row from L2 (128 KB at V = 32 000, 517 KB at 129 280). Cost: 2·V·4 bytes a row from
// memory/L2 and V f64 exps; at 64 rows × 32 000 that is 8 MB, a few microseconds of an H100's bandwidth,
// against the 8 MB device→host copy and two host passes a row it replaces.
#include "common.cuh"

constexpr int GP_THREADS = 512;

extern "C" __global__ void __launch_bounds__(GP_THREADS) greedy_pick_f32(int64_t rows, int64_t V, const float* __restrict__ x,
                                                                          int* __restrict__ token, double* __restrict__ logprob) {
  __shared__ float s_val[GP_THREADS / 32];
  __shared__ int64_t s_idx[GP_THREADS / 32];
  __shared__ double s_sum[GP_THREADS / 32];
  __shared__ int s_nan;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* z = x + row * V;
    __syncthreads();  // the previous row's readers of the shared arrays are done
    if (threadIdx.x == 0) s_nan = 0;
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
    // (max, first index) merge: the candidate pairs are each thread's first maximum of its own elements
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
    for (int w = 1; w < nw; w++) {
      if (s_val[w] > best || (s_val[w] == best && s_idx[w] < bi)) {
        best = s_val[w];
        bi = s_idx[w];
      }
    }
    const bool bad = s_nan != 0 || best == -INFINITY;
    // every thread holds the same (best, bi, bad): the sum below runs or is skipped by the whole CTA
    if (bad) {
      if (threadIdx.x == 0) {
        token[row] = -1;
        logprob[row] = __longlong_as_double(0x7ff8000000000000ll);
      }
      continue;
    }
    const double zmax = (double)best;
    double sum = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += exp((double)z[v] - zmax);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) s_sum[wid] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
      double t = 0.0;
      for (int w = 0; w < nw; w++) t += s_sum[w];
      token[row] = (int)bi;
      logprob[row] = zmax - (zmax + log(t));
    }
  }
}
