// Tensor: a strided view onto a device Storage, plus the autograd fields.
// Views (reshape of contiguous data, permute, transpose, narrow, expand, select, unsqueeze) never copy.
import { DsvError } from '../errors.js';
import { getBackend, type Backend, type Storage, type View } from './backend.js';
import { type DType, type HostArray, allocHost, fromFloatArray, toFloatArray, isFloat } from './dtype.js';

export class ShapeError extends DsvError {}

/** A node of the autograd graph: the op that produced a tensor and how to push its gradient back. */
export interface GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  /** Given dL/d(output), return dL/d(input) for each input (null where no gradient flows). */
  backward(grad: Tensor): (Tensor | null)[];
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Row-major dense: every dim of size > 1 has the stride of the dims after it multiplied together. */
export function isContiguousLayout(shape: readonly number[], strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    if (d !== 1 && strides[i] !== acc) return false;
    acc *= d;
  }
  return true;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new ShapeError(`${op}: dim ${axis} out of range for a tensor of rank ${rank}`);
  }
  return a;
}

export class Tensor implements View {
  readonly storage: Storage;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradNode | null = null;

  constructor(storage: Storage, shape: readonly number[], strides?: readonly number[], offset = 0, dtype?: DType) {
    this.storage = storage;
    this.dtype = dtype ?? storage.dtype;
    this.shape = shape;
    this.strides = strides ?? contiguousStrides(shape);
    this.offset = offset;
  }

  get backend(): Backend {
    return this.storage.backend;
  }
  get device(): string {
    return this.storage.backend.name;
  }
  get rank(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numelOf(this.shape);
  }
  size(axis: number): number {
    return this.shape[normAxis(axis, this.rank, 'size')]!;
  }

  isContiguous(): boolean {
    return isContiguousLayout(this.shape, this.strides);
  }

  /** A view sharing storage; autograd-aware view ops live in ops/view.ts and call this. */
  _view(shape: readonly number[], strides: readonly number[], offset: number): Tensor {
    return new Tensor(this.storage, shape, strides, offset, this.dtype);
  }

