// Data-parallel GRPO (issue 16) on the CPU: 2 ranks as threads (ThreadCollective), each rolling out one of
// the step's 2 tasks (G = 2 episodes each), against 1 rank rolling out both. With num_minibatches 1 the
// 2-rank minibatch is the 1-rank one, so the ranks' summed gradient is the 1-rank gradient up to the order
// of float sums. The RL trainer has f32 masters only (config numerics f32/bf16), so the comparison is f32:
// see the tolerance below.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../src/backend/cpu/index.js';
import { runThreadRanks, threadGroup, ThreadCollective } from '../../src/dist/thread-collective.js';
import { parseRlConfig } from '../../src/rl/config.js';
import { RL_LOG_FILE, RlTrainError, type RlStepLog, rlTrain } from '../../src/rl/trainer.js';
import { maxDiff, weightsOf } from '../train/dp.js';
import { rlFixture, tinyRlConfig } from './rl-fixture.js';
import type { RlRank, RlRankResult } from './dp-rl-rank.worker.js';

const WORKER = new URL('./dp-rl-rank.worker.js', import.meta.url);
const f = rlFixture();
const cfg = (out: string, over: Parameters<typeof tinyRlConfig>[2] = {}): ReturnType<typeof tinyRlConfig> =>
  tinyRlConfig(f, join(f.root, out), { tasks_per_step: 2, num_minibatches: 1, steps: 2, save_every: 100, ...over });

/** The log without its wall-clock fields. */
function timeless(l: RlStepLog): unknown {
  const { rollout_s: _r, train_s: _t, ...rest } = l;
  return rest;
}

// Tolerance, f32: the 2-rank loss is the sum of two partial sums (each rank's sequences, each padded to its
// own length) where 1 rank sums all 4 sequences at once, and the gradients are summed across ranks in a
// different order: ~1e-7 relative per operation. AdamW amplifies it: its first update is lr·g/(|g|+ε), so
// an element whose gradient is a near-cancellation moves by an lr-sized amount that the rounding decides.
// Measured (2026-12-06): step 1 grad norm 4e-8 relative, step 2 (after the weights differ) 3.6e-6, the KL
// 2e-6, the loss 1.9e-6 of max |Â|; the weights 5.4e-5 absolute after 2 steps that move them by 2.0e-2.
// Tolerances: 1e-4 relative on the logged numbers (loss: of max |Â|) and 5e-4 on the weights, ~10–30×
// the measurement. A wrong normalisation shows in the grad norm (per-rank mean instead of the global
// one: 2×), a wrong task split in the rollouts (other episodes: the counts and rewards), and the
// weights still have to agree to 1/40 of what the steps moved them.
test('GRPO on 2 ranks of 1 task each equals 1 rank of both tasks (reward, loss, grad norm per minibatch, weights after 2 steps, f32); the ranks stay identical bit for bit', async () => {
  const oneLog: RlStepLog[] = [];
  const one = await rlTrain(parseRlConfig(cfg('one')), { onStep: (l) => oneLog.push(l) });
  const ranks = await runThreadRanks<RlRankResult>(2, WORKER, { cfg: cfg('two') } satisfies RlRank);
  assert.equal(ranks[0]!.steps.length, 2);
  assert.deepEqual(ranks[1]!.digests, ranks[0]!.digests);
  assert.deepEqual(ranks[1]!.steps.map(timeless), ranks[0]!.steps.map(timeless));
  const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
  let worst = 0;
  ranks[0]!.steps.forEach((l, i) => {
    const o = oneLog[i]!;
    // the same episodes: counts are exact
    for (const k of ['episodes', 'sequences', 'trained_tokens', 'unmasked_tokens'] as const) assert.equal(l[k], o[k], `step ${i + 1} ${k}`);
    assert.equal(l.minibatches.length, 1);
    const [m, n] = [l.minibatches[0]!, o.minibatches[0]!];
    assert.ok(n.grad_norm > 0 && n.loss !== 0, 'a step that learns something');
    for (const [k, a, b] of [['reward', l.reward, o.reward], ['pass_rate', l.pass_rate, o.pass_rate], ['grad_norm', m.grad_norm, n.grad_norm], ['kl', m.kl, n.kl], ['entropy', m.entropy, n.entropy], ['logp_mean', m.logp_mean, n.logp_mean]] as const) {
      if (b === 0) {
        assert.equal(a, 0, `step ${i + 1} ${k}`);
        continue;
      }
      worst = Math.max(worst, rel(a, b));
      assert.ok(rel(a, b) < 1e-4, `step ${i + 1} ${k}: 2 ranks ${a}, 1 rank ${b}`);
    }
    // the loss at θ = θ_old is −mean over sequences of Â (r = 1) plus β·KL ≈ 0: a cancellation of terms of
    // size |Â|, so it is compared absolutely on that scale
    const scale = Math.max(...n.advantages.map(Math.abs));
    assert.ok(scale > 0.1 && Math.abs(m.loss - n.loss) < 1e-4 * scale, `step ${i + 1} loss: 2 ranks ${m.loss}, 1 rank ${n.loss} (max |Â| ${scale})`);
    // the same rewards in the same groups: the same Â, listed in the 1-rank order (rank 0's sequences, then rank 1's)
    assert.deepEqual(m.advantages, n.advantages, `step ${i + 1} advantages`);
  });
  const w1 = weightsOf(one.model);
  const w0 = weightsOf((await import('../../src/model/model.js')).DeepseekV32.load(f.modelDir, { master: 'f32' }));
  const moved = maxDiff(w0, w1);
  const d = maxDiff(ranks[0]!.weights, w1);
  assert.ok(moved > 1e-2, `the steps moved the weights (max ${moved})`);
  assert.ok(d < 5e-4, `2 ranks vs 1: max |Δw| ${d} (moved ${moved}; logged numbers ≤ ${worst} relative)`);
  // only rank 0 wrote: the log and the final checkpoint
  assert.equal(ranks[0]!.checkpoint, join(f.root, 'two', 'step-000002'));
  assert.equal(ranks[1]!.checkpoint, null);
  assert.equal(readFileSync(join(f.root, 'two', RL_LOG_FILE), 'utf8').trim().split('\n').length, 2);
});

