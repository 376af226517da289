// Runs untrusted Python/Node programs in a child process under bubblewrap + prlimit.
//
// Isolation (bwrap): new user, pid, net, ipc, uts and cgroup namespaces; the root is an empty tmpfs
// remounted read-only holding only /usr (read-only), the usual /bin,/lib symlinks, a private /proc, a
// read-only /dev (its device nodes still work), size-capped tmpfs mounts at /work (cwd), /tmp and
// /dev/shm, and whatever mounts the caller names. No /etc, no home, no project checkout. When the host
// process is root we start bwrap as uid 65534: RLIMIT_NPROC is not enforced for the init namespace's
// root user (kernel copy_process checks INIT_USER), so a fork bomb would otherwise run free.
//
// Nothing of the host's environment gets in: bwrap itself starts with an empty environment, because
// its pid-1 helper inside the namespace keeps bwrap's original environ, readable at /proc/1/environ
// (--clearenv only clears the program's).
//
// Limits: prlimit inside the sandbox sets RLIMIT_AS (memory), RLIMIT_NPROC (processes+threads, counted
// per user namespace so sandboxes do not share the budget), RLIMIT_FSIZE (largest file) and no core
// dumps. Pages in tmpfs are host RAM that RLIMIT_AS does not count, so the writable tmpfs mounts
// together get at most memoryMb. The host enforces a wall-clock limit by SIGKILLing bwrap's process
// group; --die-with-parent plus the pid namespace tear down everything inside. Captured output is
// capped per stream: past the cap we stop buffering and kill.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { isAbsolute } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SandboxSpecError, SandboxUnavailableError } from './errors.js';
import { sandboxSeccompFilter } from './seccomp.js';
import { StagingDir } from './staging.js';

export type SandboxLang = 'python' | 'node';

export interface SandboxMount {
  hostPath: string;
  sandboxPath: string;
  writable?: boolean;
}

export interface SandboxLimits {
  timeoutMs: number;
  /** Address-space cap for Python; for Node the JS heap cap (V8 needs extra address space, see below). */
  memoryMb: number;
  maxProcesses: number;
  maxFileBytes: number;
  /** Cap per captured stream (stdout, stderr, request channel line). */
  maxOutputBytes: number;
  /**
   * Size of each writable tmpfs mount (/work, /tmp, /dev/shm), lowered where needed so that the three
   * together stay within memoryMb (see tmpfsBytes).
   */
  workDirMb: number;
}

export const DEFAULT_LIMITS: SandboxLimits = {
  timeoutMs: 10_000,
  memoryMb: 512,
  maxProcesses: 64,
  maxFileBytes: 64 * 1024 * 1024,
  maxOutputBytes: 1024 * 1024,
  workDirMb: 64,
};

// V8 reserves large virtual ranges at start-up (code range, pointer cage): `node -e 1` dies under an
// RLIMIT_AS below ~800 MiB. Node therefore gets memoryMb of heap (--max-old-space-size) and an address
// space of memoryMb + this headroom; Buffers and other off-heap memory still hit the AS cap.
const NODE_AS_HEADROOM_MB = 1536;

/** Largest wall-clock limit: setTimeout fires at once (with a warning) for delays past 2^31-1 ms. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The writable memory-backed mounts of every sandbox. */
const TMPFS_MOUNTS = [
  { path: '/work', perms: '0777' },
  { path: '/tmp', perms: '1777' },
  { path: '/dev/shm', perms: '1777' },
] as const;

// tmpfs rounds its size up to whole pages; sizes that are multiples of the largest page size in use
// (64 KiB on some arm64 kernels) are exact, so the sum below is a true bound.
const TMPFS_ALIGN = 64 * 1024;
const MIB = 1024 * 1024;

/**
 * Size of each writable tmpfs: workDirMb, but no more than an equal share of memoryMb across the
 * mounts. Never 0, which tmpfs would take as "no limit" (memoryMb >= 1 gives a share of 320 KiB).
 */
export function tmpfsBytes(l: Pick<SandboxLimits, 'memoryMb' | 'workDirMb'>): number {
  const share = Math.floor((l.memoryMb * MIB) / TMPFS_MOUNTS.length / TMPFS_ALIGN) * TMPFS_ALIGN;
  return Math.min(l.workDirMb * MIB, share);
}

export interface SandboxRunSpec {
  lang: SandboxLang;
  /** Path of the program inside the sandbox (it must be reachable through `mounts`). */
  program: string;
  args?: string[];
  mounts?: SandboxMount[];
  stdin?: string | Buffer;
  env?: Record<string, string>;
  limits?: Partial<SandboxLimits>;
  /**
   * Request channel: the program writes newline-terminated requests to fd 3; each is passed here and
   * the reply (plus '\n') is written to the program's stdin. stdin stays open until the program exits.
   */
  onRequest?: (line: string) => Promise<string>;
}

