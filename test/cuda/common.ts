// Shared pieces of the CUDA tests: the skip reason when no driver is present, CPU↔CUDA copies, poisoned
// outputs, and the comparison rule (relative L2 error per dtype, NaN positions must agree, and an
// output element still holding the poison is an error).
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { cudaUnavailableReason, type CudaBackend } from '../../src/backend/cuda/index.js';

export const reason = cudaUnavailableReason();
/** node:test options: skip with the driver's reason on machines without CUDA. */
export const onGpu = reason ? { skip: `no CUDA: ${reason}` } : {};

export function cuda(): CudaBackend {
  return T.getBackend('cuda') as CudaBackend;
}

export const TOL: Partial<Record<T.DType, number>> = { f32: 1e-5, f64: 1e-12, bf16: 1e-2, f16: 2e-3 };

let seed = (Date.now() ^ (process.pid << 8)) >>> 0;
/**
 * Fresh seeds every run (printed on failure through the message). Math.imul keeps the LCG exact mod 2^32:
 * the plain product exceeds 2^53, so its low bits were rounded away and the states collapsed onto
 * multiples of 2^9 (many-to-one, so a printed state no longer identified the inputs that failed).
 */
export function nextSeed(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed;
}

export function to(t: T.Tensor, dev: string): T.Tensor {
  return T.fromBits(t.toHost(), t.dtype, t.shape, { device: dev });
}

export function randn(shape: number[], dtype: T.DType = 'f32', s = nextSeed()): T.Tensor {
  return T.randn(shape, new T.Rng(s), { dtype });
}

/** An output tensor filled with a poison value (NaN for floats, a sentinel for ints). */
export function poisoned(shape: readonly number[], dtype: T.DType, dev: string): T.Tensor {
  const t = T.empty(shape, { dtype, device: dev });
  t.backend.fill(t, T.isFloat(dtype) ? NaN : dtype === 'bool' ? 1 : dtype === 'u8' ? 77 : -777);
  return t;
}

/** ‖a − e‖₂ / ‖e‖₂ ≤ tol, with matching NaN positions; returns the error. */
export function assertRel(actual: T.Tensor, expected: T.Tensor, tol: number, what: string): number {
  assert.deepEqual([...actual.shape], [...expected.shape], `${what}: shape`);
  const a = actual.toFloat64();
  const e = expected.toFloat64();
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = e[i]!;
    if (Number.isNaN(y) || Number.isNaN(x)) {
      assert.ok(Number.isNaN(x) && Number.isNaN(y), `${what}: element ${i} is ${x} on cuda, ${y} on cpu`);
      continue;
    }
    if (x === y) continue;
    if (!Number.isFinite(y) || !Number.isFinite(x)) assert.equal(x, y, `${what}: element ${i}`);
    num += (x - y) ** 2;
    den += y * y;
  }
  const err = den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
  assert.ok(err <= tol, `${what}: relative error ${err.toExponential(3)} > ${tol} (seed state ${seed})`);
  return err;
}

/** Bitwise equality of two tensors' host representations. */
export function assertBits(actual: T.Tensor, expected: T.Tensor, what: string, maxMismatch = 0): void {
  // raw bytes: NaN payloads and -0 compare exactly
  const a = T.hostBytes(actual.toHost());
  const e = T.hostBytes(expected.toHost());
  assert.equal(a.length, e.length, `${what}: length`);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  assert.ok(bad <= maxMismatch, `${what}: ${bad} of ${a.length} bytes differ (first at ${first}: ${a[first]} vs ${e[first]})`);
}
