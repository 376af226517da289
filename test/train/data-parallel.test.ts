// Data-parallel training (issue 16) on the CPU: 2 ranks as threads (ThreadCollective), each taking half
// of every step's global batch, against 1 rank taking the whole batch, in f64 numerics so that the only
// difference left is the order of float sums (a weight gradient summed over 2 halves and averaged vs
// over all rows at once): ~1e-16 relative per operation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../src/backend/cpu/index.js';
import { threadGroup, ThreadCollective, runThreadRanks } from '../../src/dist/thread-collective.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { parseConfig } from '../../src/model/config.js';
import { DeepseekV32 } from '../../src/model/model.js';
import { randomCheckpoint } from '../../src/model/random-weights.js';
import { mapSource } from '../../src/model/weights.js';
import { train, TrainError, type StepLog } from '../../src/train/trainer.js';
import type { DpRank, DpResult } from './dp.js';
import { maxDiff, weightsOf } from './dp.js';
import { TRAIN_MODEL as MODEL, tinyCorpus } from './tiny.js';

const WORKER = new URL('./dp-rank.worker.js', import.meta.url);

function setup(over: Record<string, unknown> = {}): { dir: string; raw: Record<string, unknown> } {
  const { dir, data } = tinyCorpus('dsv32-dp-');
  const raw = {
    model: { config: MODEL, seed: 1 },
    data: { path: data, seqLen: 16, batchSize: 4, seed: 3 },
    steps: 3,
    schedule: { kind: 'cosine', lr: 3e-3, totalSteps: 3, warmupSteps: 1 },
    numerics: 'f64',
    device: 'cpu', // f64 numerics (the only way every difference is rounding) run on the CPU only
    out: join(dir, 'out'),
    saveEvery: 100,
    ...over,
  };
  return { dir, raw };
}

const strip = (l: StepLog): Record<string, unknown> => ({ step: l.step, phase: l.phase, loss: l.loss, lm: l.lm, mtp: l.mtp, indexer: l.indexer, grad_norm: l.grad_norm, tokens: l.tokens });

/** The run's weights before any step (the config's seed, f64 masters). */
function initial(): Record<string, Float64Array> {
  const mc = parseConfig(MODEL, 'model');
  return weightsOf(DeepseekV32.fromSource(mc, mapSource(randomCheckpoint(mc, 1)), { master: 'f64' }));
}

// Tolerances: every difference is f64 rounding (~1e-16 relative) summed over a few hundred terms and
// carried through 3 AdamW steps, 1e-12 relative on the logged numbers. On the weights AdamW divides each
// gradient by its own running magnitude, so a component that nearly cancels carries its rounding into a
// whole step: the dsa stage's weights differed by 1.07e-12 with OpenBLAS's SkylakeX kernels (AVX-512
// machines), 1.6e-13 with the Haswell ones (this host sets OPENBLAS_CORETYPE=Haswell) and 1.3e-13 with
// the TypeScript GEMM; 1e-10 is ~1e-8 of what the steps move them (~6e-3). The control runs show what a
// real mistake costs: 1 rank on only rank 0's rows is off by ~1e-3 in the weights.
for (const [stage, over] of [['pretrain', {}], ['dsa', { dsa: { warmupSteps: 1 } }]] as const) {
  test(`${stage}: 2 ranks of 2 rows equal 1 rank of the same 4 rows (losses, grad norms, weights after 3 steps, f64); the ranks stay identical bit for bit`, async () => {
    const { dir, raw } = setup(over);
    const oneLog: StepLog[] = [];
    const one = await train(stage, parseTrainConfig({ ...raw, out: join(dir, 'one') }), { onStep: (l) => oneLog.push(l) });
    const ranks = await runThreadRanks<DpResult>(2, WORKER, { stage, raw: { ...raw, out: join(dir, 'two') } } satisfies DpRank);
    // every rank holds the same weights and routing biases after every step, and logged the same numbers
    assert.equal(ranks[0]!.digests.length, 3);
    assert.deepEqual(ranks[1]!.digests, ranks[0]!.digests);
    assert.deepEqual(ranks[1]!.steps.map(strip), ranks[0]!.steps.map(strip));
    if (stage === 'dsa') assert.deepEqual(oneLog.map((l) => l.phase), ['warmup', 'sparse', 'sparse']);
    const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
    ranks[0]!.steps.forEach((l, i) => {
      const o = oneLog[i]!;
      assert.equal(l.tokens, o.tokens, 'tokens count the global batch');
      for (const [k, a, b] of [['loss', l.loss, o.loss], ['grad_norm', l.grad_norm, o.grad_norm], ['lm', l.lm, o.lm], ['mtp', l.mtp[0], o.mtp[0]], ['indexer', l.indexer, o.indexer]] as const) {
        if (b === null || b === undefined) {
          assert.equal(a, b, `step ${i + 1} ${k}`);
          continue;
        }
        assert.ok(rel(a!, b) < 1e-12, `step ${i + 1} ${k}: 2 ranks ${a}, 1 rank ${b}`);
      }
    });
    const w1 = weightsOf(one.model);
    const moved = maxDiff(initial(), w1);
    const d = maxDiff(ranks[0]!.weights, w1);
    assert.ok(moved > 1e-3, `the steps moved the weights (max ${moved})`);
    assert.ok(d < 1e-10, `2 ranks vs 1: max |Δw| ${d}`);
    process.stdout.write(`# ${stage}: 2 ranks vs 1, max |Δw| ${d.toExponential(2)} (weights moved up to ${moved.toExponential(2)})\n`);
    // control: one rank on rank 0's rows alone is far outside the tolerance
    const half = await train(stage, parseTrainConfig({ ...raw, data: { ...(raw.data as object), batchSize: 2 }, out: join(dir, 'half') }));
    assert.ok(maxDiff(weightsOf(half.model), w1) > 1e-6);
    // only rank 0 wrote: one log line per step and the final checkpoint
    assert.equal(ranks[0]!.checkpoint, join(dir, 'two', 'step-000003'));
    assert.equal(ranks[1]!.checkpoint, null);
  });
}

