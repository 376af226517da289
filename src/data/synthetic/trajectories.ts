// Tool-use trajectories on our own environment families (src/envs/families): generate an
// environment from the build seed, run each task's reference solution in the sandbox, keep the
// trajectory only if the task's verifier gives it full score, and render it as a chat conversation —
// the environment's tools in the system prompt, the task prompt as the user turn, one assistant turn
// per tool call with its real result, ending with the submit call. The results are what the tools
// really returned in the episode, so the data teaches the model to read tool output, not to imitate
// made-up output.
//
// Needs bubblewrap (the sandbox); without it the source reports itself missing, like a package.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChatMessage, ThinkingMode, ToolDefinition } from '../../chat/message.js';
import { encodeMessages } from '../../chat/encode.js';
import { Episode } from '../../envs/episode.js';
import { registerBuiltinFamilies } from '../../envs/families/index.js';
import { getFamily, listFamilies } from '../../envs/families/registry.js';
import { loadEnvironment, type Environment, type LoadedTask } from '../../envs/load.js';
import { sandboxHost } from '../../envs/sandbox.js';
import { runSolution } from '../../envs/solution.js';
import type { ToolCallRecord } from '../../envs/episode.js';
import type { CorpusSource, SourceProbe } from '../source.js';

/** Longest trajectory kept, in UTF-8 bytes of encoded text (a model of 4K–8K context must fit it). */
export const MAX_TRAJECTORY_BYTES = 32 * 1024;

function why(rec: ToolCallRecord, submitTool: string): string {
  const args = JSON.stringify(rec.args);
  if (rec.tool === submitTool) return `I have what I need; submitting the answer with ${submitTool}.`;
  return `Next I call ${rec.tool} with ${args.length > 160 ? args.slice(0, 157) + '...' : args}.`;
}

export function trajectoryConversation(opts: {
  family: string;
  prompt: string;
  tools: ToolDefinition[];
  submitTool: string;
  trace: readonly ToolCallRecord[];
  mode: ThinkingMode;
}): ChatMessage[] {
  const messages: ChatMessage[] = [
    { role: 'system', content: `You are an agent working in a ${opts.family} environment. Use the tools to gather what you need, then call ${opts.submitTool} with the final answer.`, tools: opts.tools },
    { role: 'user', content: opts.prompt },
  ];
  for (const rec of opts.trace) {
    const call = { type: 'function' as const, function: { name: rec.tool, arguments: (rec.args ?? {}) as Record<string, unknown> } };
    messages.push(opts.mode === 'thinking' ? { role: 'assistant', reasoning_content: why(rec, opts.submitTool), content: '', tool_calls: [call] } : { role: 'assistant', content: '', tool_calls: [call] });
    messages.push({ role: 'tool', content: rec.ok ? JSON.stringify(rec.result) : JSON.stringify({ error: rec.error }) });
  }
  const done = 'The answer has been submitted.';
  messages.push(opts.mode === 'thinking' ? { role: 'assistant', reasoning_content: 'The submit tool accepted the answer; the task is done.', content: done } : { role: 'assistant', content: done });
  return messages;
}

function probeSandbox(): SourceProbe {
  try {
    const h = sandboxHost();
    return { found: true, version: 'generated', location: `src/envs/families via ${h.bwrap}` };
  } catch (e) {
    return { found: false, reason: (e as Error).message };
  }
}

/** Runs the reference solution of `task` on a fresh episode and verifies it. */
async function solveTask(env: Environment, task: LoadedTask): Promise<{ trace: ToolCallRecord[] } | { skip: string }> {
  const ep = Episode.open(env, task.id);
  try {
    const run = await runSolution(ep);
    if (run.error) return { skip: run.error.slice(0, 300) };
    const verdict = await ep.verify();
    if (verdict.score < 1) return { skip: `verifier score ${verdict.score}: ${verdict.reason}` };
    return { trace: [...ep.trace] };
  } finally {
    ep.close();
  }
}

