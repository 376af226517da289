// Dtypes and bit-exact conversions between them.
//
// Storage representation on the host (and byte layout on every device):
//   f32 Float32Array · f64 Float64Array · bf16/f16 Uint16Array (raw bits) · f8e4m3 Uint8Array (raw bits)
//   i32 Int32Array · i64 BigInt64Array · u8/bool Uint8Array
// Floating conversions round to nearest even and follow PyTorch's c10 rules:
//   bf16: NaN → 0x7FC0 (sign dropped, as c10::detail::round_to_nearest_even); overflow rounds to ±inf.
//   f16:  IEEE binary16, subnormals kept, overflow → ±inf, NaN → 0x7E00 (sign kept).
//   f8 e4m3fn: no infinities; |x| ≥ 480 (and inf, NaN) → NaN 0x7F (sign kept), so values in (464, 480)
//   round up into the NaN code exactly as c10::Float8_e4m3fn does. Saturation is NOT implicit: callers
//   that want it clamp to ±448 first (act_quant does).
import { DsvError } from '../errors.js';

export type DType = 'f32' | 'f64' | 'bf16' | 'f16' | 'f8e4m3' | 'i32' | 'i64' | 'u8' | 'bool';
export const DTYPES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16', 'f8e4m3', 'i32', 'i64', 'u8', 'bool'];

export type HostArray = Float32Array | Float64Array | Uint16Array | Uint8Array | Int32Array | BigInt64Array;

export const ITEMSIZE: Record<DType, number> = {
  f32: 4, f64: 8, bf16: 2, f16: 2, f8e4m3: 1, i32: 4, i64: 8, u8: 1, bool: 1,
};

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f64' || d === 'bf16' || d === 'f16' || d === 'f8e4m3';
}
export function isInt(d: DType): boolean {
  return d === 'i32' || d === 'i64' || d === 'u8' || d === 'bool';
}

/** The dtype arithmetic runs in on the CPU: f64 stays f64, every other float computes in f32. */
export function computeDtype(d: DType): 'f32' | 'f64' {
  return d === 'f64' ? 'f64' : 'f32';
}

export function allocHost(dtype: DType, n: number): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f64': return new Float64Array(n);
    case 'bf16': case 'f16': return new Uint16Array(n);
    case 'f8e4m3': case 'u8': case 'bool': return new Uint8Array(n);
    case 'i32': return new Int32Array(n);
    case 'i64': return new BigInt64Array(n);
  }
}

/** View raw little-endian bytes as the host array of `dtype` (copies only when misaligned). */
export function hostFromBytes(dtype: DType, bytes: Uint8Array): HostArray {
  const size = ITEMSIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new DsvError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  let b = bytes;
  if (b.byteOffset % size !== 0) b = b.slice();
  const n = b.byteLength / size;
  switch (dtype) {
    case 'f32': return new Float32Array(b.buffer, b.byteOffset, n);
    case 'f64': return new Float64Array(b.buffer, b.byteOffset, n);
    case 'bf16': case 'f16': return new Uint16Array(b.buffer, b.byteOffset, n);
    case 'f8e4m3': case 'u8': case 'bool': return new Uint8Array(b.buffer, b.byteOffset, n);
    case 'i32': return new Int32Array(b.buffer, b.byteOffset, n);
    case 'i64': return new BigInt64Array(b.buffer, b.byteOffset, n);
  }
}

export function hostBytes(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---- scalar bit conversions -------------------------------------------------------------------
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0]!;
}
export function bitsToF32(b: number): number {
  u32buf[0] = b >>> 0;
  return f32buf[0]!;
}

export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fc0; // c10 round_to_nearest_even: every NaN → 0x7FC0
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
export function bf16BitsToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0]!;
}
/** Round a number to the nearest bf16 value (through f32, as a torch cast from f32 does). */
export function bf16Round(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}

