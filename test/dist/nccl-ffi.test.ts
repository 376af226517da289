// NCCL bindings and NcclCollective against the mock libnccl (test/mock/mocknccl.c) on the mock libcuda
// (test/mock/mockcuda.c), both built here with gcc: the 128-byte unique id by value, communicator handles,
// 64-bit device pointers with view offsets, counts per collective, grouped send/recv for all-to-all, and
// NCCL's error text in NcclError. The mock mirrors peers (see mocknccl.c), so rank 1 of 2 is testable in
// one process. Skips (with the reason) where gcc is missing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import koffi from 'koffi';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import { NcclCollective, openCollective } from '../../src/dist/collective.js';
import { CollectiveError, NcclError } from '../../src/dist/errors.js';
import { checkNccl, formatNcclVersion, loadNccl, NCCL_DTYPE, NCCL_OP, NCCL_RESULT, NCCL_UNIQUE_ID_BYTES, ncclCandidates } from '../../src/dist/nccl-ffi.js';
import type { DType, HostArray } from '../../src/tensor/dtype.js';
import { fromArray, Tensor } from '../../src/tensor/tensor.js';
import '../../src/backend/cpu/index.js';

const vals = (t: Tensor): number[] => Array.from(t.toHost() as ArrayLike<number>);

const REPO = resolve(import.meta.dirname, '../../..');
const gcc = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
const skip = gcc.error || gcc.status !== 0 ? { skip: `gcc not available (${gcc.error?.message ?? `exit ${gcc.status}`}): the mock libnccl cannot be built` } : {};

const dir = mkdtempSync(join(tmpdir(), 'dsv32-mocknccl-'));
const ncclSo = join(dir, 'libmocknccl.so');
const cudaSo = join(dir, 'libmockcuda.so');

let hooks: { log: () => string[]; commId: (comm: unknown) => Uint8Array; enumValue: (name: string) => number };

