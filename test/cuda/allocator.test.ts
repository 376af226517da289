// Runs everywhere (no GPU needed): the caching allocator against a simulated card, a driver whose
// cuMemAlloc fails once the bytes it has handed out would pass the card's size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CachingAllocator } from '../../src/backend/cuda/allocator.js';
import { CUDA_ERROR_OUT_OF_MEMORY } from '../../src/backend/cuda/cuda-consts.js';
import type { Driver } from '../../src/backend/cuda/ffi.js';

const MiB = 1 << 20;

function card(capacity: number): { cu: Driver; live: Map<number, number>; frees: number[] } {
  const live = new Map<number, number>();
  const frees: number[] = [];
  let next = 4096;
  const used = (): number => [...live.values()].reduce((a, b) => a + b, 0);
  const cu = {
    cuMemAlloc: (out: number[], bytes: number): number => {
      if (used() + bytes > capacity) return CUDA_ERROR_OUT_OF_MEMORY;
      out[0] = next;
      live.set(next, bytes);
      next += bytes;
      return 0;
    },
    cuMemFree: (p: number): number => {
      frees.push(live.get(p)!);
      live.delete(p);
      return 0;
    },
  } as unknown as Driver;
  return { cu, live, frees };
}

test('allocator: a freed block of the same size is reused without the driver', () => {
  const { cu } = card(64 * MiB);
  const a = new CachingAllocator(cu, () => {});
  const [p, size] = a.malloc(5 * MiB);
  a.release(p, size);
  const [q] = a.malloc(5 * MiB - 100);
  assert.equal(q, p);
  assert.deepEqual([a.stats().driverAllocs, a.stats().cacheHits], [1, 1]);
});

test('allocator: on a full card only as many cached blocks as the request needs go back, largest first', () => {
  const { cu, frees } = card(40 * MiB);
  const a = new CachingAllocator(cu, () => {});
  const blocks = [16, 8, 2, 2, 2].map((m) => a.malloc(m * MiB));
  for (const [p, s] of blocks) a.release(p, s);
  // 30 MiB cached, 10 free on the card: 12 MiB must free the 16 MiB block and nothing else
  a.malloc(12 * MiB);
  assert.deepEqual(frees, [16 * MiB]);
  // the small blocks are still cached: three more 2 MiB requests come from the cache
  for (let i = 0; i < 3; i++) a.malloc(2 * MiB);
  assert.equal(a.stats().driverAllocs, 6);
  assert.equal(a.stats().cacheHits, 3);
  assert.equal(a.stats().reserved, 8 * MiB + 6 * MiB + 12 * MiB);
});

test('allocator: blocks reclaimed by the retry hook are used before any block goes back', () => {
  const { cu, frees } = card(20 * MiB);
  const garbage: Array<[number, number]> = [];
  const a: CachingAllocator = new CachingAllocator(cu, () => {
    // what reclaimDead does: the blocks of collected tensors return to the cache
    for (const [p, s] of garbage.splice(0)) a.release(p, s);
  });
  garbage.push(a.malloc(10 * MiB), a.malloc(10 * MiB));
  const ptrs = garbage.map(([p]) => p);
  const [p] = a.malloc(10 * MiB);
  assert.ok(ptrs.includes(p), 'served from a reclaimed block');
  assert.deepEqual(frees, []);
  assert.deepEqual([a.stats().driverAllocs, a.stats().cacheHits], [2, 1]);
});

test('allocator: a request larger than the card fails with the allocator\'s holdings in the message', () => {
  const { cu } = card(16 * MiB);
  const a = new CachingAllocator(cu, () => {});
  const [p, s] = a.malloc(8 * MiB);
  a.release(p, s);
  assert.throws(() => a.malloc(32 * MiB), /cuMemAlloc\(33554432 bytes\).*allocator holds 0 bytes reserved, 0 allocated/);
});
