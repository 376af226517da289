// The GRPO trainer (src/rl/trainer.ts) end to end on the CPU: a tiny random DeepSeek-V3.2 (test/rl/rl-fixture.ts)
// samples rollouts on the real engine over the code-interpreter environment and is trained on them.
//   run A: 2 steps with every stabilizer on, 2 minibatches per step (the second off-policy);
//   `dsv32 rl` with the same config, SIGKILLed during step 2 and run again → A's step 2 bit for bit;
//   run E: 2 steps, stopped by max_seconds after step 1 and run again → A's step 2 bit for bit;
//   run Q: from an FP8 copy of the model, 1 step then resumed to 2 (the checkpoint is f32, not FP8);
//   runs W and M: 1 step, one minibatch, whole vs one sequence per forward/backward (micro_batch_size);
//   runs V, V2: with a held-out evaluation (eval.jsonl at steps 0, every 2 and the end; resumed; no effect on training);
//   run H: 2 steps with rollouts through the HTTP server (weights pushed each step) → A's tokens;
//   run D: 1 step with Keep Routing, Keep Sampling Mask and the KL term off, against A's first step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeepseekV32 } from '../../src/model/index.js';
import { parseRlConfig } from '../../src/rl/config.js';
import { RL_EVAL_FILE, RL_LOG_FILE, type RlEvalLog, type RlStepLog, rlTrain } from '../../src/rl/trainer.js';
import { checkpointName } from '../../src/train/checkpoint.js';
import { quantizeCheckpoint } from '../../src/model/quantize.js';
import { rlFixture, tinyRlConfig, TINY_CONFIG } from './rl-fixture.js';
import { loadTokenizer } from '../../src/chat/tokenizer.js';
import { LLMEngine } from '../../src/engine/engine.js';
import { createServer } from '../../src/server/index.js';
import { Checkpoint } from '../../src/tensor/safetensors.js';

const MAIN = resolve('dist/src/cli/main.js');
const f = rlFixture();

async function run(out: string, over: Parameters<typeof tinyRlConfig>[2] = {}): Promise<RlStepLog[]> {
  const logs: RlStepLog[] = [];
  await rlTrain(parseRlConfig(tinyRlConfig(f, out, over)), { onStep: (l) => logs.push(l) });
  return logs;
}

function weightsOf(dir: string): Map<string, Float32Array> {
  const m = DeepseekV32.load(dir, { master: 'f32' });
  return new Map([...m.weights.stateTensors()].map(([n, t]) => [n, Float32Array.from(t.toFloat32())]));
}

/** The log without its wall-clock fields. */
function timeless(line: string): unknown {
  const { rollout_s: _r, train_s: _t, ...rest } = JSON.parse(line) as RlStepLog;
  return rest;
}

const outA = join(f.root, 'A');
const runA = run(outA, { steps: 2 });

