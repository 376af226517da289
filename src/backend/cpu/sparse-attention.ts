// The CPU core of sparse attention, shared by the MQA (src/backend/cpu/sparse-mla.ts) and MHA
// (sparseMhaPrefill below) forms: per query i and head h, over the valid entries t of indices[i] (row
// order; −1 or out of [0, rows) is a hole):
//   s_t = score(i, h, t)                         (the form's own dot products and roundings)
//   m = max s_t; e_t = exp(s_t − m), z = Σ e_t   (double, row order); p_t = rnd(e_t / z)
//   out[i, h, :] = rnd(Σ_t p_t · value(t, h))    (double accumulation)
//   lse[i, h] = f32(m + ln z)                    (natural log of the scaled scores)
// A row with no valid entry gives out = 0 and lse = −∞ (the FlashMLA convention; dense softmax gives NaN).
// These are the host model's roundings (the reference's einsums and softmax in the activation dtype),
// so the outputs are bit-identical to it.
import type { View } from '../../tensor/backend.js';
import { bf16Round, fromFloatArray, type HostArray } from '../../tensor/dtype.js';
import { dataOf, readF, readIndex } from './strided.js';

export function rounderOf(dtype: string): (x: number) => number {
  return dtype === 'bf16' ? bf16Round : Math.fround;
}

/**
 * Flat operands of the core (no per-score callbacks: the loops below are the hot path of CPU prefill).
 *   q      row (i, h) at (i·H + h)·dq, dq values
 *   keys   row (t, h) at t·kRow + h·kHead, dq values; s_t = rnd(rnd(d)·scale) with d = q·k in double over
 *          all dq dims when split = dq, else rnd(rnd(rnd(d₁) + rnd(d₂))·scale) with d₁ over [0, split)
 *          and d₂ over [split, dq) (the MQA form's latent and RoPE einsums)
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

export function attendSparse(out: View, lse: View, a: AttendSpec): void {
  const { Tq, H, dv, k, rnd, q, dq, keys: K, kRow, kHead, split, scale, values: V, vRow, vHead } = a;
  const o = new Float64Array(Tq * H * dv);
  const ls = dataOf(lse) as Float32Array;
  const sc = new Float64Array(k);
  const acc = new Float64Array(dv);
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
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const ka = sel[sb + j]! * kRow + h * kHead;
        let s: number;
        if (split === dq) {
          let d = 0;
          for (let c = 0; c < dq; c++) d += q[qa + c]! * K[ka + c]!;
          s = rnd(rnd(d) * scale);
        } else {
          let d1 = 0;
          for (let c = 0; c < split; c++) d1 += q[qa + c]! * K[ka + c]!;
          let d2 = 0;
          for (let c = split; c < dq; c++) d2 += q[qa + c]! * K[ka + c]!;
          s = rnd(rnd(rnd(d1) + rnd(d2)) * scale);
        }
        sc[j] = s;
        if (s > m) m = s;
      }
      let z = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(sc[j]! - m);
        sc[j] = e;
        z += e;
      }
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const p = rnd(sc[j]! / z);
        const va = sel[sb + j]! * vRow + h * vHead;
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
 * MHA form (the reference's prefill): q [Tq, H, dq], per-head keys k [Tk, H, dq], values v [Tk, H, dv],
 * indices i32 [Tq, kk]; s_t = rnd(rnd(q·k_t)·scale) with the dot in double over all dq dims in order
 * (the caller lays q and k out as [nope | rope], the reference's concatenation).
 */
export function sparseMhaPrefillCpu(out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void {
  const [Tq, H, dq] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const dv = v.shape[2]!;
  const qv = readF(q, 'f32') as Float32Array;
  const kv = readF(k, 'f32') as Float32Array;
  const vv = readF(v, 'f32') as Float32Array;
  attendSparse(out, lse, {
    Tq, H, dv, rows: Tk, idx: readIndex(indices), k: indices.shape[1]!, rnd: rounderOf(q.dtype),
    q: qv, dq, keys: kv, kRow: H * dq, kHead: dq, split: dq, scale, values: vv, vRow: H * dv, vHead: dv,
  });
}
