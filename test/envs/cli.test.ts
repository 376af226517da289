// The `dsv32 sandbox` and `dsv32 env` commands, run as a user would run them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { counterFiles, writeEnv } from './counter-env.js';

const cli = resolve(import.meta.dirname, '../../src/cli/main.js');

function dsv32(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
}

test('sandbox exec prints the structured result as JSON', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    const file = join(dir, 'loop.py');
    writeFileSync(file, "print('start', flush=True)\nwhile True: pass\n");
    const r = dsv32(['sandbox', 'exec', '--lang', 'python', '--timeout-ms', '700', file]);
    assert.equal(r.status, 4, r.stderr); // timed out
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(out).sort(), ['durationMs', 'exitCode', 'memoryExceeded', 'outputTruncated', 'stderr', 'stdout', 'timedOut']);
    assert.equal(out.stdout, 'start\n');
    assert.equal(out.timedOut, true);

    const bad = dsv32(['sandbox', 'exec', '--lang', 'python', '--memory-mb', 'lots', file]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--memory-mb must be a positive integer, got "lots"/);

    const missing = dsv32(['sandbox', 'exec', '--lang', 'python', file], { DSV32_BWRAP: '/nonexistent/bwrap' });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^dsv32: bubblewrap \(bwrap\) is not installed \(looked for \/nonexistent\/bwrap\); install the Debian package `bubblewrap`/);
    assert.doesNotMatch(missing.stderr, /at .*\.js:\d+/, 'no stack trace');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('env validate, info and the broken-environment message', () => {
  const good = writeEnv(counterFiles());
  const broken = writeEnv({ ...counterFiles(), 'tools/get_counter.py': null });
  try {
    const v = dsv32(['env', 'validate', good, '--jobs', '2']);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /^ok {3}add-py: reference score 1; perturbations rejected \d\/\d; determinism ok; 4 tool calls/m);
    assert.match(v.stdout, /counter-test: 3\/3 tasks valid, 3\/3 tool examples deterministic/);
    const info = dsv32(['env', 'info', good]);
    assert.match(info.stdout, /tools \(3\):\n {2}add_to_counter: Adds delta/);
    const b = dsv32(['env', 'validate', broken]);
    assert.equal(b.status, 2);
    assert.match(b.stderr, /^dsv32: environment .* is invalid:\n {2}tools\/get_counter.schema.json: no code file tools\/get_counter.py\|.js/);
    const fam = dsv32(['env', 'generate', 'nosuch', '--out', join(good, 'x')]);
    assert.equal(fam.status, 2);
    assert.match(fam.stderr, /unknown environment family "nosuch"; known: .*trip/);
  } finally {
    rmSync(good, { recursive: true, force: true });
    rmSync(broken, { recursive: true, force: true });
  }
});

test('env validate on a terminal shows a progress bar and still prints every task line and the summary', (t) => {
  // util-linux `script` gives the command a pseudo-terminal, as an interactive shell would
  const probe = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return t.skip('util-linux `script` is not available to provide a terminal');
  const good = writeEnv(counterFiles());
  try {
    const cmd = [process.execPath, cli, 'env', 'validate', good, '--jobs', '1'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /validate \[[^\]]*\] \d\/3/, 'the bar is drawn with its counts');
    assert.equal((r.stdout.match(/ok {3}\S+: reference score 1/g) ?? []).length, 3, 'every task line still appears (above the bar)');
    assert.match(r.stdout, /counter-test: 3\/3 tasks valid/);
  } finally {
    rmSync(good, { recursive: true, force: true });
  }
});
