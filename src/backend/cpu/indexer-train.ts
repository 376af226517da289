// CPU references of the DSA indexer's training operations (contract and math:
// src/tensor/ops/indexer-train.ts): the float indexer scores (Backend.indexerScores), their backward
// (Backend.indexerScoresBackward) and the indexer's KL loss against the main attention
// (Backend.indexerKlLoss). Training runs the indexer unquantised (f32/bf16, no FP8); f64 is the gradcheck dtype.
//
// Scores, dense mode (a key range [start[i], end[i]) per query, clamped to [0, Tk); −inf elsewhere):
//   f32/bf16 inputs: exactly the host oracle indexScores (test/oracles/indexer.ts) with quantisation off
//   (IndexerOptions.quantize = false: k scale 1): the same sgemm calls through logitsCore of
//   src/backend/cpu/dsa-indexer.ts, acc = Σ_h (l > 0 ? l·w : 0) in double, out = fround(acc)
//   (= fround(fround(acc)·1)). f64 inputs: every dot product and sum in double, unrounded.
// Scores, sparse mode (indices [Tq, k], −1 or outside [0, Tk) = hole → −inf): the host never scores a
//   selected subset, so there is no bit-exact target; l = fround(Σ_c q·k in double) (unrounded in f64), then
//   the same head sum and rounding as the dense mode.
// Backward (double; d = dout[i, column of t], l = q[i, h]·k[t] recomputed in double):
//   dw[i, h] += d·relu(l);  and where l > 0:  dq[i, h] += d·w[i, h]·k[t],  dk[t] += d·w[i, h]·q[i, h].
//   The relu mask uses the recomputed l; it can differ from the forward's f32 GEMM only where l rounds
//   across 0 (|l| within an ulp of 0), where relu's derivative is ambiguous anyway.
// KL loss, per query row i over its entries E_i (dense: t in the range; sparse: valid indices):
//   a_t = Σ_h exp(s_{h,t} − lse_h), s = the main attention's score with the forward's roundings
//         (src/backend/cpu/sparse-mla-backward.ts mlaScore), lse_h saved by the forward (−∞ heads skipped)
//   p_t = a_t / Σ_{E_i} a        (the target: head-summed attention, L1-normalised over E_i; detached)
//   logq_t = I_t − logsumexp_{E_i}(I)                 (the indexer's log-softmax over the same entries)
//   loss_i = Σ_{t ∈ E_i, p_t > 0} p_t·(ln p_t − logq_t)
//   grad[i, t] = ∂loss_i/∂I_t = exp(logq_t) − p_t on E_i, 0 elsewhere (Σ p = 1)
// A row with no entry, or whose target mass Σ a is 0, has loss 0 and gradient 0.
// Everything in double; loss and grad are stored in the scores' dtype (f32, or f64).
// The loops compute a key's dot products for all heads together (head-dots.ts: four serial sums per pass,
// each in the order above), then use them in head order as the formulas read, so the bits are those of
// one-dot-at-a-time loops; the inputs are widened to double once (exact) to keep the loops monomorphic.
import type { View } from '../../tensor/backend.js';
import { fromFloatArray, type HostArray } from '../../tensor/dtype.js';
import { logitsCore } from './dsa-indexer.js';
import { actRounder } from './sparse-mla-backward.js';
import { headDots } from './head-dots.js';
import { dataOf, readF, readIndex } from './strided.js';
import { expd } from './exp.js';

function store(v: View, src: ArrayLike<number>): void {
  const d = dataOf(v);
  fromFloatArray(src, v.dtype, d.subarray(v.offset, v.offset + src.length) as HostArray);
}

/**
 * The entries of one row: calls f(t, col) for each key row t the row scores, col being its output column
 * (t itself in dense mode, the index slot j in sparse mode).
 */
interface Rows {
  /** output columns per row */
  readonly width: number;
  each(i: number, f: (t: number, col: number) => void): void;
  /** The same entries into ts/cols (each ≥ width long), in the same order; returns their count. */
  list(i: number, ts: Int32Array, cols: Int32Array): number;
}

