// Caches, per layer, as device tensors in the paged layouts the DSA operations read (model.md §5,
// src/tensor/ops/sparse-mla.ts, src/tensor/ops/dsa-indexer.ts):
//   latent [blocks, 64, ·]  the MLA latent after kv_norm and its FP8 round trip, then the rotated RoPE key:
//                           'f32' rows (the f32 numerics: the reference keeps k_pe in f32), 'bf16' rows, or
//                           the FlashMLA FP8 layout (656 B/token at 671B dims) — each exact for the values
//                           the reference caches in its numerics (the FP8 round trip's values are e4m3·2^e,
//                           which bf16 and a second FP8 round trip hold exactly)
//   index  u8 [blocks, 64·(Dh+4)]  the indexer keys, e4m3 with one f32 scale each (DeepGEMM's layout)
// A CachePool is a number of blocks of every layer; which block belongs to which sequence is the caller's
// business (the engine's block pool, src/engine/; or ModelCache below), told to the model per step by the
// RaggedBatch's block lists (src/model/batch.ts). StepLayout turns those lists into the i32 tensors the
// operations take, once per step for all layers.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { INDEXER_PAGE, indexerCache, indexerPageBytes } from '../tensor/ops/dsa-indexer.js';
import { type MlaCacheFormat, mlaCacheBytesPerToken, newMlaCache } from '../tensor/ops/sparse-mla.js';
import { narrow, reshape } from '../tensor/ops/view.js';
import { BatchError, type RaggedBatch, checkBatch, lastRows } from './batch.js';
import type { ModelConfig } from './config.js';

export const PAGE = INDEXER_PAGE;

export class LayerCache {
  readonly latent: Tensor;
  readonly index: Tensor;

  constructor(cfg: ModelConfig, readonly format: MlaCacheFormat, blocks: number, device: string) {
    this.latent = newMlaCache(blocks, PAGE, { format, dv: cfg.kvLoraRank, dr: cfg.qkRopeHeadDim, device });
    this.index = indexerCache(blocks, cfg.indexHeadDim, getBackend(device));
  }
}

/** `blocks` cache blocks of PAGE tokens for every layer and MTP layer. */
export class CachePool {
  readonly layers: LayerCache[];
  readonly mtp: LayerCache[];
  readonly format: MlaCacheFormat;
  readonly device: string;
  readonly blocks: number;

  constructor(readonly cfg: ModelConfig, opts: { blocks: number; format?: MlaCacheFormat; device?: string }) {
    const blocks = opts.blocks;
    if (!Number.isInteger(blocks) || blocks < 1) throw new DsvError(`cache pool: blocks must be a positive integer, got ${blocks}`);
    this.blocks = blocks;
    this.format = opts.format ?? 'f32';
    this.device = opts.device ?? 'cpu';
    const mk = (): LayerCache => new LayerCache(cfg, this.format, blocks, this.device);
    this.layers = Array.from({ length: cfg.nLayers }, mk);
    this.mtp = Array.from({ length: cfg.nMtpLayers }, mk);
  }

  /** Bytes of one block over every layer and MTP layer (latent + indexer keys). */
  static bytesPerBlock(cfg: ModelConfig, format: MlaCacheFormat): number {
    const perLayer = PAGE * mlaCacheBytesPerToken(format, cfg.kvLoraRank, cfg.qkRopeHeadDim) + indexerPageBytes(cfg.indexHeadDim);
    return (cfg.nLayers + cfg.nMtpLayers) * perLayer;
  }
}

/**
 * Chunks of equal length N that follow each other in the batch: one batched indexer call (q [G, N, ·])
 * and one attention call each. An equal-length batch is one group; an engine step is usually a group
 * of decode tokens (N = 1, or 1 + drafts) and one group per prefill chunk.
 */
