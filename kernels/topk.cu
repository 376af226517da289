// Top-k over the last dim, one block per row, exact and with the CPU's tie rule.
// Each element gets a unique 64-bit key: the high 32 bits order the values (larger first for largest=1,
// smaller first for largest=0; NaN counts as the largest value), the low 32 bits are 0xFFFFFFFF − index so that
// among equal values the lowest index ranks first. Because keys are unique, the k-th largest key
// splits the row into exactly k winners:
//  1. radix select: 8 passes of 8 bits over the row, each a shared-memory histogram of the next digit
//     among the elements that still match the prefix found so far;
//  2. gather the k elements with key ≥ that k-th key into scratch (global, k rounded up to a power of
//     two and padded with key 0, below every real key);
//  3. bitonic sort of the scratch descending, then decode value and index.
#include "common.cuh"

__device__ __forceinline__ uint32_t order_key(float v, int largest) {
  if (v != v) return largest ? 0xffffffffu : 0u;  // NaN is the largest value: first when largest, last otherwise
  if (v == 0.0f) v = 0.0f;  // −0 and +0 are one value (the CPU compares them equal): ties by index
  const uint32_t b = __float_as_uint(v);
  const uint32_t o = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // monotone map of floats onto uint32
  return largest ? o : ~o;
}

template <class T>
__device__ void topk_row(int64_t rows, int64_t n, int64_t k, int64_t kp2, int largest, T* values, int64_t* indices, const T* x,
                         unsigned long long* scratch) {
  __shared__ unsigned int hist[256];
  __shared__ unsigned long long prefix_s;
  __shared__ long long remaining_s;
  __shared__ unsigned int count_s;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    unsigned long long* sc = scratch + blockIdx.x * kp2;
    if (threadIdx.x == 0) {
      prefix_s = 0;
      remaining_s = k;
      count_s = 0;
    }
    unsigned long long mask = 0;
    for (int pass = 7; pass >= 0; pass--) {
      for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
      __syncthreads();
      const unsigned long long prefix = prefix_s;
      const int shift = pass * 8;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const unsigned long long key = ((unsigned long long)order_key(to_f<T>(xr[j]), largest) << 32) | (0xffffffffu - (uint32_t)j);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        long long rem = remaining_s;
        int d = 255;
        for (; d > 0; d--) {
          if ((long long)hist[d] >= rem) break;
          rem -= hist[d];
        }
        prefix_s = prefix | ((unsigned long long)d << shift);
        remaining_s = rem;
      }
      mask |= 0xffull << shift;
      __syncthreads();
    }
    const unsigned long long kth = prefix_s;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const unsigned long long key = ((unsigned long long)order_key(to_f<T>(xr[j]), largest) << 32) | (0xffffffffu - (uint32_t)j);
      if (key >= kth) sc[atomicAdd(&count_s, 1u)] = key;
    }
    __syncthreads();
    for (int64_t j = k + threadIdx.x; j < kp2; j += blockDim.x) sc[j] = 0;
    __syncthreads();
    // bitonic sort, descending
    for (int64_t size = 2; size <= kp2; size <<= 1) {
      for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
        for (int64_t t = threadIdx.x; t < kp2 / 2; t += blockDim.x) {
          const int64_t i = (t / stride) * 2 * stride + (t % stride);
          const int64_t jx = i + stride;
          const bool desc = (i & size) == 0;
          const unsigned long long a = sc[i], b = sc[jx];
          if ((a < b) == desc) {
            sc[i] = b;
            sc[jx] = a;
          }
        }
        __syncthreads();
      }
    }
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      const uint32_t idx = 0xffffffffu - (uint32_t)(sc[j] & 0xffffffffu);
      values[row * k + j] = xr[idx];
      indices[row * k + j] = idx;
    }
    __syncthreads();
  }
}
#define TOPK(NAME, T)                                                                                             \
  extern "C" __global__ void __launch_bounds__(512) NAME(int64_t rows, int64_t n, int64_t k, int64_t kp2, int largest, T* values, \
                                                          int64_t* indices, const T* x, unsigned long long* scratch) { \
    topk_row<T>(rows, n, k, kp2, largest, values, indices, x, scratch);                                            \
  }
TOPK(topk_f32, float)
TOPK(topk_bf16, __nv_bfloat16)
TOPK(topk_f16, __half)

