// Bit-exact dtype conversions: exhaustive decode→encode round trips over every bf16/f16/e4m3 bit
// pattern, round-to-nearest-even at every midpoint between neighbours (and one f32 ulp either side),
// overflow/NaN rules of PyTorch's c10, and the bulk tensor path (cast) agreeing with the scalar one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { testEachDevice, to } from './helpers.js';

const f32 = Math.fround;
function nextUp(x: number): number {
  // next f32 above x (x > 0 finite)
  return T.bitsToF32(T.f32Bits(x) + 1);
}
function nextDown(x: number): number {
  return T.bitsToF32(T.f32Bits(x) - 1);
}

interface Format {
  name: 'bf16' | 'f16' | 'f8e4m3';
  patterns: number;
  decode: (b: number) => number;
  encode: (x: number) => number;
  /** bits of canonical NaN for a NaN input with the given sign bit set */
  nan: (negative: boolean) => number;
  signBit: number;
  /** largest positive finite pattern, and the value one step above it (rounding target above the max) */
  maxFinite: number;
  aboveMax: number;
  /** pattern produced when rounding goes past maxFinite */
  overflow: number;
}

const FORMATS: Format[] = [
  {
    name: 'bf16', patterns: 1 << 16, decode: T.bf16BitsToF32, encode: T.f32ToBf16Bits,
    nan: () => 0x7fc0, signBit: 0x8000, maxFinite: 0x7f7f, aboveMax: 2 ** 128, overflow: 0x7f80,
  },
  {
    name: 'f16', patterns: 1 << 16, decode: T.f16BitsToF32, encode: T.f32ToF16Bits,
    nan: (neg) => (neg ? 0xfe00 : 0x7e00), signBit: 0x8000, maxFinite: 0x7bff, aboveMax: 65536, overflow: 0x7c00,
  },
  {
    name: 'f8e4m3', patterns: 256, decode: T.e4m3BitsToF32, encode: T.f32ToE4m3Bits,
    nan: (neg) => (neg ? 0xff : 0x7f), signBit: 0x80, maxFinite: 0x7e, aboveMax: 480, overflow: 0x7f,
  },
];

for (const fmt of FORMATS) {
  test(`${fmt.name}: every bit pattern decodes and re-encodes to itself (NaNs to the canonical NaN)`, () => {
    let nans = 0;
    for (let b = 0; b < fmt.patterns; b++) {
      const v = fmt.decode(b);
      const back = fmt.encode(v);
      if (Number.isNaN(v)) {
        nans++;
        assert.equal(back, fmt.nan((b & fmt.signBit) !== 0), `${fmt.name} NaN pattern 0x${b.toString(16)}`);
      } else assert.equal(back, b, `${fmt.name} pattern 0x${b.toString(16)} (${v}) re-encoded as 0x${back.toString(16)}`);
    }
    // bf16/f16: 2·(2^mantissa − 1) NaN patterns; e4m3fn: only S.1111.111
    assert.equal(nans, fmt.name === 'bf16' ? 2 * 127 : fmt.name === 'f16' ? 2 * 1023 : 2);
  });

  test(`${fmt.name}: round to nearest even at every midpoint, exact neighbours one f32 ulp away`, () => {
    const mids: number[] = [];
    const want: number[] = [];
    for (let b = 0; b <= fmt.maxFinite; b++) {
      const lo = fmt.decode(b);
      const hi = b === fmt.maxFinite ? fmt.aboveMax : fmt.decode(b + 1);
      const mid = (lo + hi) / 2;
      assert.equal(f32(mid), mid, 'midpoints are f32-representable');
      const upper = b === fmt.maxFinite ? fmt.overflow : b + 1;
      const even = (b & 1) === 0 ? b : upper;
      for (const sign of [1, -1]) {
        const sb = sign < 0 ? fmt.signBit : 0;
        assert.equal(fmt.encode(sign * mid), even | sb, `${fmt.name} midpoint ${sign * mid}`);
        assert.equal(fmt.encode(sign * nextDown(mid)), b | sb, `${fmt.name} just below ${sign * mid}`);
        assert.equal(fmt.encode(sign * nextUp(mid)), upper | sb, `${fmt.name} just above ${sign * mid}`);
      }
      mids.push(mid, -mid, nextDown(mid), nextUp(mid));
      want.push(even, even | fmt.signBit, b, upper);
    }
    // the bulk path (tensor cast from f32) must agree with the scalar path bit for bit
    const t = T.cast(T.fromArray(Float32Array.from(mids), [mids.length]), fmt.name);
    assert.deepEqual(Array.from(t.toHost() as Uint16Array | Uint8Array), want);
  });
}

