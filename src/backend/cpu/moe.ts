// CPU reference of the MoE operations (contract: src/tensor/ops/moe.ts): routing, dispatch (counting
// sort by expert), grouped GEMM and combine. Each reproduces today's host model bit for bit:
//  - moeRouteCpu is selectExperts of src/model/gate.ts, loop for loop: sel = fround(s + bias); per group
//    the top-2 sum fround(a + b) (with bias) or the max (without); the topk_group best groups kept (ties →
//    lower group), the others' experts set to −inf; the k best experts (ties → lower id), ascending. The
//    top-k is the same insertion rule (topkRow), so even NaN scores choose what the host chooses.
//  - moeDispatchCpu orders the T·k (token, slot) pairs by expert, stably (ascending token within an
//    expert), which is the order moe.ts's per-expert loop visits them.
//  - groupedMatmulCpu runs, per expert segment, the same backend matmul call the expert Mlp's linear makes
//    (x rows [m, K] times the transposed [N, K] weight, f32 accumulation, one rounding to the out dtype), so
//    the result is the host's bit for bit (the GEMM's order per output element depends on K, not on which
//    other rows share the call, but calling it per segment with the host's shapes makes that moot).
//  - groupedMatmulFp8Cpu is the same per segment over FP8 weights: fp8BlockLinearCpu (the host applyLinear
//    FP8 loop moved down a layer) on the segment's rows of the quantised activations and W[e]'s codes and
//    128×128 scales. actQuant works row by row, so quantising all sorted rows at once gives each segment
//    the codes and scales the host's per-expert call computes.
//  - moeCombineCpu is moe.ts's non-autograd combine: acc = fround(acc + fround(y·w)) over the slots in
//    ascending expert order, then acc = fround(acc + shared); in f64 (gradcheck) the same without rounding.
import { DsvError } from '../../errors.js';
import type { Backend, View } from '../../tensor/backend.js';
import { fromFloatArray, type HostArray } from '../../tensor/dtype.js';
import { type FArr, dataOf, readF, readIndex } from './strided.js';
import { fp8BlockLinearCpu } from './fp8-linear.js';

const fround = Math.fround;

/** Larger first; ties by lower index (gate.ts's `better`). */
function better(v: Float32Array, a: number, b: number): boolean {
  const x = v[a]!;
  const y = v[b]!;
  return x > y || (x === y && a < b);
}

/** Indices of the k best of vals[0 .. n), best first (gate.ts's topkRow, the same insertion). */
function topkRow(vals: Float32Array, n: number, k: number): number[] {
  const best: number[] = [];
  for (let j = 0; j < n; j++) {
    if (best.length === k && !better(vals, j, best[k - 1]!)) continue;
    let p = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(j);
    while (p > 0 && better(vals, j, best[p - 1]!)) {
      best[p] = best[p - 1]!;
      p--;
    }
    best[p] = j;
  }
  return best;
}

/**
 * scores f32 [T, E], bias f32 [E] or null, forced i32 [T, k] or null → out i32 [T, k] (ascending per
 * token). Forced rows are sorted and checked (ids in [0, E), distinct) here, where they are host memory.
 */
export function moeRouteCpu(out: View, scores: View, bias: View | null, forced: View | null, groups: number, topkGroups: number): void {
  const [T, E] = scores.shape as [number, number];
  const k = out.shape[1]!;
  const o = dataOf(out) as Int32Array;
  if (forced) {
    const f = readIndex(forced);
    for (let t = 0; t < T; t++) {
      const row = Array.from(f.subarray(t * k, (t + 1) * k)).sort((a, b) => a - b);
      for (let j = 0; j < k; j++) {
        const e = row[j]!;
        if (!Number.isInteger(e) || e < 0 || e >= E) throw new DsvError(`moeRoute: forced route of token ${t} has expert id ${e}, expected 0..${E - 1}`);
        if (j > 0 && row[j - 1] === e) throw new DsvError(`moeRoute: forced route of token ${t} repeats expert ${e}`);
        o[out.offset + t * k + j] = e;
      }
    }
    return;
  }
  const s = readF(scores, 'f32') as Float32Array;
  const b = bias ? (readF(bias, 'f32') as Float32Array) : null;
  const G = groups;
  const per = E / G;
  const sel = new Float32Array(E);
  const gs = new Float32Array(G);
  const tmp = new Float32Array(per);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) sel[e] = b ? fround(s[t * E + e]! + b[e]!) : s[t * E + e]!;
    if (G > 1) {
      for (let g = 0; g < G; g++) {
        for (let j = 0; j < per; j++) tmp[j] = sel[g * per + j]!;
        const top = topkRow(tmp, per, b ? 2 : 1);
        gs[g] = b ? fround(tmp[top[0]!]! + tmp[top[1]!]!) : tmp[top[0]!]!;
      }
      const keep = new Set(topkRow(gs, G, topkGroups));
      for (let g = 0; g < G; g++) if (!keep.has(g)) for (let j = 0; j < per; j++) sel[g * per + j] = -Infinity;
    }
    const chosen = topkRow(sel, E, k).sort((a, c) => a - c);
    for (let j = 0; j < k; j++) o[out.offset + t * k + j] = chosen[j]!;
  }
}