// ---------------------------------------------------------------------------------------------------------
// topk_select_f32: the DSA selection (Backend.topkSelect; CPU reference selectTopkRow in
// src/model/topk-select.ts). Per row, among the columns [start, end): when valid = end − start ≤ k every
// valid column, else the k largest values with ties at the threshold going to the lowest columns; written
// in ascending column order, −1 padded to k; optionally mapped to paged-cache slots
// block_table[row / rows_per_seq, p / 64]·64 + p mod 64 (p = column − start; −1 when the page lies beyond
// the table or its block id is negative).
// The value order is selectTopkRow's, not order_key's: NaN ranks as +inf (tied with it) and −0 equals +0,
// so select_key maps NaN to +inf's key and −0 to +0's before the monotone float → uint32 map.
// One CTA of 1024 threads per row (grid-stride over rows):
//  1. when the row fits the dynamic shared memory (cache_cap keys), its keys are computed once into it;
//     otherwise every pass re-reads (and re-maps) the row from global memory;
//  2. radix select of the k-th largest 32-bit key: 4 passes of 8 bits from the top, each a shared-memory
//     histogram of the next digit among the keys matching the prefix so far; warp 0 finds the digit whose
//     cumulative count (from the largest digit down) reaches the remaining rank (a warp scan over 8 bins
//     per lane). The result is the threshold key thr and ties = how many keys equal to thr are taken
//     (k − #keys > thr);
//  3. ordered compaction: a greater key, or a tie of tie-rank < ties, goes to output position
//     #greater before + min(#ties before, ties). A cached row (< 2^16 columns) takes one block-wide
//     exclusive scan of each thread's packed counts (greater) << 16 | (ties) over a contiguous run of
//     columns, then each thread places its run in order; an uncached row goes in chunks of 1024
//     columns, a scan of the packed pair (is greater) << 16 | (is tie) per chunk, stopping once k
//     columns are placed.
// Tried and dropped: warp-aggregated histograms (__match_any_sync, one atomic per digit per warp): 2.3×
// slower at [4096, 131072] and, with the one-scan compaction, 2× at [64, 9295] (H100, 2026-12-07).
// Exactly selectTopkRow's set and order. Performance notes: at [64, 9295] the row sits in shared memory
// and the kernel is a few passes over 37 KB per CTA; at 131,072 columns the row (512 KB) is read 5 times
// from global/L2. Ideas not done: an 11-bit first pass (3 passes), keeping only the candidates of the
// first pass's threshold bin in shared memory for the later passes (the TileLang/SGLang refinement), and
// several CTAs per row (a cluster sharing histograms through distributed shared memory) when rows are few.
__device__ __forceinline__ uint32_t select_key(float v) {
  uint32_t b = __float_as_uint(v);
  if (v != v) b = 0x7f800000u;               // NaN ranks as +inf
  if ((b & 0x7fffffffu) == 0) b = 0;         // −0 equals +0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/** Block-wide inclusive scan of v (blockDim.x a multiple of 32, ≤ 1024); *total gets the block sum. */
__device__ __forceinline__ uint32_t block_scan_incl(uint32_t v, uint32_t* wsum, uint32_t* total) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) wsum[warp] = v;
  __syncthreads();
  if (warp == 0) {
    uint32_t s = lane < nw ? wsum[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t u = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += u;
    }
    wsum[lane] = s;  // inclusive prefix of warp sums
  }
  __syncthreads();
  const uint32_t r = v + (warp > 0 ? wsum[warp - 1] : 0);
  *total = wsum[nw - 1];
  __syncthreads();  // wsum is reused by the next call
  return r;
}

// The paged-cache slot of position p through a sequence's block-table row (−1 past the table or at a −1 block).
__device__ __forceinline__ int paged_slot(const int* btr, int64_t max_blocks, int p) {
  const int pg = p >> 6;
  const int blk = pg < max_blocks ? btr[pg] : -1;
  return blk < 0 ? -1 : blk * 64 + (p & 63);
}

// Dense attention's selection (causalSelect, src/tensor/ops/dsa-indexer.ts): out[r, j] = j (or its slot)
// for j < end[r], else −1 — topk_select_f32's output for a row of equal values, without reading one. A
// grid-stride loop over the R·k elements: the row of a long context is one contiguous write.
extern "C" __global__ void causal_select(int64_t rows, int64_t k, const int* __restrict__ end, const int* __restrict__ block_table,
                                         int64_t max_blocks, int64_t rows_per_seq, int* __restrict__ out) {
  const int64_t n = rows * k;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / k;
    const int j = (int)(i - r * k);
    out[i] = j >= end[r] ? -1 : block_table ? paged_slot(block_table + (r / rows_per_seq) * max_blocks, max_blocks, j) : j;
  }
}

