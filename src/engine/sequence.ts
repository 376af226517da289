// One generated sequence (one of a request's n) as the scheduler sees it.
//
// tokens = prompt + completion. The cache holds positions [0, computed); the tokens at positions
// computed .. tokens.length − 1 still have to be fed (a prefill, its remaining chunks, a recompute
// after preemption, or just the last sampled token when decoding). When a step feeds the sequence up to
// its last token, that row's logits give the next token. With MTP, `drafts` are proposed tokens past
// the end that the next step feeds after the last token (verification rows).
import { BLOCK_TOKENS, type BlockPool, blockHash } from './block-pool.js';
import { DsvError } from '../errors.js';

export type SeqStatus = 'waiting' | 'running' | 'finished';

export class Sequence {
  readonly tokens: number[];
  computed = 0;
  blocks: number[] = [];
  status: SeqStatus = 'waiting';
  /** admission counter (larger = admitted more recently); preemption picks the largest */
  admittedAt = -1;
  /** chained hashes of full blocks, computed lazily (tokens at positions < tokens.length never change) */
  private readonly hashes: string[] = [];
  /** full blocks already registered in the pool */
  registered = 0;
  drafts: number[] = [];
  /** n > 1: the request's first sequence, whose prompt blocks this one waits for and then shares */
  leader: Sequence | null = null;
  /** the request's prompt-row routes (returnRoutedExperts), shared by its n sequences; null when not asked for */
  promptRoutes: PromptRoutes | null = null;
  /** the request's prompt-row indexer selections (returnIndexerTopk), shared likewise; null when not asked for */
  promptTopk: PromptIndexerTopk | null = null;

  /** the prefix-cache hit bound of every prompt record the request keeps (PromptRecord.hitLimit) */
  get hitLimit(): number {
    return Math.min(this.promptRoutes?.hitLimit ?? Infinity, this.promptTopk?.hitLimit ?? Infinity);
  }

  constructor(readonly key: number, prompt: readonly number[], readonly promptLen: number) {
    this.tokens = prompt.slice();
  }

  get completion(): number[] {
    return this.tokens.slice(this.promptLen);
  }

  get numCompletion(): number {
    return this.tokens.length - this.promptLen;
  }

  /** Tokens still to feed before the next sample (≥ 1 while running). */
  get pending(): number {
    return this.tokens.length - this.computed;
  }

  hash(i: number): string {
    while (this.hashes.length <= i) {
      const j = this.hashes.length;
      this.hashes.push(blockHash(j === 0 ? '' : this.hashes[j - 1]!, this.tokens.slice(j * BLOCK_TOKENS, (j + 1) * BLOCK_TOKENS)));
    }
    return this.hashes[i]!;
  }

  /** Blocks the table must list to hold positions [0, end). */
  static blocksFor(end: number): number {
    return Math.ceil(end / BLOCK_TOKENS);
  }

  /** Publish every full block that is computed (position end ≤ computed) under its hash. */
  registerFull(pool: BlockPool): void {
    const full = Math.min(Math.floor(this.computed / BLOCK_TOKENS), this.blocks.length);
    for (; this.registered < full; this.registered++) pool.register(this.blocks[this.registered]!, this.hash(this.registered));
  }

  /**
   * Give back every block (finish, abort, preemption), last block first: eviction takes the least
   * recently released, and a chain is only found from its first block, so the tail should go first.
   */
  freeBlocks(pool: BlockPool): void {
    for (let i = this.blocks.length - 1; i >= 0; i--) pool.release(this.blocks[i]!);
    this.blocks = [];
    this.registered = 0;
    this.computed = 0;
    this.drafts = [];
  }
}

/**
 * A per-row record over a request's prompt rows p = 0 .. promptLen − 2, `width` entries a row: row p is the
 * forward at position p, whose logits give token p + 1, so together with each generated token's own record
 * they cover every input position of a trainer's forward over prompt + completion.
 *
 * Rows are written by position wherever a step computes them (prefill chunks, the n sequences' own
 * recomputes, recomputes after preemption): a recompute overwrites, it never appends. A row skipped by a
 * prefix-cache hit is never computed, so `hitLimit` bounds the hits the scheduler may take for the
 * request's sequences to rows already recorded here.
 */
export abstract class PromptRecord<A extends Int16Array | Int32Array> {
  readonly rows: number;
  private readonly have: Uint8Array;
  /** rows 0 .. covered − 1 are recorded */
  covered = 0;

  protected constructor(promptLen: number, readonly width: number, readonly data: A) {
    this.rows = Math.max(0, promptLen - 1);
    this.have = new Uint8Array(this.rows);
  }

  get complete(): boolean {
    return this.covered >= this.rows;
  }

  /**
   * Positions [0, hitLimit) a prefix-cache hit may skip: only rows already recorded (by an earlier step of
   * this request), and, once all are, anything (rows past the prompt are not recorded here).
   */
  get hitLimit(): number {
    return this.complete ? Infinity : this.covered;
  }

  protected mark(p: number): void {
    this.have[p] = 1;
    while (this.covered < this.rows && this.have[this.covered]) this.covered++;
  }
}

/** The routes of the prompt rows, int16 [(promptLen − 1), layers, k] (TokenEvent.promptRoutedExperts). */
export class PromptRoutes extends PromptRecord<Int16Array> {
  constructor(promptLen: number, readonly layers: number, readonly k: number) {
    super(promptLen, layers * k, new Int16Array(Math.max(0, promptLen - 1) * layers * k));
  }

  /** Record row p from a step's routes: per MoE layer i32 [T, k], ascending per row; `flat` = p's row in the step. */
  record(p: number, moe: readonly Int32Array[], flat: number): void {
    const { layers, k } = this;
    for (let l = 0; l < layers; l++) this.data.set(moe[l]!.subarray(flat * k, (flat + 1) * k), (p * layers + l) * k);
    this.mark(p);
  }
}

/**
 * The indexer selections of the prompt rows, i32 [(promptLen − 1), layers, topk] (TokenEvent.promptIndexerTopk):
 * per row and layer the selected key positions first, then −1 holes (a row at position p < topk − 1 sees
 * only p + 1 keys; the step's own −1 slots are dropped).
 */
export class PromptIndexerTopk extends PromptRecord<Int32Array> {
  constructor(promptLen: number, readonly layers: number, readonly topk: number) {
    super(promptLen, layers * topk, new Int32Array(Math.max(0, promptLen - 1) * layers * topk).fill(-1));
  }

  /** Record row p from a step's selections: per layer i32 [T, width] (−1 = none); `flat` = p's row in the step. */
  record(p: number, sels: readonly { width: number; idx: Int32Array }[], flat: number): void {
    const { layers, topk } = this;
    for (let l = 0; l < layers; l++) {
      const { width, idx } = sels[l]!;
      const o = (p * layers + l) * topk;
      let j = 0;
      for (let i = flat * width; i < (flat + 1) * width; i++) {
        const x = idx[i]!;
        if (x < 0) continue;
        if (j >= topk) throw new DsvError(`engine: layer ${l} selected more than index_topk = ${topk} keys at prompt row ${p}`);
        this.data[o + j++] = x;
      }
      this.data.fill(-1, o + j, o + topk);
    }
    this.mark(p);
  }
}