export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 : sign | 0x7c00;
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal half: value = mant' * 2^-24; shift the full significand into place with RNE.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e; // 24-bit significand → (10 + e)-bit result
    const q = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    const r = rem > half || (rem === half && (q & 1)) ? q + 1 : q;
    return sign | r;
  }
  const q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent (and reaches inf at the top)
  const r = rem > 0x1000 || (rem === 0x1000 && (q & 1)) ? q + 1 : q;
  return sign | r;
}
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  // NaN keeps its sign and payload (as c10's fp16 → fp32), so a decode → encode round trip keeps the sign
  if (e === 31) return m ? bitsToF32(((h & 0x8000) << 16) | 0x7fc00000 | (m << 13)) : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 → float8 e4m3fn bits, bit-for-bit as c10::detail::fp8e4m3fn_from_fp32_value. */
export function f32ToE4m3Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0]!;
  const sign = (b >>> 24) & 0x80;
  const a = b & 0x7fffffff;
  if (a >= 0x43f00000) return sign | 0x7f; // ≥ 480, inf or NaN
  if (a < 0x3c800000) {
    // below 2^-6: subnormal grid of step 2^-9; RNE of |x|·2^9 (exact in f64)
    f32buf[0] = 0;
    u32buf[0] = a;
    const v = f32buf[0]! * 512;
    let r = Math.floor(v);
    const d = v - r;
    if (d > 0.5 || (d === 0.5 && (r & 1))) r++;
    return sign | r;
  }
  const odd = (a >>> 20) & 1;
  const t = (a + (((7 - 127) << 23) >>> 0) + 0x7ffff + odd) >>> 0;
  return sign | ((t >>> 20) & 0x7f);
}

/**
 * f32ToE4m3Bits(clamp(x, −448, 448)) from x's f32 bits b (as a uint32): the saturating encode of actQuant,
 * in integer arithmetic only (the hot loop hands it a block's bits read through a Uint32Array view, so no
 * scratch store per value and no float steps). NaN keeps its sign (sign | 0x7F); |x| > 448 or ±∞ clamps
 * to ±448 (sign | 0x7E). Below 2^−6 the grid step is 2^−9: |x|·2^9 = m·2^(E−141) with m the 24-bit
 * significand and E the biased exponent, rounded to nearest even by a shift of s = 141 − E (21..24; E < 117
 * means |x| < 2^−10, which rounds to 0). Above, the normal path of f32ToE4m3Bits: rebias the exponent by
 * −120 and round the mantissa's 20 dropped bits to nearest even. test/tensor/e4m3-sat.test.ts checks it
 * against f32ToE4m3Bits around every e4m3 value and midpoint, on random bit patterns and the specials.
 */
export function e4m3SatFromF32Bits(b: number): number {
  const sign = (b >>> 24) & 0x80;
  const a = b & 0x7fffffff;
  if (a >= 0x43e00000) return a > 0x7f800000 ? sign | 0x7f : sign | 0x7e;
  if (a < 0x3c800000) {
    const e = a >>> 23;
    if (e < 117) return sign;
    const s = 141 - e;
    const m = (a & 0x7fffff) | 0x800000;
    return sign | ((m + (1 << (s - 1)) - 1 + ((m >>> s) & 1)) >>> s);
  }
  // a − 0x3C000000 + 0x7FFFF, kept in int32 range (a ≥ 0x3C800000, so no wrap)
  return sign | ((a - 0x3bf80001 + ((a >>> 20) & 1)) >>> 20);
}

const E4M3_TABLE = (() => {
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const s = i & 0x80 ? -1 : 1;
    const e = (i >>> 3) & 0xf;
    const m = i & 7;
    if (e === 15 && m === 7) t[i] = bitsToF32(i & 0x80 ? 0xffc00000 : 0x7fc00000); // signed NaN
    else if (e === 0) t[i] = s * m * 2 ** -9;
    else t[i] = s * (1 + m / 8) * 2 ** (e - 7);
  }
  return t;
})();
export function e4m3BitsToF32(b: number): number {
  return E4M3_TABLE[b & 0xff]!;
}
export const E4M3_MAX = 448;

