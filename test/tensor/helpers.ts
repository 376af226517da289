// Shared helpers of the tensor tests. Tests that take a `dev` run once per available backend
// (`devices()`), building inputs on the CPU and moving them over, so a new backend (CUDA) is checked
// against the CPU oracle by the same test bodies. DSV32_TEST_DEVICES=cpu,cuda narrows or widens the set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';

/** Backends that can be created on this machine (every registered one unless the env var narrows it). */
export function devices(): string[] {
  const want = process.env.DSV32_TEST_DEVICES?.split(',').map((s) => s.trim()).filter(Boolean);
  const out: string[] = [];
  for (const name of want ?? T.registeredBackends()) {
    try {
      T.getBackend(name);
      out.push(name);
    } catch {
      // not available here (no GPU, no driver): skipped
    }
  }
  return out;
}

/** One node:test case per device: `name [dev]`. */
export function testEachDevice(name: string, fn: (dev: string) => void | Promise<void>): void {
  for (const dev of devices()) test(`${name} [${dev}]`, () => fn(dev));
}

/** A copy of t on `dev` (same dtype, bits and shape; not part of any graph). */
export function to(t: T.Tensor, dev: string, requiresGrad = false): T.Tensor {
  const out = T.fromBits(t.toHost(), t.dtype, t.shape, { device: dev });
  out.requiresGrad = requiresGrad;
  return out;
}

/** t itself when it is already on `dev`, else a copy there (as `to`). */
export const on = (t: T.Tensor, dev: string): T.Tensor => (t.device === dev ? t : to(t, dev));

/** One standard normal draw (Box–Muller, one uniform pair per value) from `rnd` (e.g. test/chat/rng.ts). */
export function normal(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-12))) * Math.cos(2 * Math.PI * rnd());
}

/** n normals × scale in f64, one uniform pair per value. */
export function normals64(n: number, rnd: () => number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = normal(rnd) * scale;
  return out;
}

/** n normals × scale in f32, both Box–Muller values of each uniform pair used. */
export function normalsF32(n: number, rnd: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(rnd(), 1e-12);
    const v = rnd();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** ‖a − e‖₂ / ‖e‖₂ (‖a − e‖₂ when e is all zeros). */
export function relErr(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < e.length; i++) {
    num += (a[i]! - e[i]!) ** 2;
    den += e[i]! ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

/** Byte-for-byte equality of two tensors' host data; with `meta` (the default) shape and dtype must agree too. */
export function bitsEqual(a: T.Tensor, b: T.Tensor, what: string, meta = true): void {
  if (meta) {
    assert.deepEqual(a.shape, b.shape, `${what}: shape`);
    assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  }
  const x = T.hostBytes(a.toHost());
  const y = T.hostBytes(b.toHost());
  if (!meta) assert.equal(x.length, y.length, `${what}: byte length`);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) { bad++; if (first < 0) first = i; }
  assert.equal(bad, 0, `${what}: ${bad} of ${x.length} bytes differ (first at byte ${first})`);
}

/** Seeded normal tensor on `dev`. */
export function randn(shape: number[], seed: number, dev = 'cpu', dtype: T.DType = 'f64', requiresGrad = false): T.Tensor {
  return to(T.randn(shape, new T.Rng(seed), { dtype }), dev, requiresGrad);
}

/** Seeded integer tensor with values in [0, n). */
export function randint(shape: number[], n: number, seed: number, dev = 'cpu'): T.Tensor {
  const rng = new T.Rng(seed);
  const v = new BigInt64Array(T.numelOf(shape));
  for (let i = 0; i < v.length; i++) v[i] = BigInt(rng.int(n));
  return T.fromArray(v, shape, { dtype: 'i64', device: dev });
}

export function ints(vals: number[], shape?: number[], dev = 'cpu'): T.Tensor {
  return T.fromArray(BigInt64Array.from(vals.map(BigInt)), shape ?? [vals.length], { dtype: 'i64', device: dev });
}

/** Assert gradcheck passes for f over the given leaves (all f64 with requiresGrad). */
export function assertGradcheck(f: (...xs: T.Tensor[]) => T.Tensor, inputs: T.Tensor[], opts: T.GradcheckOptions = {}): void {
  for (const x of inputs) x.requiresGrad = true;
  const r = T.gradcheck(f, inputs, opts);
  assert.ok(r.ok, `gradcheck failed: ${r.detail} (max abs err ${r.maxAbsErr})`);
}

/** |a − e| ≤ atol + rtol·|e| elementwise, NaN matching NaN; shapes must agree. */
export function assertClose(actual: T.Tensor, expected: T.Tensor | ArrayLike<number>, atol = 1e-6, rtol = 1e-6, what = ''): void {
  if (expected instanceof T.Tensor) assert.deepEqual(actual.shape, expected.shape, `${what} shape`);
  const a = actual.toFloat64();
  const e = expected instanceof T.Tensor ? expected.toFloat64() : Float64Array.from(expected);
  assert.equal(a.length, e.length, `${what} length`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = e[i]!;
    if (Number.isNaN(y)) {
      assert.ok(Number.isNaN(x), `${what} element ${i}: expected NaN, got ${x}`);
      continue;
    }
    if (x === y) continue;
    assert.ok(Math.abs(x - y) <= atol + rtol * Math.abs(y), `${what} element ${i}: got ${x}, expected ${y}`);
  }
}

/** Assert fn throws a ShapeError (or `cls`) whose message contains every fragment. */
export function assertThrowsWith(fn: () => unknown, fragments: string[], cls: new (...a: never[]) => Error = T.ShapeError): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    for (const f of fragments) assert.ok((e as Error).message.includes(f), `message "${(e as Error).message}" lacks "${f}"`);
    return true;
  });
}
