// Scale-out over Redis with BullMQ. The submitting command adds one BullMQ job per JobSpec, with the
// spec's stable id as the BullMQ job id, so re-submitting after a crash does not duplicate work, and
// waits for each to finish. `dsv32 worker` processes (any number, any machine that shares the output
// directory) run them. A worker that dies mid-job stops renewing the job's lock; after lockDuration
// another worker's stalled-job check moves the job back to the wait list and it runs again. Handlers
// are idempotent (jobs.ts), so a re-run never duplicates effects. Redis is checked before anything
// starts, and a lost connection is retried for a bounded time only (connection.ts).
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import { probeRedis, ReconnectWindow } from './connection.js';
import { QueueConfigError } from './errors.js';
import { jobHandler, queueSafeId, type JobOutcome, type JobRunner, type JobSpec } from './jobs.js';

export const DEFAULT_QUEUE_NAME = 'dsv32';

interface Payload {
  kind: string;
  data: unknown;
}

export interface BullRunnerOptions {
  queueName?: string;
  /** Tries per job when its handler throws (stalls are counted separately by the worker). */
  attempts?: number;
  /** How long to keep reconnecting to a lost Redis before runAll fails (connection.ts default). */
  reconnectWindowMs?: number;
  /** Connection outages and other queue errors, one event each. */
  log?: (e: Record<string, unknown>) => void;
}

export class BullRunner implements JobRunner {
  readonly description: string;
  private readonly reconnect: ReconnectWindow;
  private readonly queue: Queue<Payload>;
  private readonly events: QueueEvents;
  private readonly attempts: number;
  private watching = false;

  /** Checks that Redis answers first (QueueUnreachableError if not), so a dead queue fails at once. */
  static async connect(url: string, opts: BullRunnerOptions & { probeTimeoutMs?: number } = {}): Promise<BullRunner> {
    await probeRedis(url, opts.probeTimeoutMs);
    return new BullRunner(url, opts);
  }

  constructor(url: string, opts: BullRunnerOptions = {}) {
    const log = opts.log ?? (() => {});
    this.reconnect = new ReconnectWindow(url, { ...(opts.reconnectWindowMs !== undefined ? { windowMs: opts.reconnectWindowMs } : {}), log });
    const connection = this.reconnect.connection;
    const name = opts.queueName ?? DEFAULT_QUEUE_NAME;
    this.attempts = opts.attempts ?? 3;
    this.queue = new Queue<Payload>(name, { connection });
    this.events = new QueueEvents(name, { connection });
    const onError = (e: Error) => this.reconnect.noteError(e) || log({ event: 'queue_error', error: e.message });
    this.queue.on('error', onError);
    this.events.on('error', onError);
    this.description = `BullMQ queue "${name}" on ${connection.host}:${connection.port}`;
  }

  /** Fails with QueueConnectionLostError if Redis goes away for longer than the reconnect window. */
  runAll(jobs: JobSpec[], onOutcome?: (o: JobOutcome) => void): Promise<JobOutcome[]> {
    return Promise.race([this.submitAndWait(jobs, onOutcome), this.reconnect.lost]);
  }

  private async submitAndWait(jobs: JobSpec[], onOutcome?: (o: JobOutcome) => void): Promise<JobOutcome[]> {
    await this.events.waitUntilReady();
    if (!this.watching) {
      this.watching = true;
      for (const c of [await this.events.client, await this.queue.client]) c.on('ready', () => this.reconnect.up());
    }
    const added: Job<Payload>[] = [];
    for (const j of jobs) {
      const job = await this.queue.add(j.kind, { kind: j.kind, data: j.data }, {
        jobId: queueSafeId(j.id),
        attempts: this.attempts,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: false,
        removeOnFail: false,
      });
      // The same id may be left failed by an earlier run (adding is then a no-op): run it again.
      const existing = await this.queue.getJob(job.id!);
      if (existing && (await existing.getState()) === 'failed') await existing.retry('failed');
      added.push(existing ?? job);
    }
    return Promise.all(
      added.map(async (job, i) => {
        let o: JobOutcome;
        try {
          o = { id: jobs[i]!.id, ok: true, result: await job.waitUntilFinished(this.events) };
        } catch (e) {
          o = { id: jobs[i]!.id, ok: false, error: e instanceof Error ? e.message : String(e) };
        }
        onOutcome?.(o);
        return o;
      }),
    );
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
  }
}

export interface WorkerOptions {
  queueName?: string;
  concurrency?: number;
  /** How long a job's lock lasts without renewal; a dead worker's job is recovered after about this. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs (of any worker). */
  stalledIntervalMs?: number;
  /** How many times a job may stall (its worker dies) before it is failed instead of re-run. */
  maxStalledCount?: number;
  log?: (e: Record<string, unknown>) => void;
  /** Longest wait for Redis's answer at start (connection.ts default). */
  probeTimeoutMs?: number;
  /** How long to keep reconnecting to a lost Redis before giving up (connection.ts default). */
  reconnectWindowMs?: number;
}

export interface RunningWorker {
  worker: Worker<Payload>;
  /** Rejects with QueueConnectionLostError when Redis stayed away longer than the reconnect window. */
  lost: Promise<never>;
  close(): Promise<void>;
}

/** Serves jobs from the queue until closed; QueueUnreachableError at once if Redis does not answer. */
export async function startWorker(url: string, opts: WorkerOptions = {}): Promise<RunningWorker> {
  const concurrency = opts.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new QueueConfigError(`--concurrency must be a positive integer, got ${concurrency}`);
  await probeRedis(url, opts.probeTimeoutMs);
  const log = opts.log ?? (() => {});
  const reconnect = new ReconnectWindow(url, { ...(opts.reconnectWindowMs !== undefined ? { windowMs: opts.reconnectWindowMs } : {}), log });
  const connection = reconnect.connection;
  const ctl = new AbortController();
  const worker = new Worker<Payload>(
    opts.queueName ?? DEFAULT_QUEUE_NAME,
    async (job) => {
      const { kind, data } = job.data;
      log({ event: 'job_start', job: job.id, kind, attempt: job.attemptsMade + 1 });
      const t0 = Date.now();
      const r = await jobHandler(kind)(data, { signal: ctl.signal, log });
      log({ event: 'job_done', job: job.id, kind, ms: Date.now() - t0 });
      return r;
    },
    {
      connection,
      concurrency,
      lockDuration: opts.lockDurationMs ?? 30_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: opts.maxStalledCount ?? 2,
      autorun: true,
    },
  );
  worker.on('failed', (job, err) => log({ event: 'job_failed', job: job?.id, error: err.message }));
  // During an outage every reconnect attempt of both connections raises an error: the window keeps
  // them and reports the outage once.
  worker.on('error', (err) => reconnect.noteError(err) || log({ event: 'worker_error', error: err.message }));
  worker.on('ready', () => reconnect.up());
  await worker.waitUntilReady();
  (await worker.client).on('ready', () => reconnect.up());
  return {
    worker,
    lost: reconnect.lost,
    close: async () => {
      ctl.abort();
      await worker.close();
    },
  };
}
