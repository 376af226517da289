// The engine's cache-block allocator with prefix caching.
//
// The model's paged caches (src/model/batch.ts) hold a sequence's positions in whole blocks of 64
// tokens, listed in its block table. This pool decides which block ids a sequence gets; the cache
// tensors themselves are the model's CachePool and are never touched here.
//
// Prefix caching: a FULL block whose 64 positions have been computed is identified by a chained hash
//   h_i = H(h_{i−1}, tokens[64·i .. 64·i + 63])      (h_{−1} = the empty string)
// Because every position's keys depend on all earlier tokens (and on nothing else), two sequences whose
// token prefixes agree through block i have identical cache contents in blocks 0..i, so the hash chain
// names the contents. A registered block can be listed in several sequences' tables at once (refcount);
// it is read-only for all of them, which holds because a sequence only ever writes positions it has not
// computed yet, and those lie in blocks past its registered full ones. Partial blocks are never shared,
// so no copy-on-write is needed.
//
// A released block whose refcount drops to 0 keeps its hash and stays findable ("evictable") until an
// allocation needs it; evictable blocks are reused least-recently-released first, blocks without a hash
// before any of them (reusing those loses nothing).
import { createHash } from 'node:crypto';
import { DsvError } from '../errors.js';

/** Tokens per cache block (the model's PAGE, FlashMLA's and the indexer's page size). */
export const BLOCK_TOKENS = 64;

export class BlockPoolError extends DsvError {}

/** The chained hash of one full block: parent block's hash and the block's 64 token ids. */
export function blockHash(parent: string, tokens: ArrayLike<number>): string {
  if (tokens.length !== BLOCK_TOKENS) throw new BlockPoolError(`blockHash: a block holds ${BLOCK_TOKENS} tokens, got ${tokens.length}`);
  const h = createHash('sha256');
  h.update(parent);
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest('base64');
}

export class BlockPool {
  private readonly refs: Int32Array;
  private readonly hashOf: (string | null)[];
  private readonly byHash = new Map<string, number>();
  /** refcount 0, no hash: a stack, reused first */
  private readonly plain: number[] = [];
  /** refcount 0 with a hash, in release order (Map iteration order = LRU first) */
  private readonly evictable = new Map<number, true>();
  private inUse = 0;

  constructor(readonly numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new BlockPoolError(`BlockPool: numBlocks must be a positive integer, got ${numBlocks}`);
    this.refs = new Int32Array(numBlocks);
    this.hashOf = new Array<string | null>(numBlocks).fill(null);
    for (let b = numBlocks - 1; b >= 0; b--) this.plain.push(b);
  }

  /** Blocks an allocation can take now (free, or cached but unreferenced). */
  get numFree(): number {
    return this.plain.length + this.evictable.size;
  }

  /** Blocks referenced by at least one sequence. */
  get numUsed(): number {
    return this.inUse;
  }

  /** Blocks that hold a registered (findable) full block, referenced or not. */
  get numCached(): number {
    return this.byHash.size;
  }

  refCount(block: number): number {
    this.check(block);
    return this.refs[block]!;
  }

  /** A fresh block owned by the caller (refcount 1), or −1 when none is left. Evicts the LRU cached one. */
  allocate(): number {
    let b = this.plain.pop();
    if (b === undefined) {
      const lru = this.evictable.keys().next();
      if (lru.done) return -1;
      b = lru.value;
      this.evictable.delete(b);
      this.byHash.delete(this.hashOf[b]!);
      this.hashOf[b] = null;
    }
    this.refs[b] = 1;
    this.inUse++;
    return b;
  }

  /** The registered block with this hash, if it is still cached (in use or evictable). */
  lookup(hash: string): number | undefined {
    return this.byHash.get(hash);
  }

  /** Take one more reference to a cached block (a prefix-cache hit). */
  acquire(block: number): void {
    this.check(block);
    if (this.refs[block] === 0) {
      if (!this.evictable.delete(block)) throw new BlockPoolError(`acquire: block ${block} is free and not cached`);
      this.inUse++;
    }
    this.refs[block]!++;
  }

  /**
   * Publish a block whose 64 positions are computed, under its chained hash. If another block already
   * holds that hash (two sequences computed the same prefix at once), this one stays private.
   */
  register(block: number, hash: string): void {
    this.check(block);
    if (this.refs[block]! < 1) throw new BlockPoolError(`register: block ${block} is not owned by anyone`);
    if (this.hashOf[block] !== null || this.byHash.has(hash)) return;
    this.hashOf[block] = hash;
    this.byHash.set(hash, block);
  }

  /** Drop one reference; at zero the block becomes free (cached ones stay findable until evicted). */
  release(block: number): void {
    this.check(block);
    if (this.refs[block]! < 1) throw new BlockPoolError(`release: block ${block} has no references`);
    if (--this.refs[block]! > 0) return;
    this.inUse--;
    if (this.hashOf[block] !== null) this.evictable.set(block, true);
    else this.plain.push(block);
  }

  private check(block: number): void {
    if (!Number.isInteger(block) || block < 0 || block >= this.numBlocks) throw new BlockPoolError(`block ${block} is not in [0, ${this.numBlocks})`);
  }
}
