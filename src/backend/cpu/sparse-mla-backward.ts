// CPU reference of the sparse MLA backward (Backend.sparseMlaBackward; contract and math in
// src/tensor/ops/sparse-mla-train.ts), and the f64 forward the gradcheck differentiates.
//
// Backward, per query i and head h over the valid entries t of indices[i] (−1 or outside [0, Tk) = hole),
// all in double (JS numbers) whatever the storage dtype; the results are rounded once, at the end:
//   s_t   = rnd(rnd(rnd(q[:dv]·kv_t[:dv]) + rnd(q[dv:]·kv_t[dv:])) · scale)   the forward's scores, with
//           the forward's roundings (rnd = the activation dtype's: f32, bf16, or none for f64), so that
//   p_t   = exp(s_t − lse)                      is the probability the forward used (lse saved by it)
//   Δ     = Σ_c dout[c]·out[c]                  (c < dv; = Σ_t p_t·dp_t, from the saved output)
//   dp_t  = Σ_c dout[c]·kv_t[c]                 (c < dv: the value is the latent)
//   ds_t  = p_t·(dp_t − Δ)·scale                (∂L/∂(q·kv_t): softmax backward, then the scale)
//   dq[c]      = Σ_t ds_t·kv_t[c]                                  c < D
//   dkv[t, c] += ds_t·q[c] (key role, c < D) + p_t·dout[c] (value role, c < dv), summed over (i, h)
// dq is rounded to q's dtype; dkv is accumulated in double and stored as f32 (f64 for f64 inputs), the
// op layer casts it to kv's dtype. A row whose lse is −∞ (no valid entry) contributes nothing. A repeated
// index contributes once per occurrence, as in the forward.
// The host model has no attention backward (its gradients stop at attention), so there is no bit-exact
// target here; the CUDA kernel agrees to f32 accumulation order.
import type { View } from '../../tensor/backend.js';
import { bf16Round, fromFloatArray, type HostArray } from '../../tensor/dtype.js';
import { type FArr, dataOf, readF, readIndex } from './strided.js';
import { expd } from './exp.js';

/** The activation dtype's rounding: f32, bf16, or none (f64). */
export function actRounder(dtype: string): (x: number) => number {
  return dtype === 'bf16' ? bf16Round : dtype === 'f64' ? (x: number) => x : Math.fround;
}

/** Valid entries of row i of indices [.., k]: kv rows in [0, Tk), in row order. */
function validKeys(idx: Int32Array | Float64Array, i: number, k: number, Tk: number, keys: Int32Array): number {
  let n = 0;
  for (let j = 0; j < k; j++) {
    const t = idx[i * k + j]!;
    if (t >= 0 && t < Tk) keys[n++] = t;
  }
  return n;
}

/** The forward's score of query row qa of qv against key row t of kvv (see the header). */
export function mlaScore(qv: FArr, qa: number, kvv: FArr, t: number, D: number, dv: number, scale: number, rnd: (x: number) => number): number {
  let d1 = 0;
  for (let c = 0; c < dv; c++) d1 += qv[qa + c]! * kvv[t * D + c]!;
  let d2 = 0;
  for (let c = dv; c < D; c++) d2 += qv[qa + c]! * kvv[t * D + c]!;
  return rnd(rnd(rnd(d1) + rnd(d2)) * scale);
}

/**
 * Backend.sparseMlaBackward: dq [Tq, H, D] (q's dtype), dkv [Tk, D] f32 (f64 for f64 inputs), overwritten;
 * dout/out [Tq, H, dv], q [Tq, H, D], kv [Tk, D], lse [Tq, H], indices i32 [Tq, k], all contiguous.
 *
 * Speed without reordering any sum. Every dot product above is one serial chain of double additions (its
 * order is the result: the forward rounds it), so a loop over one chain runs at the FP adder's latency,
 * not its throughput. The loops below advance four chains at once, the same head against four
 * consecutive keys (their d1, dp, d2 interleaved, each chain still summed c = 0, 1, … in order), which
 * lets the CPU overlap them; the updates then apply in the original (h, j) order: dq's four terms
 * added one after the other into the same element, and each key's dkv row (key role then value role,
 * per element) before the next key's, so repeated indices accumulate as before. The operands are
 * widened to double once (exact), keeping the loops monomorphic. Same bits as the one-key-at-a-time loop
 * in every dtype (f64 included: no rounding anywhere changed order).
 */
