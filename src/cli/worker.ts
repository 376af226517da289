// `dsv32 worker --queue redis://...`: serves synthesis and evaluation jobs from a BullMQ queue until
// SIGINT/SIGTERM. Each job event is one JSON line on stderr. Redis must answer at start (else exit 2);
// if it goes away later the worker reconnects for --reconnect-window-ms, then exits 2 saying so.
import { Command } from 'commander';
import { intArg } from './args.js';
import { MAX_TIMER_MS } from '../agent/http.js';
import { DEFAULT_RECONNECT_WINDOW_MS } from '../envs/queue/connection.js';
import { startWorker, DEFAULT_QUEUE_NAME } from '../envs/queue/bull.js';
import { registerAllJobHandlers } from '../envs/queue/handlers.js';


export function register(program: Command): void {
  program
    .command('worker')
    .description('serve synthesis and evaluation jobs from a BullMQ queue on Redis')
    .requiredOption('--queue <url>', 'Redis URL, redis://host:port[/db]')
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE_NAME)
    .option('--concurrency <n>', 'jobs run at once by this worker', intArg('--concurrency', 1), 1)
    .option('--lock-ms <n>', 'job lock duration; a dead worker\'s job is re-run after about this long', intArg('--lock-ms', 100), 30_000)
    .option('--stalled-interval-ms <n>', 'how often to look for stalled jobs', intArg('--stalled-interval-ms', 100), 30_000)
    .option('--max-stalled <n>', 'times a job may stall before it is failed', intArg('--max-stalled', 0), 2)
    .option('--reconnect-window-ms <n>', 'how long to keep reconnecting to a lost Redis before exiting', intArg('--reconnect-window-ms', 1, MAX_TIMER_MS), DEFAULT_RECONNECT_WINDOW_MS)
    .action(async (o: { queue: string; queueName: string; concurrency: number; lockMs: number; stalledIntervalMs: number; maxStalled: number; reconnectWindowMs: number }) => {
      registerAllJobHandlers();
      const log = (e: Record<string, unknown>) => process.stderr.write(JSON.stringify({ t: new Date().toISOString(), pid: process.pid, ...e }) + '\n');
      const w = await startWorker(o.queue, {
        queueName: o.queueName,
        concurrency: o.concurrency,
        lockDurationMs: o.lockMs,
        stalledIntervalMs: o.stalledIntervalMs,
        maxStalledCount: o.maxStalled,
        reconnectWindowMs: o.reconnectWindowMs,
        log,
      });
      log({ event: 'worker_ready', queue: o.queueName });
      const stopped = new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      try {
        await Promise.race([stopped, w.lost]);
      } catch (e) {
        // Redis is gone: closing would wait on it, and the CLI exits right after the message anyway.
        log({ event: 'worker_stopped', error: (e as Error).message });
        throw e;
      }
      await w.close();
      log({ event: 'worker_stopped' });
    });
}
