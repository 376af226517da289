// Commands fail fast and say why when what they depend on is down: a model server that accepts and
// never answers ends eval/synth attempts after --request-timeout; a closed or silent Redis port makes
// `synth --queue`, `eval --queue` and `worker` exit 2 at once with one line; a worker (or submitter) that
// loses Redis reports it once, reconnects within its window, or gives up with a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BullRunner } from '../../src/envs/queue/bull.js';
import { QueueConnectionLostError, QueueUnreachableError } from '../../src/envs/queue/errors.js';
import { startSilentServer } from '../agent/fake-model-server.js';
import { counterFiles, writeEnv } from './counter-env.js';
import { freePort, redisUnavailable, startRedis, waitForLine } from './redis-helpers.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs dsv32; a run past `limitMs` is killed and fails the test (the old code hung for minutes). */
function dsv32(args: string[], limitMs = 30_000, onSpawn?: (p: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DSV32_API_KEY: '' } });
    onSpawn?.(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`dsv32 ${args[0]} still running after ${limitMs} ms; stderr:\n${stderr.slice(-2000)}`));
    }, limitMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-failfast-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const noStack = /\n\s+at /;

test('eval and synth against a model server that never answers: attempts fail after --request-timeout', { timeout: 90_000 }, async (t) => {
  const silent = await startSilentServer();
  t.after(() => silent.close());
  const dir = scratch(t);
  const envDir = writeEnv(counterFiles());
  t.after(() => rmSync(envDir, { recursive: true, force: true }));
  const timeout = ['--request-timeout', '300', '--max-retries', '1'];
  const url = `${silent.url}/chat/completions`.replace(/[./]/g, '\\$&');

  const ev = await dsv32(['eval', '--envs', envDir, '--base-url', silent.url, '--model', 'm', '-k', '1', '--tasks-per-env', '1', '--jobs', '1', '--db', join(dir, 'eval.sqlite'), ...timeout]);
  assert.equal(ev.code, 1, ev.stderr);
  assert.match(ev.stderr, new RegExp(`FAILED .*POST ${url}: no response within 300 ms \\(2 attempts\\)`));
  assert.match(ev.stderr, /\[eval\] 1 attempts failed \(endpoint errors\)/);
  assert.doesNotMatch(ev.stderr, noStack);
  assert.ok(ev.ms < 20_000, `eval took ${ev.ms} ms`);

  const sy = await dsv32(['synth', '--category', 'inventory', '--base-url', silent.url, '--model', 'm', '--out', join(dir, 'synth'), ...timeout]);
  assert.equal(sy.code, 1, sy.stderr);
  assert.match(sy.stdout, new RegExp(`FAILED .*POST ${url}: no response within 300 ms \\(2 attempts\\)`));
  assert.ok(sy.ms < 20_000, `synth took ${sy.ms} ms`);

  const bad = await dsv32(['eval', '--envs', envDir, '--base-url', silent.url, '--model', 'm', '--request-timeout', '-5']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--request-timeout must be an integer from 1 to 2147483647, got "-5"/);
});

