// `dsv32 eval`: every task of every environment under a directory, n attempts each (n >= k), as jobs
// on a JobRunner (local pool or BullMQ). Results live in SQLite keyed by (run, env, task, attempt), so
// an interrupted evaluation resumes with the attempts it is missing. The report gives, per family,
// the mean over tasks of the unbiased pass@1 and pass@k (passk.ts).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { DsvError } from '../../errors.js';
import { MAX_TIMER_MS } from '../../agent/http.js';
import { loadEnvironment, type Environment } from '../load.js';
import { registerJobHandler, type JobContext, type JobOutcome, type JobRunner, type JobSpec } from '../queue/jobs.js';
import { clientFor, runPolicyAttempt, type ModelConfig } from './attempt.js';
import { passAtK } from './passk.js';
import { EvalStore, type AttemptRow } from './store.js';

export class EvalConfigError extends DsvError {}

/** The model endpoint failed (not the agent): the attempt is retried instead of scored 0. */
export class ModelEndpointError extends DsvError {}

export const modelConfigSchema = z.strictObject({
  baseUrl: z.string().url(),
  model: z.string().min(1),
  temperature: z.number().optional(),
  thinking: z.boolean().optional(),
  maxTokens: z.number().int().positive().optional(),
  stream: z.boolean().optional(),
  requestTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).optional(),
  maxRetries: z.number().int().nonnegative().optional(),
});

const evalJobSchema = z.strictObject({
  dbPath: z.string(),
  runId: z.string(),
  envDir: z.string(),
  taskId: z.string(),
  attempt: z.number().int().nonnegative(),
  model: modelConfigSchema,
  maxSteps: z.number().int().positive(),
});
export type EvalJob = z.infer<typeof evalJobSchema>;

const envCache = new Map<string, Environment>();
/** Environments are immutable during a run; one load per process keeps their staged programs. */
export function loadEnvCached(dir: string): Environment {
  let e = envCache.get(dir);
  if (!e) envCache.set(dir, (e = loadEnvironment(dir)));
  return e;
}

export async function evalAttemptJob(raw: unknown, ctx: JobContext): Promise<{ score: number; skipped: boolean }> {
  const j = evalJobSchema.parse(raw);
  const store = new EvalStore(j.dbPath);
  try {
    const key = { runId: j.runId, envId: '', taskId: j.taskId, attempt: j.attempt };
    const env = loadEnvCached(j.envDir);
    key.envId = env.manifest.id;
    if (store.has(key)) return { score: -1, skipped: true };
    store.recordStart(key);
    const r = await runPolicyAttempt(env, j.taskId, clientFor(j.model), { maxSteps: j.maxSteps, signal: ctx.signal, runId: `${j.taskId}#${j.attempt}` });
    if (r.status === 'error' && !r.submitted) throw new ModelEndpointError(`attempt ${j.attempt} at ${key.envId}/${j.taskId}: model endpoint failed: ${r.agentError}`);
    store.record(key, env.manifest.family, r);
    ctx.log({ event: 'attempt_done', env: key.envId, task: j.taskId, attempt: j.attempt, score: r.score, steps: r.steps });
    return { score: r.score, skipped: false };
  } finally {
    store.close();
  }
}

export function registerEvalJobs(): void {
  registerJobHandler('eval-attempt', evalAttemptJob);
}

/** `dir` itself when it holds manifest.json, else its subdirectories that do (sorted). */
export function discoverEnvironments(dirArg: string): string[] {
  const dir = resolve(dirArg);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new EvalConfigError(`--envs: ${dirArg} is not a directory`);
  if (existsSync(join(dir, 'manifest.json'))) return [dir];
  const found = readdirSync(dir)
    .sort()
    .map((n) => join(dir, n))
    .filter((p) => statSync(p).isDirectory() && existsSync(join(p, 'manifest.json')));
  if (!found.length) throw new EvalConfigError(`--envs: ${dirArg} holds no environment (no manifest.json in it or in any subdirectory)`);
  return found;
}

export interface EvalOptions {
  envsDir: string;
  model: ModelConfig;
  k: number;
  /** Attempts per task (n >= k; default k). More attempts make the pass@k estimate less noisy. */
  attempts?: number;
  dbPath: string;
  runId?: string;
  maxSteps?: number;
  /** Only the first N tasks of each environment. */
  tasksPerEnv?: number;
  runner: JobRunner;
  onOutcome?: (o: JobOutcome, done: number, total: number) => void;
}

export interface FamilyScore {
  family: string;
  tasks: number;
  attemptsPerTask: number;
  passAt1: number;
  passAtK: number;
  meanScore: number;
}

export interface EvalReport {
  runId: string;
  model: string;
  k: number;
  families: FamilyScore[];
  overall: Omit<FamilyScore, 'family'>;
  tasks: Array<{ env: string; family: string; task: string; n: number; c: number; passAt1: number; passAtK: number }>;
  failedJobs: Array<{ id: string; error: string }>;
}

export function defaultRunId(envsDir: string, m: ModelConfig, maxSteps: number): string {
  const h = createHash('sha256').update(JSON.stringify([resolve(envsDir), m.baseUrl, m.model, m.temperature ?? null, maxSteps, ...(m.thinking !== undefined ? [m.thinking] : [])])).digest('hex');
  return `${m.model.replace(/[^A-Za-z0-9._-]/g, '_')}-${h.slice(0, 10)}`;
}

