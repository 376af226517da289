// Test oracles: the model's former host loops for sparse attention, kept as the independent reference the
// sparse attention operations (src/tensor/ops/sparse-mla.ts, sparse-mha.ts) are checked against bit for bit.
// DeepSeek Sparse Attention cores on the host: each query attends only to its selected keys that are
// causally visible (key position ≤ query position). Both MLA modes of the reference:
//   MHA (prefill): per head, q = [q_nope, q_pe], k = [k_nope(h), k_pe(shared)], v(h) from wkv_b(latent);
//                  score = rnd(rnd(q·k)·scale)
//   MQA (decode, "absorbed"): q_abs = q_nope·W_UK (the caller), one latent key per token shared by all
//                  heads: score = rnd(rnd(rnd(q_abs·kv) + rnd(q_pe·pe))·scale); output stays in the latent
//                  space (the caller multiplies by W_UV)
// `rnd` rounds to the activation dtype where the reference's einsums/muls produce a tensor. Dense
// attention with −inf outside the set gives exactly these numbers: exp(−inf) adds zeros. A query whose
// set has no visible key gets a zero output (the FlashMLA convention; dense softmax would give NaN).
// Softmax: max-subtracted, sum in double, probabilities rounded to the activation dtype; the weighted
// value sum accumulates in double and is rounded once. e^x is the CPU backend's expd (within an ulp of
// Math.exp, faster): the oracle checks the loops' order and roundings, the backend's exp is shared.
import { expd } from '../../src/backend/cpu/exp.js';

export interface SelectionRows {
  /** ascending key positions per query, −1 padded: idx[off + i·width + j] */
  idx: Int32Array;
  off: number;
  width: number;
}

export interface MhaInput {
  S: number;
  H: number;
  T: number;
  dNope: number;
  dRope: number;
  dV: number;
  /** absolute position of query 0 (keys are positions 0..T-1) */
  qPos0: number;
  qNope: Float32Array; // [S, H, dNope]
  qPe: Float32Array; // [S, H, dRope]
  kNope: Float32Array; // [T, H, dNope]
  kPe: Float32Array; // [T, dRope]
  v: Float32Array; // [T, H, dV]
  sel: SelectionRows;
  scale: number;
  rnd: (x: number) => number;
}

/** Visible selected keys of query i (ascending). */
function visibleKeys(sel: SelectionRows, i: number, pos: number, T: number, buf: Int32Array): number {
  let n = 0;
  const base = sel.off + i * sel.width;
  for (let j = 0; j < sel.width; j++) {
    const t = sel.idx[base + j]!;
    if (t >= 0 && t <= pos && t < T) buf[n++] = t;
  }
  return n;
}

/**
 * The part both modes share: p_j = rnd(exp(s_j − m) / Σ exp(s − m)) over the n visible keys (sc holds the
 * scores, m their max), then out[ob..ob+d) = rnd(Σ_j p_j · vals[keys_j·stride + off ..]) accumulated in double.
 */
function softmaxCombine(
  sc: Float64Array, n: number, m: number, keys: Int32Array, vals: Float32Array, stride: number, off: number,
  d: number, rnd: (x: number) => number, acc: Float64Array, out: Float32Array, ob: number,
): void {
  let z = 0;
  for (let j = 0; j < n; j++) {
    const e = expd(sc[j]! - m);
    sc[j] = e;
    z += e;
  }
  acc.fill(0);
  for (let j = 0; j < n; j++) {
    const p = rnd(sc[j]! / z);
    const vb = keys[j]! * stride + off;
    for (let c = 0; c < d; c++) acc[c] += p * vals[vb + c]!;
  }
  for (let c = 0; c < d; c++) out[ob + c] = rnd(acc[c]!);
}

export function sparseMhaAttention(a: MhaInput): Float32Array {
  const { S, H, T, dNope, dRope, dV, rnd, scale } = a;
  const out = new Float32Array(S * H * dV);
  const keys = new Int32Array(a.sel.width);
  const sc = new Float64Array(a.sel.width);
  const acc = new Float64Array(dV);
  for (let i = 0; i < S; i++) {
    const n = visibleKeys(a.sel, i, a.qPos0 + i, T, keys);
    if (n === 0) continue;
    for (let h = 0; h < H; h++) {
      const qn = (i * H + h) * dNope;
      const qp = (i * H + h) * dRope;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const t = keys[j]!;
        const kn = (t * H + h) * dNope;
        const kp = t * dRope;
        let d = 0;
        for (let c = 0; c < dNope; c++) d += a.qNope[qn + c]! * a.kNope[kn + c]!;
        for (let c = 0; c < dRope; c++) d += a.qPe[qp + c]! * a.kPe[kp + c]!;
        const s = rnd(rnd(d) * scale);
        sc[j] = s;
        if (s > m) m = s;
      }
      softmaxCombine(sc, n, m, keys, a.v, H * dV, h * dV, dV, rnd, acc, out, (i * H + h) * dV);
    }
  }
  return out;
}

export interface MqaInput {
  S: number;
  H: number;
  T: number;
  dC: number;
  dRope: number;
  qPos0: number;
  qAbs: Float32Array; // [S, H, dC]
  qPe: Float32Array; // [S, H, dRope]
  kv: Float32Array; // [≥T, dC]
  pe: Float32Array; // [≥T, dRope]
  sel: SelectionRows;
  scale: number;
  rnd: (x: number) => number;
}

/** Latent-space output o_lat [S, H, dC]. */
export function sparseMqaAttention(a: MqaInput): Float32Array {
  const { S, H, T, dC, dRope, rnd, scale } = a;
  const out = new Float32Array(S * H * dC);
  const keys = new Int32Array(a.sel.width);
  const sc = new Float64Array(a.sel.width);
  const acc = new Float64Array(dC);
  for (let i = 0; i < S; i++) {
    const n = visibleKeys(a.sel, i, a.qPos0 + i, T, keys);
    if (n === 0) continue;
    for (let h = 0; h < H; h++) {
      const qa = (i * H + h) * dC;
      const qp = (i * H + h) * dRope;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const t = keys[j]!;
        let d1 = 0;
        for (let c = 0; c < dC; c++) d1 += a.qAbs[qa + c]! * a.kv[t * dC + c]!;
        let d2 = 0;
        for (let c = 0; c < dRope; c++) d2 += a.qPe[qp + c]! * a.pe[t * dRope + c]!;
        const s = rnd(rnd(rnd(d1) + rnd(d2)) * scale);
        sc[j] = s;
        if (s > m) m = s;
      }
      softmaxCombine(sc, n, m, keys, a.kv, dC, 0, dC, rnd, acc, out, (i * H + h) * dC);
    }
  }
  return out;
}