export function sparseMlaBackwardCpu(dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const k = indices.shape[1]!;
  const qv = readF(q, 'f64') as Float64Array;
  const kvv = readF(kv, 'f64') as Float64Array;
  const go = readF(dout, 'f64') as Float64Array;
  const ov = readF(out, 'f64') as Float64Array;
  const lv = readF(lse, 'f64') as Float64Array;
  const idx = readIndex(indices);
  const rnd = actRounder(q.dtype);
  const gq = new Float64Array(Tq * H * D);
  const gkv = new Float64Array(Tk * D);
  const keys = new Int32Array(k);
  const ps = new Float64Array(4);
  const dss = new Float64Array(4);
  for (let i = 0; i < Tq; i++) {
    const n = validKeys(idx, i, k, Tk, keys);
    if (n === 0) continue;
    for (let h = 0; h < H; h++) {
      const l = lv[i * H + h]!;
      if (l === -Infinity) continue;
      const qa = (i * H + h) * D;
      const oa = (i * H + h) * dv;
      let delta = 0;
      for (let c = 0; c < dv; c++) delta += go[oa + c]! * ov[oa + c]!;
      for (let j0 = 0; j0 < n; j0 += 4) {
        const m = Math.min(4, n - j0);
        if (m === 4) {
          const b0 = keys[j0]! * D, b1 = keys[j0 + 1]! * D, b2 = keys[j0 + 2]! * D, b3 = keys[j0 + 3]! * D;
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0, p0 = 0, p1 = 0, p2 = 0, p3 = 0;
          for (let c = 0; c < dv; c++) {
            const x = qv[qa + c]!;
            const g = go[oa + c]!;
            const k0 = kvv[b0 + c]!, k1 = kvv[b1 + c]!, k2 = kvv[b2 + c]!, k3 = kvv[b3 + c]!;
            s0 += x * k0;
            s1 += x * k1;
            s2 += x * k2;
            s3 += x * k3;
            p0 += g * k0;
            p1 += g * k1;
            p2 += g * k2;
            p3 += g * k3;
          }
          let r0 = 0, r1 = 0, r2 = 0, r3 = 0;
          for (let c = dv; c < D; c++) {
            const x = qv[qa + c]!;
            r0 += x * kvv[b0 + c]!;
            r1 += x * kvv[b1 + c]!;
            r2 += x * kvv[b2 + c]!;
            r3 += x * kvv[b3 + c]!;
          }
          ps[0] = expd(rnd(rnd(rnd(s0) + rnd(r0)) * scale) - l);
          ps[1] = expd(rnd(rnd(rnd(s1) + rnd(r1)) * scale) - l);
          ps[2] = expd(rnd(rnd(rnd(s2) + rnd(r2)) * scale) - l);
          ps[3] = expd(rnd(rnd(rnd(s3) + rnd(r3)) * scale) - l);
          dss[0] = ps[0]! * (p0 - delta) * scale;
          dss[1] = ps[1]! * (p1 - delta) * scale;
          dss[2] = ps[2]! * (p2 - delta) * scale;
          dss[3] = ps[3]! * (p3 - delta) * scale;
          const e0 = dss[0]!, e1 = dss[1]!, e2 = dss[2]!, e3 = dss[3]!;
          for (let c = 0; c < D; c++) gq[qa + c] = gq[qa + c]! + e0 * kvv[b0 + c]! + e1 * kvv[b1 + c]! + e2 * kvv[b2 + c]! + e3 * kvv[b3 + c]!;
        } else {
          for (let u = 0; u < m; u++) {
            const t = keys[j0 + u]!;
            const kb = t * D;
            const p = expd(mlaScore(qv, qa, kvv, t, D, dv, scale, rnd) - l);
            let dp = 0;
            for (let c = 0; c < dv; c++) dp += go[oa + c]! * kvv[kb + c]!;
            ps[u] = p;
            dss[u] = p * (dp - delta) * scale;
          }
          for (let u = 0; u < m; u++) {
            const kb = keys[j0 + u]! * D;
            const ds = dss[u]!;
            for (let c = 0; c < D; c++) gq[qa + c] += ds * kvv[kb + c]!;
          }
        }
        for (let u = 0; u < m; u++) {
          const kb = keys[j0 + u]! * D;
          const ds = dss[u]!;
          const p = ps[u]!;
          for (let c = 0; c < dv; c++) gkv[kb + c] = gkv[kb + c]! + ds * qv[qa + c]! + p * go[oa + c]!;
          for (let c = dv; c < D; c++) gkv[kb + c] += ds * qv[qa + c]!;
        }
      }
    }
  }
  store(dq, gq);
  store(dkv, gkv);
}

function store(v: View, src: Float64Array): void {
  const d = dataOf(v);
  fromFloatArray(src, v.dtype, d.subarray(v.offset, v.offset + src.length) as HostArray);
}

/**
 * The f64 forward (the gradcheck dtype; no backend runs sparse MLA in f64, so sparseMlaPrefillTrain calls
 * this directly for f64 tensors on the CPU): exactly the forward's math with no rounding, out [Tq, H, dv]
 * and lse [Tq, H] both f64. Empty rows: out 0, lse −∞.
 */
export function sparseMlaPrefillF64Cpu(out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const k = indices.shape[1]!;
  const qv = readF(q, 'f64');
  const kvv = readF(kv, 'f64');
  const idx = readIndex(indices);
  const o = new Float64Array(Tq * H * dv);
  const ls = new Float64Array(Tq * H);
  const keys = new Int32Array(k);
  const s = new Float64Array(k);
  const id = (x: number): number => x;
  for (let i = 0; i < Tq; i++) {
    const n = validKeys(idx, i, k, Tk, keys);
    for (let h = 0; h < H; h++) {
      if (n === 0) {
        ls[i * H + h] = -Infinity;
        continue;
      }
      const qa = (i * H + h) * D;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        s[j] = mlaScore(qv, qa, kvv, keys[j]!, D, dv, scale, id);
        if (s[j]! > m) m = s[j]!;
      }
      let z = 0;
      for (let j = 0; j < n; j++) {
        s[j] = expd(s[j]! - m);
        z += s[j]!;
      }
      const oa = (i * H + h) * dv;
      for (let j = 0; j < n; j++) {
        const p = s[j]! / z;
        const kb = keys[j]! * D;
        for (let c = 0; c < dv; c++) o[oa + c] += p * kvv[kb + c]!;
      }
      ls[i * H + h] = m + Math.log(z);
    }
  }
  store(out, o);
  store(lse, ls);
}
