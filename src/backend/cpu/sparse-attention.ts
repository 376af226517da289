// The CPU cores of sparse attention, for the MQA (src/backend/cpu/sparse-mla.ts: attendShared) and MHA
// (sparseMhaPrefill below: a dense span through dgemm, or the scalar attendSparse) forms: per query i and
// head h, over the valid entries t of indices[i] (row order; −1 or out of [0, rows) is a hole):
//   s_t = score(i, h, t)                         (the form's own dot products and roundings)
//   m = max s_t; e_t = exp(s_t − m), z = Σ e_t   (double, row order); p_t = rnd(e_t / z)
//   out[i, h, :] = rnd(Σ_t p_t · value(t, h))    (double accumulation)
//   lse[i, h] = f32(m + ln z)                    (natural log of the scaled scores)
// A row with no valid entry gives out = 0 and lse = −∞ (the FlashMLA convention; dense softmax gives NaN).
// These are the host model's roundings (the reference's einsums and softmax in the activation dtype).
// The scalar core keeps every sum's order too (each score's dot in c order, each output element's sum in
// row order), so its outputs are bit-identical to the host's; the GEMM forms sum in the GEMM's order (see
// each). The scalar loops take four selected keys per pass only so that four independent serial sums overlap in the CPU
// instead of each waiting on its adder latency (training step of 13 M params at B 8 × S 256: the sparse
// MLA forward about 2.2× faster, same bits in f32, bf16 and the f64 paths' tests).
import type { View } from '../../tensor/backend.js';
import { DsvError } from '../../errors.js';
import { bf16Round, fromFloatArray, type HostArray } from '../../tensor/dtype.js';
import { dataOf, readF, readIndex } from './strided.js';
import { dgemm } from './gemm.js';
import { expd } from './exp.js';
import { scratchF64 } from './scratch.js';

export function rounderOf(dtype: string): (x: number) => number {
  return dtype === 'bf16' ? bf16Round : Math.fround;
}

/**
 * Flat operands of the cores (no per-score callbacks: the loops below are the hot path of CPU prefill).
 *   q      row (i, h) at (i·H + h)·dq, dq values
 *   keys   row (t, h) at t·kRow + h·kHead, dq values; s_t = rnd(rnd(d)·scale) with d = q·k in double over
 *          all dq dims when split = dq, else rnd(rnd(rnd(d₁) + rnd(d₂))·scale) with d₁ over [0, split)
 *          and d₂ over [split, dq) (the MQA form's latent and RoPE einsums; attendShared only)
 *   values row (t, h) at t·vRow + h·vHead, dv values
 */
export interface AttendSpec {
  Tq: number;
  H: number;
  dv: number;
  /** addressable key rows (an index ≥ rows is a hole) */
  rows: number;
  idx: Int32Array | Float64Array;
  k: number;
  q: Float32Array;
  dq: number;
  keys: Float32Array;
  kRow: number;
  kHead: number;
  split: number;
  scale: number;
  values: Float32Array;
  vRow: number;
  vHead: number;
  rnd: (x: number) => number;
}

/**
 * Four dot products of q's row at qa with the key rows at k0..k3 (dq values each), out[u], each a serial
 * double sum in c order, so each equals the one-key loop's bit for bit. A serial sum runs at the adder's
 * latency; four independent ones in the same loop overlap.
 */
