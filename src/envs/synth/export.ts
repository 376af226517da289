// `dsv32 synth export`: the kept tasks as an RL prompt set, one JSON object per line. Each line points
// at the published environment so a trainer can open an Episode for it.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SynthStore } from './store.js';

export interface PromptRecord {
  id: string;
  env: string;
  envDir: string;
  task: string;
  prompt: string;
  difficulty: string;
  level: number;
  passes: number;
  attempts: number;
}

export function exportPrompts(dbPath: string, outDir: string, file: string): number {
  const store = new SynthStore(dbPath);
  try {
    const lines = store
      .tasks()
      .filter((t) => t.status === 'kept')
      .map((t): PromptRecord => ({
        id: `${t.envId}/${t.taskId}`,
        env: t.envId,
        envDir: join(resolve(outDir), 'envs', t.envId),
        task: t.taskId,
        prompt: t.prompt,
        difficulty: t.difficulty,
        level: t.level,
        passes: t.passes,
        attempts: t.attempts,
      }));
    writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : ''));
    return lines.length;
  } finally {
    store.close();
  }
}
