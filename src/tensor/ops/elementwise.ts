// Elementwise ops with NumPy broadcasting. Gradients of broadcast inputs are summed back to their
// shapes (sumTo).
import { _setGradAdd, record } from '../autograd.js';
import type { BinaryOp, UnaryOp } from '../backend.js';
import { DsvError } from '../../errors.js';
import { type DType, computeDtype } from '../dtype.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { broadcastShapes } from './shape.js';
import { alloc, promote, requireFloat, sameDevice } from './util.js';
import { cast, expand, sumTo } from './view.js';

export type Operand = Tensor | number;

function rawBinary(op: BinaryOp, a: Tensor, b: Tensor, outDtype?: DType): Tensor {
  sameDevice(op, a, b);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const dt = outDtype ?? promote(a.dtype, b.dtype);
  const out = alloc(a.backend, shape, dt);
  a.backend.binary(op, out, expandRaw(a, shape), expandRaw(b, shape));
  return out;
}

/** A broadcast view without autograd bookkeeping (kernels only read it). */
function expandRaw(t: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - t.rank;
  const strides = shape.map((d, i) => (i < lead || t.shape[i - lead] !== d ? 0 : t.strides[i - lead]!));
  return t._view(shape, strides, t.offset);
}

function rawUnary(op: UnaryOp, x: Tensor, alpha = 0, outDtype?: DType): Tensor {
  const out = alloc(x.backend, x.shape, outDtype ?? x.dtype);
  x.backend.unary(op, out, x, alpha);
  return out;
}

function scalarLike(x: Tensor, v: number): Tensor {
  const t = alloc(x.backend, [], x.dtype);
  x.backend.fill(t, v);
  return t;
}

function lift(a: Operand, like: Tensor): Tensor {
  return typeof a === 'number' ? scalarLike(like, a) : a;
}

// ---- arithmetic ---------------------------------------------------------------------------------
export function add(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return adds(a as Tensor, b);
  if (typeof a === 'number') return adds(b, a);
  const out = rawBinary('add', a, b);
  // an input that needs no gradient gets none computed (a broadcast causal bias's would be a full reduction)
  return record(out, 'add', [a, b], (g) => [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? sumTo(g, b.shape) : null]);
}
_setGradAdd((a, b) => add(a, b));

export function sub(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return adds(a as Tensor, -b);
  if (typeof a === 'number') return adds(neg(b), a);
  const out = rawBinary('sub', a, b);
  return record(out, 'sub', [a, b], (g) => [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? sumTo(neg(g), b.shape) : null]);
}

export function mul(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return muls(a as Tensor, b);
  if (typeof a === 'number') return muls(b, a);
  const out = rawBinary('mul', a, b);
  return record(out, 'mul', [a, b], (g) => [
    a.requiresGrad ? sumTo(mul(g, b), a.shape) : null,
    b.requiresGrad ? sumTo(mul(g, a), b.shape) : null,
  ]);
}

export function div(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return muls(a as Tensor, 1 / b);
  const A = lift(a, b);
  const out = rawBinary('div', A, b);
  return record(out, 'div', [A, b], (g) => [
    A.requiresGrad ? sumTo(div(g, b), A.shape) : null,
    // d(a/b)/db = −a/b² = −out/b
    b.requiresGrad ? sumTo(neg(div(mul(g, out), b)), b.shape) : null,
  ]);
}

/** x + s */
export function adds(x: Tensor, s: number): Tensor {
  const out = rawUnary('adds', x, s);
  return record(out, 'adds', [x], (g) => [g]);
}
/** x · s */
export function muls(x: Tensor, s: number): Tensor {
  const out = rawUnary('muls', x, s);
  return record(out, 'muls', [x], (g) => [muls(g, s)]);
}

export function neg(x: Tensor): Tensor {
  const out = rawUnary('neg', x);
  return record(out, 'neg', [x], (g) => [neg(g)]);
}

