// Tokens picked from rows of logits (contract: src/tensor/ops/pick.ts; CPU reference, bit for bit the
// engine's host sampler: src/backend/cpu/pick.ts). Per row of f32 logits z [rows, V], temperature τ
// (0: greedy, computed at τ = 1), uniform u and filters (top-k, top-p, min-p; off when topK = 0, topP ≥ 1,
// minP ≤ 0):
//   zmax    = max z / τ, token −1 when a z is NaN or every z is −∞
//   e_v     = exp(z_v/τ − zmax) in f64,   S = Σ_v e_v,   logZ = zmax + log S
//   K       = greedy: {the first index of max z};  no filter: every id;  else the filters' kept set:
//             a prefix of the order (e descending, id ascending): the shortest one that holds n₁ ids or
//             whose mass reaches top_p·C, where n₁ = min(#{e_v ≥ min_p}, top_k) and C = the mass of the
//             first n₁ (the candidates)
//   token   = greedy: the argmax;  else: the first v of K (id order) with Σ_{w ∈ K, w ≤ v} e_w > u·Σ_K e
//             (the last v of K with e_v > 0 if rounding leaves none)
//   logprob = z_token/τ − logZ;   mask (optional) = K as bits, ⌈V/32⌉ words a row;   logz (optional) = logZ
//
// One CTA per row (grid-stride over rows). Pass 1, coalesced: each thread keeps (max, first index) over
// its strided elements; a warp shuffle and a shared-memory merge take the larger value, equal values the
// lower index, so the tie rule is the host's first-index scan whatever the thread order; a NaN sets a
// flag (it compares false, as on the host). Pass 2: thread t owns the contiguous chunk [t·c, (t+1)·c),
// c = ⌈V/threads⌉ rounded up to 32 (so a mask word has one owner), and sums its e_v in id order (and,
// for a filtered row, counts and sums those with e_v ≥ min_p); an exclusive scan of the chunk sums (a
// warp scan, then one over the warps) gives each chunk its starting mass and S. Pass 3 (τ > 0 only):
// the thread whose chunk holds the crossing walks it again from its starting mass; the lowest index
// found over the CTA is the token (chunks wholly after the crossing report their first index, so the
// minimum is the crossing's chunk).
//
// A filtered row's K is found by radix selection over a 32-bit key that orders ids as e does: the
// logit's order-keeping bit pattern (−0 read as +0), and 0 where e underflows to 0 (the host's e ties
// there). Three passes fix 11, 11 and 10 bits of the boundary key t; each builds a shared histogram of
// the next digit — counts, and for top-p the mass Σ e — among the ids matching the digits fixed so far,
// and a CTA-wide walk from the top bin stops at the first bin where the running count reaches n₁ or the
// running mass reaches top_p·C. K = {key > t} ∪ the lowest-id `take` of the ids with key t (equal keys
// are equal logits, so equal e). With top-k on (and cutting deeper than min-p), a count-only selection
// first finds the candidates' boundary, and C is summed over them in chunks (as S is); otherwise C is
// pass 2's Σ_{e ≥ min_p}. The last pass walks the chunks once more: each thread counts its ties at t
// (a scan ranks them by id), sums its members' e, writes its mask words, and the draw is pass 3's over
// K's members.
//
// Against the host: the same e_v up to an ulp of exp (and of z/τ, taken as z·(1/τ); exact at τ = 1);
// the host sums them in id order, this kernel in chunks and a scan, and the histogram masses with shared
// atomics (in no fixed order: run to run they may differ by rounding), so S, C and the starting masses
// differ by rounding (≤ V·2⁻⁵³ relative): a greedy token is exact; a drawn token or K's edge differs
// only when a sum lies within that rounding of its threshold. The host orders by e and ties by id, this
// kernel by z and ties by id: the same order except where two different logits' e round to one double.
// Measured (H100, bench/pick-tokens.js, 2026-12-06 and -07): 64 rows × 129 280 in 141 µs greedy, 177 µs at
// τ 1 (12.7× and 15.9× the time of reading the logits once at the copy bandwidth), 809 µs at top-p 0.95,
// 565 µs at top-k 50 (each radix pass re-reads the row and recomputes e); one row of 32 000 in 50 µs,
// one of 129 280 at top-p 0.95 in 1.1 ms (one CTA on one SM: latency-bound; more CTAs a row is what small
// batches would need).
#include "common.cuh"

constexpr int PT_THREADS = 512;
constexpr int PT_WARPS = PT_THREADS / 32;
constexpr int PT_BINS = 2048;  // the widest digit: 11 bits

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
  __syncthreads();  // a previous scan's readers of s_warp are done
  if (lane == 31) s_warp[wid] = inc;
  __syncthreads();
  double before = 0.0, all = 0.0;
  for (int w = 0; w < PT_WARPS; w++) {
    if (w < wid) before += s_warp[w];
    all += s_warp[w];
  }
  return Scan{before + inc - v, all};
}

