// A training step leaves nothing behind: every tensor it creates (activations, the tape, gradients,
// temporaries, the held-out evaluation's) is unreachable once the next steps have run. On the GPU a
// retained tensor is retained device memory, and 8 steps of a 13 M-parameter model that leaked held
// 84 GB on an H100 (docs/gpu.md); this test finds such a leak on the CPU, where CI runs, by tagging every
// storage the backend allocates with the step that allocated it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { collectGarbageNow } from '../../src/tensor/memory.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { Rng } from '../../src/tensor/random.js';
import type { Stage } from '../../src/train/config.js';
import { TRAIN_MODEL as MODEL } from './tiny.js';


/** Storages allocated while `run` goes, each tagged with the value of `tag()` at its allocation. */
async function tracked(tag: () => number, run: () => Promise<void>): Promise<{ step: number; ref: WeakRef<object> }[]> {
  const seen: { step: number; ref: WeakRef<object> }[] = [];
  const proto = CpuBackend.prototype as unknown as Record<string, (...a: unknown[]) => object>;
  const saved = { alloc: proto.alloc!, fromHost: proto.fromHost! };
  for (const k of ['alloc', 'fromHost'] as const) {
    const orig = saved[k];
    proto[k] = function (this: unknown, ...a: unknown[]) {
      const s = orig.apply(this, a);
      seen.push({ step: tag(), ref: new WeakRef(s) });
      return s;
    };
  }
  try {
    await run();
  } finally {
    proto.alloc = saved.alloc;
    proto.fromHost = saved.fromHost;
  }
  return seen;
}

for (const [stage, extra] of [
  ['pretrain', {}],
  ['dsa', { dsa: { warmupSteps: 2 } }],
] as [Stage, Record<string, unknown>][]) {
  test(`${stage}: no tensor made by step k is alive after step k+2 (activations, tape, grads, eval)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsv32-retain-'));
    const rng = new Rng(5);
    const lines = Array.from({ length: 30 }, () => JSON.stringify({ ids: Array.from({ length: 24 }, () => 2 + (rng.nextU32() % 60)) }));
    writeFileSync(join(dir, 'data.jsonl'), lines.join('\n') + '\n');
    const steps = 7;
    const cfg = parseTrainConfig({
      model: { config: MODEL, seed: 1 },
      data: { path: join(dir, 'data.jsonl'), seqLen: 16, batchSize: 2, seed: 3 },
      steps,
      schedule: { kind: 'cosine', lr: 3e-3, totalSteps: steps, warmupSteps: 1 },
      eval: { every: 2, batches: 1 },
      out: join(dir, 'out'),
      saveEvery: 3,
      device: 'cpu',
      ...extra,
    });
    let done = 0;
    let result: Awaited<ReturnType<typeof train>> | null = null;
    const seen = await tracked(() => done, async () => {
      result = await train(stage, cfg, { onStep: () => void done++ });
    });
    assert.equal(done, steps);
    collectGarbageNow();
    await new Promise<void>((r) => setImmediate(r));
    collectGarbageNow();
    // steps 2..steps-3 (0-based): step 0/1 create the optimizer's moments, which live on by design;
    // the last two steps' weights (the updated parameters' compute copies) are the model's current state
    const made = seen.filter((s) => s.step >= 2 && s.step <= steps - 3);
    assert.ok(made.length > 100, `expected the middle steps to allocate tensors, saw ${made.length}`);
    const alive = made.filter((s) => s.ref.deref() !== undefined);
    assert.equal(alive.length, 0, `${alive.length} of ${made.length} storages made in steps 2..${steps - 3} are still reachable: ${alive.slice(0, 5).map((s) => `step ${s.step} ${(s.ref.deref() as { dtype?: string; numel?: number }).dtype}[${(s.ref.deref() as { numel?: number }).numel}]`).join(', ')}`);
    assert.ok(result);
  });
}