/** x^p for a scalar p, or elementwise a^b. */
export function pow(a: Tensor, p: Operand): Tensor {
  if (typeof p === 'number') {
    const out = rawUnary('pows', a, p);
    return record(out, 'pow', [a], (g) => [mul(g, muls(rawUnary('pows', a, p - 1), p))]);
  }
  const out = rawBinary('pow', a, p);
  return record(out, 'pow', [a, p], (g) => [
    // d/da a^b = b·a^(b−1); d/db a^b = a^b·ln a
    a.requiresGrad ? sumTo(mul(g, mul(p, pow(a, sub(p, 1)))), a.shape) : null,
    p.requiresGrad ? sumTo(mul(g, mul(out, log(a))), p.shape) : null,
  ]);
}

export function exp(x: Tensor): Tensor {
  const out = rawUnary('exp', x);
  return record(out, 'exp', [x], (g) => [mul(g, out)]);
}
export function log(x: Tensor): Tensor {
  const out = rawUnary('log', x);
  return record(out, 'log', [x], (g) => [div(g, x)]);
}
export function sqrt(x: Tensor): Tensor {
  const out = rawUnary('sqrt', x);
  return record(out, 'sqrt', [x], (g) => [div(muls(g, 0.5), out)]);
}
export function rsqrt(x: Tensor): Tensor {
  const out = rawUnary('rsqrt', x);
  // d x^(−1/2) = −½ x^(−3/2) = −½ out³
  return record(out, 'rsqrt', [x], (g) => [mul(g, muls(rawUnary('pows', out, 3), -0.5))]);
}
export function abs(x: Tensor): Tensor {
  const out = rawUnary('abs', x);
  return record(out, 'abs', [x], (g) => [mul(g, rawUnary('sign', x))]);
}
export function square(x: Tensor): Tensor {
  const out = rawUnary('square', x);
  return record(out, 'square', [x], (g) => [mul(g, muls(x, 2))]);
}
export function sigmoid(x: Tensor): Tensor {
  const out = rawUnary('sigmoid', x);
  // σ' = σ(1 − σ)
  return record(out, 'sigmoid', [x], (g) => [mul(g, mul(out, rsubs(out, 1)))]);
}
export function silu(x: Tensor): Tensor {
  const out = rawUnary('silu', x);
  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
  return record(out, 'silu', [x], (g) => {
    const s = rawUnary('sigmoid', x);
    return [mul(g, mul(s, adds(mul(x, rsubs(s, 1)), 1)))];
  });
}
/**
 * SwiGLU's middle in one op: silu(g)·u in the compute dtype (f32 for f32/bf16/f16 inputs, f64 for f64),
 * rounded once to g's dtype: the reference's (F.silu(g.float()) * u.float()).type_as(g) with the same
 * two roundings (silu, then the product) in one launch where it was five (two widening casts, silu, the
 * product, the narrowing cast).
 */
export function swiglu(g: Tensor, u: Tensor): Tensor {
  requireFloat('swiglu', g);
  sameDevice('swiglu', g, u);
  if (g.dtype !== u.dtype) throw new DsvError(`swiglu: gate and up must share a dtype, got ${g.dtype} and ${u.dtype}`);
  if (g.shape.length !== u.shape.length || g.shape.some((d, i) => d !== u.shape[i])) {
    throw new ShapeError(`swiglu: gate ${fmtShape(g.shape)} and up ${fmtShape(u.shape)} must have one shape`);
  }
  const out = alloc(g.backend, g.shape, g.dtype);
  g.backend.swiglu(out, g, u);
  // d/dg = gr·u·σ(g)·(1 + g·(1 − σ(g))), d/du = gr·g·σ(g), in the compute dtype
  return record(out, 'swiglu', [g, u], (gr) => {
    const ct = computeDtype(g.dtype);
    const gf = cast(g, ct);
    const uf = cast(u, ct);
    const gw = cast(gr, ct);
    const s = rawUnary('sigmoid', gf);
    const dg = g.requiresGrad ? cast(mul(gw, mul(uf, mul(s, adds(mul(gf, rsubs(s, 1)), 1)))), g.dtype) : null;
    const du = u.requiresGrad ? cast(mul(gw, mul(gf, s)), u.dtype) : null;
    return [dg, du];
  });
}
export function relu(x: Tensor): Tensor {
  const out = rawUnary('relu', x);
  return record(out, 'relu', [x], (g) => [mul(g, rawBinary('gt', x, scalarLike(x, 0), x.dtype))]);
}
export function tanh(x: Tensor): Tensor {
  const out = rawUnary('tanh', x);
  return record(out, 'tanh', [x], (g) => [mul(g, rsubs(rawUnary('square', out), 1))]);
}
/** s − x */
export function rsubs(x: Tensor, s: number): Tensor {
  return adds(neg(x), s);
}
export function clamp(x: Tensor, lo: number | null, hi: number | null): Tensor {
  let out = x;
  if (lo !== null) out = rawUnary('clampmin', out, lo);
  if (hi !== null) out = rawUnary('clampmax', out, hi);
  if (out === x) return x;
  return record(out, 'clamp', [x], (g) => {
    // gradient passes where x was inside [lo, hi]
    let m = alloc(x.backend, x.shape, x.dtype);
    x.backend.fill(m, 1);
    if (lo !== null) m = rawBinary('mul', m, rawBinary('ge', x, scalarLike(x, lo), x.dtype));
    if (hi !== null) m = rawBinary('mul', m, rawBinary('le', x, scalarLike(x, hi), x.dtype));
    return [mul(g, m)];
  });
}

