// Train/validation split and document order, both pure functions of (seed, document id).
//
// A document is in validation iff u(seed, id) < fraction, with u the first 48 bits of
// sha256("split:" + seed + ":" + id) scaled to [0, 1): a property of the document alone, so adding a
// source or changing --max-bytes never moves a document across the split (no leak of a former
// validation document into training between two builds with the same seed). Within a split the order
// is by sha256("order:" + seed + ":" + id), a seeded shuffle that interleaves the sources and does not
// depend on the order in which sources were read.
import { createHash } from 'node:crypto';

function h(tag: string, seed: number, id: string): Buffer {
  return createHash('sha256').update(`${tag}:${seed}:${id}`).digest();
}

/** Uniform in [0, 1) from (seed, id). */
export function splitUniform(seed: number, id: string): number {
  return h('split', seed, id).readUIntBE(0, 6) / 2 ** 48;
}

export function isValidation(seed: number, id: string, fraction: number): boolean {
  return splitUniform(seed, id) < fraction;
}

/** Sort key of a document in its split. */
export function orderKey(seed: number, id: string): string {
  return h('order', seed, id).toString('hex');
}
