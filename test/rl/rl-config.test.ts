// `dsv32 rl --config FILE` validates its config: every rejection names the offending field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RlConfigError, parseRlConfig } from '../../src/rl/config.js';

const MAIN = resolve('dist/src/cli/main.js');

const good = {
  model: '/models/tiny',
  env: { path: '/envs/ci' },
  n_samples_per_prompt: 4,
  tasks_per_step: 2,
  steps: 3,
  lr: 1e-6,
  rollout_max_response_len: 256,
  out: '/tmp/rl-out',
};

test('a minimal config gets the documented defaults (all stabilizers on)', () => {
  const c = parseRlConfig(good);
  assert.equal(c.use_kl_loss, true);
  assert.equal(c.use_unbiased_kl, true);
  assert.equal(c.use_opsm, true);
  assert.equal(c.use_rollout_routing_replay, true);
  assert.equal(c.use_sampling_mask, true);
  assert.equal(c.num_minibatches, 1);
  assert.equal(c.eps_clip, 0.2);
  assert.equal(c.reward.outcome, 1);
});

test('bad configs are rejected naming the field', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...good, n_samples_per_prompt: 1 }, /n_samples_per_prompt/],
    [{ ...good, opsm_delta: -0.1 }, /opsm_delta/],
    [{ ...good, use_opsmm: true }, /use_opsmm/],
    [{ ...good, eps_clip: 1.5 }, /eps_clip/],
    [{ ...good, env: { path: '/e', max_steps: 0 } }, /env\.max_steps/],
    [{ ...good, reward: { outcome: -1 } }, /reward\.outcome/],
    [{ ...good, rollout_max_response_len: 8192, rollout_max_context_len: 4096 }, /rollout_max_response_len/],
    [{ ...good, num_minibatches: 9 }, /num_minibatches/],
    [(({ lr: _lr, ...rest }) => rest)(good), /lr/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => parseRlConfig(raw), (e: unknown) => e instanceof RlConfigError && re.test(e.message), JSON.stringify(raw));
  }
});

test('dsv32 rl: an invalid config file exits 2 naming the field; a missing file names --config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-cli-'));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...good, kl_loss_coef: 'big' }));
  const r = spawnSync(process.execPath, [MAIN, 'rl', '--config', bad], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /kl_loss_coef/);
  const m = spawnSync(process.execPath, [MAIN, 'rl', '--config', join(dir, 'nope.json')], { encoding: 'utf8' });
  assert.equal(m.status, 2, m.stderr);
  assert.match(m.stderr, /--config: cannot read/);
});
