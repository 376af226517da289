// Block FP8 (e4m3fn) quantisation as DeepSeek-V3.2's kernel.py defines it (model.md §8, fixtures
// README "Pure-torch kernel semantics"):
//   per row, per `block` consecutive values of the last dim: amax = max(max|x|, 1e-4) in f32;
//   s = amax·fp32(1/448), or with ue8m0 s = 2^ceil(log2(that)) (f32 exponent + (mantissa ≠ 0));
//   q = e4m3(clamp(x/s, −448, 448)) with round-to-nearest-even.
// A trailing partial block (N % block ≠ 0) is its own block with the amax of the values present
// (the fixtures' extension; identical to the official kernel whenever N % block == 0).
// Non-finite inputs: a NaN in a block makes its amax NaN; a NaN quotient x/s is encoded as e4m3's NaN
// 0x7F with the sign of x when x is a NaN, and as 0x7F otherwise (finite / NaN, ±inf / inf), on every
// backend: the hardware's own NaN would differ (x86's default NaN is negative, a GPU's positive).
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { E4M3_MAX, e4m3BitsToF32, f32ToE4m3Bits } from '../dtype.js';
import { ShapeError, Tensor, fmtShape, fromArray, fromBits } from '../tensor.js';
import { mul } from './elementwise.js';
import { alloc, requireFloat, sameDevice } from './util.js';
import { cast, contiguous, expand, narrow, reshape, unsqueeze } from './view.js';

function checkBlock(op: string, block: number): void {
  if (!Number.isInteger(block) || block <= 0) throw new DsvError(`${op}: block must be a positive integer, got ${block}`);
}

/** Quantise x [..., N] → q f8e4m3 [..., N] and scales s f32 [..., ceil(N/block)]; not differentiable. */
export function actQuant(x: Tensor, block = 128, opts: { ue8m0?: boolean } = {}): { q: Tensor; s: Tensor } {
  checkBlock('actQuant', block);
  requireFloat('actQuant', x);
  if (x.rank === 0) throw new ShapeError(`actQuant: input must have rank ≥ 1, got ${fmtShape(x.shape)}`);
  const N = x.shape[x.rank - 1]!;
  const nb = Math.ceil(N / block);
  const q = alloc(x.backend, x.shape, 'f8e4m3');
  const s = alloc(x.backend, [...x.shape.slice(0, -1), nb], 'f32');
  if (x.numel > 0) x.backend.actQuant(q, s, noGrad(() => contiguous(x)), block, opts.ue8m0 ?? true);
  if (tieProbe && x.numel > 0) return { q: probeTies(tieProbe, x, q, s, block), s };
  return { q, s };
}

/**
 * FP8 rounding ties. act_quant puts y = x/s on the e4m3 grid (3 mantissa bits: neighbours 6–12% apart),
 * so a y within a few f32 ulps of the midpoint between two grid values rounds up or down depending on the
 * last bits of x — bits that another GEMM kernel, thread count or reduction order changes. Such a flip is
 * legitimate (the reference's own GPU and CPU runs differ the same way: fixtures README, "FP8 activation
 * quantisation is an amplifier") and moves everything downstream by 1e-3–1e-2. A probe, active for the
 * duration of `withFp8TieProbe`, numbers the actQuant calls, records every quantised value whose y lies
 * within `band` of a midpoint (band in y units, where a block's largest |y| is ≤ 448), and rounds the
 * values named in `flips` to their other neighbour. The parity checks (src/model/fp8-ties.ts) use it to
 * find which legitimate tie roundings the reference made.
 */
export interface Fp8TieProbe {
  /** Half-width of the band around each midpoint, in units of y = x/s. */
  readonly band: number;
  /** Ties to round to the other neighbour, keyed by `tieKey`. */
  readonly flips: ReadonlySet<string>;
  /** actQuant calls seen so far (the call number of the next one). */
  calls: number;
  /** Every in-band value seen, in call order. */
  readonly ties: Fp8Tie[];
}

export interface Fp8Tie {
  /** Which actQuant call of the probed run, from 0. */
  call: number;
  /** Flat element index in that call's input. */
  index: number;
  /** Distance of y from the midpoint (y units). */
  dist: number;
}

export const tieKey = (t: Pick<Fp8Tie, 'call' | 'index'>): string => `${t.call}:${t.index}`;