function scoreBlock(q: Float32Array, qa: number, K: Float32Array, k0: number, k1: number, k2: number, k3: number, dq: number, out: Float64Array): void {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let c = 0; c < dq; c++) {
    const x = q[qa + c]!;
    s0 += x * K[k0 + c]!;
    s1 += x * K[k1 + c]!;
    s2 += x * K[k2 + c]!;
    s3 += x * K[k3 + c]!;
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

/**
 * The scalar core, for the MHA form's selections too spread for a dense span (sparseMhaPrefillCpu): one
 * dot over all dq dims per score (split = dq), per-head key and value rows.
 */
export function attendSparse(out: View, lse: View, a: AttendSpec): void {
  const { Tq, H, dv, k, rnd, q, dq, keys: K, kRow, kHead, split, scale, values: V, vRow, vHead } = a;
  if (split !== dq) throw new DsvError('attendSparse: scores one dot over all dq dims (split = dq); the MQA form takes attendShared');
  const o = new Float64Array(Tq * H * dv);
  const ls = dataOf(lse) as Float32Array;
  const sc = new Float64Array(k);
  const acc = new Float64Array(dv);
  const d4 = new Float64Array(4);
  // every query's valid keys first, then heads outermost: a head's key rows (MHA: its own [Tk, dq]
  // slice) stay in cache across the queries (measured on cpu-mid at 2048 tokens: see docs/benchmarks.md)
  const cnt = new Int32Array(Tq);
  const sel = new Int32Array(Tq * k);
  for (let i = 0; i < Tq; i++) {
    let n = 0;
    for (let j = 0; j < k; j++) {
      const t = a.idx[i * k + j]!;
      if (t >= 0 && t < a.rows) sel[i * k + n++] = t;
    }
    cnt[i] = n;
  }
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < Tq; i++) {
      const n = cnt[i]!;
      const sb = i * k;
      if (n === 0) {
        ls[lse.offset + i * H + h] = -Infinity;
        continue;
      }
      const qa = (i * H + h) * dq;
      const hk = h * kHead;
      let m = -Infinity;
      // four keys at a time: four independent dot chains in one loop (see scoreBlock)
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        scoreBlock(q, qa, K, sel[sb + j]! * kRow + hk, sel[sb + j + 1]! * kRow + hk, sel[sb + j + 2]! * kRow + hk, sel[sb + j + 3]! * kRow + hk, dq, d4);
        for (let u = 0; u < 4; u++) {
          const s = rnd(rnd(d4[u]!) * scale);
          sc[j + u] = s;
          if (s > m) m = s;
        }
      }
      for (; j < n; j++) {
        const ka = sel[sb + j]! * kRow + hk;
        let d = 0;
        for (let c = 0; c < dq; c++) d += q[qa + c]! * K[ka + c]!;
        const s = rnd(rnd(d) * scale);
        sc[j] = s;
        if (s > m) m = s;
      }
      let z = 0;
      for (let j = 0; j < n; j++) {
        const e = expd(sc[j]! - m);
        sc[j] = e;
        z += e;
      }
      acc.fill(0);
      const hv = h * vHead;
      j = 0;
      // four keys per pass, added into each element one after the other (the row order, unchanged)
      for (; j + 4 <= n; j += 4) {
        const p0 = rnd(sc[j]! / z), p1 = rnd(sc[j + 1]! / z), p2 = rnd(sc[j + 2]! / z), p3 = rnd(sc[j + 3]! / z);
        const a0 = sel[sb + j]! * vRow + hv, a1 = sel[sb + j + 1]! * vRow + hv, a2 = sel[sb + j + 2]! * vRow + hv, a3 = sel[sb + j + 3]! * vRow + hv;
        for (let c = 0; c < dv; c++) acc[c] = acc[c]! + p0 * V[a0 + c]! + p1 * V[a1 + c]! + p2 * V[a2 + c]! + p3 * V[a3 + c]!;
      }
      for (; j < n; j++) {
        const p = rnd(sc[j]! / z);
        const va = sel[sb + j]! * vRow + hv;
        for (let c = 0; c < dv; c++) acc[c] += p * V[va + c]!;
      }
      const ob = (i * H + h) * dv;
      for (let c = 0; c < dv; c++) o[ob + c] = rnd(acc[c]!);
      ls[lse.offset + i * H + h] = m + Math.log(z);
    }
  }
  const od = dataOf(out);
  fromFloatArray(o, out.dtype, od.subarray(out.offset, out.offset + o.length) as HostArray);
}

/**
 * The MQA form (keys and values one row per token, shared by every head: kHead = vHead = 0, values the
 * keys' first dv columns) with a query's heads together: its valid rows gathered once into an f64 block
 * G [n, dq], then S = Q_i·Gᵀ (two dgemms, the latent part c < split and the RoPE part) and O = P·G[:, :dv],
 * with the softmax between as attendSparse's. The same argument as the MHA form's dense span (below):
 * products of f32 values are exact in double and the GEMM only sums them in another order, so each
 * rnd(d) equals the scalar core's unless d lies within ~1e-16 of a rounding boundary. Faster than
 * attendSparse at every head count tried (one query, 256 of 288-wide rows: 5.6× at 1 head, 2.2× at 4 and 8,
 * 4.2× at 16; 2 048 of 576-wide rows at 8 heads 2.7×); cpu-mid's decode step 2.7 → 1.2 ms (docs/benchmarks.md).
 */
