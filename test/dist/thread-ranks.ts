// The cases and inputs shared by the thread-collective test and its rank worker (thread-ranks.worker.ts).
import type { DType } from '../../src/tensor/dtype.js';

export interface RankCase {
  kind: 'ops' | 'mismatch' | 'indivisible' | 'die' | 'stall';
  dtype?: DType;
}

/** Rank r's input of n elements: distinct per rank and element, with fractions a sum can round. */
export function input(rank: number, n: number, dtype: DType): number[] {
  return Array.from({ length: n }, (_, i) => {
    const v = ((rank + 1) * 37 + i * 11) % 23 - 11;
    return dtype === 'i32' ? v * 1000003 : v + (rank + 1) / 3 + i / 7;
  });
}

/** The message f throws ('' when it returns): what a rank posts back for the test to match. */
export function caught(f: () => unknown): string {
  try {
    f();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}