/**
 * experts i32 [T, k] (ids in [0, E), E = offsets.length − 1) → pairs i32 [T·k] (the flat pair index
 * t·k + j at each sorted position), rows i32 [T·k] (the sorted position of each pair: the inverse),
 * tokens i32 [T·k] (the token of each sorted position), offsets i32 [E + 1] (segment starts, then T·k).
 */
export function moeDispatchCpu(pairs: View, rows: View, tokens: View, offsets: View, experts: View): void {
  const k = experts.shape[1]!;
  const n = experts.shape[0]! * k;
  const E = offsets.shape[0]! - 1;
  const ex = readIndex(experts);
  const cnt = new Int32Array(E + 1);
  for (let i = 0; i < n; i++) {
    const e = ex[i]!;
    if (!(e >= 0 && e < E)) throw new DsvError(`moeDispatch: pair ${i} (token ${Math.floor(i / k)}) has expert id ${e}, expected 0..${E - 1}`);
    cnt[e + 1]!++;
  }
  for (let e = 0; e < E; e++) cnt[e + 1] = cnt[e + 1]! + cnt[e]!;
  const off = dataOf(offsets) as Int32Array;
  off.set(cnt, offsets.offset);
  const p = dataOf(pairs) as Int32Array;
  const r = dataOf(rows) as Int32Array;
  const tk = dataOf(tokens) as Int32Array;
  // cnt[e] is now the next free position of expert e; visiting pairs in order keeps each segment stable
  for (let i = 0; i < n; i++) {
    const pos = cnt[ex[i]!]!++;
    p[pairs.offset + pos] = i;
    tk[tokens.offset + pos] = Math.floor(i / k);
    r[rows.offset + i] = pos;
  }
}

/**
 * x [M, K] (f32/bf16, contiguous) · w [E, N, K] (f32/bf16, contiguous) per segment [off[e], off[e+1]) of
 * offsets i32 [E + 1] → out [M, N] (x's dtype). Rows outside every segment (none when off[E] = M) are 0.
 */
export function groupedMatmulCpu(be: Backend, out: View, x: View, w: View, offsets: View): void {
  const [M, K] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number];
  forEachSegment(be, 'groupedMatmul', out, offsets, E, M, N, (e, r0, m, o) => {
    if (K === 0) {
      be.fill(o, 0);
      return;
    }
    const a: View = { storage: x.storage, dtype: x.dtype, shape: [m, K], strides: [K, 1], offset: x.offset + r0 * K };
    // W[e]ᵀ as a column-major [K, N] view: the layout linear's transpose(w) hands the GEMM. The model's
    // dense weights are f32; a bf16 W[e] is widened (exactly) to an f32 [N, K] block first, because the
    // backend would otherwise copy the bf16 view row-major as [K, N] and run the GEMM's other
    // (non-transposed) path, whose per-element summation order differs.
    let b: View = { storage: w.storage, dtype: w.dtype, shape: [K, N], strides: [1, K], offset: w.offset + e * N * K };
    if (w.dtype !== 'f32' && w.dtype !== 'f64') {
      const blk = readF({ storage: w.storage, dtype: w.dtype, shape: [N, K], strides: [K, 1], offset: w.offset + e * N * K }, 'f32');
      b = { storage: be.fromHost(blk, 'f32'), dtype: 'f32', shape: [K, N], strides: [1, K], offset: 0 };
    }
    be.matmul(o, a, b);
  });
}

/**
 * Zeroes the rows of out [M, N] that no segment of offsets [E + 1] covers (the CUDA kernels write the
 * same), then calls fn for each non-empty segment e with its first row, row count and out rows.
 */
function forEachSegment(be: Backend, op: string, out: View, offsets: View, E: number, M: number, N: number,
  fn: (e: number, r0: number, m: number, o: View) => void): void {
  const off = readIndex(offsets);
  checkOffsets(op, off, E, M);
  if (off[0]! > 0) be.fill({ ...out, shape: [off[0]!, N], strides: [N, 1] }, 0);
  if (off[E]! < M) be.fill({ ...out, shape: [M - off[E]!, N], strides: [N, 1], offset: out.offset + off[E]! * N }, 0);
  for (let e = 0; e < E; e++) {
    const r0 = off[e]!;
    const m = off[e + 1]! - r0;
    if (m > 0) fn(e, r0, m, { storage: out.storage, dtype: out.dtype, shape: [m, N], strides: [N, 1], offset: out.offset + r0 * N });
  }
}

