// Hopper warpgroup MMA (wgmma) building blocks shared by the fused tensor-core kernels
// (dsa_indexer_mma.cu, sparse_mla_wgmma.cu): shared-memory matrix descriptors for the 128-byte swizzle,
// the async-proxy fences, cp.async groups and named barriers. The e4m3 and bf16 MMA wrappers live with
// the kernel that uses each shape.
//
// The 128-byte swizzle: an operand is stored as blocks of rows of 128 bytes (64 bf16 or 128 e4m3), 16-byte
// chunk c of row r at chunk position c ^ (r mod 8), each block starting on 1024 bytes. Two readings of the
// same bytes (cute's canonical GMMA layouts, T = 16 bytes of elements):
//   K-major (row = an M or N index, the 128 bytes along K): k steps advance the start address inside
//     the row (32 bytes a step); the stride between 8-row groups along M/N is the SBO (1024 B); the LBO is
//     unused (set to 1);
//   MN-major (row = a K index, the 128 bytes along M/N: ((T,8,m),(8,k)) : ((1,T,LBO),(8T,SBO))): the LBO
//     is the stride between 64-element blocks along M/N, the SBO the stride between 8-row groups along K.
// The emulators (scripts/kernel-emu/) take this file without its "sm_90a instructions" section.
#pragma once
#include <stdint.h>

// start address >> 4 in bits 0–13, LBO >> 4 in bits 16–29, SBO >> 4 in bits 32–45, swizzle 1 (128 B) in 62–63
__device__ __forceinline__ uint64_t sw128_desc_lbo(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) | ((uint64_t)1 << 62);
}
// K-major: 8-row groups 1024 bytes apart
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr) { return sw128_desc_lbo(saddr, 16, 1024); }
// 16 bytes of row r (chunk c) of a 128-byte-row operand, at its swizzled place
__device__ __forceinline__ uint8_t* sw128_at(uint8_t* tile, int r, int c) { return tile + r * 128 + ((c ^ (r & 7)) << 4); }

// ---- sm_90a instructions ----
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// until at most N committed groups of this warpgroup's MMAs are still running
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// keeps the compiler from moving accumulator reads or writes across the asynchronous MMA
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
// cp.async and st.shared writes are generic-proxy writes; the tensor cores read through the async proxy
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// named barrier `id` over n threads: sync waits for all n, arrive counts this thread without waiting
__device__ __forceinline__ void bar_sync(int id, int n) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void bar_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
// a warpgroup's register budget, for producer / consumer splits (every warp of the warpgroup runs it)
template <int R>
__device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R)); }
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R)); }
// ---- end of the sm_90a instructions ----