/** `f` over `xs` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(xs: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(xs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await f(xs[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, xs.length) }, worker));
  return out;
}

export interface TrajectorySourceOptions {
  /** Episodes solved at once (default: the machine's parallelism, at most 4). */
  concurrency?: number;
  /** Families to draw from (default: every built-in family). */
  families?: string[];
  /** Tasks per generated environment (default 8). */
  tasksPerEnv?: number;
}

export function makeTrajectorySource(opts: TrajectorySourceOptions = {}): CorpusSource {
  return {
    name: 'env-trajectories',
    kind: 'synthetic',
    package: 'bubblewrap',
    install: 'apt-get install bubblewrap (scripts/setup-system.sh does)',
    licence: 'MIT (generated by dsv32 from its own environment families)',
    description: 'Reference-solution trajectories on the environment families (trip, code-interpreter, search, code-agent), verified to full score, as tool-call conversations',
    requiredByDefault: false,
    defaultBudgetBytes: 2 * 2 ** 20,
    weight: 2,
    probe: probeSandbox,
    async *documents(ctx) {
      registerBuiltinFamilies();
      const families = opts.families ? opts.families.map((f) => getFamily(f)) : listFamilies();
      const perFamily = Math.max(1, Math.floor(ctx.budgetBytes / families.length));
      const concurrency = opts.concurrency ?? Math.max(1, Math.min(4, availableParallelism()));
      const work = mkdtempSync(join(tmpdir(), 'dsv32-traj-'));
      try {
        for (const fam of families) {
          let used = 0;
          let barren = 0;
          // environments of at most 8 tasks, new seed each, until this family's share is spent; a family
          // whose trajectories are all too long or failing is given up after two rounds that kept nothing
          for (let round = 0; used < perFamily && round < 64 && barren < 2; round++) {
            const seed = ctx.rng.int(0, 2 ** 31 - 1);
            const dir = join(work, `${fam.name}-${round}`);
            const tasks = Math.min(opts.tasksPerEnv ?? 8, fam.maxTasks);
            await getFamily(fam.name).generate({ seed, tasks, outDir: dir });
            const env = loadEnvironment(dir, { checkSyntax: false });
            const tools: ToolDefinition[] = [...env.tools.values()].map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
            // solve the environment's tasks a few at a time (each is sandboxed processes, mostly waiting on
            // spawns), then take the results in task order, so the output does not depend on timing
            const solved = await mapLimit(env.tasks, concurrency, (task) => solveTask(env, task));
            let kept = 0;
            for (const [i, task] of env.tasks.entries()) {
              if (used >= perFamily) break;
              const r = solved[i]!;
              if ('skip' in r) {
                ctx.log('trajectory-skipped', { family: fam.name, seed, task: task.id, reason: r.skip });
                continue;
              }
              const mode: ThinkingMode = ctx.rng.chance(0.7) ? 'thinking' : 'chat';
              const messages = trajectoryConversation({ family: fam.name, prompt: task.prompt, tools, submitTool: env.manifest.submitTool, trace: r.trace, mode });
              const text = encodeMessages(messages, { mode });
              const bytes = Buffer.byteLength(text);
              if (bytes > MAX_TRAJECTORY_BYTES) {
                ctx.log('trajectory-skipped', { family: fam.name, seed, task: task.id, reason: `${bytes} bytes > ${MAX_TRAJECTORY_BYTES}` });
                continue;
              }
              used += bytes;
              kept++;
              yield { id: `env-trajectories/${fam.name}/${seed}/${task.id}`, source: 'env-trajectories', text, messages, mode };
            }
            ctx.log('trajectory-environment', { family: fam.name, seed, tasks: env.tasks.length, kept });
            barren = kept ? 0 : barren + 1;
            rmSync(dir, { recursive: true, force: true });
          }
        }
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
  };
}

export const trajectorySource = makeTrajectorySource();
