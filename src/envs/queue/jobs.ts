// Jobs are the unit of scale-out: a synthesis job builds one environment, an evaluation job runs one
// policy attempt at one task. Handlers are registered by kind; a JobRunner (local pool or BullMQ)
// executes a batch of jobs. Handlers must be idempotent: under BullMQ a job whose worker dies is run
// again, so every handler first checks the shared SQLite state and writes its effects keyed by the
// job's identity (INSERT ... ON CONFLICT DO NOTHING).
import { QueueConfigError } from './errors.js';

export interface JobSpec<T = unknown> {
  /** Stable identity: the same work always has the same id (BullMQ de-duplicates by it). */
  id: string;
  kind: string;
  data: T;
}

export interface JobContext {
  signal: AbortSignal;
  /** Log line from the handler (the local pool prints it; a worker prints it on its stderr). */
  log(event: Record<string, unknown>): void;
}

export type JobHandler = (data: unknown, ctx: JobContext) => Promise<unknown>;

const handlers = new Map<string, JobHandler>();

export function registerJobHandler(kind: string, h: JobHandler): void {
  handlers.set(kind, h);
}

export function jobHandler(kind: string): JobHandler {
  const h = handlers.get(kind);
  if (!h) throw new QueueConfigError(`no handler for job kind "${kind}"; known: ${[...handlers.keys()].sort().join(', ') || '(none)'}`);
  return h;
}

export interface JobOutcome {
  id: string;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export interface JobRunner {
  readonly description: string;
  /** Runs every job to completion (or permanent failure); outcomes come back in input order. */
  runAll(jobs: JobSpec[], onOutcome?: (o: JobOutcome) => void): Promise<JobOutcome[]>;
  close(): Promise<void>;
}

/** Runs jobs in this process, `concurrency` at a time. */
export class LocalPool implements JobRunner {
  readonly description: string;
  private readonly ctl = new AbortController();

  constructor(
    private readonly concurrency: number,
    private readonly log: (e: Record<string, unknown>) => void = () => {},
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new QueueConfigError(`--jobs must be a positive integer, got ${concurrency}`);
    this.description = `local pool of ${concurrency}`;
  }

  async runAll(jobs: JobSpec[], onOutcome?: (o: JobOutcome) => void): Promise<JobOutcome[]> {
    const out: JobOutcome[] = new Array(jobs.length);
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const i = next++;
        const j = jobs[i]!;
        let o: JobOutcome;
        try {
          const result = await jobHandler(j.kind)(j.data, { signal: this.ctl.signal, log: this.log });
          o = { id: j.id, ok: true, result };
        } catch (e) {
          o = { id: j.id, ok: false, error: e instanceof Error ? e.message : String(e) };
        }
        out[i] = o;
        onOutcome?.(o);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, Math.max(1, jobs.length)) }, worker));
    return out;
  }

  async close(): Promise<void> {
    this.ctl.abort();
  }
}

/** BullMQ job ids may not contain ":" (its key separator); ids are otherwise kept readable. */
export function queueSafeId(id: string): string {
  return id.replace(/[^A-Za-z0-9._/@=+-]/g, '_');
}
