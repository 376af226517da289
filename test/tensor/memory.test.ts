// releaseEvery (src/tensor/memory.ts): between the steps of a long-lived loop, dead tensors' device memory
// is given back once the device has made `every` allocations since the last release, and never on the
// CPU or on a device without allocation counters. A stand-in device counts allocations and reclaims.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getBackend, registerBackend, type Backend } from '../../src/tensor/backend.js';
import { releaseEvery } from '../../src/tensor/memory.js';
import '../../src/backend/cpu/index.js';

const counters = { driverAllocs: 0, cacheHits: 0, reclaims: 0 };
registerBackend('memtest', () => ({
  ...getBackend('cpu'),
  name: 'memtest',
  memoryStats: () => ({ allocated: 0, peak: 0, driverAllocs: counters.driverAllocs, cacheHits: counters.cacheHits }),
  reclaimDead: () => {
    counters.reclaims++;
    return 0;
  },
}) as Backend);
let uncountedReclaims = 0;
registerBackend('memtest-nocount', () => ({
  ...getBackend('cpu'),
  name: 'memtest-nocount',
  memoryStats: () => ({ allocated: 0, peak: 0 }),
  reclaimDead: () => {
    uncountedReclaims++;
    return 0;
  },
}) as Backend);

test('releaseEvery releases after `every` allocations (from the driver or the cache), and counts again from there', async () => {
  const release = releaseEvery('memtest', 100);
  counters.driverAllocs += 60;
  await release();
  assert.equal(counters.reclaims, 0, '60 allocations: not yet due');
  counters.cacheHits += 40;
  await release();
  assert.equal(counters.reclaims, 1, '100 allocations: released');
  counters.cacheHits += 99;
  await release();
  assert.equal(counters.reclaims, 1, '99 since the release: not yet due');
  counters.driverAllocs += 1;
  await release();
  assert.equal(counters.reclaims, 2);
});

test('releaseEvery does nothing on the CPU or on a device without allocation counters', async () => {
  for (const dev of ['cpu', 'memtest-nocount']) {
    const release = releaseEvery(dev, 1);
    await release();
    await release();
  }
  assert.equal(uncountedReclaims, 0, 'a device without allocation counters is never reclaimed by releaseEvery');
});
