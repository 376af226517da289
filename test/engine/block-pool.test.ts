import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_TOKENS, BlockPool, BlockPoolError, blockHash } from '../../src/engine/block-pool.js';

const toks = (base: number): number[] => Array.from({ length: BLOCK_TOKENS }, (_, i) => base + i);

test('block pool: allocates every block once, then −1; released blocks come back', () => {
  const p = new BlockPool(3);
  const got = [p.allocate(), p.allocate(), p.allocate()];
  assert.deepEqual([...got].sort(), [0, 1, 2]);
  assert.equal(p.allocate(), -1);
  assert.equal(p.numFree, 0);
  assert.equal(p.numUsed, 3);
  p.release(got[1]!);
  assert.equal(p.numFree, 1);
  assert.equal(p.allocate(), got[1]);
  assert.throws(() => p.release(7), BlockPoolError);
});

test('block pool: a registered block is shared by reference count and stays cached after release until evicted LRU', () => {
  const p = new BlockPool(4);
  const h0 = blockHash('', toks(0));
  const h1 = blockHash(h0, toks(100));
  assert.notEqual(blockHash('', toks(100)), h1, 'the hash chains the parent');
  const a = p.allocate();
  const b = p.allocate();
  p.register(a, h0);
  p.register(b, h1);
  assert.equal(p.lookup(h0), a);
  p.acquire(a);
  assert.equal(p.refCount(a), 2);
  p.release(a);
  p.release(a);
  p.release(b);
  assert.equal(p.numUsed, 0);
  assert.equal(p.numFree, 4);
  assert.equal(p.lookup(h0), a, 'freed but still findable');
  p.acquire(a); // a hit on an evictable block takes it back
  assert.equal(p.refCount(a), 1);
  assert.equal(p.numFree, 3);
  p.release(a); // now a is released after b: LRU order b, a
  const fresh = [p.allocate(), p.allocate()];
  assert.ok(!fresh.includes(a) && !fresh.includes(b), 'plain free blocks go first');
  assert.equal(p.allocate(), b, 'then the least recently released cached block');
  assert.equal(p.lookup(h1), undefined, 'an evicted block is no longer findable');
  assert.equal(p.lookup(h0), a);
});

test('block pool: a second block with an already-registered hash stays private', () => {
  const p = new BlockPool(2);
  const h = blockHash('', toks(5));
  const a = p.allocate();
  const b = p.allocate();
  p.register(a, h);
  p.register(b, h);
  assert.equal(p.lookup(h), a);
  p.release(b);
  assert.equal(p.allocate(), b, 'b went to the plain free list');
});