/** Dense rows: [start[i], end[i]) clamped to [0, Tk). */
export function rangeRows(start: View, end: View, Tk: number): Rows & { start: Int32Array; end: Int32Array } {
  const s = readIndex(start);
  const e = readIndex(end);
  const st = new Int32Array(s.length);
  const en = new Int32Array(s.length);
  for (let i = 0; i < s.length; i++) {
    st[i] = Math.max(0, Math.min(Tk, s[i]!));
    en[i] = Math.max(st[i]!, Math.min(Tk, e[i]!));
  }
  return {
    width: Tk,
    start: st,
    end: en,
    each(i, f) {
      for (let t = st[i]!; t < en[i]!; t++) f(t, t);
    },
    list(i, ts, cols) {
      let n = 0;
      for (let t = st[i]!; t < en[i]!; t++, n++) ts[n] = cols[n] = t;
      return n;
    },
  };
}

/** Sparse rows: the valid entries of indices [Tq, k]. */
export function indexRows(indices: View, Tk: number): Rows {
  const idx = readIndex(indices);
  const k = indices.shape[1]!;
  return {
    width: k,
    each(i, f) {
      for (let j = 0; j < k; j++) {
        const t = idx[i * k + j]!;
        if (t >= 0 && t < Tk) f(t, j);
      }
    },
    list(i, ts, cols) {
      let n = 0;
      for (let j = 0; j < k; j++) {
        const t = idx[i * k + j]!;
        if (t >= 0 && t < Tk) {
          ts[n] = t;
          cols[n++] = j;
        }
      }
      return n;
    },
  };
}

function rowsOf(start: View | null, end: View | null, indices: View | null, Tk: number): Rows {
  return indices ? indexRows(indices, Tk) : rangeRows(start!, end!, Tk);
}

const want = (v: View): 'f32' | 'f64' => (v.dtype === 'f64' ? 'f64' : 'f32');

/**
 * Backend.indexerScores: q [Tq, H, D], k [Tk, D] (f32/bf16, or f64), w [Tq, H] (f32 or f64), start/end
 * i32 [Tq] (dense) or indices i32 [Tq, kSel] (sparse), all contiguous → out [Tq, Tk] or [Tq, kSel]
 * (f32; f64 for f64 inputs), −inf outside the range / at holes.
 */
export function indexerScoresCpu(out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const f64 = q.dtype === 'f64';
  const qv = readF(q, want(q));
  const kv = readF(k, want(k));
  const wv = readF(w, f64 ? 'f64' : 'f32');
  const rows = rowsOf(start, end, indices, Tk);
  const N = rows.width;
  if (!f64 && !indices) {
    // the host's exact operation order (indexScores with k scale 1)
    const r = rows as ReturnType<typeof rangeRows>;
    const o = dataOf(out) as Float32Array;
    logitsCore(qv as Float32Array, wv as Float32Array, kv as Float32Array, new Float32Array(Tk).fill(1), Tq, H, D, Tk, r.start, r.end, o, out.offset, Tk);
    return;
  }
  const rl = f64 ? (x: number) => x : Math.fround;
  const o = new Float64Array(Tq * N).fill(-Infinity);
  const q64 = readF(q, 'f64') as Float64Array;
  const k64 = readF(k, 'f64') as Float64Array;
  const ts = new Int32Array(N);
  const cols = new Int32Array(N);
  const l = new Float64Array(H);
  for (let i = 0; i < Tq; i++) {
    const n = rows.list(i, ts, cols);
    for (let e = 0; e < n; e++) {
      headDots(q64, i * H * D, D, H, k64, ts[e]! * D, 0, D, l, 0);
      let acc = 0;
      for (let h = 0; h < H; h++) {
        const lh = rl(l[h]!);
        if (lh > 0) acc += lh * wv[i * H + h]!;
      }
      o[i * N + cols[e]!] = rl(acc);
    }
  }
  store(out, o);
}

/**
 * Backend.indexerScoresBackward: dout [Tq, N] (scores' dtype) → dq [Tq, H, D] (q's dtype), dk [Tk, D] (f32;
 * f64 for f64 inputs), dw [Tq, H] (w's dtype), all overwritten. Other inputs as indexerScores.
 */
