// e^x in double precision for the CPU backend's hot loops (softmax numerators, SiLU, sparse attention).
//
// Math.exp is a call out of optimised code into V8's C++ fdlibm port: 12.7 ms per 2^20 arguments on the
// 2-core EPYC CI host, against 6.7 ms for this inlined arithmetic (docs/benchmarks.md, CPU 2026-12-07 05:10–06:40).
// The cpu-mid 512-token prefill takes ~7 M exponentials (SwiGLU's 3 M, the sparse attention's 4 M).
//
//   x = k·(ln 2)/64 + r,  k = round(x·64/ln 2),  |r| ≤ (ln 2)/128 ≈ 0.0054
//   e^x = 2^⌊k/64⌋ · 2^((k mod 64)/64) · e^r
// with 2^(j/64) from a table of the correctly rounded doubles (made exactly below, with BigInt), e^r − 1
// by its Taylor polynomial to r⁶ (the r⁷/7! term is < 3e-20 relative, far below an ulp), and the power
// of two a table lookup (exact). (ln 2)/64 is split hi + lo, hi with 32 significant bits (fdlibm's
// ln2_hi/64), so k·hi is exact for |k| < 2^21 and r carries ~1e-19 absolute error. The result is within
// about one ulp of e^x, as Math.exp is: the two differ in the last bit of a double for about a quarter of
// arguments, and after an f32 rounding for none of 4·10^6 random ones (test/backend/exp.test.ts holds the
// difference to one ulp and the f32 roundings equal over 3·10^5 seeded arguments).
//
// Outside (−700, 700) — and for NaN and ±∞ — Math.exp itself answers (subnormal and overflowing
// results, where the table's power of two would not be exact).

const STEPS = 64;
const INV_STEP = STEPS / Math.LN2;
/** fdlibm's ln2_hi (32 significant bits) and ln2_lo, over 64: exact divisions by a power of two */
const STEP_HI = 6.93147180369123816490e-01 / STEPS;
const STEP_LO = 1.90821492927058770002e-10 / STEPS;
/** 1.5·2^52: (y + SHIFT) − SHIFT rounds y to an integer (to even at halves) for |y| < 2^51 */
const SHIFT = 6755399441055744;
const P2_BIAS = 1100;

/** 2^(j/64), j = 0 … 63, each the double nearest the real value. */
const TABLE = ((): Float64Array => {
  const t = new Float64Array(STEPS);
  t[0] = 1;
  for (let j = 1; j < STEPS; j++) {
    // d = m·2^-52 in [1, 2) is nearest to 2^(j/64) iff the midpoints (2m ∓ 1)·2^-53 bracket it, i.e.
    // (2m − 1)^64 < 2^(j + 53·64) < (2m + 1)^64 (never equal: 2^(j/64) is irrational)
    const target = 1n << BigInt(j + 53 * STEPS);
    let m = BigInt(Math.round(2 ** (j / STEPS) * 2 ** 52));
    for (let tries = 0; ; tries++) {
      if ((2n * m + 1n) ** 64n < target) m += 1n;
      else if ((2n * m - 1n) ** 64n > target) m -= 1n;
      else break;
      if (tries > 8) throw new Error(`exp table: no nearest double for 2^(${j}/64)`);
    }
    t[j] = Number(m) * 2 ** -52;
  }
  return t;
})();

/** 2^m for m = −1100 … 1100 (exact; only −1010 … 1010 are reached) */
const POW2 = ((): Float64Array => {
  const p = new Float64Array(2 * P2_BIAS + 1);
  for (let m = -P2_BIAS; m <= P2_BIAS; m++) p[m + P2_BIAS] = 2 ** m;
  return p;
})();

/** e^x to within about one ulp (see the header); Math.exp outside (−700, 700) and for NaN. */
export function expd(x: number): number {
  if (!(x > -700 && x < 700)) return Math.exp(x);
  const kd = x * INV_STEP + SHIFT - SHIFT;
  const r = x - kd * STEP_HI - kd * STEP_LO;
  const k = kd | 0;
  const j = k & (STEPS - 1);
  const p = r + r * r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720)))));
  const t = TABLE[j]!;
  return POW2[((k - j) >> 6) + P2_BIAS]! * (t + t * p);
}

/** The table, for the test that checks each entry against BigInt arithmetic independently. */
export const expTable: Readonly<Float64Array> = TABLE;