// ---- bulk conversions ---------------------------------------------------------------------------
/** Decode any host array of `dtype` into f32 (or f64 for f64) numbers. */
export function toFloatArray(src: HostArray, dtype: DType, out?: Float32Array | Float64Array): Float32Array | Float64Array {
  const n = src.length;
  switch (dtype) {
    case 'f32': {
      const o = out ?? new Float32Array(n);
      o.set(src as Float32Array);
      return o;
    }
    case 'f64': {
      const o = out ?? new Float64Array(n);
      o.set(src as Float64Array);
      return o;
    }
    case 'bf16': {
      const o = out ?? new Float32Array(n);
      const s = src as Uint16Array;
      if (o instanceof Float32Array) {
        const ou = new Uint32Array(o.buffer, o.byteOffset, n);
        for (let i = 0; i < n; i++) ou[i] = s[i]! << 16;
      } else for (let i = 0; i < n; i++) o[i] = bf16BitsToF32(s[i]!);
      return o;
    }
    case 'f16': {
      const o = out ?? new Float32Array(n);
      const s = src as Uint16Array;
      for (let i = 0; i < n; i++) o[i] = f16BitsToF32(s[i]!);
      return o;
    }
    case 'f8e4m3': {
      const o = out ?? new Float32Array(n);
      const s = src as Uint8Array;
      for (let i = 0; i < n; i++) o[i] = E4M3_TABLE[s[i]!]!;
      return o;
    }
    case 'i64': {
      const o = out ?? new Float64Array(n);
      const s = src as BigInt64Array;
      for (let i = 0; i < n; i++) o[i] = Number(s[i]!);
      return o;
    }
    default: {
      const o = out ?? new Float32Array(n);
      o.set(src as Int32Array | Uint8Array);
      return o;
    }
  }
}

/** Encode numbers into the host representation of `dtype` with that dtype's rounding rules. */
export function fromFloatArray(src: ArrayLike<number>, dtype: DType, out?: HostArray): HostArray {
  const n = src.length;
  const o = out ?? allocHost(dtype, n);
  switch (dtype) {
    case 'f32': case 'f64':
      for (let i = 0; i < n; i++) (o as Float32Array)[i] = src[i]!;
      break;
    case 'bf16': {
      const ou = o as Uint16Array;
      if (src instanceof Float32Array) {
        const su = new Uint32Array(src.buffer, src.byteOffset, n);
        for (let i = 0; i < n; i++) {
          const b = su[i]!;
          ou[i] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
        }
      } else for (let i = 0; i < n; i++) ou[i] = f32ToBf16Bits(src[i]!);
      break;
    }
    case 'f16':
      for (let i = 0; i < n; i++) (o as Uint16Array)[i] = f32ToF16Bits(src[i]!);
      break;
    case 'f8e4m3':
      for (let i = 0; i < n; i++) (o as Uint8Array)[i] = f32ToE4m3Bits(src[i]!);
      break;
    case 'i64':
      for (let i = 0; i < n; i++) (o as BigInt64Array)[i] = BigInt(Math.trunc(src[i]!));
      break;
    case 'i32':
      for (let i = 0; i < n; i++) (o as Int32Array)[i] = Math.trunc(src[i]!);
      break;
    case 'u8':
      for (let i = 0; i < n; i++) (o as Uint8Array)[i] = Math.trunc(src[i]!) & 0xff;
      break;
    case 'bool':
      for (let i = 0; i < n; i++) (o as Uint8Array)[i] = src[i]! !== 0 ? 1 : 0;
      break;
  }
  return o;
}

/** Convert a host array between dtypes (float → int truncates toward zero, as torch does). */
export function convertHost(src: HostArray, from: DType, to: DType): HostArray {
  if (from === to) return src.slice() as HostArray;
  if (from === 'i64' && (to === 'i32' || to === 'u8' || to === 'bool')) {
    const s = src as BigInt64Array;
    const o = allocHost(to, s.length);
    for (let i = 0; i < s.length; i++) (o as Int32Array)[i] = to === 'bool' ? (s[i]! !== 0n ? 1 : 0) : Number(BigInt.asIntN(32, s[i]!));
    if (to === 'u8') for (let i = 0; i < s.length; i++) (o as Uint8Array)[i] = Number(BigInt.asUintN(8, s[i]!));
    return o;
  }
  if ((from === 'i32' || from === 'u8' || from === 'bool') && to === 'i64') {
    const o = new BigInt64Array(src.length);
    for (let i = 0; i < src.length; i++) o[i] = BigInt((src as Int32Array)[i]!);
    return o;
  }
  const f = toFloatArray(src, from, from === 'f64' || from === 'i64' || to === 'f64' ? new Float64Array(src.length) : undefined);
  return fromFloatArray(f, to);
}
