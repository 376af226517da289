// The sandbox leaks nothing of the host: no environment variable of the process that started it, and
// no more host RAM through its writable memory-backed mounts than its memory limit. Plus the limits
// that used to misbehave (a timeout past Node's timer range) and the exit status of `sandbox exec`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runFileSandboxed, runSandboxed, tmpfsBytes, type SandboxLang } from '../../src/envs/sandbox.js';
import { SandboxSpecError } from '../../src/envs/errors.js';

const cli = resolve(import.meta.dirname, '../../src/cli/main.js');

async function run(lang: SandboxLang, code: string, limits: Record<string, number> = {}, stdin?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-leak-'));
  const file = join(dir, lang === 'python' ? 'p.py' : 'p.js');
  writeFileSync(file, code);
  try {
    return await runFileSandboxed(lang, file, { limits: { timeoutMs: 8000, ...limits }, stdin });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Each program gets the canary on stdin (never in its source, argv or files, so finding it anywhere
// means it came from the host environment) and prints `LEAK <where>` for every place it is found,
// then `read N`: how many /proc/<pid>/environ files it could read (so an empty search means something).
const FIND_CANARY: Record<SandboxLang, string> = {
  python: `import os, sys
canary = sys.stdin.read().encode()
seen = 0
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()) + ['self', 'thread-self']:
    for f in ['environ', 'cmdline']:
        try:
            data = open(f'/proc/{pid}/{f}', 'rb').read()
        except OSError:
            continue
        seen += f == 'environ'
        if canary in data: print('LEAK', f'/proc/{pid}/{f}')
for k, v in os.environ.items():
    if canary in f'{k}={v}'.encode(): print('LEAK os.environ', k)
for top in ['/tmp', '/work', '/dev', '/dev/shm']:
    for root, _, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                # regular files only: reading a device such as /dev/pts/ptmx would block
                if os.path.isfile(path) and canary in open(path, 'rb').read(1 << 20): print('LEAK', path)
            except OSError:
                pass
print('read', seen)`,
  node: `const fs = require('fs');
const canary = fs.readFileSync(0, 'utf8');
let seen = 0;
const pids = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).concat(['self', 'thread-self']);
for (const pid of pids) for (const f of ['environ', 'cmdline']) {
  let data;
  try { data = fs.readFileSync('/proc/' + pid + '/' + f, 'latin1'); } catch { continue; }
  if (f === 'environ') seen++;
  if (data.includes(canary)) console.log('LEAK /proc/' + pid + '/' + f);
}
for (const [k, v] of Object.entries(process.env)) if ((k + '=' + v).includes(canary)) console.log('LEAK process.env', k);
console.log('read', seen);`,
};

for (const lang of ['python', 'node'] as const) {
  test(`the host environment is not readable inside the sandbox (${lang})`, async () => {
    const canary = `sk-canary-${process.pid}-${Date.now()}`;
    const before = process.env.DSV32_API_KEY;
    process.env.DSV32_API_KEY = canary;
    try {
      const r = await run(lang, FIND_CANARY[lang], {}, canary);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /LEAK/);
      // at least the sandbox's pid 1 (bwrap's init) and the program itself
      assert.ok(Number(/^read (\d+)$/m.exec(r.stdout)?.[1]) >= 2, r.stdout);
    } finally {
      if (before === undefined) delete process.env.DSV32_API_KEY;
      else process.env.DSV32_API_KEY = before;
    }
  });
}

test('the writable memory-backed mounts together hold at most the memory limit', async () => {
  const memoryMb = 128;
  // Fills each directory with 4 MiB files until the kernel refuses, stopping at 2 x memoryMb per
  // directory so that an unfixed sandbox costs the test host a bounded amount of RAM.
  const r = await run(
    'python',
    `import os
chunk = b'x' * (4 << 20)
stop = 2 * ${memoryMb} << 20
total = 0
for d in ['/dev', '/dev/shm', '/tmp', '/work']:
    n = 0
    while n < stop:
        try:
            with open(f'{d}/fill{n >> 22}', 'wb') as f:
                n += f.write(chunk)
        except OSError as e:
            # a partly written file still holds its pages
            try: n += os.stat(f'{d}/fill{n >> 22}').st_size
            except OSError: pass
            break
    total += n
    print(d, n >> 20)
print('total', total)
with open('/dev/null', 'wb') as f: f.write(b'still usable')
print('devnull ok')`,
    { memoryMb, timeoutMs: 20_000 },
  );
  assert.equal(r.exitCode, 0, r.stderr);
  const total = Number(/^total (\d+)$/m.exec(r.stdout)?.[1]);
  assert.ok(total > 0, r.stdout);
  assert.ok(total <= memoryMb * 1024 * 1024, `wrote ${total >> 20} MiB into memory-backed mounts:\n${r.stdout}`);
  assert.match(r.stdout, /^\/dev 0$/m); // /dev itself takes no files
  assert.match(r.stdout, /^devnull ok$/m);
  for (const d of ['/dev/shm', '/tmp', '/work']) assert.doesNotMatch(r.stdout, new RegExp(`^${d} 0$`, 'm'), `${d} is still writable`);
});

test('memfds and SysV shared memory, which no mount or rlimit caps, are refused', async () => {
  const memoryMb = 64;
  // Unfixed, this wrote 512 MiB of host memory (64 memfds × 8 MiB) under a 64 MiB limit; it stops there.
  const r = await run(
    'python',
    `import ctypes, os
total = 0
try:
    for i in range(64):
        fd = os.memfd_create(f'm{i}')
        total += os.write(fd, b'x' * (8 << 20))
    print('memfd wrote', total >> 20)
except OSError as e:
    print('memfd refused', e.errno, 'after', total >> 20)
libc = ctypes.CDLL(None, use_errno=True)
print('shmget', libc.shmget(0, 64 << 20, 0o1600), ctypes.get_errno())`,
    { memoryMb, timeoutMs: 20_000 },
  );
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^memfd refused 1 after 0$/m, r.stdout);
  assert.match(r.stdout, /^shmget -1 1$/m, r.stdout);
});

test('the tmpfs size share is never 0 (tmpfs would read that as unlimited) and sums within memoryMb', () => {
  for (const memoryMb of [1, 2, 100, 128, 512]) {
    const each = tmpfsBytes({ memoryMb, workDirMb: 64 });
    assert.ok(each > 0 && 3 * each <= memoryMb * 1024 * 1024, `${memoryMb} MB: ${each} bytes each`);
  }
  assert.equal(tmpfsBytes({ memoryMb: 512, workDirMb: 64 }), 64 * 1024 * 1024);
});

test("a timeout past Node's timer range is rejected, not turned into an instant kill", async () => {
  await assert.rejects(
    runSandboxed({ lang: 'python', program: '/usr/bin/true', limits: { timeoutMs: 99_999_999_999 } }),
    (e: unknown) => e instanceof SandboxSpecError && /timeoutMs must be at most 2147483647/.test(e.message),
  );
  const r = spawnSync(process.execPath, [cli, 'sandbox', 'exec', '--lang', 'python', '--timeout-ms', '99999999999', cli], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /--timeout-ms must be an integer from 1 to 2147483647, got "99999999999"/);
  assert.equal(r.stdout, '');
});

test('sandbox exec tells success from each kind of failure by its exit status', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-exit-'));
  const exec = (code: string, ...opts: string[]) => {
    const file = join(dir, 'p.py');
    writeFileSync(file, code);
    const r = spawnSync(process.execPath, [cli, 'sandbox', 'exec', '--lang', 'python', ...opts, file], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, result: JSON.parse(r.stdout) as Record<string, unknown>, stderr: r.stderr };
  };
  try {
    const ok = exec("print('hi')");
    assert.equal(ok.status, 0, ok.stderr);
    const failed = exec('import sys; sys.exit(7)');
    assert.equal(failed.result.exitCode, 7);
    assert.equal(failed.status, 3);
    const timedOut = exec('while True: pass', '--timeout-ms', '500');
    assert.equal(timedOut.result.timedOut, true);
    assert.equal(timedOut.status, 4);
    const memory = exec('x = bytearray(1 << 30)', '--memory-mb', '64');
    assert.equal(memory.result.memoryExceeded, true);
    assert.equal(memory.status, 5);
    const truncated = exec("print('x' * 100000)", '--max-output-bytes', '1000');
    assert.equal(truncated.result.outputTruncated, true);
    assert.equal(truncated.status, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