test('GRPO on 2 ranks, 2 minibatches of one sequence per micro-batch: stopped after 1 step and resumed equals the uninterrupted run bit for bit', async () => {
  const over = { num_minibatches: 2, micro_batch_size: 1 };
  const straight = await runThreadRanks<RlRankResult>(2, WORKER, { cfg: cfg('straight', over) } satisfies RlRank);
  assert.deepEqual(straight[1]!.digests, straight[0]!.digests);
  assert.equal(straight[0]!.steps[0]!.minibatches.length, 2);
  // a minibatch holds one sequence of each rank
  assert.deepEqual(straight[0]!.steps[0]!.minibatches.map((m) => m.sequences), [2, 2]);
  const first = await runThreadRanks<RlRankResult>(2, WORKER, { cfg: cfg('resumed', over), stopAfter: 1 } satisfies RlRank);
  assert.equal(first[0]!.steps.length, 1);
  const second = await runThreadRanks<RlRankResult>(2, WORKER, { cfg: cfg('resumed', over) } satisfies RlRank);
  assert.deepEqual(second[0]!.steps.map((l) => l.step), [2]);
  assert.equal(second[0]!.digests.at(-1), straight[0]!.digests.at(-1));
  assert.equal(second[1]!.digests.at(-1), straight[0]!.digests.at(-1));
  const lines = (dir: string): unknown[] => readFileSync(join(f.root, dir, RL_LOG_FILE), 'utf8').trim().split('\n').map((l) => timeless(JSON.parse(l) as RlStepLog));
  assert.deepEqual(lines('resumed'), lines('straight'));
  assert.deepEqual(readdirSync(join(f.root, 'resumed')).filter((x) => x.startsWith('step-')).sort(), ['step-000001', 'step-000002']);
});

test('tasks_per_step not divisible by the world size, and a rollout server with 2 ranks, are named errors', async () => {
  const c = new ThreadCollective(threadGroup(2), 0);
  await assert.rejects(rlTrain(parseRlConfig(cfg('odd', { tasks_per_step: 3 })), { collective: c }), (e: unknown) => e instanceof RlTrainError &&
    e.message === 'tasks_per_step 3 is not divisible by the world size 2: each rank rolls out tasks_per_step/2 of the step\'s tasks');
  await assert.rejects(rlTrain(parseRlConfig(cfg('server', { rollout_server: { base_url: 'http://127.0.0.1:9', model: 'm' } })), { collective: c }), (e: unknown) => e instanceof RlTrainError &&
    /^rollout_server: rollouts through a server need world size 1 \(this run has 2 ranks\)/.test(e.message));
  assert.equal(existsSync(join(f.root, 'odd')), false, 'nothing was written');
});