export async function runEval(o: EvalOptions): Promise<EvalReport> {
  const n = o.attempts ?? o.k;
  if (!Number.isInteger(o.k) || o.k < 1) throw new EvalConfigError(`-k must be a positive integer, got ${o.k}`);
  if (!Number.isInteger(n) || n < o.k) throw new EvalConfigError(`--attempts (${n}) must be an integer >= -k (${o.k})`);
  const maxSteps = o.maxSteps ?? 30;
  const runId = o.runId ?? defaultRunId(o.envsDir, o.model, maxSteps);
  const dbPath = resolve(o.dbPath);
  const jobs: JobSpec<EvalJob>[] = [];
  const expected: Array<{ env: Environment; taskId: string }> = [];
  for (const dir of discoverEnvironments(o.envsDir)) {
    const env = loadEnvironment(dir);
    const tasks = o.tasksPerEnv ? env.tasks.slice(0, o.tasksPerEnv) : env.tasks;
    for (const t of tasks) {
      expected.push({ env, taskId: t.id });
      for (let a = 0; a < n; a++) {
        jobs.push({
          id: `eval/${runId}/${env.manifest.id}/${t.id}/${a}`,
          kind: 'eval-attempt',
          data: { dbPath, runId, envDir: env.dir, taskId: t.id, attempt: a, model: o.model, maxSteps },
        });
      }
    }
  }
  // Attempts already in the database (an earlier, interrupted run) are not submitted again.
  const store = new EvalStore(dbPath);
  let todo: JobSpec<EvalJob>[];
  try {
    todo = jobs.filter((j) => !store.has({ runId, envId: j.id.split('/')[2]!, taskId: j.data.taskId, attempt: j.data.attempt }));
  } finally {
    store.close();
  }
  let done = jobs.length - todo.length;
  const outcomes = await o.runner.runAll(todo, (oc) => o.onOutcome?.(oc, ++done, jobs.length));
  const failedJobs = outcomes.filter((x) => !x.ok).map((x) => ({ id: x.id, error: x.error ?? 'unknown error' }));

  const s2 = new EvalStore(dbPath);
  let rows: AttemptRow[];
  try {
    rows = s2.rows(runId);
  } finally {
    s2.close();
  }
  return buildReport(runId, o.model.model, o.k, n, expected, rows, failedJobs);
}

export function buildReport(
  runId: string,
  model: string,
  k: number,
  n: number,
  expected: Array<{ env: Environment; taskId: string }>,
  rows: AttemptRow[],
  failedJobs: EvalReport['failedJobs'],
): EvalReport {
  const byTask = new Map<string, AttemptRow[]>();
  for (const r of rows) {
    const key = `${r.envId}\u0000${r.taskId}`;
    byTask.set(key, [...(byTask.get(key) ?? []), r]);
  }
  const tasks: EvalReport['tasks'] = [];
  const sums = new Map<string, { tasks: number; p1: number; pk: number; score: number; attempts: number }>();
  for (const { env, taskId } of expected) {
    const rs = (byTask.get(`${env.manifest.id}\u0000${taskId}`) ?? []).filter((r) => r.attempt < n);
    // Tasks with missing attempts (their jobs failed) are reported with what they have, if >= k.
    if (rs.length < k) continue;
    const c = rs.filter((r) => r.score >= 1).length;
    const t = { env: env.manifest.id, family: env.manifest.family, task: taskId, n: rs.length, c, passAt1: passAtK(rs.length, c, 1), passAtK: passAtK(rs.length, c, k) };
    tasks.push(t);
    const s = sums.get(t.family) ?? { tasks: 0, p1: 0, pk: 0, score: 0, attempts: 0 };
    s.tasks++;
    s.p1 += t.passAt1;
    s.pk += t.passAtK;
    s.score += rs.reduce((a, r) => a + r.score, 0) / rs.length;
    s.attempts += rs.length;
    sums.set(t.family, s);
  }
  const families = [...sums.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([family, s]) => ({ family, tasks: s.tasks, attemptsPerTask: s.attempts / s.tasks, passAt1: s.p1 / s.tasks, passAtK: s.pk / s.tasks, meanScore: s.score / s.tasks }));
  const all = [...sums.values()].reduce((a, s) => ({ tasks: a.tasks + s.tasks, p1: a.p1 + s.p1, pk: a.pk + s.pk, score: a.score + s.score, attempts: a.attempts + s.attempts }), { tasks: 0, p1: 0, pk: 0, score: 0, attempts: 0 });
  const div = Math.max(1, all.tasks);
  return {
    runId,
    model,
    k,
    families,
    overall: { tasks: all.tasks, attemptsPerTask: all.attempts / div, passAt1: all.p1 / div, passAtK: all.pk / div, meanScore: all.score / div },
    tasks,
    failedJobs,
  };
}

export function formatReportTable(r: EvalReport): string {
  const head = ['family', 'tasks', 'n', 'pass@1', `pass@${r.k}`, 'mean score'];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const body = [...r.families.map((f) => [f.family, String(f.tasks), f.attemptsPerTask.toFixed(0), pct(f.passAt1), pct(f.passAtK), f.meanScore.toFixed(3)])];
  body.push(['(all)', String(r.overall.tasks), r.overall.attemptsPerTask.toFixed(0), pct(r.overall.passAt1), pct(r.overall.passAtK), r.overall.meanScore.toFixed(3)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...body.map(line)].join('\n') + '\n';
}
