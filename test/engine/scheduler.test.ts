import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockPool } from '../../src/engine/block-pool.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import { Sequence } from '../../src/engine/sequence.js';

let key = 0;
const seq = (n: number, base = 0): Sequence => new Sequence(key++, Array.from({ length: n }, (_, i) => (base + i) % 50), n);
/** what the engine does after a step: advance every chunk, append a token to those that sampled */
const finishStep = (s: Scheduler, chunks: ReturnType<Scheduler['schedule']>, tok = 7): void => {
  for (const c of chunks) {
    s.advance(c, c.len);
    if (c.sample) c.seq.tokens.push(tok);
  }
};

test('scheduler: chunked prefill under the token budget, decode rows first, maxNumSeqs respected', () => {
  const s = new Scheduler(new BlockPool(64), { maxNumSeqs: 2, maxBatchTokens: 100 });
  const a = seq(150);
  const b = seq(30, 5);
  const c = seq(10, 9);
  s.add(a); s.add(b); s.add(c);
  let chunks = s.schedule();
  assert.deepEqual(chunks.map((x) => [x.seq.key, x.start, x.len, x.sample]), [[a.key, 0, 100, false]]);
  finishStep(s, chunks);
  chunks = s.schedule();
  // a's remaining 50 (samples), then b's first 50? b has 30 → all of it; c waits (maxNumSeqs 2)
  assert.deepEqual(chunks.map((x) => [x.seq.key, x.start, x.len, x.sample]), [[a.key, 100, 50, true], [b.key, 0, 30, true]]);
  finishStep(s, chunks);
  assert.equal(s.running.length, 2);
  chunks = s.schedule();
  assert.deepEqual(chunks.map((x) => [x.seq.key, x.start, x.len]), [[a.key, 150, 1], [b.key, 30, 1]]);
  assert.deepEqual(chunks[0]!.ids, [7]);
  s.remove(a);
  finishStep(s, chunks.filter((x) => x.seq !== a));
  chunks = s.schedule();
  assert.deepEqual(chunks.map((x) => [x.seq.key, x.start, x.len]), [[b.key, 31, 1], [c.key, 0, 10]]);
});

test('scheduler: out of blocks, the most recently admitted sequence is preempted, its blocks freed, and it resumes by recomputing', () => {
  const pool = new BlockPool(4);
  const s = new Scheduler(pool, { maxNumSeqs: 8, maxBatchTokens: 1000 });
  const a = seq(120);
  const b = seq(100, 3);
  s.add(a); s.add(b);
  let chunks = s.schedule();
  assert.equal(chunks.length, 2);
  assert.equal(pool.numFree, 0);
  finishStep(s, chunks);
  // a: 121 tokens fit in 2 blocks (position 120 → block 1); b: 101 tokens, position 100 in block 1
  for (let i = 0; i < 8; i++) finishStep(s, s.schedule());
  // a now needs position 128 → a third block: b (admitted later) is preempted
  chunks = s.schedule();
  assert.equal(s.preemptions, 1);
  assert.equal(b.status, 'waiting');
  assert.equal(b.blocks.length, 0);
  assert.equal(s.waiting[0], b);
  assert.deepEqual(chunks.map((x) => x.seq.key), [a.key]);
  assert.equal(a.blocks.length, 3);
  finishStep(s, chunks);
  // b comes back when a finishes, recomputing its prompt and its 9 generated tokens (its first full block
  // is a prefix-cache hit: it was registered and never evicted)
  s.remove(a);
  chunks = s.schedule();
  assert.equal(chunks[0]!.seq, b);
  assert.equal(chunks[0]!.start, 64);
  assert.equal(chunks[0]!.len, 109 - 64);
  assert.equal(b.tokens.length, 109);
  assert.equal(s.prefixHitTokens, 64);
});

test('scheduler: a later sequence with the same prompt reuses its full blocks; the block of the last prompt token is always computed', () => {
  const pool = new BlockPool(16);
  const s = new Scheduler(pool, { maxNumSeqs: 8, maxBatchTokens: 1000 });
  const a = seq(128, 1);
  s.add(a);
  finishStep(s, s.schedule());
  const b = seq(128, 1);
  const c = seq(130, 1);
  s.add(b); s.add(c);
  const chunks = s.schedule();
  const cb = chunks.find((x) => x.seq === b)!;
  const cc = chunks.find((x) => x.seq === c)!;
  assert.deepEqual([cb.start, cb.len], [64, 64], 'b: block 0 hit, block 1 (the last token) recomputed');
  assert.deepEqual([cc.start, cc.len], [128, 2], 'c: both full blocks hit');
  assert.equal(b.blocks[0], a.blocks[0]);
  assert.equal(c.blocks[1], a.blocks[1]);
  assert.notEqual(b.blocks[1], a.blocks[1]);
  assert.equal(pool.refCount(a.blocks[0]!), 3);
  assert.equal(s.prefixHitTokens, 64 + 128);
});

test('scheduler: MTP drafts ride in the decode chunk when the budget allows, and are dropped (not split) when it does not', () => {
  const s = new Scheduler(new BlockPool(8), { maxNumSeqs: 4, maxBatchTokens: 5 });
  const a = seq(2);
  const b = seq(2, 7);
  s.add(a); s.add(b);
  finishStep(s, s.schedule());
  a.drafts = [11, 12];
  b.drafts = [13, 14, 15];
  const chunks = s.schedule();
  // a: 1 + 2 rows fit (3 of 5); b: 1 + 3 = 4 > 2 left → its drafts are dropped, one row
  assert.deepEqual(chunks.map((c) => [c.seq.key, c.start, c.len, c.drafts, c.ids]), [[a.key, 2, 3, 2, [7, 11, 12]], [b.key, 2, 1, 0, [7]]]);
  assert.deepEqual(b.drafts, []);
});

test('scheduler: a finished sequence releases its blocks tail first, so eviction under pressure keeps its cached prefix findable', () => {
  const pool = new BlockPool(4);
  const s = new Scheduler(pool, { maxNumSeqs: 4, maxBatchTokens: 1000 });
  const a = seq(200, 1);
  s.add(a);
  finishStep(s, s.schedule());
  s.remove(a); // blocks 0..2 full and cached, block 3 partial
  const b = seq(100, 30);
  s.add(b);
  finishStep(s, s.schedule()); // b takes the plain block and evicts one cached block: a's last full one
  assert.equal(b.blocks.length, 2);
  assert.deepEqual([0, 1, 2].map((i) => pool.lookup(a.hash(i)) !== undefined), [true, true, false]);
});