test('one RL step end to end: on-policy first minibatch, off-policy second, weights change, the engine serves them', async () => {
  const [s1, s2] = await runA;
  assert.ok(s1 && s2);
  assert.equal(s1.episodes, 2);
  const [m0, m1] = s1.minibatches;
  assert.ok(m0 && m1);
  assert.notDeepEqual(m0.advantages, [0], 'the rewards differ within the group, so Â ≠ 0');
  // θ = θ_old at the first minibatch: π_θ reproduces the engine's π_old up to f32 summation order
  assert.ok(m0.ratio_max_abs_dev < 1e-4, `first minibatch |r − 1| ≤ ${m0.ratio_max_abs_dev}`);
  assert.equal(m0.clip_fraction, 0);
  assert.ok(m0.kl < 1e-5, `θ = θ_ref: KL ${m0.kl}`);
  assert.ok(m0.grad_norm > 0);
  // the second minibatch is trained after the first's update: off-policy
  assert.ok(m1.ratio_max_abs_dev > 0.05, `second minibatch |r − 1| = ${m1.ratio_max_abs_dev}`);
  assert.ok(m1.kl > 1e-3);
  // the weights moved (weight decay is 0: the change is the loss's gradient)
  const w0 = weightsOf(f.modelDir);
  const w1 = weightsOf(join(outA, checkpointName(1)));
  let changed = 0;
  for (const [n, a] of w0) {
    const b = w1.get(n)!;
    assert.ok(b.every(Number.isFinite), n);
    if (a.some((x, i) => x !== b[i])) changed++;
  }
  assert.ok(changed > w0.size / 2, `${changed} of ${w0.size} tensors changed`);
  // step 2's rollouts came from the updated weights: its first minibatch is on-policy again
  assert.ok(s2.minibatches[0]!.ratio_max_abs_dev < 1e-4, `step 2 first minibatch |r − 1| = ${s2.minibatches[0]!.ratio_max_abs_dev}`);
  // metrics and checkpoints on disk
  const lines = readFileSync(join(outA, RL_LOG_FILE), 'utf8').trim().split('\n');
  assert.equal(lines.length, 2);
  for (const k of ['reward', 'pass_rate', 'kl', 'entropy', 'clip_fraction', 'opsm_masked_fraction', 'logprob_mismatch', 'routing_disagreement']) {
    assert.equal(typeof (JSON.parse(lines[0]!) as Record<string, unknown>)[k], 'number', k);
  }
  assert.equal(readFileSync(join(outA, 'latest'), 'utf8').trim(), checkpointName(2));
});

test('Keep Routing: the training forward uses the engine routes (0 % disagreement) where the free router would differ', async () => {
  const logs = await runA;
  const mbs = logs.flatMap((l) => l.minibatches);
  for (const m of mbs) assert.equal(m.routing_disagreement, 0);
  assert.ok(mbs.some((m) => m.router_drift > 0), 'after an update the free router picks other experts somewhere');
});

test('OPSM: exactly the negative-advantage sequences whose mean log(π_old/π_θ) exceeds δ are masked; the KL term stays', async () => {
  const logs = await runA;
  const delta = 0.1;
  let masked = 0;
  for (const m of logs.flatMap((l) => l.minibatches)) {
    const want = m.advantages.filter((a, i) => a < 0 && m.opsm_statistic[i]! > delta).length / m.advantages.length;
    assert.equal(m.opsm_masked_fraction, want);
    m.advantages.forEach((_, i) => assert.ok(Math.abs(m.opsm_statistic[i]! - delta) > 0.05, 'no near tie with δ'));
    if (want === 1) {
      masked++;
      // a single sequence, masked: only β·(r·k3) remains of the loss (seq-mean-token-mean of one sequence)
      assert.ok(Math.abs(m.loss - 0.05 * m.kl) < 1e-6, `masked loss ${m.loss} vs β·KL ${0.05 * m.kl}`);
    } else if (m.advantages.every((a) => a !== 0)) {
      assert.ok(Math.abs(m.loss - 0.05 * m.kl) > 1e-3, 'unmasked: the surrogate contributes');
    }
  }
  assert.ok(masked >= 1, 'the run has a sequence OPSM masks');
});