export interface ChunkGroup {
  /** first flat row and row count (G·N) */
  row: number;
  rows: number;
  /** chunks in the group, and their length */
  G: number;
  N: number;
  /** indices into batch.seqs */
  seqs: number[];
  /** i32 [G, maxBlocks]: the chunks' block tables (padded with block 0, never read past a context) */
  table: Tensor;
  /** i32 [G]: each chunk's context length after the step (start + N) */
  contextLen: Tensor;
  /** i32 [G·N]: row j of chunk g sees positions [0, start_g + j + 1) */
  rowEnd: Tensor;
  /** the longest context in the group */
  maxCtx: number;
}

/** A step's place in the pool, the same for every layer: built once per forward. */
export interface StepLayout {
  T: number;
  /** i32 [T]: the token ids (the embedding reads them on the device) */
  ids: Tensor;
  /** i32 [T]: each new token's slot (block·64 + offset) */
  slots: Tensor;
  /** per token, its position (host) */
  positions: Int32Array;
  /** i32 [T]: the same on the pool's device (RoPE tables are gathered by it) */
  positionsT: Tensor;
  /** the largest position in the step (with `maxLen`: maxLen − 1, the bound, not the step's) */
  maxPosition: number;
  groups: ChunkGroup[];
  /**
   * selection width of the step: min(index_topk, longest context) (with `maxLen`: min(index_topk, maxLen));
   * with dense attention the longest context (or maxLen) itself
   */
  width: number;
  /** dense attention (LayoutOptions.dense): every query attends to every causal key, the indexer does not run */
  dense: boolean;
  /** flat rows whose logits are wanted */
  logitRows: Int32Array;
  /**
   * i32: every device tensor above (ids, slots, positionsT, the groups' tables, context lengths and row
   * ends) is a view of this one buffer, so a step uploads its layout with one copy
   */
  arena: Tensor;
  /** the shapes of the arena's parts and the bound: layouts with equal keys can share an arena */
  shapeKey: string;
  /**
   * i32 [start + len]: the slots of positions 0 .. start + len − 1 of chunk `seq` (MHA attention gathers
   * a sequence's cached rows by them); built on first use and shared by every layer of the step
   */
  contextSlots(seq: number): Tensor;
}

export interface LayoutOptions {
  /**
   * Shape-static layout (CUDA-graph decode, src/model/decode-graph.ts): every size the host would derive
   * from the step's contexts is derived from this bound instead, so two steps with the same chunk
   * lengths get tensors of the same shapes and the same launch parameters:
   *   blocks per table row nb = ⌈maxLen / 64⌉, maxCtx = maxLen, width = min(index_topk, maxLen),
   *   maxPosition = maxLen − 1.
   * The results are those of the tight layout: the indexer's logits past a row's context are never
   * selected (topkSelect stops at rowEnd), table entries past a context are never read, and a wider
   * selection only adds −1 holes that attention skips (test/model/static-layout.test.ts).
   */
  maxLen?: number;
  /** an earlier layout of the same shapes (equal shapeKey): its arena is rewritten instead of a new one made */
  into?: StepLayout;
  /**
   * Dense attention: the step's selection is every causal key (causalSelect), of width the longest
   * context (or maxLen), and the lightning indexer is not run — the dense model DSA is measured against
   * (the same projections, cache and attention kernels, every key selected). Default false (DSA).
   */
  dense?: boolean;
}

/** Slot of position p in a sequence whose blocks are `blocks`. */
export const slotOf = (blocks: ArrayLike<number>, p: number): number => blocks[Math.floor(p / PAGE)]! * PAGE + (p % PAGE);

/**
 * Sub-arrays of the arena start at multiples of 64 elements (256 B), the alignment of a separate device
 * allocation, so kernels that read the tables see the alignment they saw before the arena.
 */
const ARENA_ALIGN = 64;

