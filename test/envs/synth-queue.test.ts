// `dsv32 synth --queue` end to end: the environment job goes to a BullMQ queue on a real Redis and is
// run by a `dsv32 worker` child process (sharing the output directory and the SQLite state, as workers on
// one machine or a shared filesystem do); the synthesis model is the scripted double of synth.test.ts.
// The outcome must be the local run's: the same kept tasks, a published environment that validates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEnvironment } from '../../src/envs/load.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { SynthStore } from '../../src/envs/synth/store.js';
import { startFakeModelServer } from '../agent/fake-model-server.js';
import { inventoryDouble, type DoubleState } from './synth-llm-double.js';
import { redisUnavailable, startRedis, waitForLine } from './redis-helpers.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function exited(c: ChildProcess): Promise<number | null> {
  return new Promise((r) => (c.exitCode !== null || c.signalCode ? r(c.exitCode) : c.once('exit', (code) => r(code))));
}

test('synth --queue: the environment job runs in a dsv32 worker over Redis, with the local run\'s outcome', { timeout: 180_000, skip: redisUnavailable() ?? false }, async (t) => {
  const { url, procs } = await startRedis(t);
  const state: DoubleState = { counts: new Map() };
  const server = await startFakeModelServer(inventoryDouble(state));
  const out = mkdtempSync(join(tmpdir(), 'dsv32-synth-queue-'));
  t.after(async () => {
    await server.close();
    rmSync(out, { recursive: true, force: true });
  });
  const env = { ...process.env, DSV32_API_KEY: '' };
  const queueName = `synth-${process.pid}-${Date.now()}`;

  const worker = spawn(process.execPath, [MAIN, 'worker', '--queue', url, '--queue-name', queueName], { stdio: ['ignore', 'pipe', 'pipe'], env });
  procs.push(worker);
  await waitForLine(worker, 'stderr', /worker_ready/, 'worker');

  const synth = spawn(process.execPath, [MAIN, 'synth', '--category', 'inventory', '--base-url', server.url, '--model', 'synth-double', '--policy-model', 'policy-double',
    '--out', out, '--k', '2', '--levels', '3', '--max-steps', '6', '--policy-max-steps', '4', '--queue', url, '--queue-name', queueName], { stdio: ['ignore', 'pipe', 'pipe'], env });
  procs.push(synth);
  let stdout = '';
  let stderr = '';
  synth.stdout!.on('data', (d) => (stdout += d));
  synth.stderr!.on('data', (d) => (stderr += d));
  assert.equal(await exited(synth), 0, stderr);
  assert.match(stdout, /inventory-0: 2\/3 tasks kept/);

  // the work happened in the worker: every step event was logged by its process
  const log = readFileSync(join(out, 'synth.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; pid: number; key?: string });
  const steps = log.filter((e) => e.event === 'step_done');
  assert.ok(steps.length >= 4, `build and three task stages done: ${JSON.stringify(steps.map((e) => e.key))}`);
  assert.ok(steps.every((e) => e.pid === worker.pid), `step events from the worker (pid ${worker.pid}), got pids ${[...new Set(steps.map((e) => e.pid))].join(', ')}`);
  assert.ok(log.some((e) => e.event === 'run_start' && e.pid === synth.pid), 'the run itself was driven by the synth process');

  const store = new SynthStore(join(out, 'synth.sqlite'));
  t.after(() => store.close());
  const tasks = Object.fromEntries(store.tasks().map((x) => [x.taskId, x.status]));
  assert.deepEqual(tasks, { t1: 'kept', t2: 'kept', t3: 'dropped' });
  const pub = loadEnvironment(join(out, 'envs/inventory-0'));
  assert.deepEqual(pub.tasks.map((x) => x.id), ['t1', 't2']);
  const report = await validateEnvironment(pub);
  assert.ok(report.ok, JSON.stringify(report.tasks.map((x) => [x.taskId, x.ok])));
});
