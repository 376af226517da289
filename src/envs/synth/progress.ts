// Synthesis progress: every event is appended as one JSON line to <out>/synth.log.jsonl (appends of
// one short line are atomic, so several workers can share the file) and, for people, summarised on
// stderr as `[synth] ...` lines with the running totals from the state database.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SynthStore } from './store.js';

export class SynthLog {
  constructor(
    private readonly file: string,
    private readonly store: SynthStore,
    private readonly human: ((line: string) => void) | undefined,
  ) {
    mkdirSync(dirname(file), { recursive: true });
  }

  event(e: Record<string, unknown>): void {
    appendFileSync(this.file, JSON.stringify({ t: new Date().toISOString(), pid: process.pid, ...e }) + '\n');
    if (this.human && ['step_done', 'step_skip', 'step_resume', 'task_rejected', 'env_done'].includes(String(e.event))) {
      this.human(`[synth] ${String(e.event)} ${String(e.key ?? e.env ?? '')} ${e.detail ? `(${String(e.detail)})` : ''}  |  ${this.summary()}`);
    }
  }

  summary(): string {
    const tasks = this.store.tasks();
    const envs = new Set(tasks.map((t) => t.envId)).size;
    const kept = tasks.filter((t) => t.status === 'kept').length;
    const passes = tasks.reduce((a, t) => a + t.passes, 0);
    const attempts = tasks.reduce((a, t) => a + t.attempts, 0);
    const tot = this.store.totals();
    const rate = attempts ? ` (${((100 * passes) / attempts).toFixed(0)}%)` : '';
    return (
      `envs ${envs} · tasks ${tasks.length} validated, ${kept} kept · policy ${passes}/${attempts} passed${rate} · ` +
      `tokens ${tot.promptTokens} in / ${tot.completionTokens} out · cost $${tot.cost.toFixed(4)}`
    );
  }
}
