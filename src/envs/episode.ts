// One agent attempt at one task: a private copy of the environment's database, tool calls run in the
// sandbox against that copy, a submitted answer, and verification against the final state.
//
// Sandbox layout for environment programs (see docs/env-format.md):
//   /env/tools/      the environment's tools/ (read-only)
//   /env/state/      this episode's db.sqlite (read-write for tools, read-only for verifiers)
//   /env/verifiers/  verifiers/ (verifier runs only)     /env/solutions/  solutions/ (solution runs only)
//   /opt/dsv32/      helper libraries (read-only)         /work            scratch tmpfs, the cwd
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { EpisodeError } from './errors.js';
import { verdictSchema } from './format.js';
import { listTools, type Environment, type LoadedTask, type ToolInfo } from './load.js';
import { RUNTIME_ENV, runtimeLibDir } from './runtime-lib.js';
import { langOfFile, runSandboxed, type SandboxMount, type SandboxResult } from './sandbox.js';
import { StagingDir } from './staging.js';

export const DB_IN_SANDBOX = '/env/state/db.sqlite';

// The environment's programs are mounted read-only, so one staged copy per loaded Environment serves
// all its episodes; only the database is copied per episode. A re-loaded environment (new object)
// gets a new copy, so edits on disk are picked up by loading again.
const programStages = new WeakMap<Environment, StagingDir>();
// Every staged copy is removed at exit by one listener (one per environment would pass Node's limit of
// 10 and warn when a corpus build loads dozens of environments).
const atExit = new Set<StagingDir>();
let exitHooked = false;
function removeAtExit(stage: StagingDir): void {
  atExit.add(stage);
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const st of atExit) st.remove();
  });
}

function programStage(env: Environment): StagingDir {
  let s = programStages.get(env);
  if (!s || !existsSync(s.root)) {
    const stage = new StagingDir('dsv32-env-');
    for (const k of ['tools', 'verifiers', 'solutions']) {
      if (existsSync(join(env.dir, k))) stage.copyDir(join(env.dir, k), k);
      else mkdirSync(join(stage.root, k), { mode: 0o755 });
    }
    removeAtExit(stage);
    programStages.set(env, stage);
    s = stage;
  }
  return s;
}
const TOOL_DEFAULTS = { timeoutMs: 10_000, memoryMb: 512 };
const VERIFIER_LIMITS = { timeoutMs: 30_000, memoryMb: 1024 };

export interface ToolCallResult {
  ok: boolean;
  result?: unknown;
  error?: string;
  durationMs: number;
}

