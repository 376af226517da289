// Integer codes shared with kernels/*.cu (dtype codes in common.cuh, op codes in elementwise.cu and
// reduce.cu). test/cuda/codes.test.ts parses the .cu sources and checks these lists against them.
import type { BinaryOp, ReduceOp, UnaryOp } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';

export const DT_CODES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16', 'f8e4m3', 'i32', 'i64', 'u8', 'bool'];
export const UNARY_OPS: readonly UnaryOp[] = [
  'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'sigmoid', 'silu', 'relu', 'tanh', 'sign', 'square', 'recip', 'floor',
  'ceil', 'not', 'adds', 'muls', 'pows', 'rpows', 'clampmin', 'clampmax',
];
export const BINARY_OPS: readonly BinaryOp[] = [
  'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or',
];
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'max', 'min'];

const dtIndex = new Map(DT_CODES.map((d, i) => [d, i]));
const unIndex = new Map(UNARY_OPS.map((d, i) => [d, i]));
const binIndex = new Map(BINARY_OPS.map((d, i) => [d, i]));
const redIndex = new Map(REDUCE_OPS.map((d, i) => [d, i]));
export const dtCode = (d: DType): number => dtIndex.get(d)!;
export const unaryCode = (o: UnaryOp): number => unIndex.get(o)!;
export const binaryCode = (o: BinaryOp): number => binIndex.get(o)!;
export const reduceCode = (o: ReduceOp): number => redIndex.get(o)!;
