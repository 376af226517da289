// Denial/containment tests for the bubblewrap sandbox. Each case runs a hostile program and asserts
// the structured result; every run has a timeout of a few seconds so a regression cannot hang CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runSandboxed, runFileSandboxed, type SandboxLang } from '../../src/envs/sandbox.js';
import { StagingDir } from '../../src/envs/staging.js';

const repoRoot = resolve(import.meta.dirname, '../../..');

async function run(lang: SandboxLang, code: string, limits: Record<string, number> = {}, stdin?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-test-'));
  const file = join(dir, lang === 'python' ? 'p.py' : 'p.js');
  writeFileSync(file, code);
  try {
    return await runFileSandboxed(lang, file, { limits: { timeoutMs: 5000, ...limits }, stdin });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Host processes whose command line carries `token` (forked children inherit it). */
function processesWith(token: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(token)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

test('python and node programs run and see their stdin', async () => {
  const py = await run('python', 'import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)', {}, 'abc');
  assert.equal(py.stdout, 'ABC\n');
  assert.equal(py.exitCode, 3);
  assert.equal(py.timedOut, false);
  const js = await run('node', "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{console.log(s+'!');process.exitCode=4})", {}, 'hi');
  assert.equal(js.stdout, 'hi!\n');
  assert.equal(js.exitCode, 4);
});

test('network access is denied (only loopback exists, connects fail)', async () => {
  const py = await run(
    'python',
    `import socket, os
print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'nosys')
for host in [('1.1.1.1', 53), ('127.0.0.1', 22)]:
    try:
        socket.create_connection(host, timeout=2)
        print('CONNECTED', host)
    except OSError as e:
        print('denied', type(e).__name__)
try:
    socket.getaddrinfo('example.com', 80)
    print('RESOLVED')
except OSError as e:
    print('dns denied')`,
  );
  assert.equal(py.exitCode, 0, py.stderr);
  assert.doesNotMatch(py.stdout, /CONNECTED|RESOLVED/);
  assert.equal(py.stdout.match(/denied/g)?.length, 3);
  const js = await run('node', "require('net').connect(80,'1.1.1.1').on('error',e=>console.log('denied',e.code)).on('connect',()=>console.log('CONNECTED'))");
  assert.match(js.stdout, /^denied (ENETUNREACH|EACCES|EPERM)/);
});

test('writes outside the work dir fail; /work and /tmp are writable', async () => {
  const py = await run(
    'python',
    `import os
for p in ['/usr/evil', '/evil', '/program/evil', '/etc/evil', '/proc/evil']:
    try:
        open(p, 'w').write('x'); print('WROTE', p)
    except OSError as e:
        print('denied', p)
open('/work/ok', 'w').write('fine'); open('/tmp/ok', 'w').write('fine')
print(open('/work/ok').read(), os.getcwd())`,
  );
  assert.equal(py.exitCode, 0, py.stderr);
  assert.doesNotMatch(py.stdout, /WROTE/);
  assert.equal(py.stdout.match(/denied/g)?.length, 5);
  assert.match(py.stdout, /fine \/work/);
});

test("the host's home, /etc and the project checkout are not visible", async () => {
  const secret = join(repoRoot, 'package.json');
  assert.ok(existsSync(secret));
  const py = await run(
    'python',
    `import os
print(sorted(os.listdir('/')))
for p in [${JSON.stringify(secret)}, ${JSON.stringify(join(homedir(), '.bashrc'))}, '/etc/passwd', '/root']:
    print(p, os.path.exists(p))`,
  );
  assert.equal(py.exitCode, 0, py.stderr);
  const lines = py.stdout.trim().split('\n');
  const rootEntries = JSON.parse(lines[0]!.replace(/'/g, '"')) as string[];
  for (const e of rootEntries) assert.ok(['bin', 'dev', 'lib', 'lib64', 'proc', 'program', 'sbin', 'tmp', 'usr', 'work', 'lib32', 'libx32'].includes(e), `unexpected /${e}`);
  for (const l of lines.slice(1)) assert.match(l, / False$/, l);
});

test('the sandbox runs as an unprivileged user with no capabilities', async () => {
  const py = await run('python', "import os\nprint(os.getuid(), [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])");
  const [uid, caps] = py.stdout.trim().split(' ');
  assert.notEqual(uid, '0');
  assert.equal(caps, '0000000000000000');
});

test('a fork bomb is contained and leaves no process behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-test-'));
  const file = join(dir, 'bomb.py');
  writeFileSync(file, 'import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n');
  // A unique argument marks every process of this bomb (fork keeps the command line).
  const token = `bomb-${process.pid}-${Date.now()}`;
  let seenRunning = 0;
  const probe = setInterval(() => (seenRunning = Math.max(seenRunning, processesWith(token).length)), 200);
  try {
    const r = await runFileSandboxed('python', file, { limits: { timeoutMs: 1500, maxProcesses: 32 }, args: [token] });
    assert.equal(r.timedOut, true);
    assert.ok(r.durationMs < 1500 + 3000, `took ${r.durationMs} ms`);
  } finally {
    clearInterval(probe);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(seenRunning > 1, 'the bomb did fork (so the check below means something)');
  // 32 processes for the bomb plus bwrap and its pid-1 helper, which carry the token in argv too
  assert.ok(seenRunning <= 34, `${seenRunning} bomb processes at once`);
  // the pid namespace dies with its init; give the kernel a moment to reap
  let left = processesWith(token);
  for (let i = 0; i < 20 && left.length; i++) {
    await new Promise((res) => setTimeout(res, 100));
    left = processesWith(token);
  }
  assert.deepEqual(left, []);
});

test('the process cap is enforced', async () => {
  const r = await run(
    'python',
    `import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
except OSError as e:
    print('capped', n)`,
    { timeoutMs: 4000, maxProcesses: 16 },
  );
  const n = Number(/capped (\d+)/.exec(r.stdout)?.[1]);
  assert.ok(n > 0 && n <= 16, r.stdout + r.stderr);
});

test('a memory bomb is stopped and reported (python and node)', async () => {
  const py = await run('python', "x = bytearray(2 * 1024**3)\nprint('ALLOCATED')", { memoryMb: 256 });
  assert.equal(py.memoryExceeded, true, py.stderr);
  assert.notEqual(py.exitCode, 0);
  assert.doesNotMatch(py.stdout, /ALLOCATED/);
  const grow = await run('python', "a = []\nwhile True: a.append(bytearray(16 * 1024**2))", { memoryMb: 256 });
  assert.equal(grow.memoryExceeded, true, grow.stderr);
  const js = await run('node', "const a=[];for(;;)a.push(new Array(1e6).fill(1.5))", { memoryMb: 128, timeoutMs: 8000 });
  assert.equal(js.timedOut, false);
  assert.equal(js.memoryExceeded, true, js.stderr.slice(-500));
  const buf = await run('node', "const b=Buffer.alloc(4*1024**3);console.log('ALLOCATED',b.length)", { memoryMb: 128 });
  assert.equal(buf.memoryExceeded, true, buf.stderr.slice(-500));
  assert.doesNotMatch(buf.stdout, /ALLOCATED/);
});

test('an infinite loop is killed at the wall-clock limit', async () => {
  const r = await run('node', 'for(;;){}', { timeoutMs: 800 });
  assert.equal(r.timedOut, true);
  assert.equal(r.exitCode, 137);
  assert.ok(r.durationMs >= 800 && r.durationMs < 3000, `took ${r.durationMs} ms`);
});

test('a 1 GB print is cut at the output cap and killed', async () => {
  const r = await run('python', "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024): sys.stdout.write(chunk)", {
    maxOutputBytes: 256 * 1024,
    timeoutMs: 5000,
  });
  assert.equal(r.outputTruncated, true);
  assert.equal(r.timedOut, false);
  assert.equal(r.stdout.length, 256 * 1024);
  assert.ok(r.durationMs < 3000, `took ${r.durationMs} ms`);
});

test('file size is capped', async () => {
  const r = await run('python', "f = open('/work/big', 'wb')\ntry:\n    f.write(b'x' * (8 << 20)); f.flush(); print('WROTE')\nexcept OSError as e:\n    print('denied', e.errno)", {
    maxFileBytes: 1 << 20,
  });
  assert.match(r.stdout, /^denied 27/); // EFBIG
});

test('mounts are read-only unless writable; the request channel round-trips', async () => {
  const stage = new StagingDir();
  try {
    stage.writeFile('ro/data.txt', 'hello');
    const rw = stage.writableDir('rw');
    const prog = stage.writeFile(
      'prog/main.py',
      `import os, sys, json
print(open('/env/ro/data.txt').read())
try:
    open('/env/ro/x', 'w'); print('WROTE')
except OSError: print('ro denied')
open('/env/rw/out.txt', 'w').write('state')
ch = os.fdopen(3, 'w')
for i in range(3):
    ch.write(json.dumps({'n': i}) + '\\n'); ch.flush()
    print('reply', sys.stdin.readline().strip())`,
    );
    chmodSync(prog, 0o644);
    const seen: string[] = [];
    const r = await runSandboxed({
      lang: 'python',
      program: '/prog/main.py',
      mounts: [
        { hostPath: stage.path('prog'), sandboxPath: '/prog' },
        { hostPath: stage.path('ro'), sandboxPath: '/env/ro' },
        { hostPath: rw, sandboxPath: '/env/rw', writable: true },
      ],
      limits: { timeoutMs: 5000 },
      onRequest: async (line) => {
        seen.push(line);
        const { n } = JSON.parse(line) as { n: number };
        return String(n * 10);
      },
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'hello\nro denied\nreply 0\nreply 10\nreply 20\n');
    assert.deepEqual(seen, ['{"n": 0}', '{"n": 1}', '{"n": 2}']);
    assert.equal(readFileSync(join(rw, 'out.txt'), 'utf8'), 'state');
  } finally {
    stage.remove();
  }
});

test('per-call overhead of a trivial python program is small', async (t) => {
  const n = 10;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await run('python', 'print(1)');
    assert.equal(r.stdout, '1\n');
  }
  const perCall = (performance.now() - t0) / n;
  t.diagnostic(`python sandbox call: ${perCall.toFixed(1)} ms`);
  assert.ok(perCall < 1000, `${perCall} ms per call`);
});
