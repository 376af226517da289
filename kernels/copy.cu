// Copy, cast and fill over strided views.
//  - copy_raw_{1,2,4,8}: same dtype, bytes moved as-is (keeps NaN payloads and i64 beyond 2^53 exact).
//  - cast_strided: dtype conversion with the CPU's rules (float → int truncates; int → int wraps through
//    int64 so i64 → i32 keeps the low 32 bits as BigInt.asIntN does).
//  - fill_{1,2,4,8}: the host encodes the value once into the dtype's bits; the kernel writes the bits.
// Contiguous same-dtype copies never reach these kernels: the host uses cuMemcpyDtoDAsync.
#include "common.cuh"

template <class W>
__device__ __forceinline__ void copy_raw(Iter it, int64_t n, W* out, const W* x) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 2, off);
    out[off[0]] = x[off[1]];
  }
}
extern "C" __global__ void copy_raw_1(Iter it, int64_t n, uint8_t* out, const uint8_t* x) { copy_raw(it, n, out, x); }
extern "C" __global__ void copy_raw_2(Iter it, int64_t n, uint16_t* out, const uint16_t* x) { copy_raw(it, n, out, x); }
extern "C" __global__ void copy_raw_4(Iter it, int64_t n, uint32_t* out, const uint32_t* x) { copy_raw(it, n, out, x); }
extern "C" __global__ void copy_raw_8(Iter it, int64_t n, uint64_t* out, const uint64_t* x) { copy_raw(it, n, out, x); }

__device__ __forceinline__ bool is_int_dt(int dt) { return dt == DT_I32 || dt == DT_I64 || dt == DT_U8 || dt == DT_BOOL; }

__device__ __forceinline__ int64_t load_int(const void* p, int64_t i, int dt) {
  switch (dt) {
    case DT_I32: return ((const int32_t*)p)[i];
    case DT_I64: return ((const int64_t*)p)[i];
    default: return ((const uint8_t*)p)[i];
  }
}
__device__ __forceinline__ void store_int(void* p, int64_t i, int dt, int64_t v) {
  switch (dt) {
    case DT_I32: ((int32_t*)p)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
    case DT_I64: ((int64_t*)p)[i] = v; break;
    case DT_U8: ((uint8_t*)p)[i] = (uint8_t)(v & 0xff); break;
    default: ((uint8_t*)p)[i] = v != 0 ? 1 : 0; break;
  }
}

extern "C" __global__ void cast_strided(Iter it, int64_t n, void* out, int out_dt, const void* x, int x_dt) {
  const bool ints = is_int_dt(out_dt) && is_int_dt(x_dt);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 2, off);
    if (ints) store_int(out, off[0], out_dt, load_int(x, off[1], x_dt));
    else store_as<double>(out, off[0], out_dt, load_as<double>(x, off[1], x_dt));
  }
}

template <class W>
__device__ __forceinline__ void fill(Iter it, int64_t n, W* out, W v) {
  if (it.rank == 1 && it.stride[0][0] == 1) {
    W* o = out + it.offset[0];
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) o[i] = v;
    return;
  }
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, 1, off);
    out[off[0]] = v;
  }
}
extern "C" __global__ void fill_1(Iter it, int64_t n, uint8_t* out, uint64_t bits) { fill<uint8_t>(it, n, out, (uint8_t)bits); }
extern "C" __global__ void fill_2(Iter it, int64_t n, uint16_t* out, uint64_t bits) { fill<uint16_t>(it, n, out, (uint16_t)bits); }
extern "C" __global__ void fill_4(Iter it, int64_t n, uint32_t* out, uint64_t bits) { fill<uint32_t>(it, n, out, (uint32_t)bits); }
extern "C" __global__ void fill_8(Iter it, int64_t n, uint64_t* out, uint64_t bits) { fill<uint64_t>(it, n, out, bits); }
