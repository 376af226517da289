// The engine-shaped step (issue 12): a flat, ragged batch of token rows over a paged cache pool.
//   T rows = the new tokens of several sequences, each a chunk [offset, offset + len) of the flat batch at
//   positions start .. start + len − 1 (a prefill chunk, a decode token, or 1 + drafts with MTP).
//   A sequence's cache lives in whole blocks of PAGE (64) tokens of a CachePool, listed in order by
//   `blocks`: position p is slot blocks[⌊p/64⌋]·64 + p mod 64 in every layer's latent and index caches.
// The model writes the chunk's keys at its slots and attends to positions [0, start + i] of its own
// sequence only; nothing is shared between chunks except the pool's blocks (prefix caching shares a
// block by listing it in two sequences' tables, read-only).
import { DsvError } from '../errors.js';

export interface SequenceChunk {
  /** first row of the chunk in the flat batch */
  offset: number;
  /** new tokens of this sequence in the step (≥ 1) */
  len: number;
  /** position of the chunk's first token; positions 0 .. start − 1 are already in the cache */
  start: number;
  /** the sequence's blocks in the pool, in order, covering at least positions [0, start + len) */
  blocks: ArrayLike<number>;
}

export interface RaggedBatch {
  /** token ids [T] */
  ids: Int32Array;
  /** chunks tiling [0, T) in order */
  seqs: readonly SequenceChunk[];
  /** flat rows whose logits are wanted (default: the last row of every chunk) */
  logitRows?: Int32Array;
}

export class BatchError extends DsvError {}

/** Check a ragged batch against a pool of `poolBlocks` blocks, a vocabulary and the position limit. */
export function checkBatch(batch: RaggedBatch, page: number, poolBlocks: number, vocab: number, maxPositions: number): void {
  const T = batch.ids.length;
  if (T === 0) throw new BatchError('batch: no tokens');
  let row = 0;
  batch.seqs.forEach((s, i) => {
    const where = `batch.seqs[${i}]`;
    if (s.offset !== row) throw new BatchError(`${where}.offset is ${s.offset}, expected ${row} (chunks must tile the batch in order)`);
    if (!Number.isInteger(s.len) || s.len < 1) throw new BatchError(`${where}.len must be a positive integer, got ${s.len}`);
    if (!Number.isInteger(s.start) || s.start < 0) throw new BatchError(`${where}.start must be a non-negative integer, got ${s.start}`);
    const end = s.start + s.len;
    if (end > maxPositions) throw new BatchError(`${where}: positions up to ${end - 1} exceed max_position_embeddings (${maxPositions})`);
    const need = Math.ceil(end / page);
    if (s.blocks.length < need) throw new BatchError(`${where}.blocks lists ${s.blocks.length} blocks; positions [0, ${end}) need ${need} of ${page} tokens`);
    for (let j = 0; j < need; j++) {
      const b = s.blocks[j]!;
      if (!Number.isInteger(b) || b < 0 || b >= poolBlocks) throw new BatchError(`${where}.blocks[${j}] = ${b} is not a block of the pool [0, ${poolBlocks})`);
    }
    row += s.len;
  });
  if (row !== T) throw new BatchError(`batch: the chunks cover ${row} rows, ids has ${T}`);
  for (let t = 0; t < T; t++) {
    const id = batch.ids[t]!;
    if (id < 0 || id >= vocab) throw new BatchError(`batch.ids[${t}] = ${id} is not a token id in [0, ${vocab})`);
  }
  if (batch.logitRows) for (const r of batch.logitRows) if (!Number.isInteger(r) || r < 0 || r >= T) throw new BatchError(`batch.logitRows: row ${r} is not in [0, ${T})`);
}

/** The default logit rows: the last row of every chunk. */
export function lastRows(batch: RaggedBatch): Int32Array {
  return Int32Array.from(batch.seqs, (s) => s.offset + s.len - 1);
}