test('hand-checked conversions (c10 saturation and NaN rules)', () => {
  // e4m3fn: 464 is the midpoint of 448 (0x7E, even) and the would-be 480 (the NaN code): ties to 448
  assert.equal(T.f32ToE4m3Bits(464), 0x7e);
  assert.equal(T.f32ToE4m3Bits(465), 0x7f);
  assert.equal(T.f32ToE4m3Bits(-464), 0xfe);
  assert.equal(T.f32ToE4m3Bits(480), 0x7f);
  assert.equal(T.f32ToE4m3Bits(Infinity), 0x7f);
  assert.equal(T.f32ToE4m3Bits(-Infinity), 0xff);
  assert.equal(T.f32ToE4m3Bits(NaN), 0x7f);
  assert.equal(T.f32ToE4m3Bits(2 ** -10), 0x00); // half the smallest subnormal ties to 0
  assert.equal(T.f32ToE4m3Bits(3 * 2 ** -10), 0x02); // 1.5 subnormal steps ties to 2 (even)
  assert.equal(T.f32ToE4m3Bits(-0), 0x80);
  assert.equal(T.e4m3BitsToF32(0x7e), 448);
  assert.equal(T.e4m3BitsToF32(0x01), 2 ** -9);
  // f16: 65520 is the midpoint of 65504 (odd mantissa) and 65536 → inf
  assert.equal(T.f32ToF16Bits(65520), 0x7c00);
  assert.equal(T.f32ToF16Bits(65519), 0x7bff);
  assert.equal(T.f32ToF16Bits(-65520), 0xfc00);
  assert.equal(T.f32ToF16Bits(2 ** -25), 0x0000);
  assert.equal(T.f32ToF16Bits(nextUp(2 ** -25)), 0x0001);
  assert.equal(T.f32ToF16Bits(NaN), 0x7e00);
  // bf16: 1 + 2^-8 is the midpoint of 1 (even) and 1 + 2^-7
  assert.equal(T.f32ToBf16Bits(1 + 2 ** -8), 0x3f80);
  assert.equal(T.f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(T.f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(T.f32ToBf16Bits(3.4028234663852886e38), 0x7f80); // f32 max rounds up to inf
  assert.equal(T.f32ToBf16Bits(-NaN), 0x7fc0);
  assert.equal(T.bf16Round(1 + 2 ** -8), 1);
});

testEachDevice('casts between all dtypes agree with the scalar conversions; float → int truncates', (dev) => {
  const vals = [0, -0, 1, -1.5, 2.5, 3.75, 100.3, -448, 464, 1e-3, 65520, 1e30, -7.9];
  const x = to(T.fromArray(Float32Array.from(vals), [vals.length]), dev);
  const bf = T.cast(x, 'bf16').toHost() as Uint16Array;
  const h = T.cast(x, 'f16').toHost() as Uint16Array;
  const e = T.cast(x, 'f8e4m3').toHost() as Uint8Array;
  vals.forEach((v, i) => {
    assert.equal(bf[i], T.f32ToBf16Bits(v), `bf16 of ${v}`);
    assert.equal(h[i], T.f32ToF16Bits(v), `f16 of ${v}`);
    assert.equal(e[i], T.f32ToE4m3Bits(v), `e4m3 of ${v}`);
  });
  // bf16 → f16 goes through the exact f32 value
  const b2h = T.cast(T.cast(x, 'bf16'), 'f16').toHost() as Uint16Array;
  vals.forEach((v, i) => assert.equal(b2h[i], T.f32ToF16Bits(T.bf16Round(v))));
  const small = to(T.fromArray(Float32Array.from([-1.7, 2.9, -0.2, 7]), [4]), dev);
  assert.deepEqual(Array.from(T.cast(small, 'i32').toHost() as Int32Array), [-1, 2, 0, 7]);
  assert.deepEqual(Array.from(T.cast(small, 'i64').toHost() as BigInt64Array), [-1n, 2n, 0n, 7n]);
  assert.deepEqual(Array.from(T.cast(small, 'bool').toHost() as Uint8Array), [1, 1, 1, 1]);
  // f64 → f32 rounds to nearest even too
  const d = to(T.fromArray(Float64Array.from([1 + 2 ** -24, 1 + 3 * 2 ** -24]), [2]), dev);
  assert.deepEqual(Array.from(T.cast(d, 'f32').toHost() as Float32Array), [1, 1 + 2 ** -22]);
});

// A bf16 activation against an f32 weight or gradient (bf16 training's weight gradients): the CUDA backend
// widens the bf16 operand (exact) and runs the f32 GEMM, so the product is the f64 one of the same values
// to f32 accumulation error; transposed operands and a broadcast batch dim take the same path.
testEachDevice('matmul of mixed bf16 and f32 operands is the product of their exact values (transposed, broadcast batch)', (dev) => {
  const rng = new T.Rng(7);
  const [B, M, K, N] = [3, 37, 130, 21];
  const a = to(T.cast(T.randn([B, M, K], rng), 'bf16'), dev);
  const bT = to(T.randn([N, K], rng), dev); // used as bᵀ: a column-major [K, N] operand shared by every batch
  const a64 = T.cast(to(a, 'cpu'), 'f64').toArray() as number[][][];
  const b64 = T.cast(to(bT, 'cpu'), 'f64').toArray() as number[][];
  const check = (got: T.Tensor, what: string, swap: boolean): void => {
    assert.equal(got.dtype, 'f32', what);
    const g = got.toArray() as number[][][];
    let worst = 0;
    for (let z = 0; z < B; z++) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let ref = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) {
        ref += a64[z]![i]![k]! * b64[j]![k]!;
        mag += Math.abs(a64[z]![i]![k]! * b64[j]![k]!);
      }
      const v = swap ? g[z]![j]![i]! : g[z]![i]![j]!;
      worst = Math.max(worst, Math.abs(v - ref) / mag);
    }
    assert.ok(worst < 1e-5, `${what}: worst error ${worst.toExponential(2)} of Σ|a·b| (f32 accumulation is ≲ 1e-6)`);
  };
  check(T.matmul(a, T.transpose(bT)), 'bf16 [B,M,K] · f32 [K,N]ᵀ', false);
  check(T.matmul(bT, T.transpose(a, 1, 2)), 'f32 [N,K] · bf16 [B,K,M]', true);
});

