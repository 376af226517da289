// CPU reference of the FP8 block-scaled linear product (Backend.fp8BlockLinear; contract and math in
// src/tensor/ops/fp8-linear.ts). It is the host model's applyLinear FP8 loop (src/model/fp8-linear.ts)
// moved down a layer, operation for operation, so the two are bit-identical:
//   a8 = the activation codes q [M, K] decoded to f32, b8 = the weight codes w8 [N, K] decoded to f32
//   (both exact: every e4m3 value is an f32);
//   for each K block kb (128 wide, the last one K − 128·kb wide when K % 128 ≠ 0), in order:
//     part = a8[:, kb] · b8[:, kb]ᵀ  through this backend's matmul on the SAME views the host issues
//            (a8 narrowed to the block: [M, kl] with strides [K, 1]; b8 narrowed and transposed: [kl, N]
//            with strides [1, K]), so sgemm sees identical problems on OpenBLAS or the TypeScript GEMM;
//     acc[m, n] = fround(acc + fround(part[m, n] · fround(sq[m, kb] · sw[⌊n/128⌋, kb])))
//   out = acc rounded to out's dtype (round to nearest even for bf16), as fromArray does.
// The products of two e4m3 values are exact in f32 (4-bit significands), but a block sum of 128 of them
// can span more than 24 bits, so the GEMM's summation order matters: that is why the per-block product
// goes through the backend's own matmul and not through a loop of this file.
import { DsvError } from '../../errors.js';
import type { Backend, View } from '../../tensor/backend.js';
import { type HostArray, e4m3BitsToF32, fromFloatArray } from '../../tensor/dtype.js';
import { dataOf, isContiguousView, readF } from './strided.js';
import { CpuStorage } from './storage.js';

/** Width of a K block and height of a weight scale tile (DeepSeek's 128×128 blocks). */
const BLOCK = 128;

/**
 * out [M, N] = Σ_kb (q[:, kb] · w8[:, kb]ᵀ) · sq[:, kb] · sw[⌊n/128⌋, kb]. q f8e4m3 [M, K], sq f32
 * [M, ⌈K/128⌉], w8 f8e4m3 [N, K], sw f32 [⌈N/128⌉, ⌈K/128⌉], out f32/bf16 [M, N]; all contiguous.
 * `b` is the CPU backend (its alloc, copy and matmul).
 */
export function fp8BlockLinearCpu(b: Backend, out: View, q: View, sq: View, w8: View, sw: View): void {
  const [M, K] = q.shape as [number, number];
  const N = w8.shape[0]!;
  if (out.dtype !== 'f32' && out.dtype !== 'bf16') throw new DsvError(`fp8BlockLinear: out must be f32 or bf16, got ${out.dtype}`);
  const nbK = Math.ceil(K / BLOCK);
  const acc = new Float32Array(M * N);
  if (M * N > 0 && K > 0) {
    // the host's cast(q, 'f32') and the weight's cast(raw, 'f32'): fresh contiguous f32 storages
    const a8 = decode(b, q, M * K, 0);
    const b8 = decode(b, w8, N * K, 1);
    const sa = readF(sq, 'f32') as Float32Array;
    const sb = readF(sw, 'f32') as Float32Array;
    const partSt = scratch(b, 2, M * N);
    const partV: View = { storage: partSt, dtype: 'f32', shape: [M, N], strides: [N, 1], offset: 0 };
    const part = dataOf(partV) as Float32Array;
    for (let kb = 0; kb < nbK; kb++) {
      const k0 = kb * BLOCK;
      const kl = Math.min(BLOCK, K - k0);
      b.matmul(partV, { storage: a8.st, dtype: 'f32', shape: [M, kl], strides: [K, 1], offset: a8.off + k0 },
        { storage: b8.st, dtype: 'f32', shape: [kl, N], strides: [1, K], offset: b8.off + k0 });
      for (let m = 0; m < M; m++) {
        const am = sa[m * nbK + kb]!;
        for (let n = 0; n < N; n++) {
          const sc = Math.fround(am * sb[Math.floor(n / BLOCK) * nbK + kb]!);
          acc[m * N + n] = Math.fround(acc[m * N + n]! + Math.fround(part[m * N + n]! * sc));
        }
      }
    }
  }
  const od = dataOf(out);
  fromFloatArray(acc, out.dtype, od.subarray(out.offset, out.offset + M * N) as HostArray);
}

/** e4m3 code → f32 value (exact), for the decode below. */
const E4M3 = Float32Array.from({ length: 256 }, (_, i) => e4m3BitsToF32(i));

/**
 * Reused f32 arrays for what lives only within one call (the decoded codes of q and w8, the block partial),
 * up to SCRATCH_MAX elements each (larger ones are allocated per call). A fresh 4-bytes-per-code array per
 * call made a decode step's garbage 4× its FP8 weight bytes: dsv32-mini's 1 × 512 × 512 product took
 * 4.4 ms inside a decode step (its collection included) against 0.9 ms alone (2-core CPU, 2026-12-06).
 * The arrays are only read by the matmul calls below, which return before the next call can begin.
 */
const SCRATCH_MAX = 1 << 24;
const scratchArrays: Float32Array[] = [];
function scratch(b: Backend, slot: number, n: number): View['storage'] {
  if (n > SCRATCH_MAX) return b.alloc('f32', n);
  let a = scratchArrays[slot];
  if (!a || a.length < n) scratchArrays[slot] = a = new Float32Array(Math.min(SCRATCH_MAX, Math.max(n, 2 * (a?.length ?? 0))));
  return new CpuStorage(b, 'f32', a.subarray(0, n));
}

/**
 * The e4m3 codes of a view as a contiguous f32 storage (exact) and the offset of its first value: in
 * scratch `slot`, decoded on every call — unless the caller passed the decoded values themselves (an f32
 * view, Backend.widensFp8Weights: a frozen inference weight decoded once by the model, fp8Codes in
 * src/model/fp8-linear.ts; dsv32-mini's batch-1 decode step 38–40 → 15.5–17.3 ms on the 2-core CPU, the codes'
 * decode having been half of it). A table lookup is about twice as fast as the generic cast copy, which
 * strided views still take.
 */
function decode(b: Backend, v: View, n: number, slot: number): { st: View['storage']; off: number } {
  if (v.dtype === 'f32' && isContiguousView(v)) return { st: v.storage, off: v.offset };
  const st = scratch(b, slot, n);
  const dst: View = { storage: st, dtype: 'f32', shape: [...v.shape], strides: contiguousStrides(v.shape), offset: 0 };
  if (!isContiguousView(v) || v.dtype !== 'f8e4m3') {
    b.copy(dst, v);
    return { st, off: 0 };
  }
  const src = dataOf(v) as Uint8Array;
  const o = dataOf(dst) as Float32Array;
  for (let i = 0, j = v.offset; i < n; i++, j++) o[i] = E4M3[src[j]!]!;
  return { st, off: 0 };
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}
