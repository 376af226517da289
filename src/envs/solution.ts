// Runs a task's reference solution inside an episode. A program solution runs in the sandbox with no
// database mount at all: its only route to the state is the tool channel (runtime-lib.ts), which this
// module serves by calling the episode's tools. That is how "the solution never touches the database
// directly" is enforced rather than merely checked.
import { z } from 'zod';
import type { Episode } from './episode.js';
import { RUNTIME_ENV } from './runtime-lib.js';
import { langOfFile, runSandboxed, type SandboxResult } from './sandbox.js';

export interface SolutionRun {
  submitted: boolean;
  answer: unknown;
  /** Set when the program failed (crash, timeout, never submitted). */
  error?: string;
  run?: SandboxResult;
}

const SOLUTION_LIMITS = { timeoutMs: 120_000, memoryMb: 1024 };

const requestSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('call'), tool: z.string(), args: z.unknown().optional() }),
  z.strictObject({ type: z.literal('submit'), answer: z.unknown() }),
]);

export async function runSolution(ep: Episode): Promise<SolutionRun> {
  const task = ep.task;
  if (!task) throw new Error('runSolution needs an episode opened with a task');
  const sol = task.solution;
  if ('calls' in sol) {
    for (const c of sol.calls) {
      const r = await ep.callTool(c.tool, c.args);
      if (!r.ok) return { submitted: false, answer: undefined, error: `solution call ${c.tool} failed: ${r.error}` };
    }
    const s = await ep.submit(sol.answer);
    return s.ok ? { submitted: true, answer: sol.answer } : { submitted: false, answer: undefined, error: s.error };
  }

  const run = await runSandboxed({
    lang: langOfFile(sol.program)!,
    program: `/env/${sol.program}`,
    stdin: JSON.stringify({ task: { id: task.id, prompt: task.prompt, params: task.params } }) + '\n',
    mounts: ep.mounts({ state: 'none', solutions: true }),
    env: { ...RUNTIME_ENV },
    limits: SOLUTION_LIMITS,
    onRequest: async (line) => {
      let msg: z.infer<typeof requestSchema>;
      try {
        msg = requestSchema.parse(JSON.parse(line));
      } catch {
        return JSON.stringify({ ok: false, error: 'malformed request; expected {"type":"call",...} or {"type":"submit",...}' });
      }
      const r = msg.type === 'call' ? await ep.callTool(msg.tool, msg.args ?? {}) : await ep.submit(msg.answer);
      return JSON.stringify(r.ok ? { ok: true, result: r.result } : { ok: false, error: r.error });
    },
  });
  const out: SolutionRun = { submitted: ep.submitted, answer: ep.answer, run };
  if (run.timedOut || run.exitCode !== 0 || run.outputTruncated) {
    out.error = run.timedOut
      ? `solution ${sol.program} timed out`
      : run.outputTruncated
        ? `solution ${sol.program} exceeded the output cap`
        : `solution ${sol.program} exited with status ${run.exitCode}: ${run.stderr.trim().slice(-2000)}`;
  } else if (!ep.submitted) {
    out.error = `solution ${sol.program} finished without submitting an answer`;
  }
  return out;
}