export function newTieProbe(band: number, flips: ReadonlySet<string> = new Set()): Fp8TieProbe {
  return { band, flips, calls: 0, ties: [] };
}

let tieProbe: Fp8TieProbe | null = null;

/** Runs fn with `probe` watching every actQuant; probes do not nest. */
export function withFp8TieProbe<T>(probe: Fp8TieProbe, fn: () => T): T {
  if (tieProbe) throw new DsvError('withFp8TieProbe: a probe is already active');
  tieProbe = probe;
  try {
    return fn();
  } finally {
    tieProbe = null;
  }
}

function probeTies(probe: Fp8TieProbe, x: Tensor, q: Tensor, s: Tensor, block: number): Tensor {
  const call = probe.calls++;
  const xv = noGrad(() => x.toFloat32());
  const sv = s.toFloat32();
  const qv = q.toFloat32();
  const N = x.shape[x.rank - 1]!;
  const nb = Math.ceil(N / block);
  let flipped: Float32Array | null = null;
  for (let i = 0; i < xv.length; i++) {
    const y = Math.fround(xv[i]! / sv[Math.floor(i / N) * nb + Math.floor((i % N) / block)]!);
    const r = qv[i]!;
    if (!Number.isFinite(y) || y === r || Math.abs(y) >= E4M3_MAX) continue;
    // the other neighbour: one grid step further from zero when |y| > |r|, else one step nearer
    const mag = f32ToE4m3Bits(Math.abs(r));
    const otherMag = Math.abs(y) > Math.abs(r) ? mag + 1 : mag - 1;
    if (otherMag < 0 || otherMag > 0x7e) continue;
    const sign = y < 0 ? 0x80 : 0;
    const dist = Math.abs(Math.abs(y) - (Math.abs(r) + e4m3BitsToF32(otherMag)) / 2);
    if (dist > probe.band) continue;
    probe.ties.push({ call, index: i, dist });
    if (probe.flips.has(tieKey({ call, index: i }))) {
      flipped ??= Float32Array.from(qv);
      flipped[i] = e4m3BitsToF32(sign | otherMag); // on the grid, so fromArray's rounding keeps it
    }
  }
  return flipped ? fromArray(flipped, q.shape, { dtype: 'f8e4m3', device: q.device }) : q;
}

/**
 * Scale of column j = s[..., floor(j/block)], expanded to [..., N] along `axis`: each of the nb scales
 * repeated `block` times ([.., nb, 1, ..] broadcast to [.., nb, block, ..], made contiguous, the last
 * block cut to N). Device work only — no index array built on the host and uploaded — so it can be
 * recorded in a CUDA graph (the decode step's FP8 round trip of the MLA latent runs it).
 */
function expandScales(op: string, s: Tensor, N: number, block: number, axis: number): Tensor {
  const nb = Math.ceil(N / block);
  if (s.shape[axis] !== nb) throw new ShapeError(`${op}: scale ${fmtShape(s.shape)} needs ${nb} blocks of ${block} along dim ${axis}`);
  const wide = [...s.shape.slice(0, axis), nb, block, ...s.shape.slice(axis + 1)];
  const rep = reshape(contiguous(expand(unsqueeze(s, axis + 1), wide)), [...s.shape.slice(0, axis), nb * block, ...s.shape.slice(axis + 1)]);
  return nb * block === N ? rep : narrow(rep, axis, 0, N);
}

/** f32 values q·s[block of each column] (exact for ue8m0 scales). */
export function actDequant(q: Tensor, s: Tensor, block = 128): Tensor {
  checkBlock('actDequant', block);
  sameDevice('actDequant', q, s);
  const N = q.rank === 0 ? 0 : q.shape[q.rank - 1]!;
  if (q.rank === 0 || s.rank !== q.rank || q.shape.slice(0, -1).some((d, i) => d !== s.shape[i]) || s.shape[q.rank - 1] !== Math.ceil(N / block)) {
    throw new ShapeError(`actDequant: values ${fmtShape(q.shape)} and scales ${fmtShape(s.shape)} do not match (expected [..., ${Math.ceil(N / block)}])`);
  }
  return mul(cast(q, 'f32'), expandScales('actDequant', cast(s, 'f32'), N, block, q.rank - 1));
}

/**
 * Block-dequantise an FP8 weight: W[i, j] = w8[i, j] · scaleInv[floor(i/block), floor(j/block)] in f32
 * (the checkpoint's `weight_scale_inv`); dims need not be multiples of the block.
 */
