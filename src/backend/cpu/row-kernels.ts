// The CPU backend's row-parallel loops: each computes rows [r0, r1) of one op call from plain arguments
// (typed arrays and numbers, so a call can be posted to a worker thread), and a range's result never
// depends on which other ranges exist, so a split call is bit-identical to the serial one. The ops call
// them through parallelRows (pool.ts); the workers find them by name in ROW_KERNELS below. The DSA ops'
// loops live in their own file (dsa-indexer.ts) and are only registered here.
import { e4m3SatFromF32Bits, f32Bits, E4M3_MAX } from '../../tensor/dtype.js';
import { expd } from './exp.js';
import { indexerHeadSumRows, topkRows } from './dsa-indexer.js';

type F = Float32Array | Float64Array;
const fround = Math.fround;

/**
 * The reference's RMSNorm over rows of v into o (src/model/norm.ts says why): the squares summed as a
 * halving tree (j + ⌊n/2⌋ onto j, an odd row's last element carried to ⌊n/2⌋), × 1/D, + eps, sqrt, 1 ÷,
 * then w·(x·inv), each step rounded to the compute type (f32, f64 for f64 rows). A double result of +, ×,
 * ÷ or sqrt on f32 values rounds to the correctly rounded f32 one, so fround after each is exactly f32
 * arithmetic, as the CUDA kernel's explicitly rounded intrinsics (kernels/norm.cu rmsnorm_tree); only the
 * mean's factor differs (the double 1/D here, its f32 rounding there, as the two backends' muls), for
 * non-power-of-two D. Rows of D = w.length.
 */
export interface NormArgs {
  o: F;
  v: F;
  w: F;
  eps: number;
}

/**
 * The f32 rows: the intermediates live in Float32Arrays, whose stores are the f32 roundings; Math.fround
 * only where two rounded values meet in one expression (the squares summed by the tree's first level).
 */
export function rmsNormF32(a: NormArgs, r0: number, r1: number): void {
  const o = a.o as Float32Array, v = a.v as Float32Array, wv = a.w as Float32Array;
  const D = wv.length;
  const t = new Float32Array(D);
  const h0 = D >> 1;
  for (let r = r0; r < r1; r++) {
    const base = r * D;
    // the squares and the tree's first level (j + ⌊D/2⌋ onto j) in one pass
    for (let j = 0; j < h0; j++) {
      const x = v[base + j]!;
      const y = v[base + h0 + j]!;
      t[j] = fround(x * x) + fround(y * y);
    }
    if (D & 1) {
      const x = v[base + D - 1]!;
      t[h0] = x * x;
    }
    normRowF32(o, v, base, t, wv, a.eps);
  }
}

/**
 * The rest of one f32 row after the tree's first level is in t (the squares when D = 1): the remaining
 * halvings from n = ⌊D/2⌋ + (D mod 2), 1/rms, and o = w·(v·inv).
 */
function normRowF32(o: Float32Array, v: Float32Array, base: number, t: Float32Array, wv: Float32Array, eps: number): void {
  const D = wv.length;
  for (let n = D === 1 ? 1 : (D >> 1) + (D & 1); n > 1;) {
    const h = n >> 1;
    for (let j = 0; j < h; j++) t[j] = t[j]! + t[j + h]!;
    if (n & 1) t[h] = t[n - 1]!;
    n = h + (n & 1);
  }
  const inv = fround(1 / fround(Math.sqrt(fround(fround(t[0]! * (1 / D)) + eps))));
  for (let j = 0; j < D; j++) o[base + j] = wv[j]! * fround(v[base + j]! * inv);
}

export function rmsNormF64(a: NormArgs, r0: number, r1: number): void {
  const o = a.o as Float64Array, v = a.v as Float64Array, wv = a.w as Float64Array;
  const D = wv.length;
  const t = new Float64Array(D);
  for (let r = r0; r < r1; r++) {
    const base = r * D;
    for (let j = 0; j < D; j++) t[j] = v[base + j]! * v[base + j]!;
    for (let n = D; n > 1;) {
      const h = n >> 1;
      for (let j = 0; j < h; j++) t[j] = t[j]! + t[j + h]!;
      if (n & 1) t[h] = t[n - 1]!;
      n = h + (n & 1);
    }
    const inv = 1 / Math.sqrt(t[0]! * (1 / D) + a.eps);
    for (let j = 0; j < D; j++) o[base + j] = wv[j]! * (v[base + j]! * inv);
  }
}