export function indexerScoresBackwardCpu(dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  // widened to double once (exact): the sums below were double already, so the bits do not change
  const qv = readF(q, 'f64') as Float64Array;
  const kv = readF(k, 'f64') as Float64Array;
  const wv = readF(w, 'f64');
  const g = readF(dout, 'f64');
  const rows = rowsOf(start, end, indices, Tk);
  const N = rows.width;
  const gq = new Float64Array(Tq * H * D);
  const gk = new Float64Array(Tk * D);
  const gw = new Float64Array(Tq * H);
  const ts = new Int32Array(N);
  const cols = new Int32Array(N);
  const ls = new Float64Array(H);
  for (let i = 0; i < Tq; i++) {
    const n = rows.list(i, ts, cols);
    for (let e = 0; e < n; e++) {
      const d = g[i * N + cols[e]!]!;
      if (d === 0) continue;
      const tb = ts[e]! * D;
      // all heads' l first (four chains at a time), then the updates in head order as before
      headDots(qv, i * H * D, D, H, kv, tb, 0, D, ls, 0);
      for (let h = 0; h < H; h++) {
        const qa = (i * H + h) * D;
        const l = ls[h]!;
        if (!(l > 0)) continue;
        gw[i * H + h] += d * l;
        const c0 = d * wv[i * H + h]!;
        for (let c = 0; c < D; c++) {
          gq[qa + c] += c0 * kv[tb + c]!;
          gk[tb + c] += c0 * qv[qa + c]!;
        }
      }
    }
  }
  store(dq, gq);
  store(dk, gk);
  store(dw, gw);
}

/**
 * Backend.indexerKlLoss: scores [Tq, N] (f32/f64), the main attention's q [Tq, H, D], kv [Tk, D] (f32,
 * bf16 or f64) and lse [Tq, H] (f32/f64) with its latent dims dv and softmax scale; start/end [Tq] (dense: N = Tk) or indices
 * [Tq, N] (sparse) → loss [Tq] per row and grad [Tq, N] = ∂loss/∂scores, both in the scores' dtype.
 */
export function indexerKlLossCpu(loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null, dv: number, scale: number): void {
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  // widened to double once (exact): mlaScore's sums are double whatever the storage
  const qv = readF(q, 'f64') as Float64Array;
  const kvv = readF(kv, 'f64') as Float64Array;
  const lv = readF(lse, 'f64');
  const I = readF(scores, 'f64');
  const rnd = actRounder(q.dtype);
  const rows = rowsOf(start, end, indices, Tk);
  const N = rows.width;
  const L = new Float64Array(Tq);
  const G = new Float64Array(Tq * N);
  const a = new Float64Array(N);
  const ts = new Int32Array(N);
  const colA = new Int32Array(N);
  const d1 = new Float64Array(H);
  const d2 = new Float64Array(H);
  for (let i = 0; i < Tq; i++) {
    const n = rows.list(i, ts, colA);
    let P = 0;
    let m = -Infinity;
    for (let e = 0; e < n; e++) {
      const col = colA[e]!;
      // mlaScore's two sums for every head at once (headDots: same order, same bits)
      headDots(qv, i * H * D, D, H, kvv, ts[e]! * D, 0, dv, d1, 0);
      headDots(qv, i * H * D, D, H, kvv, ts[e]! * D, dv, D, d2, 0);
      let s = 0;
      for (let h = 0; h < H; h++) {
        const l = lv[i * H + h]!;
        if (l === -Infinity) continue;
        s += expd(rnd(rnd(rnd(d1[h]!) + rnd(d2[h]!)) * scale) - l);
      }
      a[col] = s;
      P += s;
      if (I[i * N + col]! > m) m = I[i * N + col]!;
    }
    if (!n || !(P > 0)) continue;
    const cols = colA.subarray(0, n);
    let z = 0;
    for (const col of cols) z += expd(I[i * N + col]! - m);
    const lz = m + Math.log(z);
    let li = 0;
    for (const col of cols) {
      const p = a[col]! / P;
      const lq = I[i * N + col]! - lz;
      if (p > 0) li += p * (Math.log(p) - lq);
      G[i * N + col] = expd(lq) - p;
    }
    L[i] = li;
  }
  store(loss, L);
  store(grad, G);
}
