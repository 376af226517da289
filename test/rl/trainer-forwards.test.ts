// How many training forwards a GRPO micro-batch costs (src/rl/trainer.ts): with Keep Routing and every input
// position routed by the engine, the policy's forced forward and π_ref's, and no unforced third forward;
// router_drift then comes from the forced forward's own gate choice (Routing.own). The rule that decides
// whether the unforced forward is needed, unroutedBeforeLastTarget, at its edges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DeepseekV32 } from '../../src/model/index.js';
import { parseRlConfig } from '../../src/rl/config.js';
import { type RlStepLog, rlTrain, unroutedBeforeLastTarget } from '../../src/rl/trainer.js';
import { rlFixture, tinyRlConfig } from './rl-fixture.js';

test('Keep Routing with every position recorded: two forwards per micro-batch (policy and π_ref), both forced', async () => {
  const f = rlFixture();
  const calls: { forced: boolean }[] = [];
  const orig = DeepseekV32.prototype.trainForward;
  DeepseekV32.prototype.trainForward = function (this: DeepseekV32, ...a: Parameters<typeof orig>) {
    calls.push({ forced: !!a[3]?.forcedRoutes });
    return orig.apply(this, a);
  };
  const logs: RlStepLog[] = [];
  try {
    await rlTrain(parseRlConfig(tinyRlConfig(f, join(f.root, 'forwards'), { steps: 1 })), { onStep: (l) => logs.push(l) });
  } finally {
    DeepseekV32.prototype.trainForward = orig;
  }
  const mbs = logs[0]!.minibatches;
  assert.equal(mbs.length, 2);
  assert.equal(calls.length, 2 * mbs.length, `${calls.length} training forwards for ${mbs.length} micro-batches`);
  assert.ok(calls.every((c) => c.forced), 'every forward replays the engine routes');
  for (const m of mbs) assert.equal(m.routing_disagreement, 0);
  // the second minibatch follows an lr 1e-2 update: the gate's own choice moved somewhere
  assert.ok(mbs[1]!.router_drift > 0, `router_drift ${mbs[1]!.router_drift}`);
});

test('unroutedBeforeLastTarget: only holes at or before a sequence\'s last trained target count', () => {
  // S 2 × T 4; sequence 0 trains targets 1–2, sequence 1 target 0
  const valid = Float64Array.from([0, 1, 1, 0, 1, 0, 0, 0]);
  const all = Float64Array.from([1, 1, 1, 1, 1, 1, 1, 1]);
  assert.equal(unroutedBeforeLastTarget(valid, all, 2, 4), false);
  // holes after the last target (padding, the final token) reach no trained log-prob
  assert.equal(unroutedBeforeLastTarget(valid, Float64Array.from([1, 1, 1, 0, 1, 0, 0, 0]), 2, 4), false);
  // a hole in the prompt, before a trained target
  assert.equal(unroutedBeforeLastTarget(valid, Float64Array.from([0, 1, 1, 1, 1, 1, 1, 1]), 2, 4), true);
  // a hole at the last target's own input position
  assert.equal(unroutedBeforeLastTarget(valid, Float64Array.from([1, 1, 1, 1, 0, 1, 1, 1]), 2, 4), true);
  // nothing trained: nothing needed
  assert.equal(unroutedBeforeLastTarget(new Float64Array(8), new Float64Array(8), 2, 4), false);
});