/** Check a batch against the pool and build its layout (i32 tensors on the pool's device). */
export function stepLayout(batch: RaggedBatch, pool: CachePool, indexTopk: number, opts: LayoutOptions = {}): StepLayout {
  const cfg = pool.cfg;
  checkBatch(batch, PAGE, pool.blocks, cfg.vocabSize, cfg.maxPositions);
  const T = batch.ids.length;
  const dev = pool.device;
  const maxLen = opts.maxLen;
  if (maxLen !== undefined && !(Number.isInteger(maxLen) && maxLen >= 1 && maxLen <= cfg.maxPositions)) {
    throw new DsvError(`stepLayout: maxLen must be an integer in [1, ${cfg.maxPositions}] (max_position_embeddings), got ${maxLen}`);
  }
  // the host arrays in arena order, then one packed upload
  const parts: { data: Int32Array; shape: number[] }[] = [];
  const part = (data: Int32Array, shape: number[]): number => parts.push({ data, shape }) - 1;
  const slots = new Int32Array(T);
  const positions = new Int32Array(T);
  let longest = 0;
  batch.seqs.forEach((s, i) => {
    for (let j = 0; j < s.len; j++) {
      positions[s.offset + j] = s.start + j;
      slots[s.offset + j] = slotOf(s.blocks, s.start + j);
    }
    longest = Math.max(longest, s.start + s.len);
    if (maxLen !== undefined && s.start + s.len > maxLen) throw new BatchError(`batch.seqs[${i}]: positions up to ${s.start + s.len - 1} exceed the layout's bound maxLen ${maxLen}`);
  });
  const idsPart = part(Int32Array.from(batch.ids), [T]);
  const slotsPart = part(slots, [T]);
  const posPart = part(positions, [T]);
  const groups: (Omit<ChunkGroup, 'table' | 'contextLen' | 'rowEnd'> & { parts: [number, number, number] })[] = [];
  for (let i = 0; i < batch.seqs.length; ) {
    const N = batch.seqs[i]!.len;
    let j = i;
    while (j < batch.seqs.length && batch.seqs[j]!.len === N) j++;
    const members = batch.seqs.slice(i, j);
    const G = members.length;
    const maxCtx = maxLen ?? Math.max(...members.map((s) => s.start + N));
    const nb = Math.ceil(maxCtx / PAGE);
    const table = new Int32Array(G * nb);
    const rowEnd = new Int32Array(G * N);
    members.forEach((s, g) => {
      const own = Math.ceil((s.start + N) / PAGE);
      for (let b = 0; b < own; b++) table[g * nb + b] = s.blocks[b]!;
      for (let r = 0; r < N; r++) rowEnd[g * N + r] = s.start + r + 1;
    });
    groups.push({
      row: members[0]!.offset, rows: G * N, G, N, maxCtx,
      seqs: Array.from({ length: G }, (_, g) => i + g),
      parts: [part(table, [G, nb]), part(Int32Array.from(members, (s) => s.start + N), [G]), part(rowEnd, [G * N])],
    });
    i = j;
  }
  const offsets: number[] = [];
  let size = 0;
  for (const p of parts) {
    offsets.push(size);
    size += Math.ceil(p.data.length / ARENA_ALIGN) * ARENA_ALIGN;
  }
  const packed = new Int32Array(size);
  parts.forEach((p, k) => packed.set(p.data, offsets[k]!));
  const shapeKey = `${dev} maxLen ${maxLen ?? '-'}${opts.dense ? ' dense' : ''} ${parts.map((p) => `[${p.shape.join(',')}]`).join(' ')}`;
  let arena: Tensor;
  if (opts.into) {
    if (opts.into.shapeKey !== shapeKey) {
      throw new DsvError(`stepLayout: the layout to write into has parts ${opts.into.shapeKey}; this batch needs ${shapeKey} (a batch of another shape)`);
    }
    arena = opts.into.arena;
    arena.backend.copy(arena, fromArray(packed, [size], { dtype: 'i32', device: dev }));
  } else {
    arena = fromArray(packed, [size], { dtype: 'i32', device: dev });
  }
  const view = (k: number): Tensor => reshape(narrow(arena, 0, offsets[k]!, parts[k]!.data.length), parts[k]!.shape);
  const context = new Map<number, Tensor>();
  const contextSlots = (seq: number): Tensor => {
    let t = context.get(seq);
    if (!t) {
      const s = batch.seqs[seq]!;
      const end = s.start + s.len;
      context.set(seq, (t = fromArray(Int32Array.from({ length: end }, (_, p) => slotOf(s.blocks, p)), [end], { dtype: 'i32', device: dev })));
    }
    return t;
  };
  const bound = maxLen ?? longest;
  return {
    T, ids: view(idsPart), slots: view(slotsPart), positions, positionsT: view(posPart), maxPosition: bound - 1,
    groups: groups.map(({ parts: [t, c, r], ...g }) => ({ ...g, table: view(t), contextLen: view(c), rowEnd: view(r) })),
    width: opts.dense ? bound : Math.min(indexTopk, bound), dense: opts.dense ?? false, logitRows: batch.logitRows ?? lastRows(batch), arena, shapeKey, contextSlots,
  };
}

