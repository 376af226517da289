// Shared by the built-in family tests: a scratch folder for generated environments, the task files of
// one (for determinism checks), and the verifier's verdict on an answer through a fresh episode.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Episode } from '../../src/envs/episode.js';
import type { Environment } from '../../src/envs/load.js';

/** A temporary folder for this test file's environments, removed when the process exits. */
export function scratchDir(prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(root, { recursive: true, force: true }));
  return root;
}

/** The task files of a generated environment, sorted by name. */
export function taskFiles(dir: string): string[] {
  return readdirSync(join(dir, 'tasks')).sort().map((f) => readFileSync(join(dir, 'tasks', f), 'utf8'));
}

/** Verify `answer` for one task of `env` in an episode of its own. */
export async function verifyAnswer(env: Environment, taskId: string, answer: unknown) {
  const ep = Episode.open(env, taskId);
  try {
    return await ep.verify({ answer });
  } finally {
    ep.close();
  }
}
