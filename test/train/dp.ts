// What the data-parallel tests of dsv32 train and dsv32 rl and their rank workers share.
import { createHash } from 'node:crypto';
import type { DeepseekV32 } from '../../src/model/model.js';
import type { Stage } from '../../src/train/config.js';
import type { StepLog } from '../../src/train/trainer.js';

export interface DpRank {
  stage: Stage;
  /** the raw train config (parsed in the worker) */
  raw: Record<string, unknown>;
  stopAfter?: number;
}

export interface DpResult<L = StepLog> {
  steps: L[];
  /** sha256 of every parameter's bytes after each step */
  digests: string[];
  /** final state tensors by name, as f64 */
  weights: Record<string, Float64Array>;
  checkpoint: string | null;
}

/** Every state tensor (the parameters and the routing biases). */
export function weightDigest(model: DeepseekV32): string {
  const h = createHash('sha256');
  for (const [n, p] of model.weights.stateTensors()) {
    h.update(n);
    const v = p.toHost();
    h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return h.digest('hex');
}

export function weightsOf(model: DeepseekV32): Record<string, Float64Array> {
  return Object.fromEntries([...model.weights.stateTensors()].map(([n, p]) => [n, p.toFloat64()]));
}

/** Largest |a − b| over every state tensor (weightsOf's). */
export function maxDiff(a: Record<string, Float64Array>, b: Record<string, Float64Array>): number {
  let m = 0;
  for (const [n, x] of Object.entries(a)) {
    const y = b[n];
    if (!y || y.length !== x.length) throw new Error(`maxDiff: '${n}' has ${x.length} elements on one side and ${y?.length ?? 'none'} on the other`);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  }
  return m;
}

/**
 * One rank's run, recorded: `run` gets the hooks to pass to its trainer (train or rlTrain) and returns the
 * trainer's result; the step logs, a digest of the weights after every step, the final weights and the
 * checkpoint it wrote come back.
 */
export async function recordRank<L>(run: (hooks: { onStart: (i: { model: DeepseekV32 }) => void; onStep: (l: L) => void }) => Promise<{ model: DeepseekV32; checkpoint: string | null }>): Promise<DpResult<L>> {
  const out: DpResult<L> = { steps: [], digests: [], weights: {}, checkpoint: null };
  let model: DeepseekV32 | null = null;
  const r = await run({
    onStart: (i) => (model = i.model),
    onStep: (l) => {
      out.steps.push(l);
      out.digests.push(weightDigest(model!));
    },
  });
  out.weights = weightsOf(r.model);
  out.checkpoint = r.checkpoint;
  return out;
}
