// Picks the job runner for a command: BullMQ when --queue is given (after checking that Redis answers),
// else a local pool.
import { BullRunner } from './bull.js';
import { LocalPool, type JobRunner } from './jobs.js';
import { registerAllJobHandlers } from './handlers.js';

export async function makeRunner(o: { queue?: string; queueName?: string; jobs: number; log?: (e: Record<string, unknown>) => void }): Promise<JobRunner> {
  registerAllJobHandlers();
  if (!o.queue) return new LocalPool(o.jobs, o.log);
  // Queue events (Redis lost, back, given up) are rare and matter, so they always reach stderr.
  return BullRunner.connect(o.queue, { ...(o.queueName ? { queueName: o.queueName } : {}), log: (e) => process.stderr.write(`[queue] ${JSON.stringify(e)}\n`) });
}