export interface SandboxResult {
  /** Exit status; 128+signal when the program was killed by a signal (shell convention). */
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  memoryExceeded: boolean;
  outputTruncated: boolean;
  durationMs: number;
}

const SANDBOX_UID = 65534;
const PYTHON = '/usr/bin/python3';
const PRLIMIT = '/usr/bin/prlimit';
const BWRAP_CANDIDATES = ['/usr/bin/bwrap', '/bin/bwrap', '/usr/local/bin/bwrap'];

interface HostSetup {
  bwrap: string;
  /** Whether bwrap can create a user namespace here (then we also map to uid 65534 inside). */
  userns: boolean;
  /** Run bwrap as uid/gid 65534 (host is root). */
  dropToNobody: boolean;
  rootLinks: string[];
}

let hostSetup: HostSetup | undefined;

function baseRootArgs(): string[] {
  // Recreate the merged-/usr layout: /bin, /lib, ... are symlinks into /usr on Debian 12; on a split
  // layout they are real directories and get bound read-only.
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const d of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const p = `/${d}`;
    if (!existsSync(p)) continue;
    const st = lstatSync(p);
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(p), p);
    else if (st.isDirectory()) args.push('--ro-bind', p, p);
  }
  return args;
}

function probe(bwrap: string, userns: boolean, dropToNobody: boolean): { ok: boolean; detail: string } {
  const args = ['--unshare-all', ...(userns ? ['--unshare-user', '--uid', '65534', '--gid', '65534'] : [])];
  args.push('--die-with-parent', ...baseRootArgs(), '--proc', '/proc', '--dev', '/dev', '--', '/usr/bin/true');
  const r = spawnSync(bwrap, args, {
    timeout: 10_000,
    encoding: 'utf8',
    ...(dropToNobody ? { uid: SANDBOX_UID, gid: SANDBOX_UID } : {}),
  });
  return { ok: r.status === 0, detail: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
}

/** Finds bwrap and checks, once per process, which namespace options work on this host. */
export function sandboxHost(): HostSetup {
  if (hostSetup) return hostSetup;
  // DSV32_BWRAP names a specific binary (a non-standard install, or a test of the missing case).
  const candidates = process.env.DSV32_BWRAP ? [process.env.DSV32_BWRAP] : BWRAP_CANDIDATES;
  const bwrap = candidates.find((p) => existsSync(p));
  if (!bwrap) {
    throw new SandboxUnavailableError(
      `bubblewrap (bwrap) is not installed (looked for ${candidates.join(', ')}); ` +
        'install the Debian package `bubblewrap` (scripts/setup-system.sh does)',
    );
  }
  if (!existsSync(PRLIMIT)) throw new SandboxUnavailableError(`${PRLIMIT} is missing; install util-linux`);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const attempts: Array<[boolean, boolean]> = isRoot
    ? [
        [true, true],
        [true, false],
        [false, false],
      ]
    : [
        [true, false],
        [false, false],
      ];
  const failures: string[] = [];
  for (const [userns, drop] of attempts) {
    const r = probe(bwrap, userns, drop);
    if (r.ok) {
      hostSetup = { bwrap, userns, dropToNobody: drop, rootLinks: baseRootArgs() };
      return hostSetup;
    }
    failures.push(`${userns ? 'with' : 'without'} user namespace${drop ? ' as uid 65534' : ''}: ${r.detail}`);
  }
  throw new SandboxUnavailableError(`bubblewrap at ${bwrap} cannot create a sandbox here (${failures.join('; ')})`);
}

/** Human-readable summary of how sandboxes are created on this host. */
export function describeSandboxHost(): string {
  const h = sandboxHost();
  return `${h.bwrap}, user namespace ${h.userns ? 'on' : 'off'}, ${h.dropToNobody ? 'started as uid 65534' : 'started as the current user'}`;
}

function checkLimits(l: SandboxLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isFinite(v) || v <= 0 || !Number.isInteger(v)) {
      throw new SandboxSpecError(`sandbox limit ${k} must be a positive integer, got ${v}`);
    }
  }
  if (l.timeoutMs > MAX_TIMEOUT_MS) {
    throw new SandboxSpecError(`sandbox limit timeoutMs must be at most ${MAX_TIMEOUT_MS} (about 24.8 days), got ${l.timeoutMs}`);
  }
}

