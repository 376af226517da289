// Registers every job kind a worker can serve (evaluation attempts, environment synthesis).
import { registerEvalJobs } from '../eval/run.js';
import { registerSynthJobs } from '../synth/pipeline.js';

export function registerAllJobHandlers(): void {
  registerEvalJobs();
  registerSynthJobs();
}