// matmul(a, b, { out: 'f32' }) of bf16 operands (dense training attention's scores): the f32 product of their
// exact values, f32-accumulated; its backward rounds the incoming f32 gradient to bf16 and runs bf16 GEMMs,
// so each operand's gradient is the bf16 product of that rounded gradient (torch autocast's backward).
testEachDevice('matmul with a wider out: bf16 operands into an f32 product, the backward in bf16', (dev) => {
  const rng = new T.Rng(11);
  const [B, M, K, N] = [2, 19, 70, 33];
  const a = to(T.cast(T.randn([B, M, K], rng), 'bf16'), dev);
  const b = to(T.cast(T.randn([K, N], rng), 'bf16'), dev);
  a.requiresGrad = true;
  b.requiresGrad = true;
  const y = T.matmul(a, b, { out: 'f32' });
  assert.equal(y.dtype, 'f32');
  const a64 = T.cast(to(a, 'cpu'), 'f64').toArray() as number[][][];
  const b64 = T.cast(to(b, 'cpu'), 'f64').toArray() as number[][];
  const yv = y.toArray() as number[][][];
  let worst = 0;
  for (let z = 0; z < B; z++) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let ref = 0;
    let mag = 0;
    for (let k = 0; k < K; k++) {
      ref += a64[z]![i]![k]! * b64[k]![j]!;
      mag += Math.abs(a64[z]![i]![k]! * b64[k]![j]!);
    }
    worst = Math.max(worst, Math.abs(yv[z]![i]![j]! - ref) / mag);
  }
  // a bf16 product would be off by up to 2^-9 of it; f32 accumulation stays ≲ 1e-6
  assert.ok(worst < 1e-5, `worst error ${worst.toExponential(2)} of Σ|a·b|`);
  const g = to(T.randn([B, M, N], rng), dev);
  T.backward(y, g);
  assert.equal(a.grad!.dtype, 'bf16');
  assert.equal(b.grad!.dtype, 'bf16');
  const g16 = T.cast(g, 'bf16');
  assert.deepEqual(a.grad!.toHost(), T.matmul(g16, T.transpose(T.detach(b))).toHost());
  assert.deepEqual(b.grad!.toHost(), T.sum(T.matmul(T.transpose(T.detach(a), 1, 2), g16), 0).toHost());
  const f = to(T.randn([2, 2], rng), dev);
  assert.throws(() => T.matmul(f, f, { out: 'bf16' }), /matmul: out bf16 is narrower than the operands' f32/);
});

// The CPU matmul widens an operand of another dtype before BLAS. A column-major one (a bf16 weight read as
// transpose(w)) must stay column-major: BLAS sums an element's products in a different order for the
// transposed and the plain layout (OpenBLAS's SkylakeX kernels differ in the last bit), and the model's
// bit-equality tests compare a bf16 weight's product with its exact f32 copy's.
test('cpu matmul: a bf16 transposed weight gives bit for bit the product of its f32 copy', () => {
  const rng = new T.Rng(11);
  for (const [M, K, N] of [[33, 256, 96], [7, 130, 21], [64, 512, 144]] as const) {
    const x = T.randn([M, K], rng);
    const w = T.cast(T.randn([N, K], rng), 'bf16');
    const a = T.matmul(x, T.transpose(w)).toHost() as Float32Array;
    const b = T.matmul(x, T.transpose(T.cast(w, 'f32'))).toHost() as Float32Array;
    let diff = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
    assert.equal(diff, 0, `[${M}, ${K}] · [${N}, ${K}]ᵀ: ${diff} of ${a.length} outputs differ`);
  }
});
