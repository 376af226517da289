// The single-process collective (world size 1, the CPU stand-in) and the rendezvous environment: identity
// results that are copies where a new tensor is returned, the same argument checks as NcclCollective, the
// DSV32_* variables checked by name, and the unique-id file's atomic publish and bounded wait.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../src/backend/cpu/index.js';
import { openCollective, SingleProcessCollective } from '../../src/dist/collective.js';
import { RendezvousError } from '../../src/dist/errors.js';
import { distEnv, publishUniqueId, waitForUniqueId } from '../../src/dist/rendezvous.js';
import { fromArray, type Tensor } from '../../src/tensor/tensor.js';

const vals = (t: Tensor): number[] => Array.from(t.toHost() as ArrayLike<number>);

test('single process: reductions and broadcast leave x as it is; gathers return copies of x', () => {
  const c = new SingleProcessCollective();
  assert.equal(c.rank, 0);
  assert.equal(c.worldSize, 1);
  const x = fromArray([1, -2, 3.5, 4], [2, 2]);
  for (const op of ['sum', 'avg', 'max'] as const) c.allReduce(x, op);
  c.broadcast(x, 0);
  assert.deepEqual(vals(x), [1, -2, 3.5, 4]);
  for (const f of [(t: Tensor) => c.allGather(t), (t: Tensor) => c.reduceScatter(t), (t: Tensor) => c.allToAll(t)]) {
    const y = f(x);
    assert.deepEqual(y.shape, [2, 2]);
    assert.deepEqual(vals(y), [1, -2, 3.5, 4]);
    assert.notEqual(y.storage, x.storage, 'a new tensor, not an alias the caller could clobber');
  }
  const ints = fromArray(Int32Array.from([7, 8]), [2], { dtype: 'i32' });
  assert.deepEqual(vals(c.allGather(ints)), [7, 8]);
  assert.equal(c.allGather(ints).dtype, 'i32');
});

test('single process: the same argument checks as the NCCL collective', () => {
  const c = new SingleProcessCollective();
  const m = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.throws(() => c.allReduce(m._view([3, 2], [1, 3], 0)), /allReduce: the tensor must be contiguous \(shape \[3, 2\], strides \[1, 3\]\); pass x\.contiguous\(\)/);
  assert.throws(() => c.allReduce(fromArray([1, 0], [2], { dtype: 'bool' })), /allReduce: cannot reduce a bool tensor/);
  assert.throws(() => c.reduceScatter(fromArray(Int32Array.from([1]), [1], { dtype: 'i32' }), 'avg'), /reduceScatter: 'avg' needs a float dtype, got i32/);
  assert.throws(() => c.allReduce(m, 'prod' as never), /op must be 'sum', 'avg' or 'max', got 'prod'/);
  assert.throws(() => c.allToAll(fromArray([1], [])), /allToAll: a 0-d tensor has no first dim to split over 1 ranks/);
  assert.throws(() => c.allGather(fromArray([1], [])), /allGather: a 0-d tensor has no first dim to gather along/);
  assert.throws(() => c.broadcast(m, 1), /broadcast: root must be a rank in \[0, 1\), got 1/);
  c.close();
  assert.throws(() => c.allGather(m), /allGather: the collective was closed/);
});

test('openCollective without a launcher (or with world size 1) is the single-process collective on any backend', async () => {
  assert.ok((await openCollective(null, {})) instanceof SingleProcessCollective);
  assert.ok((await openCollective(null, { DSV32_WORLD_SIZE: '1', DSV32_RANK: '0' })) instanceof SingleProcessCollective);
});

test('distEnv: defaults, and each bad variable named', () => {
  assert.deepEqual(distEnv({}), { rank: 0, worldSize: 1, device: 0, idFile: null });
  assert.deepEqual(distEnv({ DSV32_RANK: '3', DSV32_WORLD_SIZE: '4', DSV32_NCCL_ID_FILE: '/x/id' }), { rank: 3, worldSize: 4, device: 3, idFile: '/x/id' });
  assert.throws(() => distEnv({ DSV32_WORLD_SIZE: 'two' }), (e: unknown) => e instanceof RendezvousError && /DSV32_WORLD_SIZE must be an integer ≥ 1, got 'two'/.test(e.message));
  assert.throws(() => distEnv({ DSV32_WORLD_SIZE: '0' }), /DSV32_WORLD_SIZE must be an integer ≥ 1, got '0'/);
  assert.throws(() => distEnv({ DSV32_RANK: '2', DSV32_WORLD_SIZE: '2', DSV32_NCCL_ID_FILE: '/x' }), /DSV32_RANK 2 is not below DSV32_WORLD_SIZE 2/);
  assert.throws(() => distEnv({ DSV32_RANK: '-1' }), /DSV32_RANK must be an integer ≥ 0, got '-1'/);
  assert.throws(() => distEnv({ DSV32_CUDA_DEVICE: '0x1' }), /DSV32_CUDA_DEVICE must be an integer ≥ 0/);
  assert.throws(() => distEnv({ DSV32_WORLD_SIZE: '2' }), /DSV32_NCCL_ID_FILE must be set when DSV32_WORLD_SIZE is 2/);
});

test('unique id file: published atomically (no temporary left), read back whole; a wrong size and a timeout are reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-rdv-'));
  try {
    const file = join(dir, 'id');
    const id = Uint8Array.from({ length: 128 }, (_, i) => (i * 5 + 1) & 0xff);
    const waiting = waitForUniqueId(file, { timeoutMs: 5000, pollMs: 5 });
    setTimeout(() => publishUniqueId(file, id), 30);
    assert.deepEqual(await waiting, id);
    assert.deepEqual(readdirSync(dir), ['id']);
    assert.throws(() => publishUniqueId(file, new Uint8Array(3)), /a unique id is 128 bytes, got 3/);
    writeFileSync(join(dir, 'short'), 'abc');
    await assert.rejects(waitForUniqueId(join(dir, 'short'), { timeoutMs: 100 }), /short \(DSV32_NCCL_ID_FILE\) holds 3 bytes, expected a 128-byte NCCL unique id/);
    const t0 = Date.now();
    await assert.rejects(waitForUniqueId(join(dir, 'never'), { env: { DSV32_NCCL_ID_TIMEOUT_MS: '120' }, pollMs: 10 }), (e: unknown) => {
      assert.ok(e instanceof RendezvousError);
      assert.match(e.message, /^timed out after 120 ms waiting for rank 0 to write the NCCL unique id to .*never \(DSV32_NCCL_ID_FILE\)/);
      return true;
    });
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(existsSync(join(dir, 'never')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