extern "C" __global__ void __launch_bounds__(1024) topk_select_f32(int64_t rows, int64_t n, int64_t k, const float* __restrict__ x,
                                                                   const int* __restrict__ start, const int* __restrict__ end,
                                                                   const int* __restrict__ block_table, int64_t max_blocks,
                                                                   int64_t rows_per_seq, int64_t cache_cap, int* __restrict__ out) {
  extern __shared__ uint32_t kc[];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t wsum[32];
  __shared__ uint32_t prefix_s, rem_s;
  const int tid = threadIdx.x;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    // 32-bit column arithmetic: the launcher refuses rows of 2^31 columns or more
    const int nn = (int)n;
    int s = start ? start[row] : 0;
    int e = end ? end[row] : nn;
    s = s < 0 ? 0 : (s > nn ? nn : s);
    e = e < s ? s : (e > nn ? nn : e);
    const int valid = e - s;
    const float* xr = x + row * n + s;
    int* orow = out + row * k;
    const int* btr = block_table ? block_table + (row / rows_per_seq) * max_blocks : nullptr;
    auto emit = [&](int p) -> int { return btr ? paged_slot(btr, max_blocks, p) : (int)(s + p); };
    if (valid <= k) {
      for (int64_t i = tid; i < k; i += blockDim.x) orow[i] = i < valid ? emit(i) : -1;
      continue;
    }
    const bool cached = valid <= cache_cap;
    __syncthreads();  // the previous row's readers of kc are done
    if (cached)
      for (int i = tid; i < valid; i += blockDim.x) kc[i] = select_key(xr[i]);
    uint32_t prefix = 0, mask = 0, rem = (uint32_t)k;
    for (int pass = 3; pass >= 0; pass--) {
      const int shift = pass * 8;
      for (int d = tid; d < 256; d += blockDim.x) hist[d] = 0;
      __syncthreads();
      for (int i = tid; i < valid; i += blockDim.x) {
        const uint32_t key = cached ? kc[i] : select_key(xr[i]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
      }
      __syncthreads();
      if (tid < 32) {
        // lane l owns digits 255 − 8l … 248 − 8l (largest first)
        uint32_t c[8];
        uint32_t sum = 0;
#pragma unroll
        for (int b = 0; b < 8; b++) {
          c[b] = hist[255 - 8 * tid - b];
          sum += c[b];
        }
        uint32_t incl = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const uint32_t u = __shfl_up_sync(0xffffffffu, incl, o);
          if (tid >= o) incl += u;
        }
        const unsigned hit = __ballot_sync(0xffffffffu, incl >= rem);
        if (tid == __ffs(hit) - 1) {
          uint32_t r = rem - (incl - sum);
          int digit = 255 - 8 * tid;
#pragma unroll
          for (int b = 0; b < 8; b++) {
            if (c[b] >= r) {
              digit = 255 - 8 * tid - b;
              break;
            }
            r -= c[b];
          }
          prefix_s = prefix | ((uint32_t)digit << shift);
          rem_s = r;
        }
      }
      __syncthreads();
      prefix = prefix_s;
      rem = rem_s;
      mask |= 0xffu << shift;
    }
    const uint32_t thr = prefix;
    const uint32_t ties = rem;
    if (cached && valid < 65536) {
      // one scan: thread t owns the contiguous columns [t·per, (t+1)·per) of the cached keys, counts its
      // greater keys and ties (each count < 2^16: valid < 2^16), and the block's exclusive scan of the
      // packed pair gives each of its columns the same output position as the chunked loop below
      const int per = (valid + blockDim.x - 1) / blockDim.x;
      const int lo = tid * per;
      const int hi = lo + per < valid ? lo + per : valid;
      uint32_t g = 0, t = 0;
      for (int i = lo; i < hi; i++) {
        g += kc[i] > thr;
        t += kc[i] == thr;
      }
      const uint32_t packed = (g << 16) | t;
      uint32_t total;
      const uint32_t ex = block_scan_incl(packed, wsum, &total) - packed;
      uint32_t before = ex >> 16, tie_rank = ex & 0xffffu;
      for (int i = lo; i < hi; i++) {
        const uint32_t key = kc[i];
        if (key > thr) orow[before++ + (tie_rank < ties ? tie_rank : ties)] = emit(i);
        else if (key == thr) {
          if (tie_rank < ties) orow[before + tie_rank] = emit(i);
          tie_rank++;
        }
      }
      continue;
    }
    uint32_t run_g = 0, run_t = 0;
    for (int base = 0; base < valid; base += blockDim.x) {
      const int i = base + tid;
      uint32_t key = 0;
      if (i < valid) key = cached ? kc[i] : select_key(xr[i]);
      const uint32_t is_g = i < valid && key > thr;
      const uint32_t is_t = i < valid && key == thr;
      const uint32_t packed = (is_g << 16) | is_t;
      uint32_t total;
      const uint32_t ex = block_scan_incl(packed, wsum, &total) - packed;
      const uint32_t tie_rank = run_t + (ex & 0xffffu);
      const uint32_t before = run_g + (ex >> 16);
      if (is_g) orow[before + (tie_rank < ties ? tie_rank : ties)] = emit(i);
      else if (is_t && tie_rank < ties) orow[before + tie_rank] = emit(i);
      run_g += total >> 16;
      run_t += total & 0xffffu;
      if (run_g + (run_t < ties ? run_t : ties) >= (uint32_t)k) break;
    }
  }
}
