// The synthesis agent's tools, declared with zod. Every one acts on the draft (draft.ts); programs
// the agent writes only ever run inside the sandbox. submit_task is the gate of a task stage: it
// de-duplicates the prompt, writes the task, and runs the real `env validate` on it (and on the
// environment's earlier tasks, so adding tools cannot silently break them); only a task that passes
// is recorded. Validation problems go back to the agent as the tool result, which is the repair loop.
import { z } from 'zod';
import { defineTool, type AgentTool } from '../../agent/tools.js';
import { EnvFormatError } from '../errors.js';
import { solutionSchema, verifierSchema } from '../format.js';
import { loadEnvironment } from '../load.js';
import { validateEnvironment, type TaskValidation, type ValidationReport } from '../validate.js';
import { promptHash } from './dedup.js';
import { Draft, DraftError } from './draft.js';
import type { SynthStore } from './store.js';

function guard<T>(f: () => Promise<T> | T): Promise<T | { ok: false; error: string }> {
  return Promise.resolve()
    .then(f)
    .catch((e: unknown) => {
      if (e instanceof DraftError || e instanceof EnvFormatError) return { ok: false as const, error: e.message };
      throw e;
    });
}

function taskSummary(t: TaskValidation): Record<string, unknown> {
  return {
    task: t.taskId,
    ok: t.ok,
    reference: t.reference.ok ? 'accepted with score 1' : `FAILED: ${t.reference.error ?? `verifier gave ${t.reference.verdict?.score}: ${t.reference.verdict?.reason}`}`,
    perturbations: t.perturbations.ok
      ? `rejected ${t.perturbations.rejected}/${t.perturbations.total}`
      : `FAILED: rejected ${t.perturbations.rejected}/${t.perturbations.total} (need 2)${t.perturbations.error ? `; ${t.perturbations.error}` : ''}${t.perturbations.accepted.length ? `; wrongly accepted: ${t.perturbations.accepted.join(', ')}` : ''}`,
    determinism: t.determinism.ok ? 'ok' : `FAILED: ${t.determinism.detail}`,
  };
}

export function reportSummary(r: ValidationReport): Record<string, unknown> {
  return {
    ok: r.ok,
    tasks: r.tasks.map(taskSummary),
    toolExampleFailures: r.toolExamples.filter((x) => !x.ok).map((x) => x.detail),
    ...(r.unexercisedTools.length ? { toolsNeverCalled: r.unexercisedTools } : {}),
  };
}

export interface StageState {
  /** Set by submit_task when a task passed validation. */
  accepted?: { taskId: string; prompt: string };
}

export interface SynthToolOptions {
  draft: Draft;
  store: SynthStore;
  /** Task stages only: the id and level the submitted task gets. */
  task?: { id: string; level: number; difficulty: string };
  state: StageState;
}

