// The agentic task-synthesis pipeline (rl.md §2, general agent). For each environment of a category:
//   build        the LLM agent creates the database and tools (through the agent runtime; its code
//                runs in the sandbox);
//   task-1..L    it proposes a task with solution and verifier and repairs it until `env validate`
//                passes, then raises the difficulty level by level, adding tools when needed;
//   attempts     the policy model tries each validated task k times; a task is kept iff pass@k > 0;
//   publish      the environment, with only its kept tasks, is copied to <out>/envs/<id>.
// Every step is a row in the state database; done steps are skipped on a rerun. A step interrupted
// mid-way is rerun from a snapshot of the draft taken when it started, so a killed run resumes where
// it stopped without half-applied edits. One environment is one job (jobs.ts), so environments are
// spread over a local pool or BullMQ workers.
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { runAgent } from '../../agent/loop.js';
import type { StepRecord } from '../../agent/loop.js';
import { FORMAT_VERSION, difficultySchema, type Manifest } from '../format.js';
import { loadEnvironment } from '../load.js';
import { clientFor, runPolicyAttempt } from '../eval/attempt.js';
import { ModelEndpointError, modelConfigSchema } from '../eval/run.js';
import { registerJobHandler, type JobContext, type JobRunner, type JobSpec } from '../queue/jobs.js';
import { synthTools, type StageState } from './agent-tools.js';
import { Draft, SUBMIT_TOOL } from './draft.js';
import { SynthError } from './errors.js';
import { exportPrompts } from './export.js';
import { SynthLog } from './progress.js';
import { buildStagePrompt, synthSystemPrompt, taskStagePrompt } from './prompts.js';
import { SynthStore } from './store.js';

export const synthConfigSchema = z.strictObject({
  category: z.string().min(1),
  outDir: z.string(),
  dbPath: z.string(),
  synth: modelConfigSchema,
  policy: modelConfigSchema,
  /** Policy attempts per task; kept iff at least one passes (the paper used 100). */
  k: z.number().int().positive(),
  maxEnvs: z.number().int().positive(),
  /** Difficulty levels (task stages) per environment. */
  levels: z.number().int().positive(),
  /** Model calls per synthesis stage. */
  maxSteps: z.number().int().positive(),
  policyMaxSteps: z.number().int().positive(),
  /** USD per million prompt / completion tokens, for the cost line. */
  priceIn: z.number().nonnegative(),
  priceOut: z.number().nonnegative(),
});
export type SynthConfig = z.infer<typeof synthConfigSchema>;

interface Usage {
  prompt: number;
  completion: number;
  cost: number;
}

export function categorySlug(category: string): string {
  const s = category.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
  if (!s) throw new SynthError(`--category "${category}" has no letters or digits to name environments with`);
  return s;
}

export function envIdFor(category: string, index: number): string {
  return `${categorySlug(category)}-${index}`;
}

function difficultyOf(level: number): 'easy' | 'medium' | 'hard' {
  return level <= 1 ? 'easy' : level === 2 ? 'medium' : 'hard';
}

/** Server-reported token counts when the endpoint gives them, else the agent's approximate count. */
function usageMeter(c: SynthConfig) {
  const u: Usage = { prompt: 0, completion: 0, cost: 0 };
  return {
    usage: u,
    afterStep(r: StepRecord) {
      const p = r.tokens.server?.promptTokens ?? r.tokens.prompt;
      const q = r.tokens.server?.completionTokens ?? r.tokens.completion;
      u.prompt += p;
      u.completion += q;
      u.cost += (p * c.priceIn + q * c.priceOut) / 1e6;
    },
  };
}

class EnvSynthesis {
  readonly envId: string;
  readonly draft: Draft;
  private readonly snapRoot: string;

  constructor(
    readonly c: SynthConfig,
    readonly index: number,
    readonly store: SynthStore,
    readonly log: SynthLog,
    readonly signal: AbortSignal,
  ) {
    this.envId = envIdFor(c.category, index);
    this.draft = new Draft(join(c.outDir, 'drafts', this.envId), this.envId);
    this.snapRoot = join(c.outDir, 'snapshots', this.envId);
  }