function interpreter(lang: SandboxLang): { exe: string; mounts: string[]; argv: (l: SandboxLimits) => string[] } {
  if (lang === 'python') {
    if (!existsSync(PYTHON)) throw new SandboxUnavailableError(`${PYTHON} is missing; install the Debian package python3`);
    // -s: no user site dir; -B: never write .pyc next to read-only sources. Not -I: the environment
    // is already cleared by bwrap and PYTHONPATH is how environment programs find their helpers.
    return { exe: PYTHON, mounts: [], argv: () => [PYTHON, '-s', '-B'] };
  }
  if (lang === 'node') {
    const exe = realpathSync(process.execPath);
    const mounts = exe.startsWith('/usr/') ? [] : ['--ro-bind', exe, exe];
    return { exe, mounts, argv: (l) => [exe, `--max-old-space-size=${l.memoryMb}`] };
  }
  throw new SandboxSpecError(`sandbox language must be "python" or "node", got ${JSON.stringify(lang)}`);
}

function addressSpaceMb(lang: SandboxLang, l: SandboxLimits): number {
  return lang === 'node' ? l.memoryMb + NODE_AS_HEADROOM_MB : l.memoryMb;
}

const MEMORY_PATTERNS: Record<SandboxLang, RegExp> = {
  python: /\bMemoryError\b|Cannot allocate memory/,
  node: /heap out of memory|Fatal process OOM|Array buffer allocation failed|Cannot allocate memory|ENOMEM|RangeError: .*(?:Array buffer|allocation|memory)/i,
};

/** Builds the full argv (bwrap ... -- prlimit ... -- interpreter program args). Exposed for tests/debugging. */
export function sandboxArgv(spec: SandboxRunSpec, limits: SandboxLimits): string[] {
  const host = sandboxHost();
  const interp = interpreter(spec.lang);
  if (!isAbsolute(spec.program)) throw new SandboxSpecError(`sandbox program path must be absolute, got ${spec.program}`);
  const a: string[] = ['--unshare-all'];
  if (host.userns) a.push('--unshare-user', '--uid', String(SANDBOX_UID), '--gid', String(SANDBOX_UID));
  a.push('--die-with-parent', '--new-session', '--clearenv');
  // the seccomp filter (src/envs/seccomp.ts) arrives on the first fd after the request channel
  a.push('--seccomp', String(spec.onRequest ? 4 : 3));
  a.push(...host.rootLinks, ...interp.mounts);
  // --dev's tmpfs is uncapped and owned by the sandbox user; read-only, its device nodes (bind mounts
  // of the host's) still open for writing, and /dev/shm becomes a capped tmpfs of its own.
  a.push('--proc', '/proc', '--dev', '/dev', '--remount-ro', '/dev');
  const size = String(tmpfsBytes(limits));
  for (const m of TMPFS_MOUNTS) a.push('--perms', m.perms, '--size', size, '--tmpfs', m.path);
  for (const m of spec.mounts ?? []) {
    if (!isAbsolute(m.hostPath) || !isAbsolute(m.sandboxPath)) {
      throw new SandboxSpecError(`sandbox mount paths must be absolute, got ${m.hostPath} -> ${m.sandboxPath}`);
    }
    if (!existsSync(m.hostPath)) throw new SandboxSpecError(`sandbox mount source ${m.hostPath} does not exist`);
    a.push(m.writable ? '--bind' : '--ro-bind', m.hostPath, m.sandboxPath);
  }
  a.push('--remount-ro', '/', '--chdir', '/work');
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: '/work',
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONIOENCODING: 'utf-8',
    ...spec.env,
  };
  for (const [k, v] of Object.entries(env)) a.push('--setenv', k, v);
  a.push('--', PRLIMIT);
  a.push(`--as=${addressSpaceMb(spec.lang, limits) * 1024 * 1024}`);
  a.push(`--nproc=${limits.maxProcesses}`, `--fsize=${limits.maxFileBytes}`, '--core=0', '--');
  a.push(...interp.argv(limits), spec.program, ...(spec.args ?? []));
  return a;
}

/**
 * Runs one program in a fresh sandbox; resolves with a structured result (never hangs), or rejects
 * with a SandboxSpecError/SandboxUnavailableError before anything runs. Async so that a bad spec
 * rejects like every other failure instead of throwing at the call.
 */
