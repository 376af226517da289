// The CPU backend: the numerical reference. Every kernel decodes its inputs to f32 (f64 for f64
// tensors), computes with double-precision intermediates, and rounds once into the output dtype.
import type { AdamWScalars, Backend, BinaryOp, ReduceOp, SoftmaxOptions, UnaryOp, View } from '../../tensor/backend.js';
import {
  type DType, type HostArray, allocHost, fromFloatArray, convertHost,
} from '../../tensor/dtype.js';
import { CpuStorage } from './storage.js';
import { contiguousStrides } from '../../tensor/tensor.js';
import { type FArr, computeType, dataOf, isContiguousView, rawContiguous, readF, readIndex, stridedOffsets, stridedRuns, viewNumel } from './strided.js';
import { pickRow } from './pick.js';
import { sgemm, dgemm } from './gemm.js';
import { matrixLayout, type MatrixLayout } from '../matrix-layout.js';
import { causalSelectCpu, indexerCacheWriteCpu, indexerLogitsCpu, indexerLogitsPagedCpu, topkSelectCpu } from './dsa-indexer.js';
import { mlaCacheWriteCpu, sparseMlaDecodeCpu, sparseMlaPrefillCpu } from './sparse-mla.js';
import { sparseMhaPrefillCpu } from './sparse-attention.js';
import { actRounder, sparseMlaBackwardCpu } from './sparse-mla-backward.js';
import { indexerKlLossCpu, indexerScoresBackwardCpu, indexerScoresCpu } from './indexer-train.js';
import { groupedMatmulBackwardCpu, groupedMatmulCpu, groupedMatmulFp8Cpu, moeCombineCpu, moeDispatchCpu, moeRouteCpu } from './moe.js';
import { fp8BlockLinearCpu } from './fp8-linear.js';
import { adamwStepCpu } from './adamw.js';
import { expd } from './exp.js';
import { parallelRows } from './pool.js';
import { actQuant, hadamardF32, rmsNormF32, rmsNormF64, rmsNormResidualF32, swiglu } from './row-kernels.js';


/** Output buffer to compute into: the storage itself when out is contiguous f32/f64 of the compute type. */
function outBuffer(out: View, ct: 'f32' | 'f64'): FArr {
  const n = viewNumel(out);
  if (out.dtype === ct && isContiguousView(out)) return dataOf(out).subarray(out.offset, out.offset + n) as FArr;
  return ct === 'f64' ? new Float64Array(n) : new Float32Array(n);
}

/** Store computed values into a contiguous out view (no-op when vals already is out's storage). */
function commit(out: View, vals: FArr): void {
  const data = dataOf(out);
  if (vals.buffer === data.buffer && out.dtype === (vals instanceof Float64Array ? 'f64' : 'f32')) return;
  const n = viewNumel(out);
  fromFloatArray(vals, out.dtype, data.subarray(out.offset, out.offset + n) as HostArray);
}

function unaryFn(op: UnaryOp, alpha: number): (x: number) => number {
  switch (op) {
    case 'neg': return (x) => -x;
    case 'exp': return expd;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'rsqrt': return (x) => 1 / Math.sqrt(x);
    case 'abs': return Math.abs;
    case 'sigmoid': return (x) => 1 / (1 + expd(-x));
    case 'silu': return (x) => x / (1 + expd(-x));
    case 'relu': return (x) => (x > 0 ? x : x === 0 || x < 0 ? 0 : x);
    case 'tanh': return Math.tanh;
    case 'sign': return (x) => (x > 0 ? 1 : x < 0 ? -1 : x === 0 ? 0 : NaN);
    case 'square': return (x) => x * x;
    case 'recip': return (x) => 1 / x;
    case 'floor': return Math.floor;
    case 'ceil': return Math.ceil;
    case 'not': return (x) => (x === 0 ? 1 : 0);
    case 'adds': return (x) => x + alpha;
    case 'muls': return (x) => x * alpha;
    case 'pows': return alpha === 2 ? (x) => x * x : (x) => Math.pow(x, alpha);
    case 'rpows': return (x) => Math.pow(alpha, x);
    case 'clampmin': return (x) => (x < alpha ? alpha : x);
    case 'clampmax': return (x) => (x > alpha ? alpha : x);
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'pow': return Math.pow;
    case 'maximum': return (a, b) => (a !== a || b !== b ? NaN : a > b ? a : b);
    case 'minimum': return (a, b) => (a !== a || b !== b ? NaN : a < b ? a : b);
    case 'eq': return (a, b) => (a === b ? 1 : 0);
    case 'ne': return (a, b) => (a !== b ? 1 : 0);
    case 'lt': return (a, b) => (a < b ? 1 : 0);
    case 'le': return (a, b) => (a <= b ? 1 : 0);
    case 'gt': return (a, b) => (a > b ? 1 : 0);
    case 'ge': return (a, b) => (a >= b ? 1 : 0);
    case 'and': return (a, b) => (a !== 0 && b !== 0 ? 1 : 0);
    case 'or': return (a, b) => (a !== 0 || b !== 0 ? 1 : 0);
  }
}