/**
 * Caches for the equal-length batch API (forward over B rows of S tokens): sequence b owns the blocks
 * [b·per, (b+1)·per) of a pool, so its block list is a plain range. Capacity grows by doubling `per`
 * (each sequence's blocks are moved into a new, larger pool).
 */
export class ModelCache {
  pool: CachePool;
  length = 0;
  /** Blocks per sequence. */
  private per: number;

  constructor(private readonly cfg: ModelConfig, readonly batch: number, readonly format: MlaCacheFormat, readonly device: string, capacity = PAGE) {
    if (!Number.isInteger(batch) || batch < 1) throw new DsvError(`cache: batch must be a positive integer, got ${batch}`);
    this.per = Math.max(1, Math.ceil(capacity / PAGE));
    this.pool = new CachePool(cfg, { blocks: batch * this.per, format, device });
  }

  get layers(): LayerCache[] {
    return this.pool.layers;
  }

  get mtp(): LayerCache[] {
    return this.pool.mtp;
  }

  /** Positions each sequence can hold before the next growth. */
  get capacity(): number {
    return this.per * PAGE;
  }

  /** Blocks of sequence b, in order. */
  blocksOf(b: number): Int32Array {
    return Int32Array.from({ length: this.per }, (_, j) => b * this.per + j);
  }

  /** Make room for `len` positions per sequence (keeps the contents). */
  reserve(len: number): void {
    if (len <= this.capacity) return;
    let per = this.per;
    while (per * PAGE < len) per *= 2;
    const old = this.pool;
    const fresh = new CachePool(this.cfg, { blocks: this.batch * per, format: this.format, device: this.device });
    const move = (from: Tensor, to: Tensor): void => {
      for (let b = 0; b < this.batch; b++) to.backend.copy(narrow(to, 0, b * per, this.per), narrow(from, 0, b * this.per, this.per));
    };
    [...old.layers, ...old.mtp].forEach((l, i) => {
      const n = [...fresh.layers, ...fresh.mtp][i]!;
      move(l.latent, n.latent);
      move(l.index, n.index);
    });
    this.pool = fresh;
    this.per = per;
  }

  /** The ragged batch of a step of S tokens per sequence at positions length.. (ids [B·S], row-major). */
  batchOf(ids: Int32Array, S: number, logitRows?: Int32Array): RaggedBatch {
    const start = this.length;
    return {
      ids,
      seqs: Array.from({ length: this.batch }, (_, b) => ({ offset: b * S, len: S, start, blocks: this.blocksOf(b) })),
      ...(logitRows ? { logitRows } : {}),
    };
  }

  /** Bytes per token per sequence of every layer's latent and indexer caches together. */
  bytesPerToken(): number {
    return CachePool.bytesPerBlock(this.cfg, this.format) / PAGE;
  }
}
