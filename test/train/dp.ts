// What the data-parallel trainer test and its rank worker (dp-rank.worker.ts) share.
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

export interface DpResult {
  steps: StepLog[];
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