  /** Runs `fn` as the step `key` unless it is done; `fn` returns the step's result and token usage. */
  private async step<T>(key: string, kind: string, touchesDraft: boolean, fn: () => Promise<{ result: T; usage: Usage }>): Promise<T> {
    const s = this.store.step(key);
    if (s?.status === 'done') {
      this.log.event({ event: 'step_skip', key });
      return s.result as T;
    }
    const snap = join(this.snapRoot, key.replace(/\//g, '__'));
    if (touchesDraft && s?.status === 'running' && existsSync(snap)) {
      this.draft.restore(snap);
      this.log.event({ event: 'step_resume', key, detail: 'draft restored to the state before the interrupted step' });
    }
    this.store.startStep(key, this.envId, kind);
    if (touchesDraft) this.draft.snapshot(snap);
    this.log.event({ event: 'step_start', key });
    const { result, usage } = await fn();
    this.store.finishStep(key, result, usage);
    if (touchesDraft) rmSync(snap, { recursive: true, force: true });
    this.log.event({ event: 'step_done', key, result, tokens: { prompt: usage.prompt, completion: usage.completion } });
    return result;
  }

  private async agentStage(key: string, task: string, stage: StageState, taskSpec?: { id: string; level: number; difficulty: string }) {
    const meter = usageMeter(this.c);
    const res = await runAgent({
      client: clientFor(this.c.synth),
      system: synthSystemPrompt(this.c.category, this.envId),
      task,
      tools: synthTools({ draft: this.draft, store: this.store, state: stage, ...(taskSpec ? { task: taskSpec } : {}) }),
      maxSteps: this.c.maxSteps,
      parallelToolCalls: false,
      signal: this.signal,
      runId: key,
      hooks: {
        afterStep: (r) => meter.afterStep(r),
        // A task stage is over once its task is accepted; no need to pay for a closing message.
        beforeStep: () => (stage.accepted ? { stop: true } : undefined),
        onToolResult: (_s, call, r) => {
          if (call.function.name !== 'submit_task') return;
          let rejected = !r.ok;
          try {
            rejected ||= (JSON.parse(r.content) as { ok?: boolean }).ok === false;
          } catch {
            // not JSON: a tool error text, already counted by r.ok
          }
          if (rejected) this.log.event({ event: 'task_rejected', key, detail: r.content.slice(0, 300) });
        },
      },
    });
    if (res.status === 'error' || res.status === 'aborted') {
      this.store.addUsage(key, meter.usage);
      throw new ModelEndpointError(`${key}: synthesis agent ${res.status}: ${res.error ?? 'aborted'}`);
    }
    return { res, usage: meter.usage };
  }

  manifest(): Manifest {
    return {
      formatVersion: FORMAT_VERSION,
      id: this.envId,
      family: categorySlug(this.c.category),
      description: `Synthesized environment for the task category "${this.c.category}".`,
      provenance: { source: `dsv32 synth --category ${JSON.stringify(this.c.category)} --model ${this.c.synth.model}`, notes: `environment #${this.index}; policy ${this.c.policy.model}, pass@${this.c.k} > 0` },
      difficulty: 'mixed',
      version: '1.0.0',
      submitTool: SUBMIT_TOOL,
    };
  }

  async run(): Promise<{ envId: string; kept: number; validated: number; published: boolean }> {
    this.draft.init(this.manifest());
    const built = await this.step(`${this.envId}/build`, 'build', true, async () => {
      const { res, usage } = await this.agentStage(`${this.envId}/build`, buildStagePrompt(this.c.category), {});
      const tables = this.draft.tables().filter((t) => t.rows > 0);
      const tools = this.draft.toolNames();
      const ok = tables.length > 0 && tools.length > 0;
      return { result: { ok, tables: tables.map((t) => t.name), tools, status: res.status, ...(ok ? {} : { reason: 'no table with rows or no tool' }) }, usage };
    });
    if (!built.ok) return this.finish(0);

    let previous: { level: number; taskId: string } | undefined;
    for (let level = 1; level <= this.c.levels; level++) {
      const key = `${this.envId}/task-${level}`;
      const r = await this.step(key, 'task', true, async () => {
        const stage: StageState = {};
        const prev = previous ? this.store.tasks(this.envId).find((t) => t.taskId === previous!.taskId) : undefined;
        const prevFile = prev ? this.draft.readFile(`tasks/${prev.taskId}.json`) : undefined;
        const spec = { id: `t${level}`, level, difficulty: difficultyOf(level) };
        const { res, usage } = await this.agentStage(key, taskStagePrompt(level, prev, prevFile), stage, spec);
        return { result: stage.accepted ? { ok: true, taskId: stage.accepted.taskId } : { ok: false, reason: `no task passed validation (${res.status})` }, usage };
      });
      if (!r.ok) break;
      previous = { level, taskId: r.taskId! };
    }

    // Policy filter. The draft no longer changes, so it is loaded once for all attempts.
    const tasks = this.store.tasks(this.envId);
    if (tasks.length) {
      const env = loadEnvironment(this.draft.dir);
      const client = clientFor(this.c.policy);
      for (const t of tasks) {
        let passes = 0;
        for (let a = 0; a < this.c.k; a++) {
          const r = await this.step(`${this.envId}/${t.taskId}/attempt-${a}`, 'attempt', false, async () => {
            const x = await runPolicyAttempt(env, t.taskId, client, { maxSteps: this.c.policyMaxSteps, signal: this.signal, runId: `${t.taskId}#${a}` });
            if (x.status === 'error' && !x.submitted) throw new ModelEndpointError(`${this.envId}/${t.taskId} attempt ${a}: policy endpoint failed: ${x.agentError}`);
            const cost = (x.tokens.prompt * this.c.priceIn + x.tokens.completion * this.c.priceOut) / 1e6;
            return { result: { score: x.score, reason: x.reason, steps: x.steps }, usage: { prompt: x.tokens.prompt, completion: x.tokens.completion, cost } };
          });
          if (r.score >= 1) passes++;
        }
        this.store.setTaskOutcome(this.envId, t.taskId, passes, this.c.k);
        this.log.event({ event: 'task_outcome', env: this.envId, task: t.taskId, passes, attempts: this.c.k, kept: passes > 0 });
      }
    }
    const kept = this.store.tasks(this.envId).filter((t) => t.status === 'kept');
    await this.step(`${this.envId}/publish`, 'publish', false, async () => ({ result: { published: this.publish(kept.map((t) => t.taskId), kept.map((t) => t.difficulty)) }, usage: { prompt: 0, completion: 0, cost: 0 } }));
    return this.finish(kept.length);
  }

  private finish(kept: number) {
    const validated = this.store.tasks(this.envId).length;
    const published = existsSync(join(this.c.outDir, 'envs', this.envId, 'manifest.json'));
    this.log.event({ event: 'env_done', env: this.envId, detail: `${kept}/${validated} tasks kept${published ? ', published' : ''}` });
    return { envId: this.envId, kept, validated, published };
  }

  /** Copies the draft with only the kept tasks to <out>/envs/<id> (replacing an earlier copy). */
  private publish(keep: string[], difficulties: string[]): boolean {
    const target = join(this.c.outDir, 'envs', this.envId);
    rmSync(target, { recursive: true, force: true });
    if (!keep.length) return false;
    const tmp = `${target}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(this.c.outDir, 'envs'), { recursive: true });
    cpSync(this.draft.dir, tmp, { recursive: true });
    const d = new Draft(tmp, this.envId);
    for (const id of d.taskIds()) if (!keep.includes(id)) d.removeTask(id);
    const uniq = [...new Set(difficulties)];
    d.writeManifest({ ...this.manifest(), difficulty: uniq.length === 1 ? difficultySchema.parse(uniq[0]) : 'mixed' });
    loadEnvironment(tmp); // a published environment must load
    renameSync(tmp, target);
    return true;
  }
}

const synthJobSchema = z.strictObject({ config: synthConfigSchema, index: z.number().int().nonnegative() });

export async function synthEnvJob(raw: unknown, ctx: JobContext): Promise<unknown> {
  const { config, index } = synthJobSchema.parse(raw);
  const store = new SynthStore(config.dbPath);
  try {
    const log = new SynthLog(join(config.outDir, 'synth.log.jsonl'), store, (l) => ctx.log({ line: l }));
    return await new EnvSynthesis(config, index, store, log, ctx.signal).run();
  } finally {
    store.close();
  }
}

export function registerSynthJobs(): void {
  registerJobHandler('synth-env', synthEnvJob);
}

export interface SynthRunResult {
  envs: Array<{ envId: string; ok: boolean; kept?: number; validated?: number; published?: boolean; error?: string }>;
  exported: number;
  promptsFile: string;
  summary: string;
}

export async function runSynth(configIn: SynthConfig, runner: JobRunner, human?: (line: string) => void): Promise<SynthRunResult> {
  const c = synthConfigSchema.parse({ ...configIn, outDir: resolve(configIn.outDir), dbPath: resolve(configIn.dbPath) });
  categorySlug(c.category);
  mkdirSync(c.outDir, { recursive: true });
  const store = new SynthStore(c.dbPath);
  let log: SynthLog;
  try {
    store.bindRun(c);
    log = new SynthLog(join(c.outDir, 'synth.log.jsonl'), store, human);
    log.event({ event: 'run_start', category: c.category, envs: c.maxEnvs, k: c.k, levels: c.levels, runner: runner.description });
  } catch (e) {
    store.close();
    throw e;
  }
  const jobs: JobSpec[] = Array.from({ length: c.maxEnvs }, (_, i) => ({ id: `synth/${envIdFor(c.category, i)}/${Buffer.from(c.dbPath).toString('base64url').slice(-24)}`, kind: 'synth-env', data: { config: c, index: i } }));
  const outcomes = await runner.runAll(jobs);
  const envs = outcomes.map((o, i) =>
    o.ok ? { ...(o.result as { envId: string; kept: number; validated: number; published: boolean }), ok: true } : { envId: envIdFor(c.category, i), ok: false, error: o.error },
  );
  const promptsFile = join(c.outDir, 'prompts.jsonl');
  const exported = exportPrompts(c.dbPath, c.outDir, promptsFile);
  const summary = log.summary();
  log.event({ event: 'run_end', exported, failed: envs.filter((e) => !e.ok).length });
  store.close();
  return { envs, exported, promptsFile, summary };
}