test('dsv32 rl killed with SIGKILL during step 2 resumes and ends bit-identical to the uninterrupted run', async () => {
  await runA;
  const outB = join(f.root, 'B');
  const cfgFile = join(f.root, 'B.json');
  writeFileSync(cfgFile, JSON.stringify(tinyRlConfig(f, outB, { steps: 2 })));
  const args = [MAIN, 'rl', '--config', cfgFile, '--no-progress'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((res) => child.on('exit', (code, sig) => res(sig ?? code)));
  // kill as soon as step 1 is checkpointed, i.e. inside step 2 (a step takes seconds)
  const latest = join(outB, 'latest');
  while (!(existsSync(latest) && readFileSync(latest, 'utf8').trim() === checkpointName(1))) {
    if (child.exitCode !== null) assert.fail(`dsv32 rl exited (${child.exitCode}) before step 1's checkpoint: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.ok(!existsSync(join(outB, checkpointName(2))), 'killed before step 2 was saved');
  const again = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /^done at step 2\/2/);
  const a = weightsOf(join(outA, checkpointName(2)));
  const b = weightsOf(join(outB, checkpointName(2)));
  for (const [n, x] of a) assert.ok(Buffer.from(x.buffer).equals(Buffer.from(b.get(n)!.buffer)), `${n} differs after resume`);
  const la = readFileSync(join(outA, RL_LOG_FILE), 'utf8').trim().split('\n');
  const lb = readFileSync(join(outB, RL_LOG_FILE), 'utf8').trim().split('\n');
  assert.deepEqual(lb.map(timeless), la.map(timeless));
});

test('max_seconds: the run checkpoints and stops after the step that spends it, and a later run resumes to the same step 2', async () => {
  await runA;
  const outE = join(f.root, 'E');
  const r1 = await rlTrain(parseRlConfig(tinyRlConfig(f, outE, { steps: 2, max_seconds: 0.001 })));
  assert.deepEqual([r1.step, r1.done, r1.checkpoint?.endsWith(checkpointName(1))], [1, false, true]);
  // the budget is not part of the run's identity: without it the same run continues
  const r2 = await rlTrain(parseRlConfig(tinyRlConfig(f, outE, { steps: 2 })));
  assert.deepEqual([r2.resumedFrom, r2.step, r2.done], [1, 2, true]);
  const a = weightsOf(join(outA, checkpointName(2)));
  const e = weightsOf(join(outE, checkpointName(2)));
  for (const [n, x] of a) assert.ok(Buffer.from(x.buffer).equals(Buffer.from(e.get(n)!.buffer)), `${n} differs after the budgeted stop`);
});

test('an FP8 model trains from f32 masters: its checkpoints carry no quantization_config, load, and resume', async () => {
  await runA;
  const fp8 = join(f.root, 'fp8');
  quantizeCheckpoint(f.modelDir, fp8, { maxShardBytes: 64 * 2 ** 20 });
  const out = join(f.root, 'Q');
  const cfg = (steps: number) => parseRlConfig(tinyRlConfig(f, out, { steps, model: fp8, tokenizer: f.modelDir }));
  const r1 = await rlTrain(cfg(1));
  const saved = JSON.parse(readFileSync(join(r1.checkpoint!, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(saved.quantization_config, undefined, 'the f32 masters are not FP8');
  assert.equal(saved.num_hidden_layers, JSON.parse(readFileSync(join(fp8, 'config.json'), 'utf8')).num_hidden_layers);
  const r2 = await rlTrain(cfg(2));
  assert.deepEqual([r2.resumedFrom, r2.step, r2.done], [1, 2, true]);
  assert.ok([...weightsOf(r2.checkpoint!).values()].every((w) => w.every(Number.isFinite)));
});

test('micro_batch_size: one sequence per forward/backward gives the whole minibatch\'s loss, gradient and metrics', async () => {
  await runA;
  const [w] = await run(join(f.root, 'W'), { steps: 1, num_minibatches: 1 });
  const [m] = await run(join(f.root, 'M'), { steps: 1, num_minibatches: 1, micro_batch_size: 1 });
  assert.ok(w && m);
  const [a, b] = [w.minibatches[0]!, m.minibatches[0]!];
  assert.equal(a.sequences, 2);
  assert.deepEqual([b.sequences, b.tokens, b.advantages], [a.sequences, a.tokens, a.advantages]);
  const close = (x: number, y: number, what: string) => assert.ok(Math.abs(x - y) <= 1e-5 * Math.max(1, Math.abs(x)), `${what}: ${x} vs ${y}`);
  close(b.loss, a.loss, 'loss');
  close(b.grad_norm, a.grad_norm, 'grad norm (the summed micro-batch gradients)');
  close(b.kl, a.kl, 'kl');
  close(b.entropy, a.entropy, 'entropy');
  close(b.logp_mean, a.logp_mean, 'mean log π_θ');
  assert.deepEqual([b.routing_disagreement, b.clip_fraction], [a.routing_disagreement, a.clip_fraction]);
  b.opsm_statistic.forEach((x, i) => close(x, a.opsm_statistic[i]!, `OPSM statistic ${i}`));
});

test('eval: held-out pass@1/pass@k at step 0, every `every` steps and at the end; a resumed run does not repeat one', async () => {
  await runA;
  const out = join(f.root, 'V');
  const ev = { path: f.envDir, every: 2, samples: 2, max_tasks: 1, seed: 3 };
  const evals: RlEvalLog[] = [];
  await rlTrain(parseRlConfig(tinyRlConfig(f, out, { steps: 1, eval: ev })), { onEval: (e) => evals.push(e) });
  // step 0 (the starting policy) and step 1 (the end of this run's steps)
  assert.deepEqual(evals.map((e) => e.step), [0, 1]);
  await rlTrain(parseRlConfig(tinyRlConfig(f, out, { steps: 3, eval: ev })), { onEval: (e) => evals.push(e) });
  const lines = readFileSync(join(out, RL_EVAL_FILE), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RlEvalLog);
  assert.deepEqual(lines.map((e) => e.step), [0, 1, 2, 3]);
  for (const e of lines) {
    assert.deepEqual([e.tasks, e.samples], [1, 2]);
    assert.ok(e.pass_at_1 >= 0 && e.pass_at_1 <= e.pass_at_k && e.pass_at_k <= 1, JSON.stringify(e));
  }
  await assert.rejects(rlTrain(parseRlConfig(tinyRlConfig(f, join(f.root, 'V3'), { steps: 1, eval: { ...ev, first_task: 9999 } }))), /eval\.first_task: 9999 skips every one of the \d+ evaluation tasks/);
  // the same seed at every evaluation: the starting policy evaluated again (run A's step 0) scores the same
  const again: RlEvalLog[] = [];
  await rlTrain(parseRlConfig(tinyRlConfig(f, join(f.root, 'V2'), { steps: 1, eval: ev })), { onEval: (e) => again.push(e) });
  assert.equal(again[0]!.reward, lines[0]!.reward);
  // the evaluation is not part of the run's identity: the run trains as without it (run A, step 1)
  const a1 = weightsOf(join(outA, checkpointName(1)));
  const v1 = weightsOf(join(join(f.root, 'V2'), checkpointName(1)));
  for (const [n, x] of a1) assert.ok(Buffer.from(x.buffer).equals(Buffer.from(v1.get(n)!.buffer)), `${n} differs with an evaluation`);
});

test('rollout_server: rollouts through dsv32 serve over HTTP; the server is given each step\'s policy (in the request body, or through the disk) before sampling', async () => {
  const [a1, a2] = await runA;
  const tok = loadTokenizer(f.modelDir);
  const cfg = DeepseekV32.load(f.modelDir).cfg;
  // the engine the trainer would build in process (rlTrain: numerics f32, absorbed MQA attention)
  const engineOver = (m: DeepseekV32) => new LLMEngine(m, { maxNumSeqs: 2, maxModelLen: 4096, numerics: 'f32', attention: 'mqa' });
  const loaded: string[] = [];
  const server = createServer({
    engine: engineOver(DeepseekV32.load(f.modelDir)), codec: tok, servedModelName: 'policy',
    routeShape: { layers: TINY_CONFIG.num_hidden_layers - TINY_CONFIG.first_k_dense_replace, k: TINY_CONFIG.num_experts_per_tok },
    reloadWeights: async (from) => {
      if ('modelPath' in from) {
        loaded.push(`disk ${from.modelPath}`);
        return engineOver(DeepseekV32.load(from.modelPath));
      }
      loaded.push('tensor');
      return engineOver(DeepseekV32.fromSource(cfg, Checkpoint.fromBytes(from.safetensors, 'the request body')));
    },
  });
  const url = await server.listen(0, '127.0.0.1');
  try {
    const rs = { base_url: `${url}/v1`, model: 'policy', max_retries: 0 };
    const logs = await run(join(f.root, 'H'), { steps: 2, rollout_server: rs });
    // before step 1 and before step 2, in request bodies (the default)
    assert.deepEqual(loaded, ['tensor', 'tensor']);
    // the same seeds over HTTP: step 1 samples what the in-process engine sampled (run A)
    assert.deepEqual([logs[0]!.trained_tokens, logs[0]!.minibatches.map((m) => m.advantages)], [a1!.trained_tokens, a1!.minibatches.map((m) => m.advantages)]);
    // step 2 was sampled from the updated policy: its first minibatch is on-policy (run A's too)
    for (const s of [logs[0]!, logs[1]!]) assert.ok(s.minibatches[0]!.ratio_max_abs_dev < 1e-4, `step ${s.step} first minibatch |r − 1| = ${s.minibatches[0]!.ratio_max_abs_dev}; mismatch ${s.logprob_mismatch}; A: ${a1!.minibatches[0]!.ratio_max_abs_dev} ${a2!.minibatches[0]!.ratio_max_abs_dev}`);
    assert.equal(logs[1]!.trained_tokens, a2!.trained_tokens);
    // through the file system: the server reads <out>/rollout-weights, and samples the same step 1
    const [d1] = await run(join(f.root, 'HD'), { steps: 1, rollout_server: { ...rs, weight_transfer: 'disk' } });
    assert.deepEqual(loaded.slice(2), [`disk ${resolve(join(f.root, 'HD', 'rollout-weights'))}`]);
    assert.deepEqual([d1!.trained_tokens, d1!.minibatches.map((m) => m.advantages)], [a1!.trained_tokens, a1!.minibatches.map((m) => m.advantages)]);
  } finally {
    await server.drain();
  }
  // a server that does not take weight updates: one error saying how to start it
  const closed = createServer({ engine: engineOver(DeepseekV32.load(f.modelDir)), codec: tok, servedModelName: 'policy' });
  const url2 = await closed.listen(0, '127.0.0.1');
  try {
    await assert.rejects(run(join(f.root, 'H2'), { steps: 1, rollout_server: { base_url: `${url2}/v1`, model: 'policy', max_retries: 0 } }), /rollout_server: .*update_weights_from_tensor did not load the policy of step 0 .*--enable-weight-updates/);
  } finally {
    await closed.drain();
  }
});

test('switches off: routes recomputed, π_θ over the full vocabulary, no KL term', async () => {
  const [a1] = await runA;
  const [d1] = await run(join(f.root, 'D'), { steps: 1, use_rollout_routing_replay: false, use_sampling_mask: false, use_kl_loss: false });
  assert.ok(a1 && d1);
  // the same first rollout (same weights, same seed)
  assert.equal(d1.trained_tokens, a1.trained_tokens);
  assert.deepEqual(d1.minibatches.map((m) => m.advantages), a1.minibatches.map((m) => m.advantages));
  for (const [i, m] of d1.minibatches.entries()) {
    // Keep Routing off: the training forward's routes ARE the free router's
    assert.equal(m.routing_disagreement, m.router_drift);
    // no KL term
    assert.equal(m.kl, 0);
    // Keep Sampling Mask off: log π_θ over the full vocabulary is below the kept-set renormalised one
    // (top-8 of 640 kept: the kept mass is far from 1)
    assert.ok(m.logp_mean < a1.minibatches[i]!.logp_mean - 0.1, `full ${m.logp_mean} vs masked ${a1.minibatches[i]!.logp_mean}`);
  }
  assert.ok(d1.minibatches[0]!.ratio_max_abs_dev < 1e-4, 'full-vocabulary π_old and π_θ agree on-policy too');
  assert.ok(d1.minibatches[1]!.routing_disagreement > 0, 'without Keep Routing the updated router picks other experts');
});