/** RMSNorm rows of the compute type, split across threads when worth it. */
function normRows(ct: 'f32' | 'f64', a: { o: FArr; v: FArr; w: FArr; eps: number }): void {
  const D = a.w.length;
  const rows = D === 0 ? 0 : a.v.length / D;
  if (ct === 'f32') parallelRows('rmsNormF32', rmsNormF32, a, rows, 2 * D, ['o']);
  else parallelRows('rmsNormF64', rmsNormF64, a, rows, 2 * D, ['o']);
}

/** Integer dtypes compute in f64 so i64 values up to 2^53 stay exact. */
function ctFor(...views: View[]): 'f32' | 'f64' {
  const ds = views.map((v) => v.dtype);
  if (ds.some((d) => d === 'i64' || d === 'i32')) return 'f64';
  return computeType(...ds);
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  /** FP8 products decode the weight's codes to f32 (fp8-linear.ts); frozen weights may come decoded */
  readonly widensFp8Weights = true;

  alloc(dtype: DType, numel: number): CpuStorage {
    return new CpuStorage(this, dtype, allocHost(dtype, numel));
  }
  fromHost(data: HostArray, dtype: DType): CpuStorage {
    return new CpuStorage(this, dtype, data.slice() as HostArray);
  }
  toHost(v: View): HostArray {
    const raw = rawContiguous(v);
    return raw.buffer === dataOf(v).buffer ? (raw.slice() as HostArray) : raw;
  }
  synchronize(): void {}

  copy(dst: View, src: View): void {
    const n = viewNumel(dst);
    if (n === 0) return;
    if (src.dtype === dst.dtype && dataOf(src).buffer !== dataOf(dst).buffer && !isContiguousView(src) && !isContiguousView(dst)) {
      // strided to strided with the same contiguous runs (a head slice into a concatenation): run to
      // run, without gathering src into a temporary first (other storages only: within one, a run
      // written early could be a source read later); cpu-mid's 512-token prefill's 72 copies 16.8 → 13.0 ms
      const rs = stridedRuns(src.shape, src.strides, src.offset);
      const rd = rs && stridedRuns(dst.shape, dst.strides, dst.offset);
      if (rs && rd && rs.len === rd.len && rs.bases.length === rd.bases.length) {
        const sd = dataOf(src) as Float32Array;
        const dd = dataOf(dst) as Float32Array;
        const len = rs.len;
        for (let i = 0; i < rs.bases.length; i++) dd.set(sd.subarray(rs.bases[i]!, rs.bases[i]! + len), rd.bases[i]!);
        return;
      }
    }
    let raw = rawContiguous(src);
    if (src.dtype !== dst.dtype) raw = convertHost(raw, src.dtype, dst.dtype);
    const data = dataOf(dst);
    if (isContiguousView(dst)) {
      (data as Float32Array).set(raw as Float32Array, dst.offset);
      return;
    }
    const runs = stridedRuns(dst.shape, dst.strides, dst.offset);
    if (runs) {
      const { bases, len } = runs;
      for (let i = 0; i < bases.length; i++) (data as Float32Array).set((raw as Float32Array).subarray(i * len, (i + 1) * len), bases[i]!);
      return;
    }
    const offs = stridedOffsets(dst.shape, dst.strides, dst.offset);
    if (data instanceof BigInt64Array) for (let i = 0; i < n; i++) data[offs[i]!] = (raw as BigInt64Array)[i]!;
    else for (let i = 0; i < n; i++) (data as Float32Array)[offs[i]!] = (raw as Float32Array)[i]!;
  }

  fill(dst: View, value: number): void {
    const enc = fromFloatArray([value], dst.dtype);
    const data = dataOf(dst);
    if (isContiguousView(dst)) {
      const n = viewNumel(dst);
      (data as Float32Array).fill((enc as Float32Array)[0]!, dst.offset, dst.offset + n);
      return;
    }
    const offs = stridedOffsets(dst.shape, dst.strides, dst.offset);
    for (let i = 0; i < offs.length; i++) (data as Float32Array)[offs[i]!] = (enc as Float32Array)[0]!;
  }

  unary(op: UnaryOp, out: View, x: View, alpha = 0): void {
    const ct = ctFor(x, out);
    const a = readF(x, ct);
    const o = outBuffer(out, ct);
    const n = o.length;
    switch (op) {
      // the hot ones get their own loops (no closure call per element)
      case 'exp': for (let i = 0; i < n; i++) o[i] = expd(a[i]!); break;
      case 'muls': for (let i = 0; i < n; i++) o[i] = a[i]! * alpha; break;
      case 'adds': for (let i = 0; i < n; i++) o[i] = a[i]! + alpha; break;
      case 'silu': for (let i = 0; i < n; i++) { const v = a[i]!; o[i] = v / (1 + expd(-v)); } break;
      case 'sigmoid': for (let i = 0; i < n; i++) o[i] = 1 / (1 + expd(-a[i]!)); break;
      default: {
        const f = unaryFn(op, alpha);
        for (let i = 0; i < n; i++) o[i] = f(a[i]!);
      }
    }
    commit(out, o);
  }

  binary(op: BinaryOp, out: View, a: View, b: View): void {
    const ct = ctFor(a, b);
    const n = viewNumel(out);
    if (n === 0) return;
    // A broadcast scalar operand is read once instead of materialised.
    const bScalar = b.strides.every((s, i) => s === 0 || b.shape[i] === 1);
    const av = readF(a, ct);
    const o = outBuffer(out, ct === 'f64' || out.dtype === 'f64' ? 'f64' : 'f32');
    if (bScalar) {
      const s = readF({ ...b, shape: [], strides: [] } as View, ct)[0]!;
      switch (op) {
        case 'add': for (let i = 0; i < n; i++) o[i] = av[i]! + s; break;
        case 'sub': for (let i = 0; i < n; i++) o[i] = av[i]! - s; break;
        case 'mul': for (let i = 0; i < n; i++) o[i] = av[i]! * s; break;
        case 'div': for (let i = 0; i < n; i++) o[i] = av[i]! / s; break;
        default: { const f = binaryFn(op); for (let i = 0; i < n; i++) o[i] = f(av[i]!, s); }
      }
    } else {
      const bv = readF(b, ct);
      switch (op) {
        case 'add': for (let i = 0; i < n; i++) o[i] = av[i]! + bv[i]!; break;
        case 'sub': for (let i = 0; i < n; i++) o[i] = av[i]! - bv[i]!; break;
        case 'mul': for (let i = 0; i < n; i++) o[i] = av[i]! * bv[i]!; break;
        case 'div': for (let i = 0; i < n; i++) o[i] = av[i]! / bv[i]!; break;
        default: { const f = binaryFn(op); for (let i = 0; i < n; i++) o[i] = f(av[i]!, bv[i]!); }
      }
    }
    commit(out, o);
  }

  where(out: View, cond: View, a: View, b: View): void {
    const ct = ctFor(a, b, out);
    const c = readIndex(cond);
    const av = readF(a, ct);
    const bv = readF(b, ct);
    const o = outBuffer(out, ct);
    for (let i = 0; i < o.length; i++) o[i] = c[i] !== 0 ? av[i]! : bv[i]!;
    commit(out, o);
  }

  reduce(op: ReduceOp, out: View, x: View, axes: readonly number[]): void {
    // Permute the reduced axes to the end, gather contiguous, then reduce rows of length R.
    const keep: number[] = [];
    for (let i = 0; i < x.shape.length; i++) if (!axes.includes(i)) keep.push(i);
    const perm = [...keep, ...axes];
    const pv: View = { ...x, shape: perm.map((p) => x.shape[p]!), strides: perm.map((p) => x.strides[p]!) } as View;
    const ct = ctFor(x, out);
    const v = readF(pv, ct);
    let R = 1;
    for (const a of axes) R *= x.shape[a]!;
    const o = outBuffer(out, ct);
    const rows = o.length;
    for (let r = 0; r < rows; r++) {
      const base = r * R;
      let acc: number;
      if (op === 'sum') {
        acc = 0;
        for (let j = 0; j < R; j++) acc += v[base + j]!;
      } else if (op === 'max') {
        acc = -Infinity;
        for (let j = 0; j < R; j++) {
          const e = v[base + j]!;
          if (e > acc || e !== e) acc = e;
          if (acc !== acc) break;
        }
      } else {
        acc = Infinity;
        for (let j = 0; j < R; j++) {
          const e = v[base + j]!;
          if (e < acc || e !== e) acc = e;
          if (acc !== acc) break;
        }
      }
      o[r] = acc;
    }
    commit(out, o);
  }

  matmul(out: View, a: View, b: View): void {
    const r = out.shape.length;
    const M = out.shape[r - 2]!;
    const N = out.shape[r - 1]!;
    const K = a.shape[a.shape.length - 1]!;
    const batchShape = out.shape.slice(0, r - 2);
    const ct = ctFor(a, b, out);
    const A = asGemmOperand(a, ct, M, K);
    const B = asGemmOperand(b, ct, K, N);
    const o = outBuffer(out, ct);
    const aOffs = stridedOffsets(batchShape, A.v.strides.slice(0, r - 2), A.v.offset);
    const bOffs = stridedOffsets(batchShape, B.v.strides.slice(0, r - 2), B.v.offset);
    const la = A.layout;
    const lb = B.layout;
    const gemm = ct === 'f64' ? dgemm : sgemm;
    for (let i = 0; i < aOffs.length; i++) {
      (gemm as typeof sgemm)(la.trans, lb.trans, M, N, K, 1, A.data as Float32Array, aOffs[i]!, la.ld,
        B.data as Float32Array, bOffs[i]!, lb.ld, 0, o as Float32Array, i * M * N, Math.max(N, 1));
    }
    commit(out, o);
  }

  /**
   * z = rnd(scale·x) (−∞ where opts.mask is false; rows of the mask repeat), m = max z, s = Σ e^(z − m) in
   * double; softmax e^(z − m)/s or log-softmax z − (m + ln s); opts.lse[row] = m + ln s.
   */
  softmax(out: View, x: View, log: boolean, opts: SoftmaxOptions = {}): void {
    const ct = ctFor(x, out);
    const v = readF(x, ct);
    const o = outBuffer(out, ct);
    const D = x.shape[x.shape.length - 1] ?? 1;
    const rows = D === 0 ? 0 : v.length / D;
    const scale = opts.scale ?? 1;
    const rnd = actRounder(ct);
    const mask = opts.mask ? readIndex(opts.mask) : null;
    const maskRows = mask ? mask.length / D : 1;
    const lse = opts.lse ? new Float64Array(rows) : null;
    const z = scale === 1 && !mask ? v : new Float64Array(D);
    for (let r = 0; r < rows; r++) {
      const base = r * D;
      let zb = base;
      if (z !== v) {
        zb = 0;
        const mb = mask ? (r % maskRows) * D : 0;
        for (let j = 0; j < D; j++) z[j] = mask && mask[mb + j] === 0 ? -Infinity : rnd(v[base + j]! * scale);
      }
      let m = -Infinity;
      for (let j = 0; j < D; j++) if (z[zb + j]! > m) m = z[zb + j]!;
      const m0 = m === -Infinity ? 0 : m; // a fully masked row: exp(-inf - 0) = 0 → 0/0 = NaN as in torch
      let s = 0;
      if (log) {
        for (let j = 0; j < D; j++) s += expd(z[zb + j]! - m0);
        const ls = Math.log(s) + m0;
        for (let j = 0; j < D; j++) o[base + j] = z[zb + j]! - ls;
      } else {
        // one exp per element: o holds exp(z − m) until the row sum is known (o never aliases v)
        for (let j = 0; j < D; j++) {
          const e = expd(z[zb + j]! - m0);
          o[base + j] = e;
          s += e;
        }
        const inv = 1 / s;
        for (let j = 0; j < D; j++) o[base + j] = o[base + j]! * inv;
      }
      if (lse) lse[r] = m === -Infinity ? -Infinity : m + Math.log(s);
    }
    commit(out, o);
    if (lse && opts.lse) commit(opts.lse, lse);
  }

  /** dx = rnd(y ⊙ rnd(g − Δ))·scale, Δ = Σ_row g⊙y summed in double and rounded to the compute type (Backend.softmaxBackward). */
  softmaxBackward(dx: View, y: View, g: View, scale: number): void {
    const ct = ctFor(y, g, dx);
    const yv = readF(y, ct);
    const gv = readF(g, ct);
    const o = outBuffer(dx, ct);
    const D = y.shape[y.shape.length - 1] ?? 1;
    const rows = D === 0 ? 0 : yv.length / D;
    const rnd = actRounder(ct);
    for (let r = 0; r < rows; r++) {
      const base = r * D;
      let d = 0;
      for (let j = 0; j < D; j++) d += yv[base + j]! * gv[base + j]!;
      const delta = rnd(d);
      for (let j = 0; j < D; j++) o[base + j] = rnd(yv[base + j]! * rnd(gv[base + j]! - delta)) * scale;
    }
    commit(dx, o);
  }

  /** The reference's RMSNorm (row-kernels.ts rmsNormF32 / rmsNormF64). */
  rmsNorm(out: View, x: View, w: View, eps: number): void {
    const ct = ctFor(x, out);
    const o = outBuffer(out, ct);
    normRows(ct, { o, v: readF(x, ct), w: readF(w, ct), eps });
    commit(out, o);
  }

  rmsNormResidual(out: View, hOut: View, x: View, r: View, w: View, eps: number): void {
    const ct = ctFor(x, r, out);
    const a = readF(x, ct);
    const b = readF(r, ct);
    // f32 rows whose h can go straight into hOut (an f32 array of its own, or x or r itself) and whose o
    // into out (its own array, or x or r itself): one fused pass per row, no h buffer, no copies
    const own = (v: View, u: View) => dataOf(v).buffer !== dataOf(u).buffer;
    const same = (v: View, u: View) => v.offset === u.offset && v.dtype === u.dtype;
    if (ct === 'f32' && hOut.dtype === 'f32' && out.dtype === 'f32' && isContiguousView(hOut) && isContiguousView(out) && own(out, hOut)
      && (own(hOut, x) || same(hOut, x)) && (own(hOut, r) || same(hOut, r)) && (own(out, x) || same(out, x)) && (own(out, r) || same(out, r))) {
      const n = a.length;
      const wv = readF(w, ct) as Float32Array;
      const args = { o: dataOf(out).subarray(out.offset, out.offset + n) as Float32Array, h: dataOf(hOut).subarray(hOut.offset, hOut.offset + n) as Float32Array,
        x: a as Float32Array, r: b as Float32Array, w: wv, eps };
      parallelRows('rmsNormResidualF32', rmsNormResidualF32, args, wv.length === 0 ? 0 : n / wv.length, 4 * wv.length, ['o', 'h']);
      return;
    }
    // h in a buffer of the compute type (its stores round), not hOut's: the norm reads the unrounded sum
    const h = ct === 'f32' ? new Float32Array(a.length) : new Float64Array(a.length);
    for (let i = 0; i < h.length; i++) h[i] = a[i]! + b[i]!;
    const o = outBuffer(out, ct);
    normRows(ct, { o, v: h, w: readF(w, ct), eps });
    commit(hOut, h);
    commit(out, o);
  }

  swiglu(out: View, g: View, u: View): void {
    const ct = ctFor(g, u, out);
    const a = readF(g, ct);
    const b = readF(u, ct);
    const o = outBuffer(out, ct);
    parallelRows('swiglu', swiglu, { o, g: a, u: b }, o.length, 7, ['o']);
    commit(out, o);
  }

  layerNorm(out: View, x: View, w: View, b: View, eps: number): void {
    const ct = ctFor(x, out);
    const v = readF(x, ct);
    const wv = readF(w, ct);
    const bv = readF(b, ct);
    const o = outBuffer(out, ct);
    const D = wv.length;
    const rows = D === 0 ? 0 : v.length / D;
    for (let r = 0; r < rows; r++) {
      const base = r * D;
      let mean = 0;
      for (let j = 0; j < D; j++) mean += v[base + j]!;
      mean /= D;
      let vr = 0;
      for (let j = 0; j < D; j++) {
        const d = v[base + j]! - mean;
        vr += d * d;
      }
      const inv = 1 / Math.sqrt(vr / D + eps);
      for (let j = 0; j < D; j++) o[base + j] = (v[base + j]! - mean) * inv * wv[j]! + bv[j]!;
    }
    commit(out, o);
  }

  rope(out: View, x: View, cos: View, sin: View, interleaved: boolean, inverse: boolean): void {
    const [Nb, S, H, D] = x.shape as [number, number, number, number];
    const ct = ctFor(x, out);
    const v = readF(x, ct);
    const c = readF(cos, 'f64');
    const s = readF(sin, 'f64');
    const o = outBuffer(out, ct);
    const half = D / 2;
    const sg = inverse ? -1 : 1;
    for (let n = 0; n < Nb; n++) {
      for (let t = 0; t < S; t++) {
        const cb = t * half;
        for (let h = 0; h < H; h++) {
          const base = ((n * S + t) * H + h) * D;
          for (let i = 0; i < half; i++) {
            const ci = c[cb + i]!;
            const si = sg * s[cb + i]!;
            const i0 = interleaved ? base + 2 * i : base + i;
            const i1 = interleaved ? i0 + 1 : i0 + half;
            const x0 = v[i0]!;
            const x1 = v[i1]!;
            o[i0] = x0 * ci - x1 * si;
            o[i1] = x1 * ci + x0 * si;
          }
        }
      }
    }
    commit(out, o);
  }

  hadamard(out: View, x: View, scale: number): void {
    const ct = ctFor(x, out);
    const v = readF(x, ct);
    const n = x.shape[x.shape.length - 1] ?? 1;
    const rows = n === 0 ? 0 : v.length / n;
    const o = outBuffer(out, ct);
    if (ct === 'f32' && (n & (n - 1)) === 0) parallelRows('hadamardF32', hadamardF32, { o: o as Float32Array, v: v as Float32Array, n, scale }, rows, 2 * n, ['o']);
    else {
      const row = new Float64Array(n);
      for (let r = 0; r < rows; r++) {
        const base = r * n;
        for (let j = 0; j < n; j++) row[j] = v[base + j]!;
        // Sylvester order: H_{2m} = [[H_m, H_m], [H_m, −H_m]] ⇒ butterflies with doubling stride.
        for (let h = 1; h < n; h <<= 1) {
          for (let i = 0; i < n; i += h << 1) {
            for (let j = i; j < i + h; j++) {
              const a0 = row[j]!;
              const b0 = row[j + h]!;
              row[j] = a0 + b0;
              row[j + h] = a0 - b0;
            }
          }
        }
        for (let j = 0; j < n; j++) o[base + j] = row[j]! * scale;
      }
    }
    commit(out, o);
  }

  indexerLogits(out: View, q: View, k: View, kScale: View, w: View, start: View, end: View): void {
    indexerLogitsCpu(out, q, k, kScale, w, start, end);
  }
  indexerLogitsPaged(out: View, q: View, cache: View, w: View, blockTable: View, contextLens: View): void {
    indexerLogitsPagedCpu(out, q, cache, w, blockTable, contextLens);
  }
  indexerCacheWrite(cache: View, k: View, kScale: View, slots: View): void {
    indexerCacheWriteCpu(cache, k, kScale, slots);
  }
  topkSelect(out: View, x: View, k: number, start: View | null, end: View | null, blockTable: View | null, rowsPerSeq: number): void {
    topkSelectCpu(out, x, k, start, end, blockTable, rowsPerSeq);
  }
  causalSelect(out: View, end: View, blockTable: View | null, rowsPerSeq: number): void {
    causalSelectCpu(out, end, blockTable, rowsPerSeq);
  }
  pickTokens(token: View, logprob: View, x: View, temperature: View, u: View, filters: { topK: View; topP: View; minP: View } | null, mask: View | null, logZ: View | null): void {
    const [R, V] = x.shape as [number, number];
    const z = rawContiguous(x) as Float32Array;
    const t = dataOf(token) as Int32Array;
    const lp = dataOf(logprob) as Float64Array;
    const tau = rawContiguous(temperature) as Float64Array;
    const uu = rawContiguous(u) as Float64Array;
    const f = filters && { topK: rawContiguous(filters.topK) as Int32Array, topP: rawContiguous(filters.topP) as Float64Array, minP: rawContiguous(filters.minP) as Float64Array };
    const W = Math.ceil(V / 32);
    const bits = mask ? (dataOf(mask) as Int32Array) : null;
    const lz = logZ ? (dataOf(logZ) as Float64Array) : null;
    for (let r = 0; r < R; r++) {
      const g = pickRow(z, r * V, V, tau[r]!, uu[r]!, f ? { topK: f.topK[r]!, topP: f.topP[r]!, minP: f.minP[r]! } : undefined);
      t[token.offset + r] = g.token;
      lp[logprob.offset + r] = g.logprob;
      if (lz) lz[logZ!.offset + r] = g.logZ;
      if (!bits) continue;
      const row = bits.subarray(mask!.offset + r * W, mask!.offset + (r + 1) * W);
      row.fill(0);
      if (g.token < 0) continue;
      if (g.kept) for (const v of g.kept) row[v >>> 5]! |= 1 << (v & 31);
      else for (let v = 0; v < V; v++) row[v >>> 5]! |= 1 << (v & 31);
    }
  }

  topk(values: View, indices: View, x: View, k: number, largest: boolean): void {
    const ct = ctFor(x);
    const v = readF(x, ct);
    const n = x.shape[x.shape.length - 1] ?? 0;
    const rows = n === 0 ? viewNumel(values) / Math.max(k, 1) : v.length / n;
    const ov = outBuffer(values, ct);
    const oi = dataOf(indices) as BigInt64Array;
    const ioff = indices.offset;
    const order = new Int32Array(n);
    // larger-first key with NaN on top; equal keys keep ascending index (stable tie rule)
    const sgn = largest ? 1 : -1;
    for (let r = 0; r < rows; r++) {
      const base = r * n;
      for (let j = 0; j < n; j++) order[j] = j;
      const cmp = (i: number, j: number): number => {
        const a = v[base + i]!;
        const b = v[base + j]!;
        const an = a !== a;
        const bn = b !== b;
        if (an || bn) return an && bn ? i - j : an ? -sgn : sgn; // NaN is the largest: first when largest, last otherwise
        if (a !== b) return a > b ? -sgn : sgn;
        return i - j;
      };
      const sorted = partialSort(order, k, cmp);
      for (let j = 0; j < k; j++) {
        ov[r * k + j] = v[base + sorted[j]!]!;
        oi[ioff + r * k + j] = BigInt(sorted[j]!);
      }
    }
    commit(values, ov);
  }

  gather(out: View, x: View, axis: number, idx: View): void {
    const ct = ctFor(x, out);
    const v = readF(x, ct);
    const id = readIndex(idx);
    const o = outBuffer(out, ct);
    const { outer, inner } = splitAt(out.shape, axis);
    const J = out.shape[axis]!;
    const X = x.shape[axis]!;
    const xInner = innerSize(x.shape, axis);
    for (let a = 0; a < outer; a++) {
      for (let j = 0; j < J; j++) {
        for (let c = 0; c < inner; c++) {
          const p = (a * J + j) * inner + c;
          const k = checkIndex(id[p]!, X, 'gather');
          o[p] = v[(a * X + k) * xInner + c]!;
        }
      }
    }
    commit(out, o);
  }

  scatterAdd(out: View, axis: number, idx: View, src: View): void {
    const ct = ctFor(out, src);
    const o = readF(out, ct).slice();
    const s = readF(src, ct);
    const id = readIndex(idx);
    const { outer, inner } = splitAt(idx.shape, axis);
    const J = idx.shape[axis]!;
    const X = out.shape[axis]!;
    const oInner = innerSize(out.shape, axis);
    const sInner = innerSize(src.shape, axis);
    const sAxis = src.shape[axis]!;
    for (let a = 0; a < outer; a++) {
      for (let j = 0; j < J; j++) {
        for (let c = 0; c < inner; c++) {
          const p = (a * J + j) * inner + c;
          const k = checkIndex(id[p]!, X, 'scatterAdd');
          o[(a * X + k) * oInner + c] += s[(a * sAxis + j) * sInner + c]!;
        }
      }
    }
    commit(out, o);
  }

  indexSelect(out: View, x: View, axis: number, idx: View): void {
    const raw = rawContiguous(x);
    const id = readIndex(idx);
    const data = dataOf(out);
    const inner = innerSize(x.shape, axis);
    const X = x.shape[axis]!;
    let outer = 1;
    for (let i = 0; i < axis; i++) outer *= x.shape[i]!;
    const J = id.length;
    for (let a = 0; a < outer; a++) {
      for (let j = 0; j < J; j++) {
        const k = checkIndex(id[j]!, X, 'indexSelect');
        const src = (a * X + k) * inner;
        (data as Float32Array).set((raw as Float32Array).subarray(src, src + inner), out.offset + (a * J + j) * inner);
      }
    }
  }

  indexAdd(out: View, axis: number, idx: View, src: View): void {
    const ct = ctFor(out, src);
    const o = readF(out, ct).slice();
    const s = readF(src, ct);
    const id = readIndex(idx);
    const inner = innerSize(out.shape, axis);
    const X = out.shape[axis]!;
    let outer = 1;
    for (let i = 0; i < axis; i++) outer *= out.shape[i]!;
    const J = id.length;
    for (let a = 0; a < outer; a++) {
      for (let j = 0; j < J; j++) {
        const k = checkIndex(id[j]!, X, 'indexAdd');
        const d = (a * X + k) * inner;
        const sb = (a * J + j) * inner;
        for (let c = 0; c < inner; c++) o[d + c] += s[sb + c]!;
      }
    }
    commit(out, o);
  }

  sparseMlaPrefill(out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void {
    sparseMlaPrefillCpu(out, lse, q, kv, indices, dv, scale);
  }
  sparseMhaPrefill(out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void {
    sparseMhaPrefillCpu(out, lse, q, k, v, indices, scale);
  }
  sparseMlaDecode(out: View, lse: View, q: View, cache: View, indices: View, dv: number, scale: number): void {
    sparseMlaDecodeCpu(out, lse, q, cache, indices, dv, scale);
  }
  mlaCacheWrite(cache: View, latent: View, rope: View, slots: View): void {
    mlaCacheWriteCpu(cache, latent, rope, slots);
  }
  sparseMlaBackward(dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void {
    sparseMlaBackwardCpu(dq, dkv, dout, q, kv, out, lse, indices, dv, scale);
  }
  indexerScores(out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
    indexerScoresCpu(out, q, k, w, start, end, indices);
  }
  indexerScoresBackward(dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
    indexerScoresBackwardCpu(dq, dk, dw, dout, q, k, w, start, end, indices);
  }
  indexerKlLoss(loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null, dv: number, scale: number): void {
    indexerKlLossCpu(loss, grad, scores, q, kv, lse, start, end, indices, dv, scale);
  }
  moeRoute(out: View, scores: View, bias: View | null, forced: View | null, groups: number, topkGroups: number): void {
    moeRouteCpu(out, scores, bias, forced, groups, topkGroups);
  }
  moeDispatch(pairs: View, rows: View, tokens: View, offsets: View, experts: View): void {
    moeDispatchCpu(pairs, rows, tokens, offsets, experts);
  }
  groupedMatmul(out: View, x: View, w: View, offsets: View): void {
    groupedMatmulCpu(this, out, x, w, offsets);
  }
  groupedMatmulFp8(out: View, q: View, sq: View, w8: View, sw: View, offsets: View): void {
    groupedMatmulFp8Cpu(this, out, q, sq, w8, sw, offsets);
  }
  groupedMatmulBackward(dx: View | null, dw: View | null, g: View, x: View, w: View, offsets: View): void {
    groupedMatmulBackwardCpu(this, dx, dw, g, x, w, offsets);
  }
  moeCombine(out: View, ySlots: View, weights: View, rows: View, shared: View | null): void {
    moeCombineCpu(out, ySlots, weights, rows, shared);
  }
  adamwStep(p: View, g: View, m: View, v: View, h: AdamWScalars): void {
    adamwStepCpu(p, g, m, v, h);
  }
  fp8BlockLinear(out: View, q: View, sq: View, w8: View, sw: View): void {
    fp8BlockLinearCpu(this, out, q, sq, w8, sw);
  }

  actQuant(q: View, s: View, x: View, block: number, ue8m0: boolean): void {
    const v = readF(x, 'f32') as Float32Array;
    const N = x.shape[x.shape.length - 1] ?? 0;
    const rows = N === 0 ? 0 : v.length / N;
    const args = { q: dataOf(q) as Uint8Array, qOff: q.offset, s: dataOf(s) as Float32Array, sOff: s.offset, v, N, block, ue8m0 };
    parallelRows('actQuant', actQuant, args, rows, 3 * N, ['q', 's']);
  }
}

function innerSize(shape: readonly number[], axis: number): number {
  let n = 1;
  for (let i = axis + 1; i < shape.length; i++) n *= shape[i]!;
  return n;
}
function splitAt(shape: readonly number[], axis: number): { outer: number; inner: number } {
  let outer = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i]!;
  return { outer, inner: innerSize(shape, axis) };
}
function checkIndex(k: number, size: number, op: string): number {
  if (!(k >= 0 && k < size) || !Number.isInteger(k)) throw new RangeError(`${op}: index ${k} out of range for a dim of size ${size}`);
  return k;
}

/** First k positions of `order` sorted by cmp: a full sort for large k, a bounded insertion for small k. */
function partialSort(order: Int32Array, k: number, cmp: (i: number, j: number) => number): Int32Array {
  const n = order.length;
  if (k * 16 >= n) return order.sort(cmp);
  const best = new Int32Array(k);
  let len = 0;
  for (let t = 0; t < n; t++) {
    const c = order[t]!;
    if (len === k && cmp(c, best[k - 1]!) >= 0) continue;
    let p = len < k ? len++ : k - 1;
    while (p > 0 && cmp(c, best[p - 1]!) < 0) {
      best[p] = best[p - 1]!;
      p--;
    }
    best[p] = c;
  }
  return best;
}

interface GemmOperand { v: View; data: FArr; layout: MatrixLayout }
/**
 * A matmul operand as BLAS wants it: data of the compute type, each matrix row- or column-major.
 * Anything else (another dtype, a doubly-strided matrix) becomes a contiguous copy first. A column-major
 * matrix of another dtype (a bf16 weight read as transpose(w)) is widened column-major: BLAS's
 * transposed and plain paths sum an element's products in different orders, so keeping the layout makes
 * the product of a bf16 weight bit for bit that of its exact f32 copy (OpenBLAS's SkylakeX kernels differ
 * between the two in the last bit; measured 2026-12-06 with OPENBLAS_CORETYPE=SkylakeX).
 */
function asGemmOperand(v: View, ct: 'f32' | 'f64', R: number, C: number): GemmOperand {
  const l = matrixLayout(v, R, C);
  if (l && v.dtype === ct) return { v, data: dataOf(v) as FArr, layout: l };
  // a column-major matrix is read as its row-major transpose (the last two dims swapped), then viewed back
  const colMajor = l?.trans === true && R > 1 && C > 1;
  const src = colMajor ? swapLast(v) : v;
  const data = readF(src, ct); // contiguous; only read
  const rowMajor = contiguousStrides(src.shape);
  const cv: View = { ...v, dtype: ct, offset: 0, strides: colMajor ? swapLast({ ...src, strides: rowMajor }).strides : rowMajor };
  return { v: cv, data, layout: matrixLayout(cv, R, C)! };
}

/** v with its last two dims swapped (a transpose view). */
function swapLast(v: View): View {
  const r = v.shape.length;
  const shape = [...v.shape];
  const strides = [...v.strides];
  [shape[r - 2], shape[r - 1]] = [shape[r - 1]!, shape[r - 2]!];
  [strides[r - 2], strides[r - 1]] = [strides[r - 1]!, strides[r - 2]!];
  return { ...v, shape, strides };
}