/** The selection key of logit z: larger key = larger e; 0 where e = exp(z·rt − zmax) is 0. */
__device__ __forceinline__ uint32_t pick_key(float z, double rt, double zmax) {
  if (z == 0.0f) z = 0.0f;  // −0 → +0: the same e
  const double a = (double)z * rt - zmax;
  if (a < -700.0 && exp(a) == 0.0) return 0u;
  const uint32_t b = __float_as_uint(z);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
/** The logit of a nonzero key (pick_key's inverse). */
__device__ __forceinline__ float key_logit(uint32_t k) { return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

/** K = {key > t} ∪ the `take` lowest ids with key t. */
struct Cut {
  uint32_t t;
  int64_t take;
};

struct Shared {
  unsigned cnt[PT_BINS];
  double mass[PT_BINS];
  double warp[PT_WARPS];
  float val[PT_WARPS];
  int64_t idx[PT_WARPS];
  int64_t pick[PT_WARPS];
  int64_t last[PT_WARPS];
  int nan;
  int found, lowest;
  uint32_t prefix;
  int64_t above;
  double massAbove;
};

/**
 * The boundary of the shortest prefix of the order (key descending, id ascending) that holds n1 ids or,
 * when useMass, whose mass reaches target. Three radix passes over the row (see the header).
 */
__device__ __forceinline__ Cut cta_select(const float* __restrict__ z, int64_t V, double rt, double zmax, int64_t n1, double target, bool useMass, Shared& sh) {
  uint32_t prefix = 0;
  int64_t above = 0;
  double massAbove = 0.0;
  bool reached = false;
  unsigned binCount = 0;
  for (int level = 0; level < 3; level++) {
    const int shift = level == 0 ? 21 : level == 1 ? 10 : 0;
    const int nb = level == 2 ? 1024 : 2048;
    const uint32_t fixed = level == 0 ? 0u : (0xffffffffu << (shift + (level == 2 ? 10 : 11)));
    for (int b = threadIdx.x; b < nb; b += blockDim.x) {
      sh.cnt[b] = 0;
      sh.mass[b] = 0.0;
    }
    if (threadIdx.x == 0) {
      sh.found = -1;
      sh.lowest = nb;
    }
    __syncthreads();
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const float zv = z[v];
      const uint32_t k = pick_key(zv, rt, zmax);
      if ((k & fixed) != prefix) continue;
      const int d = (int)((k >> shift) & (uint32_t)(nb - 1));
      atomicAdd(&sh.cnt[d], 1u);
      if (useMass) atomicAdd(&sh.mass[d], exp((double)zv * rt - zmax));
    }
    __syncthreads();
    // thread t owns the G bins nb − 1 − G·t − g (g = 0 .. G − 1), the highest first
    const int G = nb / PT_THREADS;
    const int top = nb - 1 - G * (int)threadIdx.x;
    double c = 0.0, m = 0.0;
    for (int g = 0; g < G; g++) {
      c += sh.cnt[top - g];
      m += sh.mass[top - g];
    }
    const Scan sc = cta_exclusive_scan(c, sh.warp);
    const Scan sm = cta_exclusive_scan(m, sh.warp);
    // the first bin (from the top) where the running count reaches n1 or the mass the target; the
    // lowest nonempty bin when rounding of the bins' masses leaves none
    int64_t cc = above + (int64_t)sc.before;
    double mm = massAbove + sm.before;
    for (int g = 0; g < G; g++) {
      const int b = top - g;
      if (sh.cnt[b] == 0) continue;
      atomicMin(&sh.lowest, b);
      if (cc + (int64_t)sh.cnt[b] >= n1 || (useMass && mm + sh.mass[b] >= target)) {
        atomicMax(&sh.found, b);
        break;
      }
      cc += sh.cnt[b];
      mm += sh.mass[b];
    }
    __syncthreads();
    const int fb = sh.found >= 0 ? sh.found : sh.lowest;
    if (threadIdx.x == (unsigned)((nb - 1 - fb) / G)) {
      // the owner of bin fb: the count and mass of the bins above it
      cc = above + (int64_t)sc.before;
      mm = massAbove + sm.before;
      for (int b = top; b > fb; b--) {
        cc += sh.cnt[b];
        mm += sh.mass[b];
      }
      sh.above = cc;
      sh.massAbove = mm;
      sh.prefix = prefix | ((uint32_t)fb << shift);
    }
    __syncthreads();
    reached = sh.found >= 0;
    binCount = sh.cnt[fb];
    above = sh.above;
    massAbove = sh.massAbove;
    prefix = sh.prefix;
    __syncthreads();  // every thread has read the histogram before the next level clears it
  }
  // ties at t: as many as the count needs, or as the mass needs (each tie adds e_t), at least one
  int64_t take = binCount;
  if (reached) {
    take = min(take, n1 - above);
    const double et = prefix == 0u ? 0.0 : exp((double)key_logit(prefix) * rt - zmax);
    if (useMass && et > 0.0 && massAbove < target) {
      const double need = ceil((target - massAbove) * __drcp_rn(et));
      if (need < (double)take) take = (int64_t)need;
    }
    if (useMass && massAbove >= target) take = 1;
    take = max(take, (int64_t)1);
  }
  return Cut{prefix, take};
}

/**
 * Thread t's chunk [lo, hi) walked for K's members: how many of its ids have key t (the ties), the
 * exclusive scan of those counts (the tie rank of its first id), and its members' mass in id order.
 */
struct Members {
  int64_t tiesBefore;
  double part;
  Scan mass;
};
__device__ __forceinline__ Members cta_members(const float* __restrict__ z, int64_t lo, int64_t hi, double rt, double zmax, Cut cut, Shared& sh) {
  double ties = 0.0;
  for (int64_t v = lo; v < hi; v++) ties += pick_key(z[v], rt, zmax) == cut.t ? 1.0 : 0.0;
  const int64_t tiesBefore = (int64_t)cta_exclusive_scan(ties, sh.warp).before;
  double part = 0.0;
  int64_t rank = tiesBefore;
  for (int64_t v = lo; v < hi; v++) {
    const uint32_t k = pick_key(z[v], rt, zmax);
    if (k > cut.t || (k == cut.t && rank++ < cut.take)) part += exp((double)z[v] * rt - zmax);
  }
  return Members{tiesBefore, part, cta_exclusive_scan(part, sh.warp)};
}

// (PT_THREADS, 1): without the minimum of one CTA an SM, ptxas capped the kernel at 64 registers and
// spilled (76 bytes a thread); it needs 76
/**
 * The drawn token from each thread's crossing candidate (its first id past the target, INT64_MAX if none)
 * and its last id of positive mass: the lowest candidate over the CTA, else (u·S within rounding of S)
 * the host's fallback, the last id of positive mass (the argmax has e = 1, so there is one).
 */
__device__ __forceinline__ int64_t cta_crossing(int64_t mine, int64_t lastPos, Shared& sh) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    mine = min(mine, (int64_t)__shfl_xor_sync(0xffffffffu, mine, o));
    lastPos = max(lastPos, (int64_t)__shfl_xor_sync(0xffffffffu, lastPos, o));
  }
  if (lane == 0) {
    sh.pick[wid] = mine;
    sh.last[wid] = lastPos;
  }
  __syncthreads();
  int64_t pick = INT64_MAX, last = -1;
  for (int w = 0; w < PT_WARPS; w++) {
    pick = min(pick, sh.pick[w]);
    last = max(last, sh.last[w]);
  }
  return pick == INT64_MAX ? last : pick;
}

