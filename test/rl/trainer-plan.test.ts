// The trainer's per-step plan: which tasks, which sampling seed, which minibatches — pure functions of the
// step, which is what makes a resumed run repeat the uninterrupted one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rlConfigHash, rolloutSeed, splitRanges, stepTasks } from '../../src/rl/trainer.js';
import { parseRlConfig } from '../../src/rl/config.js';

test('stepTasks takes tasks round-robin, wrapping around the list', () => {
  const t = ['a', 'b', 'c'];
  assert.deepEqual(stepTasks(t, 2, 0), ['a', 'b']);
  assert.deepEqual(stepTasks(t, 2, 1), ['c', 'a']);
  assert.deepEqual(stepTasks(t, 2, 2), ['b', 'c']);
});

test('splitRanges covers 0..n in k contiguous parts differing by at most one', () => {
  assert.deepEqual(splitRanges(5, 2), [[0, 2], [2, 5]]);
  assert.deepEqual(splitRanges(6, 3), [[0, 2], [2, 4], [4, 6]]);
  assert.deepEqual(splitRanges(2, 3), [[0, 0], [0, 1], [1, 2]]);
});

test('rolloutSeed differs between steps and runs, and repeats for the same (seed, step)', () => {
  const seen = new Set<number>();
  for (let seed = 0; seed < 4; seed++) for (let step = 0; step < 50; step++) seen.add(rolloutSeed(seed, step));
  assert.equal(seen.size, 200);
  assert.equal(rolloutSeed(3, 17), rolloutSeed(3, 17));
});

test('the config fingerprint ignores steps, out, keep and save_every, and sees everything else', () => {
  const base = { model: 'm', env: { path: 'e' }, n_samples_per_prompt: 2, tasks_per_step: 1, steps: 3, lr: 1e-6, rollout_max_response_len: 8, out: 'o' };
  const h = rlConfigHash(parseRlConfig(base));
  assert.equal(rlConfigHash(parseRlConfig({ ...base, steps: 30, out: 'p', keep: 5, save_every: 2 })), h);
  assert.notEqual(rlConfigHash(parseRlConfig({ ...base, use_opsm: false })), h);
  assert.notEqual(rlConfigHash(parseRlConfig({ ...base, lr: 2e-6 })), h);
});
