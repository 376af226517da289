// The CUDA backend's FFI layer against a mock libcuda (test/mock/mockcuda.c, built here with gcc), so CI
// without a GPU still checks what only shows up through real calls: out-pointer and handle marshalling,
// 64-bit device pointers, the per-kernel argument block and pointer table, parameter-info checks,
// driver error names and strings in CudaError, library lookup through DSV32_CUDA_DRIVER_LIB, graph
// capture and update. Skips (with the reason) where gcc is missing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import koffi from 'koffi';
import { driverCandidates, loadDriver } from '../../src/backend/cuda/ffi.js';
import { CudaBackend } from '../../src/backend/cuda/cuda-backend.js';
import { CudaError } from '../../src/backend/cuda/errors.js';
import { ITER_BYTES, KernelNotFoundError, ModuleCache } from '../../src/backend/cuda/launch.js';
import { StagingRing } from '../../src/backend/cuda/pinned.js';
import { DsvError } from '../../src/errors.js';

const REPO = resolve(import.meta.dirname, '../../..');
const SRC = join(REPO, 'test/mock/mockcuda.c');
const gcc = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
const skip = gcc.error || gcc.status !== 0 ? { skip: `gcc not available (${gcc.error?.message ?? `exit ${gcc.status}`}): the mock libcuda cannot be built` } : {};

const dir = mkdtempSync(join(tmpdir(), 'dsv32-mockcuda-'));
const so = join(dir, 'libmockcuda.so');

/** Test hooks of the mock, bound separately from the backend's declarations. */
let hooks: { lastLaunch: (...a: unknown[]) => number; liveBytes: () => bigint | number };

function handleAddress(h: unknown): bigint {
  return typeof h === 'bigint' ? h : h === null ? 0n : BigInt(koffi.address(h as never) as bigint);
}