describe('NCCL FFI against a mock libnccl', skip, () => {
  let b: CudaBackend;
  const dev = (data: HostArray, dtype: DType, shape: number[]): Tensor => new Tensor(b.fromHost(data, dtype), shape);

  before(() => {
    for (const [src, out] of [['test/mock/mocknccl.c', ncclSo], ['test/mock/mockcuda.c', cudaSo]] as const) {
      const r = spawnSync('gcc', ['-shared', '-fPIC', '-O1', '-Wall', '-Werror', '-o', out, join(REPO, src)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `gcc failed to build ${src}:\n${r.stderr}`);
    }
    process.env.DSV32_NCCL_LIB = ncclSo;
    process.env.DSV32_CUDA_DRIVER_LIB = cudaSo;
    delete process.env.NCCL_NVLS_ENABLE;
    const lib = koffi.load(ncclSo);
    const logFn = lib.func('size_t mocknccl_log(_Out_ uint8_t *out, size_t cap)');
    const idFn = lib.func('int mocknccl_comm_id(ncclComm_t comm, _Out_ uint8_t *out)');
    const enumFn = lib.func('int mocknccl_enum(const char *name)');
    hooks = {
      log: () => {
        const buf = Buffer.alloc(16384);
        const n = Number(logFn(buf, buf.length));
        return buf.toString('utf8', 0, n).split('\n').filter(Boolean);
      },
      commId: (comm) => {
        const out = new Uint8Array(NCCL_UNIQUE_ID_BYTES);
        assert.equal(idFn(comm, out), 0);
        return out;
      },
      enumValue: (name) => enumFn(name) as number,
    };
    b = new CudaBackend();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("enum values and the id size match nccl.h's as the mock spells them", () => {
    for (const table of [NCCL_RESULT, NCCL_DTYPE, NCCL_OP]) {
      for (const [name, v] of Object.entries(table)) assert.equal(v, hooks.enumValue(name), name);
    }
    assert.equal(NCCL_UNIQUE_ID_BYTES, hooks.enumValue('NCCL_UNIQUE_ID_BYTES'));
  });

  test('lookup: DSV32_NCCL_LIB is the only candidate when set; otherwise ldconfig, CUDA homes and pip wheels are listed', () => {
    assert.deepEqual(ncclCandidates().paths, [ncclSo]);
    const nccl = loadNccl();
    assert.equal(nccl.path, ncclSo);
    const v = [0];
    checkNccl(nccl.ncclGetVersion(v), 'ncclGetVersion');
    assert.equal(formatNcclVersion(v[0]!), '2.28.7');
    const { tried } = ncclCandidates({ CUDA_HOME: '/nonexistent/cuda', VIRTUAL_ENV: '/nonexistent/venv' });
    assert.ok(tried.some((t) => t.startsWith('ldconfig libnccl.so.2')), tried.join('\n'));
    assert.ok(tried.includes('/nonexistent/cuda/lib64/libnccl.so.2'));
    assert.ok(tried.some((t) => t.includes('/nonexistent/venv/lib/python3*/site-packages/nvidia/nccl/lib')));
  });

  test('lookup: a missing library is an NcclUnavailableError listing where it looked', () => {
    const code = "import('./dist/src/dist/nccl-ffi.js').then((m) => { try { m.loadNccl(); } catch (e) { console.log(e.name + ': ' + e.message); } })";
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: REPO, encoding: 'utf8', env: { ...process.env, DSV32_NCCL_LIB: join(dir, 'missing.so') },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^NcclUnavailableError: NCCL not found: tried \$DSV32_NCCL_LIB \(.*missing\.so\); load errors: .*missing\.so.*; set DSV32_NCCL_LIB/);
  });

  test('unique id: 128 bytes come out, go in by value, and the communicator holds exactly them; NVLS is off at init', () => {
    hooks.log();
    const id = NcclCollective.uniqueId();
    assert.equal(id.length, 128);
    assert.ok(id.some((x) => x !== 0));
    const c = NcclCollective.init(b, 1, 2, id);
    assert.deepEqual(hooks.commId((c as unknown as { comm: unknown }).comm), id);
    assert.deepEqual(hooks.log(), ['getUniqueId', 'commInitRank nranks=2 rank=1 nvls=0']);
    assert.equal(c.rank, 1);
    assert.equal(c.worldSize, 2);
    c.close();
    c.close();
    assert.deepEqual(hooks.log(), ['commDestroy'], 'close is idempotent');
    assert.throws(() => c.allReduce(dev(new Float32Array(2), 'f32', [2])), /allReduce: the collective was closed/);
  });

  test('errors: NcclError carries the result name, ncclGetErrorString and ncclGetLastError', () => {
    const nccl = loadNccl();
    const comm: unknown[] = [null];
    const rc = nccl.ncclCommInitRank(comm, 2, { internal: new Uint8Array(128) }, 5);
    assert.throws(() => checkNccl(rc, 'ncclCommInitRank(rank 5 of 2)'), (e: unknown) => {
      assert.ok(e instanceof NcclError);
      assert.equal(e.codeName, 'ncclInvalidArgument');
      assert.equal(e.message, 'ncclCommInitRank(rank 5 of 2) failed: ncclInvalidArgument (4): invalid argument (mock); last error: rank is out of range [0, nranks)');
      return true;
    });
    assert.throws(() => NcclCollective.init(b, 2, 2, new Uint8Array(128)), (e: unknown) => e instanceof CollectiveError && /rank must be in \[0, 2\), got 2/.test(e.message));
    assert.throws(() => NcclCollective.init(b, 0, 2, new Uint8Array(64)), /unique id must be 128 bytes, got 64/);
  });

  test('collectives move the right bytes and counts (rank 1 of 2, mirrored peer)', () => {
    const c = NcclCollective.init(b, 1, 2, NcclCollective.uniqueId());
    hooks.log();
    const x = Float32Array.from([1, 2, 3, 4, 5, 6]);

    const s = dev(x.slice(), 'f32', [3, 2]);
    c.allReduce(s);
    assert.deepEqual(vals(s), [2, 4, 6, 8, 10, 12]);
    const a = dev(x.slice(), 'f32', [3, 2]);
    c.allReduce(a, 'avg');
    assert.deepEqual(vals(a), Array.from(x));

    const g = c.allGather(dev(x.slice(), 'f32', [3, 2]));
    assert.deepEqual(g.shape, [6, 2]);
    assert.deepEqual(vals(g), [...x, ...x]);

    // rows [2, 4) of a [4, 3] i32 tensor belong to rank 1; summed over the 2 mirrored ranks
    const rs = c.reduceScatter(dev(Int32Array.from({ length: 12 }, (_, i) => i), 'i32', [4, 3]));
    assert.deepEqual(rs.shape, [2, 3]);
    assert.deepEqual(vals(rs), [12, 14, 16, 18, 20, 22]);

    // a view at an offset: the device address includes it
    const big = dev(Float64Array.from([9, 9, 7, 8]), 'f64', [4]);
    const tail = big._view([2], [1], 2);
    c.broadcast(tail, 0);
    assert.deepEqual(vals(tail), [7, 8]);

    const t = c.allToAll(dev(Float32Array.from([10, 11, 12, 20, 21, 22]), 'f32', [2, 3]));
    assert.deepEqual(vals(t), [10, 11, 12, 20, 21, 22], 'chunk p received from peer p lands at chunk p');

    assert.deepEqual(hooks.log(), [
      'allReduce count=6 type=7 op=0 inplace=1',
      'allReduce count=6 type=7 op=4 inplace=1',
      'allGather sendcount=6 type=7',
      'reduceScatter recvcount=6 type=2 op=0',
      'broadcast count=2 type=8 root=0',
      'groupStart',
      'send count=3 type=7 peer=0', 'recv count=3 type=7 peer=0',
      'send count=3 type=7 peer=1', 'recv count=3 type=7 peer=1',
      'groupEnd',
    ]);
    c.close();
  });

  test('groups: an unmatched receive fails at ncclGroupEnd; a failed send inside allToAll still closes the group', () => {
    const nccl = loadNccl();
    const c = NcclCollective.init(b, 0, 2, NcclCollective.uniqueId());
    const comm = (c as unknown as { comm: unknown }).comm;
    const x = dev(new Float32Array(4), 'f32', [4]);
    checkNccl(nccl.ncclGroupStart(), 'ncclGroupStart');
    checkNccl(nccl.ncclRecv(b.address(x), 4, NCCL_DTYPE.ncclFloat32, 1, comm, b.rt.stream), 'ncclRecv');
    assert.throws(() => checkNccl(nccl.ncclGroupEnd(), 'ncclGroupEnd'), /ncclGroupEnd failed: ncclInvalidUsage \(5\): invalid usage \(mock\); last error: a receive has no matching send/);
    assert.throws(() => checkNccl(nccl.ncclSend(b.address(x), 4, NCCL_DTYPE.ncclFloat32, 1, comm, b.rt.stream), 'ncclSend'), /send\/recv outside a group/);
    // 300 peers need 600 queued calls, more than the mock holds: the send to rank 128 fails mid-group
    const wide = NcclCollective.init(b, 0, 300, NcclCollective.uniqueId());
    assert.throws(() => wide.allToAll(dev(new Float32Array(300), 'f32', [300])), (e: unknown) => {
      assert.ok(e instanceof NcclError, String(e));
      assert.equal(e.message, 'ncclSend(1 f32 to rank 128) failed: ncclInternalError (3): internal error (mock); last error: mocknccl: too many queued send/recv');
      return true;
    });
    wide.close();
    // had the group been left open, these sends would queue behind it and never be copied
    const t = c.allToAll(dev(Float32Array.from([1, 2, 3, 4]), 'f32', [4]));
    assert.deepEqual(vals(t), [1, 2, 3, 4]);
    c.close();
  });

  test('argument checks: layout, dtype, op, root, device', () => {
    const c = NcclCollective.init(b, 0, 2, NcclCollective.uniqueId());
    const m = dev(new Float32Array(6), 'f32', [2, 3]);
    assert.throws(() => c.allReduce(m._view([3, 2], [1, 3], 0)), /allReduce: the tensor must be contiguous \(shape \[3, 2\], strides \[1, 3\]\)/);
    assert.throws(() => c.allReduce(dev(new Uint8Array(2), 'bool', [2])), /cannot reduce a bool tensor/);
    assert.throws(() => c.allReduce(dev(new Int32Array(2), 'i32', [2]), 'avg'), /'avg' needs a float dtype, got i32/);
    assert.throws(() => c.allReduce(m, 'min' as never), /op must be 'sum', 'avg' or 'max', got 'min'/);
    assert.throws(() => c.reduceScatter(dev(new Float32Array(3), 'f32', [3])), /first dim of shape \[3\] is not divisible by the world size 2/);
    assert.throws(() => c.broadcast(m, 2), /root must be a rank in \[0, 2\), got 2/);
    const cpu = fromArray([1, 2], [2], { device: 'cpu' });
    assert.throws(() => c.allGather(cpu), /allGather: the tensor lives on 'cpu'/);
    c.close();
  });

  test('openCollective: rank 0 publishes the id it created, rank 1 joins with the same bytes', async () => {
    const file = join(dir, 'nccl.id');
    const env = { DSV32_RANK: '0', DSV32_WORLD_SIZE: '2', DSV32_CUDA_DEVICE: '0', DSV32_NCCL_ID_FILE: file };
    const c0 = await openCollective(b, env);
    const id = new Uint8Array(readFileSync(file));
    assert.deepEqual(hooks.commId((c0 as unknown as { comm: unknown }).comm), id);
    const c1 = await openCollective(b, { ...env, DSV32_RANK: '1' });
    assert.equal(c1.rank, 1);
    assert.deepEqual(hooks.commId((c1 as unknown as { comm: unknown }).comm), id);
    c0.close();
    c1.close();
    await assert.rejects(openCollective(null, env), /DSV32_WORLD_SIZE is 2: multi-process runs need the cuda backend, got 'none'/);
  });
});
