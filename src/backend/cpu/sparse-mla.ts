// CPU reference of sparse MLA (absorbed-MQA form) and of the MLA latent-cache writer; the contract is
// in src/tensor/ops/sparse-mla.ts. The attention reproduces the host MQA path of the model (formerly
// src/model/sparse-attention.ts, now the test oracle test/oracles/sparse-attention.ts) rounding for
// rounding; its double sums run as GEMMs (attendShared), in another order, so in f32 (and in bf16) the
// outputs are bit-identical to it unless a sum lies within ~1e-16 of a rounding boundary:
//   for each query i, head h, over the valid entries t of indices[i] in row order:
//     d1 = Σ_c q[c]·kv[t, c] (c < dv, double), d2 = Σ_c q[dv+c]·kv[t, dv+c] (rope part, double)
//     s_t = rnd(rnd(rnd(d1) + rnd(d2)) · scale)          rnd = rounding to q's dtype (f32 or bf16)
//   m = max s_t; e_t = exp(s_t − m), z = Σ e_t (double, row order); p_t = rnd(e_t / z)
//   out[i, h, :] = rnd(Σ_t p_t · kv[t, :dv]) (double accumulation)
//   lse[i, h] = f32(m + ln z)                                 (natural log, of the scaled scores)
// A row with no valid entry gives out = 0 and lse = −∞. An index outside [0, Tk) is a hole like −1.
import type { View } from '../../tensor/backend.js';
import { DsvError } from '../../errors.js';
import { E4M3_MAX, bf16BitsToF32, e4m3BitsToF32, f32Bits, f32ToBf16Bits, f32ToE4m3Bits } from '../../tensor/dtype.js';
import { dataOf, readF, readIndex } from './strided.js';
import { attendShared, rounderOf } from './sparse-attention.js';

const fround = Math.fround;

/** Bytes per token of the FP8 latent cache: dv e4m3 values, ceil(dv/128) f32 scales, dr bf16 values. */
export function fp8CacheBytes(dv: number, dr: number): number {
  return dv + 4 * Math.ceil(dv / 128) + 2 * dr;
}

/** Latent [dv] then rope [dr] of one token of a cache, as f32 (FP8 values times their power-of-two scale). */
export function decodeCacheToken(cache: Uint8Array | Uint16Array, fp8: boolean, base: number, dv: number, dr: number, out: Float32Array, o: number): void {
  if (!fp8) {
    const c = cache as Uint16Array;
    for (let j = 0; j < dv + dr; j++) out[o + j] = bf16BitsToF32(c[base + j]!);
    return;
  }
  const c = cache as Uint8Array;
  const nb = Math.ceil(dv / 128);
  const dvw = new DataView(c.buffer, c.byteOffset + base + dv, 4 * nb + 2 * dr);
  for (let b = 0; b < nb; b++) {
    const s = dvw.getFloat32(4 * b, true);
    for (let j = b * 128; j < Math.min(dv, (b + 1) * 128); j++) out[o + j] = fround(e4m3BitsToF32(c[base + j]!) * s);
  }
  for (let j = 0; j < dr; j++) out[o + dv + j] = bf16BitsToF32(dvw.getUint16(4 * nb + 2 * j, true));
}

/**
 * The selected rows of a cache as a dense f32 block: an f32 cache is its own dense row layout; a bf16 or
 * FP8 cache has each distinct selected slot decoded once, and the indices are renumbered to the block's
 * rows (holes stay holes).
 */
function cacheRows(cache: View, dv: number, dr: number, idx: Int32Array | Float64Array): { kv: Float32Array; rows: number; idx: Int32Array | Float64Array } {
  const D = dv + dr;
  const [nBlocks, page, width] = cache.shape as [number, number, number];
  const rows = nBlocks * page;
  if (cache.dtype === 'f32') return { kv: readF(cache, 'f32') as Float32Array, rows, idx };
  const fp8 = cache.dtype === 'u8';
  const data = dataOf(cache) as Uint8Array | Uint16Array;
  const slot = new Map<number, number>();
  const remap = new Int32Array(idx.length);
  for (let j = 0; j < idx.length; j++) {
    const t = idx[j]!;
    if (!(t >= 0 && t < rows)) {
      remap[j] = -1;
      continue;
    }
    let r = slot.get(t);
    if (r === undefined) slot.set(t, (r = slot.size));
    remap[j] = r;
  }
  const kv = new Float32Array(slot.size * D);
  for (const [t, r] of slot) decodeCacheToken(data, fp8, cache.offset + t * width, dv, dr, kv, r * D);
  return { kv, rows: slot.size, idx: remap };
}

/**
 * The MQA form on the shared sparse-attention core (sparse-attention.ts): q [Tq, H, D] (f32 values),
 * indices [Tq, k], kv rows of D = dv + dr; s_t = rnd(rnd(rnd(d1) + rnd(d2))·scale) with the latent and
 * RoPE dots d1, d2 in double; the value is the row's latent part.
 */