test('2 ranks: stopped after 2 steps and resumed to 4 equals the uninterrupted 2-rank run bit for bit (f32)', async () => {
  const { dir, raw } = setup({ steps: 4, schedule: { kind: 'cosine', lr: 3e-3, totalSteps: 4, warmupSteps: 1 }, numerics: 'f32' });
  const straight = await runThreadRanks<DpResult>(2, WORKER, { stage: 'pretrain', raw: { ...raw, out: join(dir, 'a') } } satisfies DpRank);
  const first = await runThreadRanks<DpResult>(2, WORKER, { stage: 'pretrain', raw: { ...raw, out: join(dir, 'b') }, stopAfter: 2 } satisfies DpRank);
  assert.equal(first[0]!.steps.length, 2);
  const second = await runThreadRanks<DpResult>(2, WORKER, { stage: 'pretrain', raw: { ...raw, out: join(dir, 'b') } } satisfies DpRank);
  assert.deepEqual(second[0]!.steps.map((l) => l.step), [3, 4]);
  assert.deepEqual(second[0]!.digests.at(-1), straight[0]!.digests.at(-1));
  assert.deepEqual(second[1]!.digests.at(-1), straight[0]!.digests.at(-1));
  assert.deepEqual(readFileSync(join(dir, 'b', 'train.jsonl'), 'utf8').trim().split('\n').map((l) => strip(JSON.parse(l) as StepLog)),
    readFileSync(join(dir, 'a', 'train.jsonl'), 'utf8').trim().split('\n').map((l) => strip(JSON.parse(l) as StepLog)));
  assert.deepEqual(readdirSync(join(dir, 'b')).filter((f) => f.startsWith('step-')).sort(), ['step-000002', 'step-000004']);
});

test('a global batch not divisible by the world size, and a multi-process world on the CPU, are named errors', async () => {
  const { dir, raw } = setup({ data: { path: '', seqLen: 16, batchSize: 3, seed: 3 } });
  (raw.data as { path: string }).path = join(dir, 'data.jsonl');
  const c = new ThreadCollective(threadGroup(2), 0);
  await assert.rejects(train('pretrain', parseTrainConfig(raw), { collective: c }), (e: unknown) => e instanceof TrainError &&
    e.message === 'data.batchSize 3 is not divisible by the world size 2: it is the global batch, and each rank takes batchSize/2 of its rows');
  const saved = { ...process.env };
  try {
    Object.assign(process.env, { DSV32_WORLD_SIZE: '2', DSV32_RANK: '0', DSV32_NCCL_ID_FILE: join(dir, 'id') });
    await assert.rejects(train('pretrain', parseTrainConfig({ ...raw, device: 'cpu' })), /DSV32_WORLD_SIZE is 2: multi-process runs need the cuda backend, got 'cpu'/);
  } finally {
    for (const k of ['DSV32_WORLD_SIZE', 'DSV32_RANK', 'DSV32_NCCL_ID_FILE']) if (saved[k] === undefined) delete process.env[k];
  }
  assert.equal(existsSync(join(dir, 'out')), false, 'nothing was written');
});
