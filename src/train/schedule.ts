// Learning-rate schedules as pure functions of the step index. `step` counts optimizer steps already
// taken, so lr(0) is the rate of the first update. Warmup is linear and reaches the peak on its last
// step (lr(w−1) = peak), so no update is wasted at lr 0. Cosine decays from the peak at step w to
// minLr at step `totalSteps` and stays there:
//   lr(s) = minLr + (peak − minLr) · ½(1 + cos(π · (s − w)/(totalSteps − w)))
import { z } from 'zod';
import { DsvError } from '../errors.js';

export class ScheduleError extends DsvError {}

export type LrSchedule = (step: number) => number;

function checkStep(step: number): void {
  if (!Number.isInteger(step) || step < 0) throw new ScheduleError(`lr schedule: step must be an integer ≥ 0, got ${step}`);
}
function checkRate(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ScheduleError(`lr schedule: ${name} must be a finite number ≥ 0, got ${v}`);
}
function checkSteps(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new ScheduleError(`lr schedule: ${name} must be an integer ≥ 0, got ${v}`);
}

export function constantLr(lr: number): LrSchedule {
  checkRate('lr', lr);
  return (step) => {
    checkStep(step);
    return lr;
  };
}

/** Linear warmup to `lr` over `warmupSteps` steps, then constant. */
export function warmupLr(lr: number, warmupSteps: number): LrSchedule {
  checkRate('lr', lr);
  checkSteps('warmupSteps', warmupSteps);
  return (step) => {
    checkStep(step);
    return step < warmupSteps ? (lr * (step + 1)) / warmupSteps : lr;
  };
}

export interface CosineOptions {
  lr: number;
  totalSteps: number;
  warmupSteps?: number;
  minLr?: number;
}

/** Linear warmup, then cosine decay to minLr at totalSteps (and minLr after). */
export function cosineLr(opts: CosineOptions): LrSchedule {
  const { lr, totalSteps } = opts;
  const warmupSteps = opts.warmupSteps ?? 0;
  const minLr = opts.minLr ?? 0;
  checkRate('lr', lr);
  checkRate('minLr', minLr);
  checkSteps('warmupSteps', warmupSteps);
  checkSteps('totalSteps', totalSteps);
  if (minLr > lr) throw new ScheduleError(`lr schedule: minLr (${minLr}) must not exceed lr (${lr})`);
  if (totalSteps <= warmupSteps) throw new ScheduleError(`lr schedule: totalSteps (${totalSteps}) must be greater than warmupSteps (${warmupSteps})`);
  const decaySteps = totalSteps - warmupSteps;
  return (step) => {
    checkStep(step);
    if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
    if (step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / decaySteps;
    return minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** Schedules as configuration (e.g. a training config file). */
export const lrScheduleSpec = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant'), lr: z.number().nonnegative() }),
  z.strictObject({ kind: z.literal('warmup'), lr: z.number().nonnegative(), warmupSteps: z.number().int().nonnegative() }),
  z.strictObject({
    kind: z.literal('cosine'),
    lr: z.number().nonnegative(),
    totalSteps: z.number().int().positive(),
    warmupSteps: z.number().int().nonnegative().optional(),
    minLr: z.number().nonnegative().optional(),
  }),
]);
export type LrScheduleSpec = z.infer<typeof lrScheduleSpec>;

export function lrSchedule(spec: LrScheduleSpec): LrSchedule {
  const s = lrScheduleSpec.safeParse(spec);
  if (!s.success) {
    const i = s.error.issues[0]!;
    throw new ScheduleError(`lr schedule: ${i.path.join('.') || 'spec'}: ${i.message}`);
  }
  const v = s.data;
  switch (v.kind) {
    case 'constant': return constantLr(v.lr);
    case 'warmup': return warmupLr(v.lr, v.warmupSteps);
    case 'cosine': return cosineLr(v);
  }
}
