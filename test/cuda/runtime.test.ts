// Runtime pieces on the GPU: the caching allocator's reuse and statistics, CUDA-graph capture, replay
// on new data and in-place update, and event timing.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { onGpu, cuda, to, randn, assertRel } from './common.js';
import { profileBackend } from '../../src/tensor/profile.js';

describe('cuda runtime', onGpu, () => {
  test('device info and the allocator: freed blocks are reused, stats track allocated/peak', () => {
    const b = cuda();
    assert.match(b.rt.info.name, /\S/);
    assert.ok(b.rt.info.multiprocessors > 0);
    const before = b.memoryStats();
    const s1 = b.alloc('f32', 1 << 20);
    const mid = b.memoryStats();
    assert.equal(mid.allocated - before.allocated, 4 << 20);
    assert.ok(mid.peak >= mid.allocated);
    s1.dispose();
    const s2 = b.alloc('f32', 1 << 20);
    const after = b.memoryStats();
    assert.equal(after.cacheHits, mid.cacheHits + 1, 'second allocation of the same size comes from the cache');
    assert.equal(after.driverAllocs, mid.driverAllocs);
    assert.equal(s2.ptr, s1.ptr);
    s2.dispose();
  });

  test('graph capture replays on new input data and updates in place with new buffers', () => {
    const b = cuda();
    const x = to(randn([1024, 256]), 'cuda');
    const w = to(randn([256]), 'cuda');
    const out = T.empty([1024, 256], { device: 'cuda' });
    const tmp = T.empty([1024, 256], { device: 'cuda' });
    const step = (src: T.Tensor): void => {
      b.rmsNorm(tmp, src, w, 1e-6);
      b.unary('silu', out, tmp, 0);
    };
    const g = b.captureGraph(() => step(x));
    assert.equal(g.nodes, 2);
    for (let rep = 0; rep < 2; rep++) {
      const fresh = randn([1024, 256]);
      b.copy(x, to(fresh, 'cuda'));
      g.replay();
      const ref = T.silu(T.rmsNorm(fresh, to(w, "cpu"), 1e-6));
      assertRel(out, ref, 1e-5, `replay ${rep}`);
    }
    const y = to(randn([1024, 256]), 'cuda');
    const inPlace = g.update(() => step(y));
    assert.equal(inPlace, true, 'same topology updates in place');
    g.replay();
    assertRel(out, T.silu(T.rmsNorm(to(y, 'cpu'), to(w, 'cpu'), 1e-6)), 1e-5, 'after update');
    g.destroy();
  });

  test('events time work on the stream', () => {
    const b = cuda();
    const x = to(randn([1 << 22]), 'cuda');
    const o = T.empty([1 << 22], { device: 'cuda' });
    const e0 = b.event().record();
    for (let i = 0; i < 10; i++) b.unary('exp', o, x, 0);
    const e1 = b.event().record();
    e1.synchronize();
    const ms = e1.since(e0);
    assert.ok(ms > 0 && ms < 1000, `elapsed ${ms} ms`);
  });

  test('hold() keeps the stream waiting; op times by events behind it sum within the span', () => {
    const b = cuda();
    const x = to(randn([1 << 20]), 'cuda');
    const o = T.empty([1 << 20], { device: 'cuda' });
    const e0 = b.event().record();
    b.hold(5);
    const e1 = b.event().record();
    assert.equal(e1.done(), false, 'the event behind a 5 ms hold is pending right after it is enqueued');
    e1.synchronize();
    assert.ok(e1.since(e0) >= 5, `the hold lasted ${e1.since(e0)} ms, want ≥ 5`);
    // the event timer of src/tensor/profile.ts: no synchronisation, marks around each op
    const pool: ReturnType<typeof b.event>[] = [];
    const prof = profileBackend(b, { mark: () => (pool.pop() ?? b.event()).record(), ms: (a, c) => c.since(a), release: (e) => pool.push(e) });
    b.hold(20);
    const s0 = b.event().record();
    for (let i = 0; i < 4; i++) b.unary('exp', o, x, 0);
    b.unary('neg', o, x, 0);
    const s1 = b.event().record();
    assert.equal(s0.done(), false, 'nothing ran while the host enqueued');
    s1.synchronize();
    prof.stop();
    const exp = prof.ops.get('unary')!;
    assert.equal(exp.calls, 5);
    assert.ok(exp.ms > 0 && exp.ms <= s1.since(s0) + 1e-3, `ops ${exp.ms} ms within the span ${s1.since(s0)} ms`);
    for (const e of [e0, e1, s0, s1, ...pool]) e.destroy();
  });
});