extern "C" __global__ void __launch_bounds__(PT_THREADS, 1) pick_tokens_f32(int64_t rows, int64_t V, const float* __restrict__ x,
                                                                          const double* __restrict__ temperature, const double* __restrict__ uniform,
                                                                          const int* __restrict__ top_k, const double* __restrict__ top_p,
                                                                          const double* __restrict__ min_p, int* __restrict__ token,
                                                                          double* __restrict__ logprob, unsigned* __restrict__ mask,
                                                                          double* __restrict__ logz) {
  __shared__ Shared sh;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int64_t W = (V + 31) / 32;
  // thread t's chunk: c ids from t·c, c a multiple of 32 so each mask word has one owner
  const int64_t c = ((V + blockDim.x - 1) / blockDim.x + 31) / 32 * 32;
  const int64_t lo = min(V, (int64_t)threadIdx.x * c), hi = min(V, lo + c);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* z = x + row * V;
    unsigned* mrow = mask ? mask + row * W : nullptr;
    __syncthreads();  // the previous row's readers of the shared arrays are done
    if (threadIdx.x == 0) sh.nan = 0;
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
    __syncthreads();  // sh.nan's reset is seen
    if (nan) sh.nan = 1;
    if (lane == 0) {
      sh.val[wid] = best;
      sh.idx[wid] = bi;
    }
    __syncthreads();
    best = sh.val[0];
    bi = sh.idx[0];
    for (int w = 1; w < PT_WARPS; w++) {
      if (sh.val[w] > best || (sh.val[w] == best && sh.idx[w] < bi)) {
        best = sh.val[w];
        bi = sh.idx[w];
      }
    }
    const double t_in = temperature[row];
    const bool greedy = t_in == 0.0;
    const double tau = greedy ? 1.0 : t_in;
    // z/τ as z·(1/τ): within an ulp of the host's quotient (f64 division would bring ptxas's slow-path
    // subroutine and its stack frame); exact at τ = 1, so greedy rows are the host's bit for bit
    const double rt = greedy ? 1.0 : __drcp_rn(tau);
    const double zmax = (double)best * rt;
    // every thread holds the same (best, bi, sh.nan): the whole CTA skips a bad row
    if (sh.nan != 0 || zmax == -INFINITY) {
      if (threadIdx.x == 0) {
        token[row] = -1;
        logprob[row] = __longlong_as_double(0x7ff8000000000000ll);
        if (logz) logz[row] = __longlong_as_double(0x7ff8000000000000ll);
      }
      if (mrow)
        for (int64_t w = threadIdx.x; w < W; w += blockDim.x) mrow[w] = 0u;
      continue;
    }
    const int k = top_k ? top_k[row] : 0;
    const double pp = top_k ? top_p[row] : 1.0, mp = top_k ? min_p[row] : 0.0;
    const bool filtered = !greedy && (k > 0 || pp < 1.0 || mp > 0.0);
    // pass 2: chunk sums in id order, their exclusive scan, S; for a filtered row the min-p survivors'
    // count and mass (e_max = 1, so the threshold is min_p itself)
    double part = 0.0, keepMass = 0.0, keepCount = 0.0;
    int64_t lastPos = -1;
    for (int64_t v = lo; v < hi; v++) {
      const double e = exp((double)z[v] * rt - zmax);
      part += e;
      if (e > 0.0) lastPos = v;
      if (e >= mp) {
        keepMass += e;
        keepCount += 1.0;
      }
    }
    const Scan all = cta_exclusive_scan(part, sh.warp);
    const double S = all.total;
    int64_t pick = bi;
    if (filtered) {
      Cut cut{0u, 0};
      const int64_t nMinp = (int64_t)cta_exclusive_scan(keepCount, sh.warp).total;
      double cand = cta_exclusive_scan(keepMass, sh.warp).total;
      int64_t n1 = nMinp;
      bool done = false;
      if (k > 0 && k < nMinp) {
        n1 = k;
        cut = cta_select(z, V, rt, zmax, n1, 0.0, false, sh);
        if (pp < 1.0) cand = cta_members(z, lo, hi, rt, zmax, cut, sh).mass.total;
        done = pp >= 1.0;
      }
      if (!done) cut = cta_select(z, V, rt, zmax, n1, pp < 1.0 ? pp * cand : INFINITY, pp < 1.0, sh);
      // the last pass: K's members in this chunk, their mass and mask words
      const Members mem = cta_members(z, lo, hi, rt, zmax, cut, sh);
      const double target = uniform[row] * mem.mass.total;
      int64_t mine = INT64_MAX;
      lastPos = -1;
      int64_t rank = mem.tiesBefore;
      double cum = mem.mass.before;
      unsigned word = 0u;
      for (int64_t v = lo; v < hi; v++) {
        const uint32_t kv = pick_key(z[v], rt, zmax);
        if (kv > cut.t || (kv == cut.t && rank++ < cut.take)) {
          const double e = exp((double)z[v] * rt - zmax);
          cum += e;
          if (e > 0.0) lastPos = v;
          if (cum > target && mine == INT64_MAX) mine = v;
          word |= 1u << (v & 31);
        }
        if (mrow && ((v & 31) == 31 || v == hi - 1)) {
          mrow[v >> 5] = word;
          word = 0u;
        }
      }
      pick = cta_crossing(mine, lastPos, sh);
    } else if (!greedy) {
      // pass 3: the first v whose cumulative mass exceeds u·S (chunks whose end does not pass it skip)
      const double target = uniform[row] * S;
      int64_t mine = INT64_MAX;
      if (all.before + part > target) {
        double cum = all.before;
        for (int64_t v = lo; v < hi; v++) {
          cum += exp((double)z[v] * rt - zmax);
          if (cum > target) {
            mine = v;
            break;
          }
        }
      }
      pick = cta_crossing(mine, lastPos, sh);
    }
    if (threadIdx.x == 0) {
      token[row] = (int)pick;
      const double lz = zmax + log(S);
      logprob[row] = (double)z[pick] * rt - lz;
      if (logz) logz[row] = lz;
    }
    // greedy: K = {argmax}; unfiltered: every id (a filtered row's words are written above)
    if (mrow && !filtered)
      for (int64_t w = threadIdx.x; w < W; w += blockDim.x) {
        const int64_t n = min((int64_t)32, V - 32 * w);
        mrow[w] = greedy ? (w == (bi >> 5) ? 1u << (bi & 31) : 0u) : (n == 32 ? 0xffffffffu : (1u << n) - 1u);
      }
  }
}