export function attendShared(out: View, lse: View, a: AttendSpec): void {
  const { Tq, H, dv, k, rnd, q, dq, keys: K, kRow, split, scale } = a;
  if (a.values !== K || a.vRow !== kRow || a.kHead !== 0 || a.vHead !== 0 || dv > dq) throw new DsvError('attendShared: wants the MQA form (values the shared key rows\' first dv columns)');
  const o = scratchF64('mqa.o', Tq * H * dv);
  const ls = dataOf(lse) as Float32Array;
  const G = scratchF64('mqa.g', k * dq);
  const Q = scratchF64('mqa.q', H * dq);
  const S1 = scratchF64('mqa.s1', H * k);
  const S2 = scratchF64('mqa.s2', H * k);
  const P = scratchF64('mqa.p', H * k);
  for (let i = 0; i < Tq; i++) {
    let n = 0;
    for (let j = 0; j < k; j++) {
      const t = a.idx[i * k + j]!;
      if (t >= 0 && t < a.rows) G.set(K.subarray(t * kRow, t * kRow + dq), dq * n++);
    }
    const ob = i * H * dv;
    if (n === 0) {
      o.fill(0, ob, ob + H * dv);
      for (let h = 0; h < H; h++) ls[lse.offset + i * H + h] = -Infinity;
      continue;
    }
    Q.set(q.subarray(i * H * dq, (i + 1) * H * dq));
    // S1[h, j] = Σ_{c < split} q·k, S2 the rest (the RoPE part), each [H, n] with row stride n
    dgemm(false, true, H, n, split, 1, Q, 0, dq, G, 0, dq, 0, S1, 0, n);
    if (split < dq) dgemm(false, true, H, n, dq - split, 1, Q, split, dq, G, split, dq, 0, S2, 0, n);
    for (let h = 0; h < H; h++) {
      const r = h * n;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const s = split === dq ? rnd(rnd(S1[r + j]!) * scale) : rnd(rnd(rnd(S1[r + j]!) + rnd(S2[r + j]!)) * scale);
        P[r + j] = s;
        if (s > m) m = s;
      }
      let z = 0;
      for (let j = 0; j < n; j++) {
        const e = expd(P[r + j]! - m);
        P[r + j] = e;
        z += e;
      }
      for (let j = 0; j < n; j++) P[r + j] = rnd(P[r + j]! / z);
      ls[lse.offset + i * H + h] = m + Math.log(z);
    }
    // O[h, :] = P[h, :]·G[:, :dv]
    dgemm(false, false, H, dv, n, 1, P, 0, n, G, 0, dq, 0, o, ob, dv);
  }
  for (let j = 0; j < o.length; j++) o[j] = rnd(o[j]!);
  const od = dataOf(out);
  fromFloatArray(o, out.dtype, od.subarray(out.offset, out.offset + o.length) as HostArray);
}

/**
 * MHA form (the reference's prefill): q [Tq, H, dq], per-head keys k [Tk, H, dq], values v [Tk, H, dv],
 * indices i32 [Tq, kk]; s_t = rnd(rnd(q·k_t)·scale) (the caller lays q and k out as [nope | rope], the
 * reference's concatenation).
 *
 * Prefill selects up to index_topk of a short causal span per query, so a block of TB queries usually
 * touches a key span not much wider than its selections. Where the span is narrow enough
 * (TB·span ≤ DENSE_FACTOR·Σ selected), a head's scores for the whole block are one dgemm over the span,
 * S = Q_b·K_spanᵀ, and its output one more, O = P·V_span with P the block's probabilities (zero off the
 * selection): BLAS runs these at 10–20 GFLOP/s in double where the scalar core manages about 1, so dense
 * work up to 16× the sparse work still wins (cpu-mid prefill of 512 tokens: docs/benchmarks.md).
 * Double, not single precision: the products of f32 values are exact in double and the GEMM only sums
 * them in another order, so rnd(d) equals the scalar core's unless d lies within ~1e-16 of a rounding
 * boundary. An f32 GEMM would differ in the last bit for some scores and make a position's result depend
 * on the span of the block it was computed in (a prefix prefilled alone vs inside a longer prompt), which
 * the FP8 round trips downstream amplify. Wider spans take attendSparse.
 */
const TB = 64;
const DENSE_FACTOR = 16;