test('synth --queue, eval --queue and worker exit 2 at once when nothing listens on the Redis port', { timeout: 90_000 }, async (t) => {
  const port = await freePort();
  const queue = `redis://127.0.0.1:${port}`;
  const dir = scratch(t);
  const runs: Record<string, Run> = {
    synth: await dsv32(['synth', '--category', 'inventory', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--out', join(dir, 'synth'), '--queue', queue]),
    eval: await dsv32(['eval', '--envs', dir, '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--queue', queue]),
    worker: await dsv32(['worker', '--queue', queue]),
  };
  for (const [cmd, r] of Object.entries(runs)) {
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
    assert.equal(r.stderr, `dsv32: cannot reach Redis at ${queue}: connect ECONNREFUSED 127.0.0.1:${port}\n`, cmd);
    assert.ok(r.ms < 15_000, `${cmd} took ${r.ms} ms`);
  }
});

test('a port that accepts but never speaks Redis: the worker gives up after the connection check', { timeout: 60_000 }, async (t) => {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => sockets.add(s.on('error', () => {})));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  const queue = `redis://127.0.0.1:${(srv.address() as { port: number }).port}`;
  const r = await dsv32(['worker', '--queue', queue]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `dsv32: cannot reach Redis at ${queue}: no answer within 5000 ms\n`);
  assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
});

const noRedis = redisUnavailable() ?? false;

test('a worker that loses Redis says so once and exits 2 when its reconnect window runs out', { timeout: 60_000, skip: noRedis }, async (t) => {
  const { url, procs } = await startRedis(t);
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const run = dsv32(['worker', '--queue', url, '--reconnect-window-ms', '2000'], 30_000, (p) => {
    procs.push(p);
    void waitForLine(p, 'stderr', /worker_ready/, 'worker').then(ready, () => {});
  });
  await isReady;
  procs[0]!.kill('SIGKILL');
  const r = await run;
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.filter((l) => l.includes('"redis_disconnected"')).length, 1, r.stderr);
  assert.ok(lines.length <= 5, `no flood of reconnect errors:\n${r.stderr}`);
  assert.match(lines.at(-1)!, new RegExp(`^dsv32: lost the connection to Redis at ${url.replace(/[./]/g, '\\$&')} and could not reconnect within 2000 ms \\(last error: connect ECONNREFUSED`));
  assert.doesNotMatch(r.stderr, noStack);
});

test('a worker whose Redis comes back within the window reconnects and says so once', { timeout: 60_000, skip: noRedis }, async (t) => {
  const { url, procs } = await startRedis(t);
  const port = Number(new URL(url).port);
  let stderr = '';
  const w = spawn(process.execPath, [MAIN, 'worker', '--queue', url, '--reconnect-window-ms', '30000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(w);
  w.stderr.on('data', (d) => (stderr += d));
  await waitForLine(w, 'stderr', /worker_ready/, 'worker');
  procs[0]!.kill('SIGKILL');
  await waitForLine(w, 'stderr', /redis_disconnected/, 'worker');
  await new Promise((r) => setTimeout(r, 1500)); // several reconnect attempts fail meanwhile
  const again = await startRedis(t, port);
  procs.push(...again.procs);
  await waitForLine(w, 'stderr', /redis_reconnected/, 'worker');
  w.kill('SIGTERM');
  const code = await new Promise((r) => w.once('exit', r));
  assert.equal(code, 0, stderr);
  const events = stderr.trimEnd().split('\n').map((l) => (JSON.parse(l) as { event: string }).event);
  assert.deepEqual(events, ['worker_ready', 'redis_disconnected', 'redis_reconnected', 'worker_stopped']);
});

test('a submitter that loses Redis while waiting for its jobs fails with QueueConnectionLostError', { timeout: 60_000, skip: noRedis }, async (t) => {
  const { url, procs } = await startRedis(t);
  const events: Record<string, unknown>[] = [];
  const runner = await BullRunner.connect(url, { queueName: `lost-${process.pid}`, reconnectWindowMs: 1500, log: (e) => events.push(e) });
  // No worker serves the queue: runAll waits until Redis is killed, then for the window.
  const waiting = runner.runAll([{ id: 'nobody-runs-this', kind: 'eval-attempt', data: {} }]);
  await new Promise((r) => setTimeout(r, 500));
  procs[0]!.kill('SIGKILL');
  const t0 = Date.now();
  await assert.rejects(waiting, (e: unknown) => e instanceof QueueConnectionLostError && /could not reconnect within 1500 ms/.test(e.message));
  assert.ok(Date.now() - t0 < 15_000);
  assert.equal(events.filter((e) => e.event === 'redis_disconnected').length, 1, JSON.stringify(events));
  const c0 = Date.now();
  await runner.close();
  assert.ok(Date.now() - c0 < 5000, 'closing after the loss does not wait for Redis');
  await assert.rejects(BullRunner.connect(url, { probeTimeoutMs: 1000 }), QueueUnreachableError);
});
