// Synthesis state in SQLite. Every pipeline step (build an environment, propose a task at a level,
// one policy attempt, publish) is a row keyed by a stable name such as `inventory-0/task-2` or
// `inventory-0/t2/attempt-5`; a step marked done is never run again, which is what makes a killed run
// resume where it stopped. Tasks are unique by normalised-prompt hash across the whole run.
import { openStateDb, type StateDb } from '../eval/state-db.js';
import { SynthError } from './errors.js';

export type StepStatus = 'running' | 'done';

export interface StepRow {
  key: string;
  envId: string;
  kind: string;
  status: StepStatus;
  starts: number;
  result: unknown;
  promptTokens: number;
  completionTokens: number;
  cost: number;
}

export interface TaskRow {
  envId: string;
  taskId: string;
  level: number;
  prompt: string;
  promptHash: string;
  difficulty: string;
  /** validated: passed `env validate`; kept: pass@k > 0; dropped: the policy never solved it. */
  status: 'validated' | 'kept' | 'dropped';
  passes: number;
  attempts: number;
}

export class SynthStore {
  readonly db: StateDb;

  constructor(readonly path: string) {
    this.db = openStateDb(path);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS steps (
        key TEXT PRIMARY KEY, env_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        starts INTEGER NOT NULL DEFAULT 0, result TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
        started_at TEXT, finished_at TEXT);
      CREATE TABLE IF NOT EXISTS tasks (
        env_id TEXT NOT NULL, task_id TEXT NOT NULL, level INTEGER NOT NULL, prompt TEXT NOT NULL,
        prompt_hash TEXT NOT NULL UNIQUE, difficulty TEXT NOT NULL, status TEXT NOT NULL,
        passes INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (env_id, task_id));`);
  }

  /** Binds this database to one run configuration; a resumed run must ask for the same category. */
  bindRun(config: Record<string, unknown>): void {
    const fixed = JSON.stringify({ category: config.category });
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'run'").get() as { value: string } | undefined;
    if (!row) this.db.prepare("INSERT INTO meta (key, value) VALUES ('run', ?)").run(fixed);
    else if (row.value !== fixed) {
      throw new SynthError(`--db ${this.path} belongs to a run with ${row.value}, not ${fixed}; use another --db or --out`);
    }
  }

  step(key: string): StepRow | undefined {
    const r = this.db.prepare('SELECT * FROM steps WHERE key = ?').get(key) as Record<string, any> | undefined;
    if (!r) return undefined;
    return {
      key: r.key,
      envId: r.env_id,
      kind: r.kind,
      status: r.status,
      starts: r.starts,
      result: r.result === null ? undefined : JSON.parse(r.result),
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      cost: r.cost,
    };
  }

  startStep(key: string, envId: string, kind: string): void {
    this.db
      .prepare(
        `INSERT INTO steps (key, env_id, kind, status, starts, started_at) VALUES (?, ?, ?, 'running', 1, datetime('now'))
         ON CONFLICT (key) DO UPDATE SET status = 'running', starts = starts + 1, started_at = datetime('now')`,
      )
      .run(key, envId, kind);
  }

  finishStep(key: string, result: unknown, usage: { prompt: number; completion: number; cost: number }): void {
    this.db
      .prepare(
        `UPDATE steps SET status = 'done', result = ?, prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,
           cost = cost + ?, finished_at = datetime('now') WHERE key = ?`,
      )
      .run(JSON.stringify(result ?? null), usage.prompt, usage.completion, usage.cost, key);
  }

  /** Tokens spent by a step that did not finish (it will be run again), so totals stay honest. */
  addUsage(key: string, usage: { prompt: number; completion: number; cost: number }): void {
    this.db.prepare('UPDATE steps SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?, cost = cost + ? WHERE key = ?').run(usage.prompt, usage.completion, usage.cost, key);
  }

  /** The task owning this prompt hash, if any (de-duplication across the run). */
  taskByHash(hash: string): TaskRow | undefined {
    const r = this.db.prepare('SELECT * FROM tasks WHERE prompt_hash = ?').get(hash) as Record<string, any> | undefined;
    return r ? this.toTask(r) : undefined;
  }

  /** Records a validated task; replaces an earlier validated row of the same (env, task) from a re-run stage. */
  addTask(t: Omit<TaskRow, 'status' | 'passes' | 'attempts'>): void {
    const tx = this.db.transaction(() => {
      this.db.prepare('DELETE FROM tasks WHERE env_id = ? AND task_id = ?').run(t.envId, t.taskId);
      this.db
        .prepare("INSERT INTO tasks (env_id, task_id, level, prompt, prompt_hash, difficulty, status) VALUES (?, ?, ?, ?, ?, ?, 'validated')")
        .run(t.envId, t.taskId, t.level, t.prompt, t.promptHash, t.difficulty);
    });
    tx();
  }

  removeTask(envId: string, taskId: string): void {
    this.db.prepare('DELETE FROM tasks WHERE env_id = ? AND task_id = ?').run(envId, taskId);
  }

  setTaskOutcome(envId: string, taskId: string, passes: number, attempts: number): void {
    this.db.prepare('UPDATE tasks SET status = ?, passes = ?, attempts = ? WHERE env_id = ? AND task_id = ?').run(passes > 0 ? 'kept' : 'dropped', passes, attempts, envId, taskId);
  }

  tasks(envId?: string): TaskRow[] {
    const rows = (envId
      ? this.db.prepare('SELECT * FROM tasks WHERE env_id = ? ORDER BY level').all(envId)
      : this.db.prepare('SELECT * FROM tasks ORDER BY env_id, level').all()) as Array<Record<string, any>>;
    return rows.map((r) => this.toTask(r));
  }

  private toTask(r: Record<string, any>): TaskRow {
    return {
      envId: r.env_id,
      taskId: r.task_id,
      level: r.level,
      prompt: r.prompt,
      promptHash: r.prompt_hash,
      difficulty: r.difficulty,
      status: r.status,
      passes: r.passes,
      attempts: r.attempts,
    };
  }

  totals(): { steps: number; done: number; promptTokens: number; completionTokens: number; cost: number } {
    const r = this.db
      .prepare("SELECT count(*) AS steps, sum(status = 'done') AS done, sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(cost) AS cost FROM steps")
      .get() as Record<string, number | null>;
    return { steps: r.steps ?? 0, done: r.done ?? 0, promptTokens: r.p ?? 0, completionTokens: r.c ?? 0, cost: r.cost ?? 0 };
  }

  close(): void {
    this.db.close();
  }
}
