// Continuous batching with chunked prefill over the block pool.
//
// Each step is one ragged batch of at most maxBatchTokens rows and maxNumSeqs sequences:
//   1. running sequences that decode (one pending token, plus their MTP drafts when the budget and the
//      free blocks allow: drafts never cause a preemption),
//      oldest first: decode latency is what users feel, and each costs ≤ 1 + drafts rows;
//   2. running sequences still prefilling (or recomputing after preemption), oldest first, each with
//      a chunk of as many pending tokens as the budget and the free blocks allow;
//   3. waiting sequences, first come first served (preempted ones re-enter at the front), while the
//      budget, maxNumSeqs and the pool allow; a new admission never preempts anything.
// Admission looks the sequence's full blocks up in the prefix cache first (all but the last pending
// token: its logits are needed, so its block is always computed, and so owned).
//
// When a running sequence needs a block and none is free, the most recently admitted running sequence
// is preempted: its blocks are released (full ones stay in the prefix cache until evicted, so the
// recompute is often a cache hit), it goes back to the front of the waiting queue and later recomputes
// prompt + completion. Preempting the newest loses the least work and keeps the oldest finishing. If
// the one needing the block is itself the newest, it is the one preempted. Nothing crashes: a sequence
// alone in the pool can always grow to capacity = min(maxModelLen, blocks·64), where it stops ('length').
import { BLOCK_TOKENS, type BlockPool } from './block-pool.js';
import { Sequence } from './sequence.js';

export interface SchedulerLimits {
  maxNumSeqs: number;
  maxBatchTokens: number;
}

/** One sequence's rows in the step: positions [start, start + len) fed with `ids`. */
export interface ScheduledChunk {
  seq: Sequence;
  start: number;
  len: number;
  ids: number[];
  /** the chunk ends at the sequence's last token: its logits give the next token */
  sample: boolean;
  /** trailing rows that are MTP drafts being verified (their logits are wanted too) */
  drafts: number;
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  /** in admission order */
  readonly running: Sequence[] = [];
  preemptions = 0;
  prefixHitTokens = 0;
  private admissions = 0;

  constructor(readonly pool: BlockPool, readonly limits: SchedulerLimits) {}

  add(seq: Sequence): void {
    this.waiting.push(seq);
  }

  /** Remove a sequence wherever it is and free its blocks (finish, abort). */
  remove(seq: Sequence): void {
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    seq.freeBlocks(this.pool);
    seq.status = 'finished';
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** The next step's chunks (empty when there is nothing to run). */
  schedule(): ScheduledChunk[] {
    let budget = this.limits.maxBatchTokens;
    const chunks = new Map<Sequence, ScheduledChunk>();
    const preempt = (victim: Sequence): void => {
      const c = chunks.get(victim);
      if (c) {
        budget += c.len;
        chunks.delete(victim);
      }
      this.preempt(victim);
    };
    // Grow `seq`'s table to hold positions [0, end), preempting the newest running sequences as needed;
    // false when `seq` itself had to go.
    const grow = (seq: Sequence, end: number): boolean => {
      const need = Sequence.blocksFor(end) - seq.blocks.length;
      while (need > this.pool.numFree) {
        const victim = this.running[this.running.length - 1]!;
        preempt(victim);
        if (victim === seq) return false;
      }
      for (let i = 0; i < need; i++) seq.blocks.push(this.pool.allocate());
      return true;
    };

    for (const decode of [true, false]) {
      for (const seq of [...this.running]) {
        if (budget === 0) break;
        if (seq.status !== 'running' || (seq.pending === 1) !== decode) continue;
        let len: number;
        if (decode) {
          // drafts are a bet: never worth a preemption or a split
          if (1 + seq.drafts.length > budget || Sequence.blocksFor(seq.computed + 1 + seq.drafts.length) - seq.blocks.length > this.pool.numFree) seq.drafts = [];
          len = 1 + seq.drafts.length;
        } else {
          len = Math.min(seq.pending, budget);
          // shrink the chunk to the blocks at hand before taking anyone's
          const fits = (seq.blocks.length + this.pool.numFree) * BLOCK_TOKENS - seq.computed;
          if (fits >= 1) len = Math.min(len, fits);
        }
        if (!grow(seq, seq.computed + len)) continue;
        chunks.set(seq, this.chunk(seq, len));
        budget -= len;
      }
    }

    while (this.waiting.length && budget > 0 && this.running.length < this.limits.maxNumSeqs) {
      const i = this.waiting.findIndex((s) => !s.leader || s.leader.status !== 'running' || s.leader.computed >= s.leader.promptLen - 1);
      if (i < 0) break;
      const seq = this.waiting[i]!;
      // prefix-cache hits: whole blocks strictly before the last token. A request that asks for its
      // prompt's routes or indexer selections (replay over every trained position) takes no hit over prompt rows it has
      // not recorded yet: a hit skips the forward of those positions, so their records would never exist.
      // It still computes and registers its own blocks, which others may hit; its n − 1 followers and its
      // recomputes after preemption may hit what it has already recorded.
      const hits: number[] = [];
      const maxHits = Math.floor(Math.min(seq.tokens.length - 1, seq.hitLimit) / BLOCK_TOKENS);
      for (let b = 0; b < maxHits; b++) {
        const blk = this.pool.lookup(seq.hash(b));
        if (blk === undefined) break;
        this.pool.acquire(blk);
        hits.push(blk);
      }
      const computed = hits.length * BLOCK_TOKENS;
      const len = Math.min(seq.tokens.length - computed, budget, (hits.length + this.pool.numFree) * BLOCK_TOKENS - computed);
      if (len < 1) {
        for (const b of hits) this.pool.release(b);
        break;
      }
      this.waiting.splice(i, 1);
      seq.blocks = hits;
      seq.registered = hits.length;
      seq.computed = computed;
      seq.status = 'running';
      seq.admittedAt = this.admissions++;
      this.prefixHitTokens += Math.min(computed, seq.promptLen);
      this.running.push(seq);
      for (let k = Sequence.blocksFor(computed + len) - seq.blocks.length; k > 0; k--) seq.blocks.push(this.pool.allocate());
      chunks.set(seq, this.chunk(seq, len));
      budget -= len;
    }
    // the batch in admission order (any order is valid; this one is stable)
    return [...chunks.values()].sort((a, b) => a.seq.admittedAt - b.seq.admittedAt);
  }

  /** After the step: the chunk's first `valid` rows are now cached (all of them, unless drafts were rejected). */
  advance(c: ScheduledChunk, valid: number): void {
    c.seq.computed = c.start + valid;
    c.seq.registerFull(this.pool);
  }

  private chunk(seq: Sequence, len: number): ScheduledChunk {
    const start = seq.computed;
    const sample = start + len >= seq.tokens.length;
    const drafts = sample ? start + len - seq.tokens.length : 0;
    const ids = seq.tokens.slice(start, Math.min(start + len, seq.tokens.length));
    for (let i = 0; i < drafts; i++) ids.push(seq.drafts[i]!);
    return { seq, start, len, ids, sample, drafts };
  }

  private preempt(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    seq.freeBlocks(this.pool);
    seq.status = 'waiting';
    this.waiting.unshift(seq);
    this.preemptions++;
  }
}
