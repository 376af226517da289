// Host side of the `Iter` struct (kernels/common.cuh): a shared iteration space over up to four strided
// operands. Dims of size 1 are dropped and neighbouring dims merged wherever every operand is
// contiguous across them, so an all-contiguous op becomes rank 1 with stride 1.
import { DsvError } from '../../errors.js';
import { ITER_BYTES } from './launch.js';

export const MAXR = 8;

export interface Collapsed {
  sizes: number[];
  strides: number[][];
}

export function collapseDims(shape: readonly number[], strides: readonly (readonly number[])[]): Collapsed {
  const sizes: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const k = sizes.length - 1;
    if (k >= 0 && strides.every((s, o) => st[o]![k] === s[i]! * d)) {
      sizes[k] = sizes[k]! * d;
      for (let o = 0; o < strides.length; o++) st[o]![k] = strides[o]![i]!;
    } else {
      sizes.push(d);
      for (let o = 0; o < strides.length; o++) st[o]!.push(strides[o]![i]!);
    }
  }
  return { sizes, strides: st };
}

/** Encodes an Iter (rank, sizes, per-operand strides and element offsets) as the kernel's struct bytes. */
export function encodeIter(shape: readonly number[], strides: readonly (readonly number[])[], offsets: readonly number[], what: string): Uint8Array {
  const c = collapseDims(shape, strides);
  if (c.sizes.length > MAXR) throw new DsvError(`${what}: a view of ${c.sizes.length} non-mergeable dims exceeds the CUDA kernels' limit of ${MAXR}; make it contiguous first`);
  const buf = new ArrayBuffer(ITER_BYTES);
  const dv = new DataView(buf);
  const rank = Math.max(1, c.sizes.length);
  dv.setInt32(0, rank, true);
  const put = (off: number, v: number): void => dv.setBigInt64(off, BigInt(v), true);
  if (c.sizes.length === 0) {
    put(8, 1);
    for (let o = 0; o < 4; o++) put(8 + 64 + o * 64, 0);
  } else {
    for (let d = 0; d < c.sizes.length; d++) put(8 + d * 8, c.sizes[d]!);
    for (let o = 0; o < strides.length; o++) for (let d = 0; d < c.sizes.length; d++) put(8 + 64 + o * 64 + d * 8, c.strides[o]![d]!);
  }
  for (let o = 0; o < offsets.length; o++) put(8 + 64 + 256 + o * 8, offsets[o]!);
  return new Uint8Array(buf);
}