export async function runSandboxed(spec: SandboxRunSpec): Promise<SandboxResult> {
  const limits: SandboxLimits = { ...DEFAULT_LIMITS, ...spec.limits };
  checkLimits(limits);
  const host = sandboxHost();
  const argv = sandboxArgv(spec, limits);
  const stdio: Array<'pipe' | 'ignore'> = ['pipe', 'pipe', 'pipe'];
  if (spec.onRequest) stdio.push('pipe');
  stdio.push('pipe'); // the seccomp filter, read by bwrap to EOF
  const t0 = performance.now();
  let child: ChildProcess;
  try {
    child = spawn(host.bwrap, argv, {
      stdio,
      detached: true, // own process group, so the wall-clock kill reaches bwrap and its helpers
      env: {}, // see the top of the file: bwrap's pid-1 helper would show the host's environment
      ...(host.dropToNobody ? { uid: SANDBOX_UID, gid: SANDBOX_UID } : {}),
    });
  } catch (e) {
    throw new SandboxUnavailableError(`cannot start ${host.bwrap}: ${(e as Error).message}`);
  }

  const filter = child.stdio[spec.onRequest ? 4 : 3] as NodeJS.WritableStream;
  filter.on('error', () => {
    // bwrap failed before reading it: its exit status and stderr tell why
  });
  filter.end(sandboxSeccompFilter());

  return new Promise<SandboxResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    let outputTruncated = false;
    let killed = false;
    let settled = false;

    const kill = (): void => {
      if (killed || child.pid === undefined) return;
      killed = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, limits.timeoutMs);

    const capture = (chunks: Buffer[], which: 'out' | 'err') => (chunk: Buffer) => {
      const used = which === 'out' ? outBytes : errBytes;
      const room = limits.maxOutputBytes - used;
      if (room <= 0) return;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      chunks.push(part);
      if (which === 'out') outBytes += part.length;
      else errBytes += part.length;
      if (chunk.length >= room) {
        outputTruncated = true;
        kill();
      }
    };
    child.stdout!.on('data', capture(out, 'out'));
    child.stderr!.on('data', capture(err, 'err'));
    child.stdin!.on('error', () => {
      // EPIPE when the program exits without reading its input; the exit status tells the story.
    });

    if (spec.onRequest) {
      const channel = child.stdio[3] as NodeJS.ReadableStream;
      let pending = '';
      let queue = Promise.resolve();
      channel.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        if (pending.length > limits.maxOutputBytes) {
          outputTruncated = true;
          pending = '';
          kill();
          return;
        }
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          queue = queue.then(async () => {
            if (killed) return;
            let reply: string;
            try {
              reply = await spec.onRequest!(line);
            } catch (e) {
              reply = JSON.stringify({ ok: false, error: (e as Error).message });
            }
            if (!killed && child.stdin!.writable) child.stdin!.write(reply + '\n');
          });
        }
      });
      channel.on('error', () => {});
      if (spec.stdin !== undefined) child.stdin!.write(spec.stdin);
    } else {
      child.stdin!.end(spec.stdin ?? '');
    }

    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new SandboxUnavailableError(`cannot start ${host.bwrap}: ${e.message}`));
    });
    // 'close' waits for every holder of our pipes. The pid namespace normally guarantees they died
    // with bwrap; should anything in bwrap's process group outlive it and hold a pipe, kill the group
    // (which cannot have been recycled while members remain) and stop waiting.
    child.on('exit', () => {
      setTimeout(() => {
        if (settled) return;
        kill();
        for (const s of child.stdio) s?.destroy();
      }, 2000).unref();
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const signo = signal ? osConstants.signals[signal] : 0;
      const exitCode = code ?? 128 + signo;
      const memoryExceeded = !timedOut && exitCode !== 0 && MEMORY_PATTERNS[spec.lang].test(stderr.slice(-4096));
      resolve({
        exitCode,
        stdout,
        stderr,
        timedOut,
        memoryExceeded,
        outputTruncated,
        durationMs: Math.round((performance.now() - t0) * 10) / 10,
      });
    });
  });
}

/** Language implied by a program file name (.py, or .js/.mjs/.cjs), or undefined. */
export function langOfFile(name: string): SandboxLang | undefined {
  if (name.endsWith('.py')) return 'python';
  if (/\.(?:m|c)?js$/.test(name)) return 'node';
  return undefined;
}

/** Copies one host program file into a fresh staging dir and runs it as /program/<name>. */
export async function runFileSandboxed(
  lang: SandboxLang,
  hostFile: string,
  opts: { limits?: Partial<SandboxLimits>; stdin?: string; args?: string[] } = {},
): Promise<SandboxResult> {
  const stage = new StagingDir();
  try {
    const name = lang === 'python' ? 'main.py' : hostFile.endsWith('.mjs') ? 'main.mjs' : 'main.js';
    stage.copyFile(hostFile, `program/${name}`);
    return await runSandboxed({
      lang,
      program: `/program/${name}`,
      mounts: [{ hostPath: stage.path('program'), sandboxPath: '/program' }],
      limits: opts.limits,
      stdin: opts.stdin,
      args: opts.args,
    });
  } finally {
    stage.remove();
  }
}
