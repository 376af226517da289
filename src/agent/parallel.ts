// Parallel-fewest-step (paper §4.4 baseline): run N independent trajectories of the same task, each
// from the system prompt and the task; a trajectory whose context passes the threshold is abandoned;
// of those that reach a final answer, the one with the fewest steps is kept (ties: the lower index).
import { abandonStrategy } from './context.js';
import { type AgentOptions, type AgentResult, runAgent } from './loop.js';
import { Transcript } from './transcript.js';

export interface ParallelResult {
  chosen: AgentResult | null;
  runs: AgentResult[];
}

export async function runParallelFewestStep(opts: AgentOptions, n: number): Promise<ParallelResult> {
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`parallel trajectories ${n}: expected an integer >= 1`);
  const transcript = opts.transcript ?? new Transcript();
  const runs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      runAgent({
        ...opts,
        runId: `${opts.runId ?? 'run'}${i}`,
        transcript,
        context: opts.context ? { ...opts.context, strategy: abandonStrategy } : undefined,
      }),
    ),
  );
  let chosen: AgentResult | null = null;
  for (const r of runs) if (r.status === 'final' && (!chosen || r.steps < chosen.steps)) chosen = r;
  transcript.write({
    type: 'selection',
    run: opts.runId ?? 'run',
    strategy: 'parallel-fewest-step',
    chosen: chosen?.run ?? null,
    candidates: runs.map((r) => ({ run: r.run, status: r.status, steps: r.steps })),
  });
  return { chosen, runs };
}
