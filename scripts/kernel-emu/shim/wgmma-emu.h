// What the emulated wgmma kernels (dsa_indexer_mma.cu, sparse_mla_wgmma.cu) assume of the hardware besides
// the MMAs themselves, which each driver defines for its shapes: shared memory is one window whose origin is
// g_smem rounded down to 1024 bytes (so 1024-aligned pointers have 1024-aligned addresses, as the 128-byte
// swizzle needs); cp.async copies its 16 bytes at once (common.cuh's cp_async16, cp_async16_zfill), so
// commits, waits and the proxy fences are no-ops; register budgets are the compiler's business. Included by a driver before
// "kernel.cpp".
#pragma once
#include <cstdint>
#include <cstring>
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
extern float g_smem[];
inline uintptr_t smem_origin() { return (uintptr_t)g_smem & ~(uintptr_t)1023; }
inline uint32_t __cvta_generic_to_shared(const void* p) { return (uint32_t)((uintptr_t)p - smem_origin()); }
inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int N> inline void wgmma_wait() {}
template <int N> inline void fence_regs(float (&)[N]) {}
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}
inline void fence_proxy_async() {}
template <int R> inline void setmaxnreg_inc() {}
template <int R> inline void setmaxnreg_dec() {}