function widen(slot: string, x: Float32Array): Float64Array {
  const w = scratchF64(slot, x.length);
  w.set(x);
  return w;
}

export function sparseMhaPrefillCpu(out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void {
  const [Tq, H, dq] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const dv = v.shape[2]!;
  const kk = indices.shape[1]!;
  const qv = readF(q, 'f32') as Float32Array;
  const kv = readF(k, 'f32') as Float32Array;
  const vv = readF(v, 'f32') as Float32Array;
  const idx = readIndex(indices);
  const rnd = rounderOf(q.dtype);
  let q64: Float64Array | null = null;
  let k64: Float64Array | null = null;
  let v64: Float64Array | null = null;
  const spec = { H, dv, rows: Tk, k: kk, rnd, dq, keys: kv, kRow: H * dq, kHead: dq, split: dq, scale, values: vv, vRow: H * dv, vHead: dv };
  const od = dataOf(out);
  const ls = dataOf(lse) as Float32Array;
  for (let i0 = 0; i0 < Tq; i0 += TB) {
    const tb = Math.min(TB, Tq - i0);
    // the block's selections: valid keys per row and the span they cover
    let lo = Tk;
    let hi = -1;
    let total = 0;
    for (let j = i0 * kk; j < (i0 + tb) * kk; j++) {
      const t = idx[j]!;
      if (t >= 0 && t < Tk) {
        total++;
        if (t < lo) lo = t;
        if (t > hi) hi = t;
      }
    }
    const span = hi - lo + 1;
    const bIdx = idx.subarray(i0 * kk, (i0 + tb) * kk);
    const bOut: View = { ...out, shape: [tb, H, dv], offset: out.offset + i0 * H * dv };
    const bLse: View = { ...lse, shape: [tb, H], offset: lse.offset + i0 * H };
    if (total === 0 || tb * span > DENSE_FACTOR * total) {
      attendSparse(bOut, bLse, { ...spec, Tq: tb, idx: bIdx, q: qv.subarray(i0 * H * dq) });
      continue;
    }
    // widened once a call (TypedArray.set converts natively), into reused arrays
    q64 ??= widen('mha.q', qv);
    k64 ??= widen('mha.k', kv);
    v64 ??= widen('mha.v', vv);
    // reused between blocks and calls (scratch.ts); S and O are wholly written by their dgemm, P is cleared per head
    const S = scratchF64('mha.S', tb * span);
    const P = scratchF64('mha.P', tb * span);
    const O = scratchF64('mha.O', tb * H * dv);
    const sc = new Float64Array(kk);
    for (let h = 0; h < H; h++) {
      dgemm(false, true, tb, span, dq, 1, q64, (i0 * H + h) * dq, H * dq, k64, (lo * H + h) * dq, H * dq, 0, S, 0, span);
      P.fill(0);
      for (let i = 0; i < tb; i++) {
        let m = -Infinity;
        let n = 0;
        for (let j = 0; j < kk; j++) {
          const t = bIdx[i * kk + j]!;
          if (!(t >= 0 && t < Tk)) continue;
          const st = rnd(rnd(S[i * span + t - lo]!) * scale);
          sc[n++] = st;
          if (st > m) m = st;
        }
        if (n === 0) {
          ls[bLse.offset + i * H + h] = -Infinity;
          continue;
        }
        // e_j = exp(s_j − m) once, kept (as a double) for both z and p_j = rnd(e_j / z)
        let z = 0;
        for (let j = 0; j < n; j++) {
          const e = expd(sc[j]! - m);
          sc[j] = e;
          z += e;
        }
        n = 0;
        for (let j = 0; j < kk; j++) {
          const t = bIdx[i * kk + j]!;
          if (t >= 0 && t < Tk) P[i * span + t - lo] = rnd(sc[n++]! / z);
        }
        ls[bLse.offset + i * H + h] = m + Math.log(z);
      }
      // O[i, h, :] = P[i, :]·V_h[lo .. hi]
      dgemm(false, false, tb, dv, span, 1, P, 0, span, v64, (lo * H + h) * dv, H * dv, 0, O, h * dv, H * dv);
    }
    for (let j = 0; j < O.length; j++) O[j] = rnd(O[j]!);
    fromFloatArray(O, out.dtype, od.subarray(bOut.offset, bOut.offset + O.length) as HostArray);
  }
}