function checkOffsets(op: string, off: Float64Array | Int32Array, E: number, M: number): void {
  for (let e = 0; e <= E; e++) {
    const v = off[e]!;
    if (!(Number.isInteger(v) && v >= 0 && v <= M && (e === 0 || v >= off[e - 1]!))) {
      throw new DsvError(`${op}: offsets must be non-decreasing in [0, ${M}], got offsets[${e}] = ${v}${e > 0 ? ` after ${off[e - 1]}` : ''}`);
    }
  }
}

/**
 * Backward of groupedMatmul, per segment [off[e], off[e+1]) with the backend's matmul:
 *   dx [M, K] (x's dtype) = g [M, N] · W[e]      (rows in no segment: 0)
 *   dw [E, N, K] (w's dtype) = g_segᵀ · x_seg    (an expert with no rows: 0)
 * g, x, w contiguous; either output may be null (not wanted).
 */
export function groupedMatmulBackwardCpu(be: Backend, dx: View | null, dw: View | null, g: View, x: View, w: View, offsets: View): void {
  const [M, K] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number];
  const off = readIndex(offsets);
  checkOffsets('groupedMatmul (backward)', off, E, M);
  if (dx) {
    if (off[0]! > 0) be.fill({ ...dx, shape: [off[0]!, K], strides: [K, 1] }, 0);
    if (off[E]! < M) be.fill({ ...dx, shape: [M - off[E]!, K], strides: [K, 1], offset: dx.offset + off[E]! * K }, 0);
  }
  for (let e = 0; e < E; e++) {
    const r0 = off[e]!;
    const m = off[e + 1]! - r0;
    const dwe: View | null = dw && { storage: dw.storage, dtype: dw.dtype, shape: [N, K], strides: [K, 1], offset: dw.offset + e * N * K };
    if (m === 0 || N === 0) {
      if (dwe) be.fill(dwe, 0);
      if (dx && m > 0) be.fill({ storage: dx.storage, dtype: dx.dtype, shape: [m, K], strides: [K, 1], offset: dx.offset + r0 * K }, 0);
      continue;
    }
    if (dx && K > 0) {
      be.matmul({ storage: dx.storage, dtype: dx.dtype, shape: [m, K], strides: [K, 1], offset: dx.offset + r0 * K },
        { storage: g.storage, dtype: g.dtype, shape: [m, N], strides: [N, 1], offset: g.offset + r0 * N },
        { storage: w.storage, dtype: w.dtype, shape: [N, K], strides: [K, 1], offset: w.offset + e * N * K });
    }
    if (dwe && K > 0) {
      be.matmul(dwe, { storage: g.storage, dtype: g.dtype, shape: [N, m], strides: [1, N], offset: g.offset + r0 * N },
        { storage: x.storage, dtype: x.dtype, shape: [m, K], strides: [K, 1], offset: x.offset + r0 * K });
    }
  }
}

/**
 * FP8 grouped GEMM: q f8e4m3 [M, K] and sq f32 [M, ⌈K/128⌉] (actQuant of the sorted rows), w8 f8e4m3
 * [E, N, K], sw f32 [E, ⌈N/128⌉, ⌈K/128⌉], offsets i32 [E + 1] → out [M, N] (f32/bf16); rows in no segment 0.
 */
export function groupedMatmulFp8Cpu(be: Backend, out: View, q: View, sq: View, w8: View, sw: View, offsets: View): void {
  const [M, K] = q.shape as [number, number];
  const [E, N] = w8.shape as [number, number];
  const nbK = sq.shape[1]!;
  const nbN = sw.shape[1]!;
  forEachSegment(be, 'groupedMatmulFp8', out, offsets, E, M, N, (e, r0, m, o) => {
    fp8BlockLinearCpu(be, o,
      { storage: q.storage, dtype: q.dtype, shape: [m, K], strides: [K, 1], offset: q.offset + r0 * K },
      { storage: sq.storage, dtype: sq.dtype, shape: [m, nbK], strides: [nbK, 1], offset: sq.offset + r0 * nbK },
      { storage: w8.storage, dtype: w8.dtype, shape: [N, K], strides: [K, 1], offset: w8.offset + e * N * K },
      { storage: sw.storage, dtype: sw.dtype, shape: [nbN, nbK], strides: [nbK, 1], offset: sw.offset + e * nbN * nbK });
  });
}

/**
 * ySlots [T·k, D] in sorted order, weights [T, k], rows i32 [T·k] (sorted position of pair t·k + j),
 * shared [T, D] or null → out [T, D] = Σ_j w[t, j]·ySlots[rows[t·k + j]] (+ shared), see the file header.
 */
