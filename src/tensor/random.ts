// Seeded random numbers: xoshiro128** for uniforms (fast, 32-bit state words, good equidistribution)
// seeded through splitmix32; normals by Box–Muller. Same seed ⇒ same tensor on every machine.
import { type CreateOptions, Tensor, fromArray, numelOf } from './tensor.js';

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }
  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export function randn(shape: readonly number[], rng: Rng, opts: CreateOptions & { std?: number; mean?: number } = {}): Tensor {
  const n = numelOf(shape);
  const v = new Float64Array(n);
  const std = opts.std ?? 1;
  const mean = opts.mean ?? 0;
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return fromArray(v, shape, { ...opts, dtype: opts.dtype ?? 'f32' });
}

export function uniform(shape: readonly number[], rng: Rng, lo = 0, hi = 1, opts: CreateOptions = {}): Tensor {
  const n = numelOf(shape);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.uniform();
  return fromArray(v, shape, { ...opts, dtype: opts.dtype ?? 'f32' });
}