export function synthTools(o: SynthToolOptions): AgentTool[] {
  const { draft, store, state } = o;
  const tools: AgentTool[] = [
    defineTool({
      name: 'list_files',
      description: 'Lists the environment files and the database tables (columns, row counts).',
      input: z.object({}),
      execute: () => guard(() => ({ files: draft.files(), tables: draft.tables() })),
    }),
    defineTool({
      name: 'read_file',
      description: 'Reads a text file of the environment (e.g. tools/get_x.py, tasks/t1.json).',
      input: z.object({ path: z.string() }),
      execute: ({ path }) => guard(() => draft.readFile(path)),
    }),
    defineTool({
      name: 'write_file',
      description: 'Creates or replaces a file under tools/, solutions/ or verifiers/.',
      input: z.object({ path: z.string(), content: z.string() }),
      execute: ({ path, content }) => guard(() => draft.writeFile(path, content)),
    }),
    defineTool({
      name: 'run_sql',
      description: 'Runs SQL statements on the environment database (in one transaction; rolled back on error). Returns the rows of the last query.',
      input: z.object({ sql: z.string().min(1) }),
      execute: ({ sql }) => guard(() => draft.runSql(sql)),
    }),
    defineTool({
      name: 'run_tool',
      description: 'Calls one of the environment tools with arguments, on a throw-away copy of the database, and returns its result or error.',
      input: z.object({ name: z.string(), args: z.record(z.string(), z.unknown()).default({}) }),
      execute: ({ name, args }) => guard(() => draft.runTool(name, args)),
    }),
    defineTool({
      name: 'run_validate',
      description: 'Runs `env validate` on the tasks written so far: reference solution accepted, perturbed answers rejected, tools deterministic.',
      input: z.object({}),
      execute: () =>
        guard(async () => {
          if (!draft.taskIds().length) return { ok: false, error: 'there are no tasks yet' };
          return reportSummary(await validateEnvironment(loadEnvironment(draft.dir), { jobs: 2 }));
        }),
    }),
  ];
  if (o.task) {
    const spec = o.task;
    tools.push(
      defineTool({
        name: 'submit_task',
        description: `Submits the task of this stage (it gets id "${spec.id}"). It is validated at once; the result says what to fix if it fails.`,
        input: z.object({
          prompt: z.string().min(20).describe('what the solving agent is asked; self-contained, with everything needed to find the answer'),
          params: z.record(z.string(), z.unknown()).default({}).describe('structured data for the solution and the verifier (hidden from the solver)'),
          solution: z.record(z.string(), z.unknown()).describe('{"program": "solutions/x.py"} or {"calls": [...], "answer": ...}'),
          verifier: z.record(z.string(), z.unknown()).describe('{"program": "verifiers/x.py"}, {"exact": value} or {"numeric": x, "tolerance": t}'),
        }),
        execute: (a) =>
          guard(async () => {
            const sol = solutionSchema.safeParse(a.solution);
            if (!sol.success) return { ok: false, error: `solution: ${sol.error.issues.map((i) => i.message).join('; ')}` };
            const ver = verifierSchema.safeParse(a.verifier);
            if (!ver.success) return { ok: false, error: `verifier: ${ver.error.issues.map((i) => i.message).join('; ')}` };
            const hash = promptHash(a.prompt);
            const dup = store.taskByHash(hash);
            if (dup && !(dup.envId === draft.envId && dup.taskId === spec.id)) {
              return { ok: false, error: `duplicate: this prompt is the same as task ${dup.envId}/${dup.taskId} ("${dup.prompt.slice(0, 120)}"); propose a different task` };
            }
            const earlier = draft.taskIds().filter((id) => id !== spec.id);
            draft.writeTask({ id: spec.id, prompt: a.prompt, difficulty: spec.difficulty, params: a.params, solution: a.solution, verifier: a.verifier });
            let report: ValidationReport;
            try {
              report = await validateEnvironment(loadEnvironment(draft.dir), { jobs: 2, taskIds: [spec.id, ...earlier] });
            } catch (e) {
              draft.removeTask(spec.id);
              throw e;
            }
            const mine = report.tasks.find((t) => t.taskId === spec.id)!;
            const broken = report.tasks.filter((t) => t.taskId !== spec.id && !t.ok);
            if (!mine.ok || broken.length) {
              draft.removeTask(spec.id);
              return {
                ok: false,
                error: !mine.ok ? 'the task did not pass validation; fix it and call submit_task again' : `earlier tasks ${broken.map((t) => t.taskId).join(', ')} no longer pass; fix the tools`,
                validation: reportSummary(report),
              };
            }
            store.addTask({ envId: draft.envId, taskId: spec.id, level: spec.level, prompt: a.prompt, promptHash: hash, difficulty: spec.difficulty });
            state.accepted = { taskId: spec.id, prompt: a.prompt };
            return { ok: true, accepted: spec.id, validation: reportSummary(report), next: 'The task is accepted. This stage is complete.' };
          }),
      }),
    );
  }
  return tools;
}
