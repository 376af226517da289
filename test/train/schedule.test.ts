import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScheduleError, constantLr, cosineLr, lrSchedule, warmupLr } from '../../src/train/schedule.js';

const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-15, `${a} vs ${b}`);

test('constant and warmup schedules at their boundaries', () => {
  const c = constantLr(3e-4);
  assert.equal(c(0), 3e-4);
  assert.equal(c(1_000_000), 3e-4);
  const w = warmupLr(1e-3, 4);
  close(w(0), 2.5e-4); // the first update already moves
  close(w(1), 5e-4);
  close(w(3), 1e-3); // peak on the last warmup step
  assert.equal(w(4), 1e-3);
  assert.equal(w(100), 1e-3);
  assert.equal(warmupLr(1e-3, 0)(0), 1e-3);
});

test('cosine schedule: warmup, peak, midpoint, floor, and after the end', () => {
  const s = cosineLr({ lr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-4 });
  close(s(0), 1e-4);
  close(s(9), 1e-3);
  close(s(10), 1e-3); // decay starts from the peak
  close(s(60), 1e-4 + 0.9e-3 * 0.5); // halfway: cos(π/2) = 0
  close(s(35), 1e-4 + 0.9e-3 * 0.5 * (1 + Math.cos(Math.PI / 4)));
  assert.ok(s(109) > 1e-4 && s(109) < 1e-4 + 2.3e-7); // 0.9e-3 · ½(1 + cos(0.99π)) ≈ 2.2e-7 above the floor
  assert.equal(s(110), 1e-4);
  assert.equal(s(10_000), 1e-4);
  for (let k = 10; k < 110; k++) assert.ok(s(k + 1) <= s(k), `not monotone at ${k}`);
  const plain = cosineLr({ lr: 2, totalSteps: 4 });
  assert.deepEqual([0, 1, 2, 3, 4].map(plain), [2, 1 + Math.cos(Math.PI / 4), 1 + Math.cos(Math.PI / 2), 1 + Math.cos((3 * Math.PI) / 4), 0]);
});

test('schedules from a config spec, and argument errors', () => {
  close(lrSchedule({ kind: 'cosine', lr: 1, totalSteps: 2 })(1), 0.5);
  assert.equal(lrSchedule({ kind: 'warmup', lr: 1, warmupSteps: 2 })(0), 0.5);
  assert.equal(lrSchedule({ kind: 'constant', lr: 0.1 })(7), 0.1);
  const err = (re: RegExp) => (e: unknown): boolean => e instanceof ScheduleError && re.test(e.message);
  assert.throws(() => lrSchedule({ kind: 'linear', lr: 1 } as never), err(/kind/));
  assert.throws(() => lrSchedule({ kind: 'cosine', lr: 1, totalSteps: 0 }), err(/totalSteps/));
  assert.throws(() => cosineLr({ lr: 1, totalSteps: 5, warmupSteps: 5 }), err(/totalSteps \(5\) must be greater than warmupSteps \(5\)/));
  assert.throws(() => cosineLr({ lr: 1, totalSteps: 5, minLr: 2 }), err(/minLr \(2\) must not exceed lr \(1\)/));
  assert.throws(() => warmupLr(1, 1.5), err(/warmupSteps must be an integer ≥ 0, got 1.5/));
  assert.throws(() => constantLr(Infinity), err(/lr must be a finite number/));
  assert.throws(() => constantLr(1)(-1), err(/step must be an integer ≥ 0, got -1/));
});
