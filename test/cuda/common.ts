// Shared pieces of the CUDA tests: the skip reason when no driver is present, CPU↔CUDA copies, poisoned
// outputs, and the comparison rule (relative L2 error per dtype, NaN positions must agree, and an
// output element still holding the poison is an error).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { cudaUnavailableReason, type CudaBackend } from '../../src/backend/cuda/index.js';

export const reason = cudaUnavailableReason();
/** node:test options: skip with the driver's reason on machines without CUDA. */
export const onGpu = reason ? { skip: `no CUDA: ${reason}` } : {};
/** The backends a test body runs on, with their node:test options (CUDA skipped with the reason above). */
export const DEVICES: [string, { skip?: string }][] = [['cpu', {}], ['cuda', onGpu]];

/** One node:test case per backend, `name [dev]`; CUDA is skipped with the driver's reason where there is none. */
export function eachDevice(name: string, fn: (dev: string, t: TestContext) => void): void {
  for (const [dev, opts] of DEVICES) test(`${name} [${dev}]`, opts, (t) => fn(dev, t));
}

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
    if (!Number.isFinite(y) || !Number.isFinite(x)) {
      assert.equal(x, y, `${what}: element ${i}`);
      continue;
    }
    // every finite element counts in the denominator, equal ones included: skipping them made the
    // "relative error" that of the few differing elements alone, so two bf16 tensors agreeing bit for
    // bit but for a handful of 1-ulp roundings could score 2e-2 (the "intermittent" layerNorm/bmm failures)
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

/**
 * Run `body` on cpu and cuda with the same inputs (moved over bit-exactly) and compare the outputs.
 * When a comparison fails, the message says where the difference came from: whether the inputs read
 * back from the device still equal the host's, whether running the body again on the same device
 * inputs gives a correct result (a one-off: wrong data or arguments reached that launch) or the same
 * wrong one (the kernel is wrong for these inputs), and which rows of the output are off.
 */
export function both(inputs: T.Tensor[], outs: [number[], T.DType][], body: (b: T.Backend, ins: T.Tensor[], outs: T.Tensor[]) => void, tol: number | 'bits', what: string): T.Tensor[] {
  const res: T.Tensor[][] = [];
  let devIns: T.Tensor[] = [];
  for (const dev of ['cpu', 'cuda']) {
    const ins = inputs.map((t) => (dev === 'cpu' ? t : to(t, 'cuda')));
    if (dev === 'cuda') devIns = ins;
    const o = outs.map(([s, d]) => poisoned(s, d, dev));
    body(T.getBackend(dev), ins, o);
    res.push(o);
  }
  const check = (got: T.Tensor[], i: number): void => {
    if (tol === 'bits') assertBits(got[i]!, res[0]![i]!, `${what} out ${i}`);
    else assertRel(got[i]!, res[0]![i]!, tol, `${what} out ${i}`);
  };
  for (let i = 0; i < outs.length; i++) {
    try {
      check(res[1]!, i);
    } catch (e) {
      throw new assert.AssertionError({ message: `${(e as Error).message}\n${diagnose(inputs, devIns, outs, body, res[1]![i]!, res[0]![i]!, i, check)}` });
    }
  }
  return res[1]!;
}

function diagnose(inputs: T.Tensor[], devIns: T.Tensor[], outs: [number[], T.DType][], body: (b: T.Backend, ins: T.Tensor[], outs: T.Tensor[]) => void,
  got: T.Tensor, want: T.Tensor, i: number, check: (got: T.Tensor[], i: number) => void): string {
  const lines: string[] = [];
  const inputsIntact = inputs.map((t, k) => {
    const a = T.hostBytes(t.toHost());
    const d = T.hostBytes(devIns[k]!.toHost());
    let bad = 0;
    for (let j = 0; j < a.length; j++) if (a[j] !== d[j]) bad++;
    return bad === 0 ? `input ${k} intact` : `input ${k}: ${bad} of ${a.length} bytes differ on the device`;
  });
  lines.push(`diagnosis: ${inputsIntact.join('; ')}`);
  const again = outs.map(([s, d]) => poisoned(s, d, 'cuda'));
  body(cuda(), devIns, again);
  try {
    check(again, i);
    lines.push('re-run on the same device inputs: correct (a one-off: wrong data or arguments reached the failed launch)');
  } catch (e) {
    lines.push(`re-run on the same device inputs: also wrong (${(e as Error).message.split('\n')[0]})`);
  }
  const last = want.shape.at(-1) ?? 1;
  const rows = last ? want.numel / last : 0;
  const a = got.toFloat64();
  const w = want.toFloat64();
  const badRows: string[] = [];
  for (let r = 0; r < rows && badRows.length < 12; r++) {
    let num = 0;
    let den = 0;
    for (let j = r * last; j < (r + 1) * last; j++) {
      if (Number.isNaN(a[j]!) && Number.isNaN(w[j]!)) continue;
      num += (a[j]! - w[j]!) ** 2;
      den += w[j]! ** 2;
    }
    const err = Math.sqrt(num / (den || 1));
    if (!(err < 1e-2)) badRows.push(`${r}: ${err.toExponential(2)} (cuda[0..3] ${Array.from(a.subarray(r * last, r * last + 3), (v) => v.toPrecision(4)).join(' ')} · cpu ${Array.from(w.subarray(r * last, r * last + 3), (v) => v.toPrecision(4)).join(' ')})`);
  }
  lines.push(`rows off by > 1e-2 (of ${rows}): ${badRows.length ? badRows.join('; ') : 'none'}`);
  return lines.join('\n');
}