export function maximum(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary('maximum', a, b);
  return record(out, 'maximum', [a, b], (g) => {
    const ma = rawBinary('ge', a, b, g.dtype); // ties send the gradient to a
    return [a.requiresGrad ? sumTo(mul(g, expand(ma, g.shape)), a.shape) : null, b.requiresGrad ? sumTo(mul(g, rsubs(expand(ma, g.shape), 1)), b.shape) : null];
  });
}
export function minimum(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary('minimum', a, b);
  return record(out, 'minimum', [a, b], (g) => {
    const ma = rawBinary('le', a, b, g.dtype);
    return [a.requiresGrad ? sumTo(mul(g, expand(ma, g.shape)), a.shape) : null, b.requiresGrad ? sumTo(mul(g, rsubs(expand(ma, g.shape), 1)), b.shape) : null];
  });
}

// ---- comparisons and selection (not differentiable w.r.t. the condition) ------------------------
function cmp(op: BinaryOp, a: Tensor, b: Operand): Tensor {
  return rawBinary(op, a, lift(b, a), 'bool');
}
export const eq = (a: Tensor, b: Operand): Tensor => cmp('eq', a, b);
export const ne = (a: Tensor, b: Operand): Tensor => cmp('ne', a, b);
export const lt = (a: Tensor, b: Operand): Tensor => cmp('lt', a, b);
export const le = (a: Tensor, b: Operand): Tensor => cmp('le', a, b);
export const gt = (a: Tensor, b: Operand): Tensor => cmp('gt', a, b);
export const ge = (a: Tensor, b: Operand): Tensor => cmp('ge', a, b);
export const logicalAnd = (a: Tensor, b: Tensor): Tensor => rawBinary('and', a, b, 'bool');
export const logicalOr = (a: Tensor, b: Tensor): Tensor => rawBinary('or', a, b, 'bool');
export const logicalNot = (a: Tensor): Tensor => rawUnary('not', a, 0, 'bool');

/** cond ? a : b with broadcasting. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const like = typeof a === 'number' ? (b as Tensor) : a;
  const A = lift(a, like);
  const B = lift(b, like);
  sameDevice('where', cond, A, B);
  const shape = broadcastShapes(broadcastShapes(cond.shape, A.shape, 'where'), B.shape, 'where');
  const out = alloc(A.backend, shape, promote(A.dtype, B.dtype));
  A.backend.where(out, expandRaw(cond, shape), expandRaw(A, shape), expandRaw(B, shape));
  return record(out, 'where', [A, B], (g) => {
    const z = alloc(g.backend, [], g.dtype);
    g.backend.fill(z, 0);
    return [
      A.requiresGrad ? sumTo(where(cond, g, z), A.shape) : null,
      B.requiresGrad ? sumTo(where(cond, z, g), B.shape) : null,
    ];
  });
}

/** x with `value` where mask is true (mask broadcast to x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  requireFloat('maskedFill', x);
  return where(mask, scalarLike(x, value), x);
}

export { cast };
