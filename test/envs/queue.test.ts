// Scale-out against a real Redis (Debian's redis-server on a random loopback port): evaluation jobs go
// to a BullMQ queue served by two `dsv32 worker` child processes. The worker running one job is
// SIGKILLed while its model call is in flight; BullMQ's stalled-job check (short lock) must hand the
// job to the other worker, and the results table must hold every job exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BullRunner } from '../../src/envs/queue/bull.js';
import { parseRedisUrl } from '../../src/envs/queue/redis-url.js';
import { registerAllJobHandlers } from '../../src/envs/queue/handlers.js';
import { runEval } from '../../src/envs/eval/run.js';
import { EvalStore } from '../../src/envs/eval/store.js';
import { startFakeModelServer } from '../agent/fake-model-server.js';
import { counterFiles, writeEnv } from './counter-env.js';
import { counterPolicy } from './eval-llm-double.js';
import { startRedis, waitForLine } from './redis-helpers.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('redis URL parsing names the argument on bad input', () => {
  assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6390/2'), { host: '127.0.0.1', port: 6390, db: 2, maxRetriesPerRequest: null });
  assert.throws(() => parseRedisUrl('http://x:1'), /--queue: .* must start with redis:\/\//);
  assert.throws(() => parseRedisUrl('redis://x:1/abc'), /must be a non-negative integer/);
});

test('BullMQ: a worker SIGKILLed mid-job loses and duplicates nothing', { timeout: 120_000 }, async (t) => {
  const { url, procs } = await startRedis(t);
  const root = mkdtempSync(join(tmpdir(), 'dsv32-queue-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));

  // Every model call of the add-js task made before the kill hangs until the kill, so whichever add-js
  // attempt the victim worker runs is mid-job when it dies (both attempts may be in flight, on either
  // worker); the survivors are released right after the kill.
  let armed = true;
  let hung!: () => void;
  const reachedHang = new Promise<void>((r) => (hung = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const policy = counterPolicy(() => true);
  const server = await startFakeModelServer(async (req) => {
    const reply = policy(req);
    const prompt = (req.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'user')!.content;
    if (armed && prompt.startsWith('Add 10')) {
      hung();
      await released;
    }
    return reply;
  });
  t.after(() => release()); // a failed assertion must not leave requests waiting
  t.after(() => server.close());

  const queueName = `test-${process.pid}-${Date.now()}`;
  const workers = [0, 1].map(() => {
    const w = spawn(process.execPath, [MAIN, 'worker', '--queue', url, '--queue-name', queueName, '--concurrency', '2', '--lock-ms', '1000', '--stalled-interval-ms', '300'], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(w);
    return w;
  });
  await Promise.all(workers.map((w, i) => waitForLine(w, 'stderr', /worker_ready/, `worker ${i}`)));

  const envDir = writeEnv(counterFiles());
  t.after(() => rmSync(envDir, { recursive: true, force: true }));
  const dbPath = join(root, 'eval.sqlite');
  registerAllJobHandlers();
  const runner = new BullRunner(url, { queueName });
  const evalDone = runEval({ envsDir: envDir, model: { baseUrl: server.url, model: 'policy' }, k: 2, dbPath, runner, runId: 'q', maxSteps: 4 });

  await reachedHang;
  const store = new EvalStore(dbPath);
  t.after(() => store.close());
  const victim = store.starts('q').find((s) => s.taskId === 'add-js')!;
  const worker = workers.find((w) => w.pid === victim.pid);
  assert.ok(worker, `the job runs in a worker child (pid ${victim.pid})`);
  worker.kill('SIGKILL');
  armed = false;
  release();

  const t0 = Date.now();
  const report = await evalDone;
  const recoveryMs = Date.now() - t0;
  await runner.close();

  assert.deepEqual(report.failedJobs, []);
  const rows = store.rows('q');
  assert.equal(rows.length, 6, '3 tasks x 2 attempts, each exactly once');
  assert.equal(new Set(rows.map((r) => `${r.taskId}/${r.attempt}`)).size, 6);
  assert.ok(rows.every((r) => r.score === 1), JSON.stringify(rows.map((r) => [r.taskId, r.score, r.reason])));
  const starts = store.starts('q').filter((s) => s.taskId === victim.taskId && s.attempt === victim.attempt);
  assert.equal(starts.length, 2, 'the killed job was run again');
  assert.notEqual(starts[1]!.pid, victim.pid);
  assert.equal(report.families[0]!.passAt1, 1);
  assert.ok(recoveryMs < 30_000, `recovered in ${recoveryMs} ms`);
});