describe('CUDA FFI against a mock libcuda', skip, () => {
  let b: CudaBackend;

  before(() => {
    const r = spawnSync('gcc', ['-shared', '-fPIC', '-O1', '-Wall', '-Werror', '-o', so, SRC], { encoding: 'utf8' });
    assert.equal(r.status, 0, `gcc failed to build the mock libcuda:\n${r.stderr}`);
    process.env.DSV32_CUDA_DRIVER_LIB = so;
    const lib = koffi.load(so);
    hooks = {
      lastLaunch: lib.func('int mockcuda_last_launch(_Out_ char *name, int len, _Out_ uint32_t *dims, _Out_ uint64_t *stream, _Out_ uint8_t *bytes, size_t cap, _Out_ size_t *n)') as never,
      liveBytes: lib.func('uint64_t mockcuda_live_bytes()') as never,
    };
    b = new CudaBackend();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('lookup: DSV32_CUDA_DRIVER_LIB is the only candidate when set, and the runtime comes up on it', () => {
    const c = driverCandidates();
    assert.deepEqual(c.paths, [so]);
    assert.match(c.tried[0]!, /DSV32_CUDA_DRIVER_LIB/);
    assert.equal(loadDriver().path, so);
    const info = b.rt.info;
    assert.equal(info.name, 'Mock CUDA device (dsv32 test/mock)', 'cuDeviceGetName wrote into our buffer');
    assert.deepEqual(info.computeCapability, [9, 0]);
    assert.equal(info.multiprocessors, 4);
    assert.equal(info.totalMemory, 2 ** 34, 'size_t out-parameter read back as a number');
    assert.equal(info.driverVersion, 13000);
  });

  test('memory: host → device → device → host round trips through 64-bit device pointers; the allocator reuses blocks', () => {
    const src = new Float32Array(1000).map((_, i) => Math.sin(i) * 1e3);
    const a = b.fromHost(src, 'f32');
    assert.ok(a.ptr > 2 ** 32, `device pointers are full 64-bit host addresses here (${a.ptr.toString(16)})`);
    const c = b.alloc('f32', 1000);
    const view = (s: typeof a) => ({ storage: s, dtype: 'f32' as const, shape: [1000], strides: [1], offset: 0 });
    b.copy(view(c), view(a));
    const back = b.toHost(view(c)) as Float32Array;
    assert.deepEqual(Array.from(back), Array.from(src));
    // a narrowed view: the offset is applied to the device pointer
    const part = b.toHost({ ...view(a), shape: [10], offset: 990 }) as Float32Array;
    assert.deepEqual(Array.from(part), Array.from(src.subarray(990)));
    const before = b.memoryStats();
    c.dispose();
    const d = b.alloc('f32', 1000);
    assert.equal(d.ptr, c.ptr, 'the freed block is handed out again');
    assert.equal(b.memoryStats().cacheHits, before.cacheHits + 1);
    assert.equal(b.memoryStats().driverAllocs, before.driverAllocs);
    a.dispose();
    d.dispose();
  });

  test('pinned memory: uploads and downloads larger than the staging ring arrive whole; pinned buffers copy both ways', () => {
    // a ring of 3 slots of 1000 bytes: 10,000 bytes take 10 chunks, every slot is reused 3 times
    const ring = new StagingRing(b.rt.cu, () => b.rt.stream, 1000, 3);
    const src = new Uint8Array(10_000).map((_, i) => (i * 31 + 7) & 0xff);
    const s = b.alloc('u8', src.length);
    ring.upload(s.ptr, src);
    const back = new Uint8Array(src.length);
    ring.download(back, s.ptr);
    assert.deepEqual(back, src);
    assert.equal(ring.reserved, 3000);
    ring.dispose();
    // the backend's own ring: the caller's array may be overwritten as soon as fromHost returns
    const f = new Float32Array(3000).map((_, i) => i - 1500.25);
    const expect = Float32Array.from(f);
    const t = b.fromHost(f, 'f32');
    f.fill(NaN);
    const view = { storage: t, dtype: 'f32' as const, shape: [3000], strides: [1], offset: 0 };
    assert.deepEqual(b.toHost(view), expect);
    // explicit pinned buffers: bytes land in and come back from page-locked memory
    const pin = b.hostAlloc(16_000);
    assert.equal(pin.u8.length, 16_000);
    assert.notEqual(pin.address, 0n);
    new Float32Array(pin.u8.buffer, 4000, 3000).set(expect.map((v) => v * 2));
    b.uploadPinned(view, pin, 4000);
    pin.wait();
    assert.deepEqual(b.toHost(view), expect.map((v) => v * 2));
    pin.u8.fill(0);
    b.downloadPinned(pin, { ...view, shape: [10], offset: 5 }, 0);
    pin.wait();
    assert.deepEqual(new Float32Array(pin.u8.buffer, 0, 10), expect.subarray(5, 15).map((v) => v * 2));
    assert.throws(() => b.uploadPinned(view, pin, 8000), /uploadPinned: 12000 bytes at offset 8000 do not fit the 16000-byte pinned buffer/);
    assert.throws(() => b.hostAlloc(0), /size must be a positive integer number of bytes, got 0/);
    pin.free();
    assert.throws(() => b.uploadPinned(view, pin), /the pinned buffer was freed/);
    // copies of JS memory inside a graph capture would replay from a reused staging slot: refused
    assert.throws(() => b.captureGraph(() => b.fromHost(new Float32Array(4), 'f32')), /not allowed while a CUDA graph is being captured/);
    t.dispose();
    s.dispose();
  });

  test('errors: a failing driver call names the call, the CUresult name and the driver text', () => {
    const live = Number(hooks.liveBytes());
    process.env.MOCKCUDA_MEM_LIMIT = String(live + (1 << 20));
    try {
      assert.throws(() => b.alloc('f32', 4 << 20), (e: unknown) => {
        assert.ok(e instanceof CudaError, `expected CudaError, got ${String(e)}`);
        assert.equal(e.call, 'cuMemAlloc(16777216 bytes)');
        assert.equal(e.code, 2);
        assert.equal(e.codeName, 'CUDA_ERROR_OUT_OF_MEMORY');
        assert.match(e.message, /^cuMemAlloc\(16777216 bytes\) failed: CUDA_ERROR_OUT_OF_MEMORY \(2\): out of memory; allocator holds \d+ bytes reserved/);
        return true;
      });
    } finally {
      delete process.env.MOCKCUDA_MEM_LIMIT;
    }
    const m = new ModuleCache(b.rt.cu, () => b.rt.stream, dir);
    writeFileSync(join(dir, 'junk.cubin'), 'not a cubin');
    assert.throws(() => m.module('junk'), /cuModuleLoadData\(.*junk\.cubin\) failed: CUDA_ERROR_INVALID_IMAGE \(200\): device kernel image is invalid/);
    assert.throws(() => m.module('absent'), (e: unknown) => e instanceof KernelNotFoundError && /absent\.cubin is missing/.test(e.message));
  });

  test('launch: the argument block and pointer table carry i64, i32, f64, pointer, Iter struct and f32 exactly', () => {
    writeFileSync(join(dir, 'mock.cubin'), `MOCKCUBIN\nmock_record 8,4,8,8,${ITER_BYTES},4\nmock_axpy 8,4,8,8\n`);
    const m = new ModuleCache(b.rt.cu, () => b.rt.stream, dir);
    const k = m.get('mock', 'mock_record', ['i64', 'i32', 'f64', 'p', 'iter', 'f32']);
    const iter = new Uint8Array(ITER_BYTES).map((_, i) => (i * 7 + 3) & 0xff);
    const big = 2 ** 52 + 12345; // above 2^32: both 32-bit halves must arrive
    const ptr = 0x7f12_3456_789a;
    for (const [i32, f32] of [[-7, 1.5], [2 ** 31 - 1, -0.25]] as const) {
      k.launch(3, 64, 128, [big, i32, Math.PI, ptr, iter, f32], 2);
      const name = Buffer.alloc(64);
      const dims = new Uint32Array(7);
      const stream = [0n];
      const bytes = Buffer.alloc(4096);
      const n = [0];
      assert.equal(hooks.lastLaunch(name, 64, dims, stream, bytes, 4096, n), 0);
      assert.equal(name.toString('utf8', 0, name.indexOf(0)), 'mock_record');
      assert.deepEqual(Array.from(dims), [3, 2, 1, 64, 1, 1, 128]);
      assert.equal(BigInt(stream[0]!), handleAddress(b.rt.stream), 'launched on the runtime stream');
      assert.equal(Number(n[0]), 32 + ITER_BYTES + 4);
      assert.equal(bytes.readBigInt64LE(0), BigInt(big));
      assert.equal(bytes.readInt32LE(8), i32);
      assert.equal(bytes.readDoubleLE(16), Math.PI);
      assert.equal(bytes.readBigUInt64LE(24), BigInt(ptr));
      assert.deepEqual(new Uint8Array(bytes.subarray(32, 32 + ITER_BYTES)), iter);
      assert.equal(bytes.readFloatLE(32 + ITER_BYTES), f32);
    }
    // the binding is checked against the cubin's own parameter table
    const fresh = () => new ModuleCache(b.rt.cu, () => b.rt.stream, dir);
    assert.throws(() => fresh().get('mock', 'mock_record', ['i64', 'i32']), (e: unknown) => e instanceof DsvError && /declares 6 parameters, the binding expects 2/.test(e.message));
    assert.throws(() => fresh().get('mock', 'mock_record', ['i32', 'i32', 'f64', 'p', 'iter', 'f32']), /parameter 0 is 8 bytes in the cubin, the binding's 'i32' is 4/);
    assert.throws(() => fresh().get('mock', 'nope', []), /kernel nope not found in mock\.cubin \(CUresult 500\)/);
    assert.throws(() => k.launch(1, 32, 0, [1, 2]), /mock_record: 2 arguments given, 6 expected/);
    assert.throws(() => k.launch(1, 4096, 0, [big, 1, 1, ptr, iter, 1]), /cuLaunchKernel\(mock_record\) failed: CUDA_ERROR_INVALID_VALUE \(1\): invalid argument/);
  });

  test('memory pressure: an allocation that fails first releases the blocks of tensors V8 has collected (no finalizer needed), never a live or disposed one', async () => {
    const block = 8 << 20;
    // earlier tests' garbage, once their task is over, so that `before` counts live blocks only
    await new Promise<void>((r) => setImmediate(r));
    b.reclaimDead();
    const before = b.memoryStats().allocated;
    // six blocks nobody keeps, allocated in an earlier job (a WeakRef keeps its target through the job
    // that made it), and one kept and one disposed
    const kept = b.alloc('u8', block);
    (() => {
      for (let i = 0; i < 6; i++) b.alloc('u8', block);
    })();
    // (another size, so that its cached block cannot serve the allocation below)
    const gone = b.alloc('u8', block >> 1);
    gone.dispose();
    await new Promise<void>((r) => setImmediate(r));
    // the device has room for less than one more block beyond what is live now
    process.env.MOCKCUDA_MEM_LIMIT = String(Number(hooks.liveBytes()) + (block >> 1));
    try {
      const next = b.alloc('u8', block);
      const held = b.memoryStats().allocated - before;
      assert.equal(held, 2 * block, `the kept and the new block remain allocated (${held} bytes beyond the start)`);
      next.dispose();
    } finally {
      delete process.env.MOCKCUDA_MEM_LIMIT;
    }
    assert.equal(b.reclaimDead(), 0, 'nothing left to reclaim: the kept block is live, the disposed one was released once');
    kept.dispose();
    assert.equal(b.memoryStats().allocated, before);
  });

  test('graphs: captured launches keep their own arguments, replay, and update in place', () => {
    const m = new ModuleCache(b.rt.cu, () => b.rt.stream, dir);
    const axpy = m.get('mock', 'mock_axpy', ['i64', 'f32', 'p', 'p']);
    const n = 64;
    const x = b.fromHost(new Float32Array(n).fill(1), 'f32');
    const y = b.fromHost(new Float32Array(n).fill(0), 'f32');
    const yv = { storage: y, dtype: 'f32' as const, shape: [n], strides: [1], offset: 0 };
    // the argument block is rewritten by every launch: capture must have copied each launch's values
    const g = b.captureGraph(() => {
      for (const a of [1, 2, 3]) axpy.launch(1, 32, 0, [n, a, x.ptr, y.ptr]);
    });
    assert.equal(g.nodes, 3);
    assert.equal((b.toHost(yv) as Float32Array)[0], 0, 'capture does not run the kernels');
    g.replay();
    g.replay();
    assert.equal((b.toHost(yv) as Float32Array)[5], 12);
    const inPlace = g.update(() => {
      for (const a of [10, 20, 30]) axpy.launch(1, 32, 0, [n, a, x.ptr, y.ptr]);
    });
    assert.equal(inPlace, true);
    g.replay();
    assert.equal((b.toHost(yv) as Float32Array)[63], 72);
    const rebuilt = g.update(() => axpy.launch(1, 32, 0, [n, -72, x.ptr, y.ptr]));
    assert.equal(rebuilt, false, 'a different node count cannot update in place and is re-instantiated');
    g.replay();
    assert.equal((b.toHost(yv) as Float32Array)[0], 0);
    g.destroy();
  });

  test('adamwStep: one adamw_f32 launch with the views\' device addresses (offsets applied), n, the f32 scalars and the lerp flag in order', () => {
    // the kernel is not run here (the mock runs mock_axpy only): this checks what reaches cuLaunchKernel;
    // test/cuda/adamw.test.ts checks the results on a GPU
    writeFileSync(join(dir, 'adamw.cubin'), 'MOCKCUBIN\nadamw_f32 8,8,8,8,8,4,4,4,4,4,4,4,4,4\n');
    const rt = b.rt as { modules: ModuleCache };
    const shipped = rt.modules;
    rt.modules = new ModuleCache(b.rt.cu, () => b.rt.stream, dir);
    try {
      const n = 4097;
      const offs = [1, 2, 3, 5];
      const st = offs.map(() => b.alloc('f32', n + 8));
      const v = (i: number, dtype: 'f32' | 'bf16' = 'f32') => ({ storage: st[i]!, dtype, shape: [17, 241], strides: [241, 1], offset: offs[i]! });
      const h = { decay: Math.fround(1 - 1e-3), lerp: true, w: Math.fround(0.1), oneMinusW: Math.fround(0.9), b2: Math.fround(0.95), oneMinusB2: Math.fround(0.05),
        bc2Sqrt: Math.fround(0.3), eps: Math.fround(1e-8), negStepSize: Math.fround(-3e-3 / 0.19) };
      for (const lerp of [true, false]) {
        b.adamwStep(v(0), v(1), v(2), v(3), { ...h, lerp });
        const name = Buffer.alloc(64);
        const dims = new Uint32Array(7);
        const bytes = Buffer.alloc(4096);
        const nb = [0];
        assert.equal(hooks.lastLaunch(name, 64, dims, [0n], bytes, 4096, nb), 0);
        assert.equal(name.toString('utf8', 0, name.indexOf(0)), 'adamw_f32');
        // 32 registers in the mock: 1024-thread blocks, ⌈⌈n / 4⌉ / 1024⌉ = 2 of them (≤ 2 per SM × 4 SMs)
        assert.deepEqual(Array.from(dims), [2, 1, 1, 1024, 1, 1, 0]);
        assert.equal(Number(nb[0]), 40 + 9 * 4);
        assert.equal(bytes.readBigInt64LE(0), BigInt(n));
        offs.forEach((o, i) => assert.equal(bytes.readBigUInt64LE(8 + 8 * i), BigInt(st[i]!.ptr + 4 * o), `pointer ${i} carries its view's offset`));
        const f32s = [h.decay, null, h.w, h.oneMinusW, h.b2, h.oneMinusB2, h.bc2Sqrt, h.eps, h.negStepSize];
        f32s.forEach((x, i) => {
          if (x === null) assert.equal(bytes.readInt32LE(40 + 4 * i), lerp ? 1 : 0, 'lerp flag');
          else assert.equal(bytes.readFloatLE(40 + 4 * i), x, `scalar ${i} exactly (already f32)`);
        });
      }
      assert.throws(() => b.adamwStep(v(0), v(1, 'bf16'), v(2), v(3), h), (e: unknown) => e instanceof DsvError && /gradient is bf16/.test(e.message));
      assert.throws(() => b.adamwStep(v(0), v(1), { ...v(2), strides: [1, 17] }, v(3), h), (e: unknown) => e instanceof DsvError && /exp_avg is not contiguous/.test(e.message));
      for (const s of st) s.dispose();
    } finally {
      rt.modules = shipped;
    }
  });

  test('no driver: a bad DSV32_CUDA_DRIVER_LIB gives CudaUnavailableError naming what was tried', () => {
    const code = "import('./dist/src/backend/cuda/index.js').then((m) => console.log(m.cudaUnavailableReason()))";
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: REPO, encoding: 'utf8', env: { ...process.env, DSV32_CUDA_DRIVER_LIB: join(dir, 'missing.so') },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^CUDA driver not found: tried \$DSV32_CUDA_DRIVER_LIB \(.*missing\.so\); load errors: .*missing\.so/);
  });
});