function attend(out: View, lse: View, qv: Float32Array, Tq: number, H: number, D: number, dv: number, kv: Float32Array, rows: number, idx: Int32Array | Float64Array, k: number,
  scale: number, rnd: (x: number) => number): void {
  attendShared(out, lse, { Tq, H, dv, rows, idx, k, rnd, q: qv, dq: D, keys: kv, kRow: D, kHead: 0, split: dv, scale, values: kv, vRow: D, vHead: 0 });
}

/** q [Tq, H, D], kv [Tk, D], indices i32 [Tq, k] (all contiguous) → out [Tq, H, dv], lse f32 [Tq, H]. */
export function sparseMlaPrefillCpu(out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  const rows = readF(kv, 'f32') as Float32Array;
  attend(out, lse, readF(q, 'f32') as Float32Array, Tq, H, D, dv, rows, D === 0 ? 0 : rows.length / D, readIndex(indices), k, scale, rounderOf(q.dtype));
}

/**
 * q [N, H, D] (N = B·s_q), cache u8 [blocks, page, fp8CacheBytes] or bf16 [blocks, page, D], indices i32
 * [N, k] of slots (block·page + offset) → out [N, H, dv], lse f32 [N, H].
 */
export function sparseMlaDecodeCpu(out: View, lse: View, q: View, cache: View, indices: View, dv: number, scale: number): void {
  const [N, H, D] = q.shape as [number, number, number];
  const k = indices.shape[1]!;
  const sel = cacheRows(cache, dv, D - dv, readIndex(indices));
  attend(out, lse, readF(q, 'f32') as Float32Array, N, H, D, dv, sel.kv, sel.rows, sel.idx, k, scale, rounderOf(q.dtype));
}

/**
 * Store latent [N, dv] and rope [N, dr] of N tokens at cache slots[N] (−1: skip). FP8 cache: the latent
 * quantised per 128 values exactly as actQuant with ue8m0 (amax = max(|x|, 1e-4) in f32, scale
 * 2^ceil(log2(amax·f32(1/448))), e4m3(clamp(x/scale, ±448)) round-to-nearest-even), the scales as f32,
 * the rope as bf16. bf16 cache: both parts rounded to bf16.
 */
export function mlaCacheWriteCpu(cache: View, latent: View, rope: View, slots: View): void {
  const [nBlocks, page, width] = cache.shape as [number, number, number];
  const cap = nBlocks * page;
  const N = latent.shape[0]!;
  const dv = latent.shape[1]!;
  const dr = rope.shape[1]!;
  const lat = readF(latent, 'f32');
  const rp = readF(rope, 'f32');
  const sl = readIndex(slots);
  const fp8 = cache.dtype === 'u8';
  const data = dataOf(cache) as Uint8Array | Uint16Array | Float32Array;
  const inv448 = fround(1 / E4M3_MAX);
  const nb = Math.ceil(dv / 128);
  for (let n = 0; n < N; n++) {
    const s = sl[n]!;
    if (s === -1) continue;
    if (!(s >= 0 && s < cap)) throw new DsvError(`mlaCacheWrite: slot ${s} of token ${n} is outside the cache's ${cap} slots (${nBlocks} blocks of ${page})`);
    const base = cache.offset + s * width;
    if (cache.dtype === 'f32') {
      const c = data as unknown as Float32Array;
      for (let j = 0; j < dv; j++) c[base + j] = lat[n * dv + j]!;
      for (let j = 0; j < dr; j++) c[base + dv + j] = rp[n * dr + j]!;
      continue;
    }
    if (!fp8) {
      const c = data as Uint16Array;
      for (let j = 0; j < dv; j++) c[base + j] = f32ToBf16Bits(lat[n * dv + j]!);
      for (let j = 0; j < dr; j++) c[base + dv + j] = f32ToBf16Bits(rp[n * dr + j]!);
      continue;
    }
    const c = data as Uint8Array;
    const dvw = new DataView(c.buffer, c.byteOffset + base + dv, 4 * nb + 2 * dr);
    for (let b = 0; b < nb; b++) {
      const lo = n * dv + b * 128;
      const hi = n * dv + Math.min(dv, (b + 1) * 128);
      let amax = 0;
      for (let j = lo; j < hi; j++) {
        const a = Math.abs(lat[j]!);
        if (a > amax || a !== a) amax = a;
      }
      amax = Math.max(amax, fround(1e-4));
      const bits = f32Bits(fround(amax * inv448));
      const sc = 2 ** (((bits >>> 23) & 0xff) - 127 + ((bits & 0x7fffff) !== 0 ? 1 : 0));
      dvw.setFloat32(4 * b, sc, true);
      for (let j = lo; j < hi; j++) {
        let y = fround(lat[j]! / sc);
        if (y > E4M3_MAX) y = E4M3_MAX;
        else if (y < -E4M3_MAX) y = -E4M3_MAX;
        c[base + (j - n * dv)] = f32ToE4m3Bits(y);
      }
    }
    for (let j = 0; j < dr; j++) dvw.setUint16(4 * nb + 2 * j, f32ToBf16Bits(rp[n * dr + j]!), true);
  }
}