export interface ToolCallRecord {
  tool: string;
  args: unknown;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export interface Verdict {
  score: number;
  reason: string;
  /** Set when the verifier itself failed (crashed, timed out, printed garbage); score is then 0. */
  error?: string;
}

function tail(s: string, n = 2000): string {
  return s.length > n ? '…' + s.slice(-n) : s;
}

function failureText(what: string, r: SandboxResult): string {
  if (r.timedOut) return `${what} timed out after ${Math.round(r.durationMs)} ms`;
  if (r.memoryExceeded) return `${what} ran out of memory`;
  if (r.outputTruncated) return `${what} printed more than the output cap`;
  return `${what} exited with status ${r.exitCode}: ${tail(r.stderr.trim()) || '(no stderr)'}`;
}

// A number: optional minus (ASCII or U+2212) not right after a digit, digits with optional thousands
// commas, an optional fraction. "38 + 46 = 84." gives 84, "**1,234**" 1234, "= −7" -7, "5-3" 3.
const NUMBER = /(?<![\d.,])([-\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)/g;

/** The last number in `text` if it is an integer (a fraction of zeros is allowed), else undefined. */
export function lastInteger(text: string): number | undefined {
  let last: RegExpExecArray | undefined;
  for (const m of text.matchAll(NUMBER)) last = m;
  if (!last) return undefined;
  if (last[3] && !/^\.0+$/.test(last[3])) return undefined;
  const n = Number((last[1] ? '-' : '') + last[2]!.replace(/,/g, ''));
  return Number.isSafeInteger(n) ? n : undefined;
}

export class Episode {
  readonly trace: ToolCallRecord[] = [];
  private readonly stage: StagingDir;
  private readonly programs: StagingDir;
  private submission: { answer: unknown } | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly env: Environment,
    readonly task: LoadedTask | undefined,
  ) {
    this.programs = programStage(env);
    this.stage = new StagingDir('dsv32-ep-');
    this.stage.writableDir('state');
    this.stage.copyFile(join(env.dir, 'db.sqlite'), 'state/db.sqlite', 0o666);
  }

  /** Opens an episode on a fresh copy of the state; `taskId` is needed for verification. */
  static open(env: Environment, taskId?: string): Episode {
    let task: LoadedTask | undefined;
    if (taskId !== undefined) {
      task = env.taskById.get(taskId);
      if (!task) throw new EpisodeError(`environment ${env.manifest.id} has no task "${taskId}"`);
    }
    return new Episode(env, task);
  }

  /** Tools offered to the agent: name, description, JSON schema of the arguments. */
  tools(): ToolInfo[] {
    return listTools(this.env);
  }

  /** Host path of this episode's database copy (for the host's own inspection, never given to programs). */
  get dbPath(): string {
    return join(this.stage.root, 'state', 'db.sqlite');
  }

  get submitted(): boolean {
    return this.submission !== undefined;
  }

  get answer(): unknown {
    return this.submission?.answer;
  }

  /** Host path of the episode's staging area (advanced use: mounting extra files for a program run). */
  get stageRoot(): string {
    return this.stage.root;
  }

  private check(): void {
    if (this.closed) throw new EpisodeError('episode is closed');
  }

  /**
   * Calls a tool. Calling the submit tool records its arguments as the answer. Tool failures (unknown
   * tool, invalid arguments, crash, timeout) come back as {ok: false, error} for the agent to read.
   * Calls are serialised: each sees the state left by the previous one.
   */
  callTool(name: string, args: unknown): Promise<ToolCallResult> {
    this.check();
    const run = this.queue.then(() => this.callNow(name, args));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async callNow(name: string, args: unknown): Promise<ToolCallResult> {
    const t0 = performance.now();
    const done = (r: Omit<ToolCallResult, 'durationMs'>): ToolCallResult => {
      this.trace.push({ tool: name, args, ok: r.ok, ...(r.ok ? { result: r.result } : { error: r.error }) });
      return { ...r, durationMs: Math.round((performance.now() - t0) * 10) / 10 };
    };
    const tool = this.env.tools.get(name);
    if (!tool) return done({ ok: false, error: `unknown tool "${name}"; available: ${[...this.env.tools.keys()].join(', ')}` });
    if (!tool.validateArgs(args ?? {})) {
      const errs = (tool.validateArgs.errors ?? []).map((e) => `${e.instancePath || '(arguments)'} ${e.message}`).join('; ');
      return done({ ok: false, error: `invalid arguments for ${name}: ${errs}` });
    }
    if (tool.isSubmit) {
      if (this.submission) return done({ ok: false, error: 'an answer was already submitted' });
      this.submission = { answer: args };
      return done({ ok: true, result: 'submitted' });
    }
    const r = await runSandboxed({
      lang: tool.lang!,
      program: `/env/${tool.file}`,
      stdin: JSON.stringify(args ?? {}),
      mounts: this.mounts({ state: 'rw' }),
      env: { ...RUNTIME_ENV, DSV32_DB: DB_IN_SANDBOX, DSV32_TOOL: name },
      limits: { ...TOOL_DEFAULTS, ...this.env.manifest.toolLimits },
    });
    if (r.exitCode !== 0 || r.timedOut || r.outputTruncated) return done({ ok: false, error: failureText(`tool ${name}`, r) });
    try {
      return done({ ok: true, result: JSON.parse(r.stdout) });
    } catch {
      return done({ ok: false, error: `tool ${name} printed invalid JSON: ${tail(r.stdout.trim(), 300)}` });
    }
  }

  /** Mounts for a program run in this episode. */
  mounts(opts: { state?: 'rw' | 'ro' | 'none'; verifiers?: boolean; solutions?: boolean }): SandboxMount[] {
    const m: SandboxMount[] = [
      { hostPath: join(this.programs.root, 'tools'), sandboxPath: '/env/tools' },
      { hostPath: runtimeLibDir(), sandboxPath: '/opt/dsv32' },
    ];
    if (opts.state && opts.state !== 'none') {
      m.push({ hostPath: join(this.stage.root, 'state'), sandboxPath: '/env/state', writable: opts.state === 'rw' });
    }
    for (const k of ['verifiers', 'solutions'] as const) {
      if (opts[k]) m.push({ hostPath: join(this.programs.root, k), sandboxPath: `/env/${k}` });
    }
    return m;
  }

  /**
   * For environments whose manifest sets `finalAnswer: "last-integer"`: when nothing was submitted,
   * submits `{answer: n}` with n the last integer of the agent's final reply text. Returns whether it
   * submitted; a reply without an integer (or whose last number is not one) submits nothing.
   */
  async submitFinalText(text: string | null | undefined): Promise<boolean> {
    if (this.env.manifest.finalAnswer !== 'last-integer' || this.submitted || !text) return false;
    const n = lastInteger(text);
    if (n === undefined) return false;
    return (await this.submit({ answer: n })).ok;
  }

  /** Records the final answer (same as calling the submit tool). */
  async submit(answer: unknown): Promise<ToolCallResult> {
    return this.callTool(this.env.manifest.submitTool, answer);
  }

  /**
   * Scores the submitted answer (or `override.answer`, e.g. a perturbed one) against the task's
   * verifier and this episode's current database state.
   */
  async verify(override?: { answer: unknown }): Promise<Verdict> {
    this.check();
    await this.queue;
    const task = this.task;
    if (!task) throw new EpisodeError('this episode was opened without a task; nothing to verify against');
    if (!override && !this.submission) return { score: 0, reason: 'no answer was submitted' };
    const ans = override ? override.answer : this.submission?.answer;
    const v = task.verifier;
    if ('exact' in v) {
      return isDeepStrictEqual(ans, v.exact)
        ? { score: 1, reason: 'answer matches exactly' }
        : { score: 0, reason: 'answer differs from the expected value' };
    }
    if ('numeric' in v) {
      const raw = v.field !== undefined && ans && typeof ans === 'object' ? (ans as Record<string, unknown>)[v.field] : ans;
      const x = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(x)) return { score: 0, reason: `answer${v.field ? `.${v.field}` : ''} is not a number` };
      const ok = Math.abs(x - v.numeric) <= v.tolerance;
      return { score: ok ? 1 : 0, reason: ok ? `|${x} - ${v.numeric}| <= ${v.tolerance}` : `${x} is not within ${v.tolerance} of ${v.numeric}` };
    }
    const r = await runSandboxed({
      lang: langOfFile(v.program)!,
      program: `/env/${v.program}`,
      stdin: JSON.stringify({ task: { id: task.id, prompt: task.prompt, params: task.params }, answer: ans }),
      mounts: this.mounts({ state: 'ro', verifiers: true }),
      env: { ...RUNTIME_ENV, DSV32_DB: DB_IN_SANDBOX },
      limits: VERIFIER_LIMITS,
    });
    if (r.exitCode !== 0 || r.timedOut || r.outputTruncated) {
      const error = failureText(`verifier ${v.program}`, r);
      return { score: 0, reason: 'verifier failed', error };
    }
    const last = r.stdout.trim().split('\n').pop() ?? '';
    let parsed: unknown;
    try {
      parsed = JSON.parse(last);
    } catch {
      return { score: 0, reason: 'verifier failed', error: `verifier ${v.program} did not print a JSON verdict: ${tail(last, 300)}` };
    }
    const verdict = verdictSchema.safeParse(parsed);
    if (!verdict.success) {
      return { score: 0, reason: 'verifier failed', error: `verifier ${v.program} printed ${tail(last, 300)}; expected {"score": 0..1, "reason": "..."}` };
    }
    return verdict.data;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stage.remove();
  }
}
