// Shared by the queue tests: a free loopback port, waiting for a child's line, and a throwaway
// redis-server (Debian's, installed by scripts/setup-system.sh) that is killed when the test ends.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function waitForLine(c: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, what: string, ms = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${re} within ${ms / 1000} s:\n${buf}`)), ms);
    c[stream]!.on('data', (d) => {
      buf += d;
      if (re.test(buf)) {
        clearTimeout(timer);
        resolve();
      }
    });
    c.once('exit', (code) => reject(new Error(`${what} exited (${code}):\n${buf}`)));
  });
}

/** null when redis-server can be run here, else why not (for a test skip). */
export function redisUnavailable(): string | null {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? `redis-server is not installed (${r.error?.message ?? `exit ${r.status}`}); scripts/setup-system.sh installs it` : null;
}

/**
 * A redis-server on a free loopback port (or `port`, to bring one back) with persistence off; it and every process pushed to the
 * returned list are SIGKILLed when the test ends. Resolves once Redis accepts connections.
 */
export async function startRedis(t: TestContext, port?: number): Promise<{ url: string; procs: ChildProcess[] }> {
  port ??= await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const procs: ChildProcess[] = [redis];
  t.after(() => {
    for (const p of procs) if (p.exitCode === null && !p.signalCode) p.kill('SIGKILL');
  });
  await waitForLine(redis, 'stdout', /Ready to accept connections/, 'redis-server');
  return { url: `redis://127.0.0.1:${port}`, procs };
}
