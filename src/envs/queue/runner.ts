// Picks the job runner for a command: BullMQ when --queue is given, else a local pool.
import { BullRunner } from './bull.js';
import { LocalPool, type JobRunner } from './jobs.js';
import { registerAllJobHandlers } from './handlers.js';

export function makeRunner(o: { queue?: string; queueName?: string; jobs: number; log?: (e: Record<string, unknown>) => void }): JobRunner {
  registerAllJobHandlers();
  return o.queue ? new BullRunner(o.queue, o.queueName ? { queueName: o.queueName } : {}) : new LocalPool(o.jobs, o.log);
}
