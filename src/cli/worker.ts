// `dsv32 worker --queue redis://...`: serves synthesis and evaluation jobs from a BullMQ queue until
// SIGINT/SIGTERM. Each job event is one JSON line on stderr.
import { Command } from 'commander';
import { intArg } from './args.js';
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
    .action(async (o: { queue: string; queueName: string; concurrency: number; lockMs: number; stalledIntervalMs: number; maxStalled: number }) => {
      registerAllJobHandlers();
      const log = (e: Record<string, unknown>) => process.stderr.write(JSON.stringify({ t: new Date().toISOString(), pid: process.pid, ...e }) + '\n');
      const w = await startWorker(o.queue, {
        queueName: o.queueName,
        concurrency: o.concurrency,
        lockDurationMs: o.lockMs,
        stalledIntervalMs: o.stalledIntervalMs,
        maxStalledCount: o.maxStalled,
        log,
      });
      log({ event: 'worker_ready', queue: o.queueName });
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await w.close();
      log({ event: 'worker_stopped' });
    });
}
