// `env validate`: per task, (1) the reference solution, run through the tools in a fresh episode, is
// accepted by the verifier with score 1; (2) at least two automatic perturbations of its answer are
// rejected (score < 1); (3) a second run on another fresh copy of the state makes the same tool calls
// with the same results, submits the same answer and leaves the same database (tools are
// deterministic); (4) the solution had no database access: program solutions run without a DB mount
// (solution.ts), so this holds by construction and is reported as such.
import { isDeepStrictEqual } from 'node:util';
import { dbFingerprint } from './db-state.js';
import { EpisodeError } from './errors.js';
import { Episode, type ToolCallRecord, type Verdict } from './episode.js';
import type { Environment, LoadedTask } from './load.js';
import { perturbAnswer } from './perturb.js';
import { hashString } from './rng.js';
import { runSolution } from './solution.js';

export const MIN_REJECTED_PERTURBATIONS = 2;

export interface TaskValidation {
  taskId: string;
  ok: boolean;
  reference: { ok: boolean; verdict?: Verdict; error?: string };
  perturbations: { ok: boolean; rejected: number; total: number; accepted: string[]; error?: string };
  determinism: { ok: boolean; detail: string };
  isolation: { ok: boolean; detail: string };
  toolCalls: number;
  durationMs: number;
}

export interface ToolDeterminism {
  tool: string;
  ok: boolean;
  detail: string;
}

export interface ValidationReport {
  envId: string;
  ok: boolean;
  tasks: TaskValidation[];
  /** Each tool example (tools/<name>.schema.json "examples") run on two fresh copies of the state. */
  toolExamples: ToolDeterminism[];
  /** Tools the reference solutions never called (their determinism is therefore unchecked). */
  unexercisedTools: string[];
}

function firstTraceDifference(a: ToolCallRecord[], b: ToolCallRecord[]): string | undefined {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y) return `run 1 made ${a.length} tool calls, run 2 made ${b.length}`;
    if (x.tool !== y.tool || !isDeepStrictEqual(x.args, y.args)) return `call ${i}: ${x.tool} vs ${y.tool} with different arguments`;
    if (x.ok !== y.ok || !isDeepStrictEqual(x.result, y.result) || x.error !== y.error) {
      return `call ${i} (${x.tool} ${JSON.stringify(x.args)}) returned different results on two fresh copies`;
    }
  }
  return undefined;
}

export async function validateTask(env: Environment, task: LoadedTask, calledTools?: Set<string>): Promise<TaskValidation> {
  const t0 = performance.now();
  const res: TaskValidation = {
    taskId: task.id,
    ok: false,
    reference: { ok: false },
    perturbations: { ok: false, rejected: 0, total: 0, accepted: [] },
    determinism: { ok: false, detail: 'not checked' },
    isolation: {
      ok: true,
      detail: 'program' in task.solution ? 'solution ran with no database mount; tools were its only access' : 'solution is a fixed list of tool calls',
    },
    toolCalls: 0,
    durationMs: 0,
  };
  const ep1 = Episode.open(env, task.id);
  const ep2 = Episode.open(env, task.id);
  try {
    const run1 = await runSolution(ep1);
    res.toolCalls = ep1.trace.length;
    for (const c of ep1.trace) calledTools?.add(c.tool);
    if (run1.error || !run1.submitted) {
      res.reference = { ok: false, error: run1.error ?? 'no answer submitted' };
    } else {
      const verdict = await ep1.verify();
      res.reference = { ok: verdict.score >= 1 && !verdict.error, verdict, ...(verdict.error ? { error: verdict.error } : {}) };

      // Perturbations are scored against the same final state as the reference answer.
      const perts = perturbAnswer(run1.answer, 8, hashString(task.id));
      res.perturbations.total = perts.length;
      for (const p of perts) {
        const v = await ep1.verify({ answer: p.answer });
        if (v.error) {
          res.perturbations.error = `verifier failed on perturbation "${p.description}": ${v.error}`;
          break;
        }
        if (v.score < 1) res.perturbations.rejected++;
        else res.perturbations.accepted.push(p.description);
      }
      res.perturbations.ok = !res.perturbations.error && res.perturbations.rejected >= MIN_REJECTED_PERTURBATIONS;
    }

    const run2 = await runSolution(ep2);
    const diff =
      firstTraceDifference(ep1.trace, ep2.trace) ??
      (!isDeepStrictEqual(run1.answer, run2.answer) ? 'the two runs submitted different answers' : undefined) ??
      (dbFingerprint(ep1.dbPath) !== dbFingerprint(ep2.dbPath) ? 'the two runs left different database states' : undefined);
    res.determinism = diff
      ? { ok: false, detail: diff }
      : { ok: true, detail: `${ep1.trace.length} tool calls repeated identically on a fresh copy; final databases identical` };
  } finally {
    ep1.close();
    ep2.close();
  }
  res.ok = res.reference.ok && res.perturbations.ok && res.determinism.ok && res.isolation.ok;
  res.durationMs = Math.round(performance.now() - t0);
  return res;
}


export interface ValidateOptions {
  /** Tasks validated concurrently. */
  jobs?: number;
  /** Only these task ids. */
  taskIds?: string[];
  onTask?: (r: TaskValidation) => void;
}

export async function validateEnvironment(env: Environment, opts: ValidateOptions = {}): Promise<ValidationReport> {
  const tasks = opts.taskIds ? opts.taskIds.map((id) => {
    const t = env.taskById.get(id);
    if (!t) throw new EpisodeError(`environment ${env.manifest.id} has no task "${id}"`);
    return t;
  }) : env.tasks;
  const called = new Set<string>();
  const results: TaskValidation[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await validateTask(env, tasks[i]!, called);
      opts.onTask?.(results[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs ?? 1, tasks.length)) }, worker));
  const toolExamples: ToolDeterminism[] = [];
  for (const tool of env.tools.values()) {
    if (tool.isSubmit) continue;
    for (const args of tool.examples) {
      toolExamples.push(await checkToolExample(env, tool.name, args));
      called.add(tool.name);
    }
  }
  const unexercisedTools = [...env.tools.values()].filter((t) => !t.isSubmit && !called.has(t.name)).map((t) => t.name);
  return {
    envId: env.manifest.id,
    ok: results.every((r) => r.ok) && toolExamples.every((t) => t.ok),
    tasks: results,
    toolExamples,
    unexercisedTools,
  };
}

/** Runs one tool call on two fresh copies of the state; results and resulting databases must match. */
export async function checkToolExample(env: Environment, tool: string, args: Record<string, unknown>): Promise<ToolDeterminism> {
  const eps = [Episode.open(env), Episode.open(env)];
  try {
    const [a, b] = [await eps[0]!.callTool(tool, args), await eps[1]!.callTool(tool, args)];
    const label = `${tool} ${JSON.stringify(args)}`;
    if (!a.ok) return { tool, ok: false, detail: `${label} failed: ${a.error}` };
    if (a.ok !== b.ok || !isDeepStrictEqual(a.result, b.result)) return { tool, ok: false, detail: `${label} returned different results on two fresh copies` };
    if (dbFingerprint(eps[0]!.dbPath) !== dbFingerprint(eps[1]!.dbPath)) return { tool, ok: false, detail: `${label} left different database states` };
    return { tool, ok: true, detail: `${label} deterministic` };
  } finally {
    for (const e of eps) e.close();
  }
}
