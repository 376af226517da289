// The launcher with tiny Node children in place of the dsv32 CLI (fast), and once through the real CLI:
// every rank's environment (NCCL_NVLS_ENABLE=0 even when the caller set 1), the unique id passing from
// rank 0 to rank 1 through the id file, rank-prefixed output, a failing rank stopping the others with the
// rank and its code reported, and SIGTERM reaching every rank.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { launch, LaunchArgumentError } from '../../src/dist/launcher.js';

const REPO = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'dsv32-launch-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, body: string): string[] {
  const p = join(dir, name);
  writeFileSync(p, body);
  return [process.execPath, p];
}
function sink(): { stream: PassThrough; lines: () => string[] } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
  return { stream, lines: () => text.split('\n').filter(Boolean) };
}

const rendezvous = JSON.stringify(join(REPO, 'dist/src/dist/rendezvous.js'));

test('two ranks: each sees its place, NVLS off, and rank 1 receives the id rank 0 published', async () => {
  const child = script('env.mjs', `
    import { distEnv, publishUniqueId, waitForUniqueId } from ${rendezvous};
    const d = distEnv();
    let id;
    if (d.rank === 0) { id = new Uint8Array(128).map((_, i) => (i * 3 + process.pid) & 255); publishUniqueId(d.idFile, id); }
    else id = await waitForUniqueId(d.idFile, { timeoutMs: 10000, pollMs: 5 });
    console.log(JSON.stringify({ ...d, nvls: process.env.NCCL_NVLS_ENABLE, arg: process.argv[2], id: Buffer.from(id).toString('hex') }));
    console.error('to stderr');
  `);
  const out = sink();
  const err = sink();
  const r = await launch({ gpus: 2, program: child, args: ['hello'], env: { NCCL_NVLS_ENABLE: '1' }, stdout: out.stream, stderr: err.stream });
  assert.deepEqual(r, { exitCode: 0, failed: null, message: null });
  const seen = out.lines().map((l) => {
    const m = /^\[rank (\d)\] (\{.*\})$/.exec(l);
    assert.ok(m, `unprefixed line: ${l}`);
    const j = JSON.parse(m[2]!);
    assert.equal(j.rank, Number(m[1]), 'the prefix names the rank that printed');
    return j;
  }).sort((a, b) => a.rank - b.rank);
  assert.equal(seen.length, 2);
  for (const [rank, j] of seen.entries()) {
    assert.deepEqual({ rank: j.rank, worldSize: j.worldSize, device: j.device, nvls: j.nvls, arg: j.arg }, { rank, worldSize: 2, device: rank, nvls: '0', arg: 'hello' });
  }
  assert.equal(seen[0].idFile, seen[1].idFile);
  assert.equal(seen[0].id, seen[1].id);
  assert.equal(existsSync(seen[0].idFile), false, "the launcher's temporary id folder is removed");
  assert.deepEqual(err.lines().sort(), ['[rank 0] to stderr', '[rank 1] to stderr']);
});

test('a failing rank stops the others; the result names the rank and its exit code', async () => {
  const child = script('fail.mjs', `
    if (process.env.DSV32_RANK === '1') { setTimeout(() => process.exit(3), 50); }
    else {
      process.on('SIGTERM', () => { console.log('stopped by SIGTERM'); process.exit(143); });
      console.log('waiting'); setInterval(() => {}, 1000);
    }
  `);
  const out = sink();
  const t0 = Date.now();
  const r = await launch({ gpus: 2, program: child, args: ['run'], stdout: out.stream, stderr: sink().stream });
  assert.ok(Date.now() - t0 < 8000, 'rank 0 did not wait for its grace period');
  assert.equal(r.exitCode, 3);
  assert.deepEqual(r.failed, { rank: 1, code: 3, signal: null });
  assert.equal(r.message, 'rank 1 exited with code 3; the other ranks were stopped');
  assert.ok(out.lines().includes('[rank 0] stopped by SIGTERM'), out.lines().join('\n'));
});

test('a rank that ignores SIGTERM is killed after the grace period', async () => {
  const child = script('stubborn.mjs', `
    if (process.env.DSV32_RANK === '1') process.exit(5);
    process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);
  `);
  const r = await launch({ gpus: 2, program: child, args: ['run'], stdout: sink().stream, stderr: sink().stream, graceMs: 200 });
  assert.deepEqual(r.failed, { rank: 1, code: 5, signal: null });
  assert.equal(r.exitCode, 5);
});

test('SIGTERM to the launcher is passed on to every rank', async () => {
  const child = script('wait.mjs', `
    process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
    console.log('ready'); setInterval(() => {}, 1000);
  `);
  const out = sink();
  let ready = 0;
  out.stream.on('data', (d: Buffer) => {
    ready += (d.toString().match(/ready/g) ?? []).length;
    if (ready === 2) {
      ready++;
      process.kill(process.pid, 'SIGTERM');
    }
  });
  const r = await launch({ gpus: 2, program: child, args: ['run'], stdout: out.stream, stderr: sink().stream });
  assert.deepEqual(r, { exitCode: 143, failed: null, message: 'interrupted by SIGTERM; passed on to every rank' });
  assert.deepEqual(out.lines().filter((l) => l.endsWith('got SIGTERM')).sort(), ['[rank 0] got SIGTERM', '[rank 1] got SIGTERM']);
  assert.equal(process.listenerCount('SIGTERM'), 0, 'the launcher removed its handlers');
});

test('argument errors name what was wrong', async () => {
  await assert.rejects(launch({ gpus: 0, program: ['x'], args: ['y'] }), (e: unknown) => e instanceof LaunchArgumentError && /--gpus must be a positive integer, got 0/.test(e.message));
  await assert.rejects(launch({ gpus: 1, program: ['x'], args: [] }), /no command to launch: give it after --/);
  await assert.rejects(launch({ gpus: 1, program: ['x'], args: ['launch'] }), /cannot launch itself/);
});

test('CLI: dsv32 launch --gpus 2 -- --version runs the dsv32 CLI once per rank; a failing command exits non-zero naming the rank', () => {
  const main = join(REPO, 'dist/src/cli/main.js');
  const ok = spawnSync(process.execPath, [main, 'launch', '--gpus', '2', '--master-file', join(dir, 'id'), '--', '--version'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(ok.stdout.split('\n').filter(Boolean).sort(), ['[rank 0] 0.1.0', '[rank 1] 0.1.0']);
  const bad = spawnSync(process.execPath, [main, 'launch', '--gpus', '1', '--', 'no-such-command'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /\[rank 0\] error: unknown command 'no-such-command'/);
  assert.match(bad.stderr, /dsv32 launch: rank 0 exited with code 1; the other ranks were stopped\n$/);
});