export function moeCombineCpu(out: View, ySlots: View, weights: View, rows: View, shared: View | null): void {
  const [T, D] = out.shape as [number, number];
  const k = weights.shape[1]!;
  const f64 = out.dtype === 'f64' || ySlots.dtype === 'f64' || weights.dtype === 'f64' || shared?.dtype === 'f64';
  const ct = f64 ? 'f64' : 'f32';
  const ri = readIndex(rows);
  const r = ri instanceof Int32Array ? ri : Int32Array.from(ri);
  const od = dataOf(out);
  // the sums go straight into out when it is a contiguous array of the compute type that shares no memory
  // with ySlots or weights and is shared itself or apart from it (an element's shared value is read
  // before the element is stored)
  const sep = (v: View) => dataOf(v).buffer !== od.buffer;
  const direct = out.dtype === ct && sep(ySlots) && sep(weights) && (!shared || sep(shared) || (shared.offset === out.offset && shared.dtype === out.dtype));
  const acc: FArr = direct ? (od.subarray(out.offset, out.offset + T * D) as FArr) : f64 ? new Float64Array(T * D) : new Float32Array(T * D);
  // one monomorphic loop per compute type: with the arrays typed as a Float32Array | Float64Array union
  // and the rounding chosen at run time the f32 loop ran at ~11 ns per multiply-add (512×1024, k = 4)
  if (f64) {
    combineF64(acc as Float64Array, readF(ySlots, ct) as Float64Array, readF(weights, ct) as Float64Array, r,
      shared ? (readF(shared, ct) as Float64Array) : null, T, D, k);
  } else {
    combineF32(acc as Float32Array, readF(ySlots, ct) as Float32Array, readF(weights, ct) as Float32Array, r,
      shared ? (readF(shared, ct) as Float32Array) : null, T, D, k);
  }
  if (!direct) fromFloatArray(acc, out.dtype, od.subarray(out.offset, out.offset + acc.length) as HostArray);
}

/**
 * acc[t, d] = fround(… fround(fround(0 + fround(y₀·w₀)) + fround(y₁·w₁)) …) + shared, each step one f32
 * rounding (a double +/× of two f32 values rounded once is the f32 operation). The running sum of an
 * element stays in a register across its k slots; the leading 0 + turns a −0 first product into +0, as the
 * zero-filled accumulator did.
 */
function combineF32(acc: Float32Array, y: Float32Array, w: Float32Array, r: Int32Array, sh: Float32Array | null, T: number, D: number, k: number): void {
  const fr = Math.fround;
  const base = new Int32Array(k);
  const wt = new Float64Array(k);
  for (let t = 0; t < T; t++) {
    const o = t * D;
    if (k === 4) {
      const b0 = r[t * 4]! * D, b1 = r[t * 4 + 1]! * D, b2 = r[t * 4 + 2]! * D, b3 = r[t * 4 + 3]! * D;
      const w0 = w[t * 4]!, w1 = w[t * 4 + 1]!, w2 = w[t * 4 + 2]!, w3 = w[t * 4 + 3]!;
      if (sh) {
        for (let d = 0; d < D; d++) {
          let a = fr(0 + fr(y[b0 + d]! * w0));
          a = fr(a + fr(y[b1 + d]! * w1));
          a = fr(a + fr(y[b2 + d]! * w2));
          acc[o + d] = fr(a + fr(y[b3 + d]! * w3)) + sh[o + d]!;
        }
      } else {
        for (let d = 0; d < D; d++) {
          let a = fr(0 + fr(y[b0 + d]! * w0));
          a = fr(a + fr(y[b1 + d]! * w1));
          a = fr(a + fr(y[b2 + d]! * w2));
          acc[o + d] = a + fr(y[b3 + d]! * w3);
        }
      }
      continue;
    }
    for (let j = 0; j < k; j++) {
      base[j] = r[t * k + j]! * D;
      wt[j] = w[t * k + j]!;
    }
    for (let d = 0; d < D; d++) {
      let a = 0;
      for (let j = 0; j < k; j++) a = fr(a + fr(y[base[j]! + d]! * wt[j]!));
      acc[o + d] = sh ? a + sh[o + d]! : a;
    }
  }
}

/** The f64 form (gradcheck): the same order, no rounding. */
function combineF64(acc: Float64Array, y: Float64Array, w: Float64Array, r: Int32Array, sh: Float64Array | null, T: number, D: number, k: number): void {
  const base = new Int32Array(k);
  const wt = new Float64Array(k);
  for (let t = 0; t < T; t++) {
    const o = t * D;
    for (let j = 0; j < k; j++) {
      base[j] = r[t * k + j]! * D;
      wt[j] = w[t * k + j]!;
    }
    for (let d = 0; d < D; d++) {
      let a = 0;
      for (let j = 0; j < k; j++) a = a + y[base[j]! + d]! * wt[j]!;
      acc[o + d] = sh ? a + sh[o + d]! : a;
    }
  }
}
