// Evaluation state in SQLite: one row per (run, env, task, attempt) result, written once
// (ON CONFLICT DO NOTHING), so a job that is run twice (a worker died after writing, before BullMQ
// recorded completion) cannot count twice; and one row per start of an attempt, which shows re-runs.
import type { AttemptResult } from './attempt.js';
import { openStateDb, type StateDb } from './state-db.js';

export interface AttemptKey {
  runId: string;
  envId: string;
  taskId: string;
  attempt: number;
}

export interface AttemptRow extends AttemptKey {
  family: string;
  score: number;
  reason: string;
  verifierError: string | null;
  status: string;
  steps: number;
  toolCalls: number;
  promptTokens: number;
  completionTokens: number;
  durationMs: number;
}

export class EvalStore {
  readonly db: StateDb;

  constructor(path: string) {
    this.db = openStateDb(path);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS eval_attempts (
        run_id TEXT NOT NULL, env_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        family TEXT NOT NULL, score REAL NOT NULL, reason TEXT NOT NULL, verifier_error TEXT,
        status TEXT NOT NULL, steps INTEGER NOT NULL, tool_calls INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
        finished_at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (run_id, env_id, task_id, attempt));
      CREATE TABLE IF NOT EXISTS eval_starts (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, env_id TEXT NOT NULL, task_id TEXT NOT NULL,
        attempt INTEGER NOT NULL, pid INTEGER NOT NULL, started_at TEXT NOT NULL DEFAULT (datetime('now')));`);
  }

  has(k: AttemptKey): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM eval_attempts WHERE run_id = ? AND env_id = ? AND task_id = ? AND attempt = ?')
      .get(k.runId, k.envId, k.taskId, k.attempt);
  }

  recordStart(k: AttemptKey): void {
    this.db.prepare('INSERT INTO eval_starts (run_id, env_id, task_id, attempt, pid) VALUES (?, ?, ?, ?, ?)').run(k.runId, k.envId, k.taskId, k.attempt, process.pid);
  }

  /** Returns false when the result was already recorded (the earlier one is kept). */
  record(k: AttemptKey, family: string, r: AttemptResult): boolean {
    const info = this.db
      .prepare(
        `INSERT INTO eval_attempts (run_id, env_id, task_id, attempt, family, score, reason, verifier_error, status, steps,
           tool_calls, prompt_tokens, completion_tokens, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      )
      .run(k.runId, k.envId, k.taskId, k.attempt, family, r.score, r.reason, r.verifierError ?? null, r.status, r.steps, r.toolCalls, r.tokens.prompt, r.tokens.completion, r.durationMs);
    return info.changes === 1;
  }

  rows(runId: string): AttemptRow[] {
    return (
      this.db.prepare('SELECT * FROM eval_attempts WHERE run_id = ? ORDER BY env_id, task_id, attempt').all(runId) as Array<Record<string, any>>
    ).map((r) => ({
      runId: r.run_id,
      envId: r.env_id,
      taskId: r.task_id,
      attempt: r.attempt,
      family: r.family,
      score: r.score,
      reason: r.reason,
      verifierError: r.verifier_error,
      status: r.status,
      steps: r.steps,
      toolCalls: r.tool_calls,
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      durationMs: r.duration_ms,
    }));
  }

  starts(runId: string): Array<AttemptKey & { pid: number }> {
    return (this.db.prepare('SELECT * FROM eval_starts WHERE run_id = ? ORDER BY id').all(runId) as Array<Record<string, any>>).map((r) => ({
      runId: r.run_id,
      envId: r.env_id,
      taskId: r.task_id,
      attempt: r.attempt,
      pid: r.pid,
    }));
  }

  close(): void {
    this.db.close();
  }
}