/**
 * rmsNormResidual's f32 rows in one pass each: h = x + r (stored rounded to f32 into h, the residual
 * output) with the squares and the tree's first level, then the rest of rmsNormF32's row. Row i of o
 * is stored after row i of x, r and h is read, so o may be x or r itself (not another part of them).
 */
export function rmsNormResidualF32(a: { o: Float32Array; h: Float32Array; x: Float32Array; r: Float32Array; w: Float32Array; eps: number }, r0: number, r1: number): void {
  const { o, h: hv, x: xa, r: rb, w: wv } = a;
  const D = wv.length;
  const t = new Float32Array(D);
  const h0 = D >> 1;
  for (let r = r0; r < r1; r++) {
    const base = r * D;
    for (let j = 0; j < h0; j++) {
      const x = fround(xa[base + j]! + rb[base + j]!);
      const y = fround(xa[base + h0 + j]! + rb[base + h0 + j]!);
      hv[base + j] = x;
      hv[base + h0 + j] = y;
      t[j] = fround(x * x) + fround(y * y);
    }
    if (D & 1) {
      const x = fround(xa[base + D - 1]! + rb[base + D - 1]!);
      hv[base + D - 1] = x;
      t[h0] = x * x;
    }
    normRowF32(o, hv, base, t, wv, a.eps);
  }
}

/**
 * The Hadamard butterflies of f32 rows (n a power of two) in a double row, two levels per pass: for each
 * quadruple x₀..x₃ at j, j + h, j + 2h, j + 3h, level h gives y = (x₀ + x₁, x₀ − x₁, x₂ + x₃, x₂ − x₃) and
 * level 2h z = (y₀ + y₂, y₁ + y₃, y₀ − y₂, y₁ − y₃): the same double operations on the same operands as two
 * single-level passes, with half the row traffic. The first pass reads the f32 row (one level when log₂ n
 * is odd), the last product with scale is stored rounded into o.
 */
export function hadamardF32(a: { o: Float32Array; v: Float32Array; n: number; scale: number }, r0: number, r1: number): void {
  const { o, v, n, scale } = a;
  const row = new Float64Array(n);
  const odd = (31 - Math.clz32(n)) & 1;
  for (let r = r0; r < r1; r++) {
    const base = r * n;
    let h: number;
    if (n === 1) row[0] = v[base]!;
    else if (odd) {
      for (let j = 0; j < n; j += 2) {
        const a0 = v[base + j]!;
        const b0 = v[base + j + 1]!;
        row[j] = a0 + b0;
        row[j + 1] = a0 - b0;
      }
    } else {
      for (let j = 0; j < n; j += 4) {
        const x0 = v[base + j]!, x1 = v[base + j + 1]!, x2 = v[base + j + 2]!, x3 = v[base + j + 3]!;
        const y0 = x0 + x1, y1 = x0 - x1, y2 = x2 + x3, y3 = x2 - x3;
        row[j] = y0 + y2;
        row[j + 1] = y1 + y3;
        row[j + 2] = y0 - y2;
        row[j + 3] = y1 - y3;
      }
    }
    for (h = odd ? 2 : 4; 4 * h <= n; h <<= 2) {
      for (let i = 0; i < n; i += 4 * h) {
        for (let j = i; j < i + h; j++) {
          const x0 = row[j]!, x1 = row[j + h]!, x2 = row[j + 2 * h]!, x3 = row[j + 3 * h]!;
          const y0 = x0 + x1, y1 = x0 - x1, y2 = x2 + x3, y3 = x2 - x3;
          row[j] = y0 + y2;
          row[j + h] = y1 + y3;
          row[j + 2 * h] = y0 - y2;
          row[j + 3 * h] = y1 - y3;
        }
      }
    }
    for (let j = 0; j < n; j++) o[base + j] = row[j]! * scale;
  }
}

/**
 * SwiGLU over elements [e0, e1): the unary silu's value (v / (1 + e^−v), rounded to the compute type:
 * f32 when o is a Float32Array), then the product (rounded by the store).
 */
