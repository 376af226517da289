// spin_ns: a timing instrument, not a computation. One thread holds the stream for `ns` nanoseconds of the
// device's global timer (%globaltimer, ns since an arbitrary epoch, read by every SM), so work enqueued after
// it waits while the host enqueues the rest of a step. bench/harness.ts (gpuTimedOnce) uses it to time each
// backend op of an eager step by CUDA events with the host's enqueue cost taken out: behind the hold the
// kernels run back to back, as a CUDA graph runs them, and an op's time is its own kernels' time.
// There is nothing to compare with the CPU; test/cuda/spin.test.ts checks that events around it measure at
// least `ns`.
#include "common.cuh"

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

extern "C" __global__ void spin_ns(int64_t ns) {
  const uint64_t t0 = global_ns();
  while (global_ns() - t0 < (uint64_t)ns) __nanosleep(1000);
}