  /** Host copy of the elements in row-major order, in the tensor's own dtype representation. */
  toHost(): HostArray {
    return this.backend.toHost(this);
  }
  /** Elements as numbers (floats decoded; i64 via Number()). */
  toFloat64(): Float64Array {
    const h = this.toHost();
    return toFloatArray(h, this.dtype, new Float64Array(h.length)) as Float64Array;
  }
  toFloat32(): Float32Array {
    const h = this.toHost();
    if (this.dtype === 'f32') return h as Float32Array;
    return toFloatArray(h, this.dtype, new Float32Array(h.length)) as Float32Array;
  }
  /** Nested JS arrays of numbers (for tests and small outputs). */
  toArray(): unknown {
    const flat = this.toFloat64();
    const build = (dim: number, off: number): unknown => {
      if (dim === this.shape.length) return flat[off]!;
      const out: unknown[] = [];
      const inner = numelOf(this.shape.slice(dim + 1));
      for (let i = 0; i < this.shape[dim]!; i++) out.push(build(dim + 1, off + i * inner));
      return out;
    };
    return build(0, 0);
  }
  item(): number {
    if (this.numel !== 1) throw new ShapeError(`item: tensor of shape ${fmtShape(this.shape)} has ${this.numel} elements, expected 1`);
    return this.toFloat64()[0]!;
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}, ${this.device}${this.requiresGrad ? ', grad' : ''})`;
  }
}

export interface CreateOptions {
  dtype?: DType;
  device?: string;
  requiresGrad?: boolean;
}

let defaultDevice = 'cpu';
export function setDefaultDevice(name: string): void {
  getBackend(name);
  defaultDevice = name;
}
export function getDefaultDevice(): string {
  return defaultDevice;
}

export function empty(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  checkShape(shape, 'empty');
  const dtype = opts.dtype ?? 'f32';
  const b = getBackend(opts.device ?? defaultDevice);
  const t = new Tensor(b.alloc(dtype, numelOf(shape)), [...shape]);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  const t = empty(shape, opts);
  t.backend.fill(t, value);
  return t;
}
export const zeros = (shape: readonly number[], opts: CreateOptions = {}): Tensor => full(shape, 0, opts);
export const ones = (shape: readonly number[], opts: CreateOptions = {}): Tensor => full(shape, 1, opts);

export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0) throw new DsvError('arange: step must be non-zero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) vals[i] = start + i * step;
  return fromArray(vals, [n], { dtype: opts.dtype ?? 'i64', ...opts });
}

/** A tensor from numbers (rounded to dtype) or from a host array already in dtype's representation. */
export function fromArray(data: ArrayLike<number> | HostArray, shape: readonly number[], opts: CreateOptions = {}): Tensor {
  checkShape(shape, 'fromArray');
  const dtype = opts.dtype ?? (data instanceof Float64Array ? 'f64' : data instanceof BigInt64Array ? 'i64' : data instanceof Int32Array ? 'i32' : 'f32');
  if (data.length !== numelOf(shape)) {
    throw new ShapeError(`fromArray: ${data.length} values do not fill shape ${fmtShape(shape)} (${numelOf(shape)} elements)`);
  }
  let host: HostArray;
  if (isNativeFor(data, dtype)) host = data as HostArray;
  else if (data instanceof BigInt64Array) host = fromFloatArray(Float64Array.from(data, Number), dtype);
  else host = fromFloatArray(data as ArrayLike<number>, dtype);
  const b = getBackend(opts.device ?? defaultDevice);
  const t = new Tensor(b.fromHost(host, dtype), [...shape]);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A 0-d tensor. */
export function scalar(value: number, opts: CreateOptions = {}): Tensor {
  return fromArray([value], [], opts);
}

/** Nested JS arrays → tensor (shape inferred). */
export function tensor(nested: unknown, opts: CreateOptions = {}): Tensor {
  const shape: number[] = [];
  let cur: unknown = nested;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  const flat: number[] = [];
  const walk = (v: unknown, d: number): void => {
    if (d === shape.length) {
      if (typeof v !== 'number' && typeof v !== 'boolean') throw new DsvError(`tensor: expected a number at depth ${d}, got ${typeof v}`);
      flat.push(Number(v));
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) throw new ShapeError(`tensor: ragged nested array at depth ${d} (expected length ${shape[d]})`);
    for (const x of v) walk(x, d + 1);
  };
  walk(nested, 0);
  return fromArray(flat, shape, opts);
}

function isNativeFor(data: ArrayLike<number> | HostArray, dtype: DType): boolean {
  switch (dtype) {
    case 'f32': return data instanceof Float32Array;
    case 'f64': return data instanceof Float64Array;
    case 'i32': return data instanceof Int32Array;
    case 'i64': return data instanceof BigInt64Array;
    case 'u8': case 'bool': return data instanceof Uint8Array;
    default: return false; // bf16/f16/f8 from numbers always round; raw bits go through fromBits
  }
}

/** A tensor from raw bits/bytes already in dtype's representation (bf16/f16 Uint16Array, f8 Uint8Array...). */
export function fromBits(host: HostArray, dtype: DType, shape: readonly number[], opts: CreateOptions = {}): Tensor {
  if (host.length !== numelOf(shape)) throw new ShapeError(`fromBits: ${host.length} elements do not fill shape ${fmtShape(shape)}`);
  const b = getBackend(opts.device ?? defaultDevice);
  return new Tensor(b.fromHost(host, dtype), [...shape]);
}

function checkShape(shape: readonly number[], op: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${op}: invalid shape ${fmtShape(shape)} (dims must be non-negative integers)`);
  }
}

export function assertFloat(t: Tensor, op: string): void {
  if (!isFloat(t.dtype)) throw new DsvError(`${op}: expected a floating tensor, got ${t.dtype}`);
}

export { allocHost };