export function swiglu(a: { o: F; g: F; u: F }, e0: number, e1: number): void {
  const { o, g, u } = a;
  if (o instanceof Float32Array) {
    for (let i = e0; i < e1; i++) {
      const v = g[i]!;
      o[i] = fround(v / (1 + expd(-v))) * u[i]!;
    }
  } else {
    for (let i = e0; i < e1; i++) {
      const v = g[i]!;
      o[i] = (v / (1 + expd(-v))) * u[i]!;
    }
  }
}

/**
 * Per-block e4m3 quantisation of f32 rows of N (x [rows, N] into q bytes at qOff + r·N and one scale per
 * block of `block` columns at sOff + r·nb): scale = amax/448 (amax clamped below at f32(1e-4); rounded up
 * to a power of two when ue8m0), q = e4m3(x / scale) saturated at ±448.
 */
export function actQuant(a: { q: Uint8Array; qOff: number; s: Float32Array; sOff: number; v: Float32Array; N: number; block: number; ue8m0: boolean }, r0: number, r1: number): void {
  const { q: qd, s: sd, v, N, block, ue8m0 } = a;
  const nb = Math.ceil(N / block);
  const inv448 = fround(1 / E4M3_MAX);
  const yb = new Float32Array(Math.min(block, N));
  const yu = new Uint32Array(yb.buffer);
  const vu = new Uint32Array(v.buffer, v.byteOffset, v.length); // v's bits: a NaN's sign
  for (let r = r0; r < r1; r++) {
    for (let bi = 0; bi < nb; bi++) {
      const lo = r * N + bi * block;
      const hi = r * N + Math.min(N, (bi + 1) * block);
      let amax = 0;
      for (let j = lo; j < hi; j++) {
        const x = Math.abs(v[j]!);
        if (x > amax || x !== x) amax = x;
      }
      amax = Math.max(amax, fround(1e-4)); // the clamp happens in f32: 1e-4 rounded to f32
      let sc = fround(amax * inv448);
      if (ue8m0) {
        // 2^ceil(log2(sc)) from the f32 bits: exponent, plus one when any mantissa bit is set
        const bits = f32Bits(sc);
        const e = ((bits >>> 23) & 0xff) - 127 + ((bits & 0x7fffff) !== 0 ? 1 : 0);
        sc = 2 ** e;
      }
      sd[a.sOff + r * nb + bi] = sc;
      // y = fround(x / sc) by the Float32Array store, then its bits through the Uint32Array view:
      // e4m3SatFromF32Bits is f32ToE4m3Bits of y clamped to ±448. A ue8m0 scale is a power of two
      // (2^−22 .. 2^129 here), so x·(1/sc) is the quotient exactly, without a division per value.
      const n = hi - lo;
      const qo = a.qOff + lo;
      if (sc - sc !== 0) {
        // a NaN or infinite scale (a NaN or ±inf in the block, without ue8m0): the quotient's NaNs get
        // platform-independent codes, as the CUDA kernel writes them: a NaN input keeps its sign
        // (0x7F | sign), any other NaN quotient (finite / NaN, ±inf / inf) is 0x7F. Left to the hardware,
        // x86 gives its default NaN, which is negative (0xFF), and a GPU its canonical NaN, positive.
        for (let j = 0; j < n; j++) {
          yb[0] = v[lo + j]! / sc;
          const x = v[lo + j]!;
          qd[qo + j] = yb[0]! === yb[0]! ? e4m3SatFromF32Bits(yu[0]!) : x === x ? 0x7f : 0x7f | ((vu[lo + j]! >>> 24) & 0x80);
        }
        continue;
      }
      if (ue8m0) {
        const rs = 1 / sc;
        for (let j = 0; j < n; j++) yb[j] = v[lo + j]! * rs;
      } else {
        for (let j = 0; j < n; j++) yb[j] = v[lo + j]! / sc;
      }
      for (let j = 0; j < n; j++) qd[qo + j] = e4m3SatFromF32Bits(yu[j]!);
    }
  }
}

/** Every loop a worker may be asked to run, by the name the ops pass to parallelRows. */
export const ROW_KERNELS = {
  rmsNormF32, rmsNormF64, rmsNormResidualF32, hadamardF32, swiglu, actQuant, indexerHeadSumRows, topkRows,
};