export function weightDequant(w8: Tensor, scaleInv: Tensor, block = 128): Tensor {
  checkBlock('weightDequant', block);
  sameDevice('weightDequant', w8, scaleInv);
  if (w8.rank !== 2 || scaleInv.rank !== 2) {
    throw new ShapeError(`weightDequant: weight ${fmtShape(w8.shape)} and scale ${fmtShape(scaleInv.shape)} must both be 2-D`);
  }
  const [R, C] = w8.shape as [number, number];
  const want = [Math.ceil(R / block), Math.ceil(C / block)];
  if (scaleInv.shape[0] !== want[0] || scaleInv.shape[1] !== want[1]) {
    throw new ShapeError(`weightDequant: scale ${fmtShape(scaleInv.shape)} does not fit weight ${fmtShape(w8.shape)} in ${block}×${block} blocks (expected ${fmtShape(want)})`);
  }
  const sf = cast(scaleInv, 'f32');
  const rows = expandScales('weightDequant', sf, R, block, 0); // [R, ceil(C/block)]
  return mul(cast(w8, 'f32'), expandScales('weightDequant', rows, C, block, 1));
}

/**
 * Block-quantise a weight for an FP8 checkpoint, the inverse of `weightDequant` (DeepSeek's layout):
 * each block×block block (partial blocks at the edges are their own) is quantised as one act_quant
 * block, i.e. with `actQuant`'s arithmetic:
 *   amax = max(|W|, f32(1e-4)),  s = 2^ceil(log2(f32(amax · f32(1/448))))   (ue8m0, V3.2's `scale_fmt`)
 *   w8 = e4m3(clamp(W / s, ±448)),  weight_scale_inv = s                     (W ≈ w8 · s)
 * This is how the official tiny-fp8 checkpoint was made from tiny-bf16: the test reproduces it bit for
 * bit. Power-of-two scales make the division exact, so the only rounding is the one to e4m3 (relative
 * error ≤ 2^-4 for normals), and quantising a dequantised weight gives back the same bytes. Runs on
 * the host (an offline, once-per-checkpoint step) and returns host tensors.
 */
export function weightQuant(w: Tensor, block = 128): { w8: Tensor; scaleInv: Tensor } {
  checkBlock('weightQuant', block);
  requireFloat('weightQuant', w);
  if (w.rank !== 2) throw new ShapeError(`weightQuant: the weight must be 2-D, got ${fmtShape(w.shape)}`);
  const [R, C] = w.shape as [number, number];
  const br = Math.ceil(R / block);
  const bc = Math.ceil(C / block);
  const x = w.toFloat32();
  const scale = new Float32Array(br * bc);
  const q = new Uint8Array(R * C);
  const inv448 = Math.fround(1 / E4M3_MAX);
  for (let i = 0; i < br; i++) {
    for (let j = 0; j < bc; j++) {
      const r1 = Math.min(R, (i + 1) * block);
      const c1 = Math.min(C, (j + 1) * block);
      let amax = Math.fround(1e-4);
      for (let r = i * block; r < r1; r++) for (let c = j * block; c < c1; c++) amax = Math.max(amax, Math.abs(x[r * C + c]!));
      const sc = 2 ** Math.ceil(Math.log2(Math.fround(amax * inv448)));
      scale[i * bc + j] = sc;
      for (let r = i * block; r < r1; r++) {
        for (let c = j * block; c < c1; c++) q[r * C + c] = f32ToE4m3Bits(Math.max(-E4M3_MAX, Math.min(E4M3_MAX, x[r * C + c]! / sc)));
      }
    }
  }
  return { w8: fromBits(q, 'f8e4m3', [R, C]), scaleInv: fromArray(scale, [br, bc], { dtype: 'f32' }) };
}

/**
 * x → actDequant(actQuant(x)) cast back to x's dtype (the MLA latent's FP8 round trip). The backward
 * is the straight-through identity: rounding has zero derivative almost everywhere, and training
 * through the round trip wants the gradient of the unquantised value.
 */
export function fp8RoundTrip(x: Tensor, block = 128, opts: { ue8m0?: boolean } = {}): Tensor {
  const out = noGrad(() => {
    const { q, s } = actQuant(x, block, opts);
    return cast(actDequant(q, s, block), x.dtype);
  });
  return record(out, 'fp8RoundTrip', [x], (g) => [g]);
}
