// src/tensor/profile.ts on the CPU backend: the synchronised mode counts each outermost op once with its
// argument signatures; the timer mode (the GPU's CUDA events, here a counter) records a mark before and
// after each op, reads nothing until table()/stop(), then charges each op the marks' difference and gives
// every mark back; both keep the longest host time of one call. (test/cuda/runtime.test.ts runs the timer
// mode with real events behind a held stream.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { profileBackend, type OpTimer } from '../../src/tensor/profile.js';

const work = (): void => {
  const x = T.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
  T.exp(x);
  T.exp(x);
  T.matmul(x, x);
};

test('synchronised profile: ops counted once each, with signatures, and unwrapped by stop()', () => {
  const be = T.getBackend('cpu');
  const prof = profileBackend(be);
  work();
  prof.stop();
  const unary = prof.ops.get('unary');
  assert.ok(unary, 'the two exps are unary ops');
  assert.equal(unary.calls, 2);
  assert.equal([...unary.bySig.values()].reduce((a, [c]) => a + c, 0), 2, 'the signatures account for every call');
  assert.ok(unary.hostMaxMs >= 0 && unary.hostMaxMs <= unary.ms + 1e-9, 'the longest call is within the total');
  assert.ok(prof.table().includes('unary'));
  const before = new Map([...prof.ops].map(([k, o]) => [k, o.calls]));
  work();
  for (const [k, o] of prof.ops) assert.equal(o.calls, before.get(k), `${k}: no longer counted after stop()`);
});

test('timer profile: marks around each op, read at table(), each given back', () => {
  const be = T.getBackend('cpu');
  let clock = 0;
  let live = 0;
  const read: number[] = [];
  const timer: OpTimer<number> = {
    mark: () => {
      live++;
      return (clock += 10);
    },
    ms: (a, b) => {
      read.push(b - a);
      return b - a;
    },
    release: () => {
      live--;
    },
  };
  const prof = profileBackend(be, timer);
  work();
  assert.equal(read.length, 0, 'nothing is read while the step runs');
  const ops = [...prof.ops.values()].reduce((a, o) => a + o.calls, 0);
  assert.equal(ops, 0, 'ops are charged when the marks are read');
  const table = prof.table();
  const n = [...prof.ops.values()].reduce((a, o) => a + o.calls, 0);
  assert.ok(n >= 3, `at least the two exps and the matmul, got ${n}`);
  assert.equal(read.length, n, 'one reading per op');
  for (const d of read) assert.equal(d, 10, 'an op spans its own two marks: nested ops add none');
  assert.equal(prof.ops.get('unary')!.ms, 20);
  assert.equal(live, 0, 'every mark is released');
  assert.ok(table.includes('unary'));
  prof.stop();
});
