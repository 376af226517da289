// Graph decode's correctness on the CPU (src/model/decode-graph.ts). A decode step padded to its bucket
// with the shape-static layout (stepLayout's maxLen): the bound changes nothing (bit for bit), the live
// rows and every sequence's cache blocks do not depend on the padded rows (bit for bit), and padded vs
// unpadded steps agree to the rounding of the row count (see PLAN's comment). Then the runner itself,
// with a CPU stand-in for the capture whose replay re-runs the recorded function: it reads nothing the
// host set at capture time but the static tensors, so replays that match eager steps on new data show
// that the per-step data all goes through them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeepseekV32, type RaggedBatch, decodeBuckets, mapSource, randomCheckpoint, randomConfig, stepLayout } from '../../src/model/index.js';
import type { CachePool } from '../../src/model/cache.js';
import { type CapturedGraph, type GraphCapture, contextTier } from '../../src/model/decode-graph.js';
import { narrow } from '../../src/tensor/ops/view.js';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';

// index_topk 8 far below the contexts: the selection is sparse, so the width bound matters
const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 96, index_topk: 8 });
const ckpt = randomCheckpoint(cfg, 11);
/** Sequence s owns blocks [3s, 3s + 3) (192 positions); prompts of these lengths. */
const PROMPTS = [5, 70, 130, 64, 1, 100, 33, 150];
const BLOCKS = 3 * PROMPTS.length + 1;
const SCRATCH = BLOCKS - 1;
const MAXLEN = 320;
const blocksOf = (s: number): number[] => [3 * s, 3 * s + 1, 3 * s + 2];
const tok = (s: number, i: number): number => (i * 13 + s * 31 + 7) % cfg.vocabSize;

function prefill(model: DeepseekV32, pool: CachePool, numerics: 'f32' | 'bf16'): void {
  const ids: number[] = [];
  const seqs = PROMPTS.map((len, s) => {
    const offset = ids.length;
    for (let i = 0; i < len; i++) ids.push(tok(s, i));
    return { offset, len, start: 0, blocks: blocksOf(s) };
  });
  model.step({ ids: Int32Array.from(ids), seqs }, pool, { numerics });
}

/**
 * A decoder over the prompts: each call makes the step of one token for each of the sequences `live`
 * at its next position (no sequence skips a position: unwritten cache rows are never read).
 */
function decoder(): (live: number[]) => RaggedBatch {
  const len = [...PROMPTS];
  let k = 0;
  return (live) => {
    const b: RaggedBatch = {
      ids: Int32Array.from(live, (s) => tok(s, 1000 + k)),
      seqs: live.map((s, i) => ({ offset: i, len: 1, start: len[s]!, blocks: blocksOf(s) })),
    };
    for (const s of live) len[s]!++;
    k++;
    return b;
  };
}

function pad(batch: RaggedBatch, B: number, padId = 0): RaggedBatch {
  const n = batch.seqs.length;
  const ids = new Int32Array(B).fill(padId);
  ids.set(batch.ids);
  const seqs = [...batch.seqs];
  for (let i = n; i < B; i++) seqs.push({ offset: i, len: 1, start: 0, blocks: [SCRATCH] });
  return { ids, seqs, logitRows: Int32Array.from({ length: B }, (_, i) => i) };
}

const bits = (t: { toFloat32(): Float32Array }): Uint32Array => new Uint32Array(t.toFloat32().slice().buffer);

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`${what}: element ${i} differs (${a[i]!.toString(16)} vs ${b[i]!.toString(16)})`);
}

/** The bytes of the live sequences' blocks (every layer, latent and indexer keys). */
function liveCache(pool: CachePool): Uint8Array[] {
  return pool.layers.flatMap((l) => [l.latent, l.index].map((t) => {
    const h = narrow(t, 0, 0, 3 * PROMPTS.length).toHost();
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength).slice();
  }));
}

// What the CPU can show bit for bit, and what it cannot: the CPU GEMM's rounding depends on the row
// count of the product (fewer than 4 rows take a streaming kernel, the blocked one splits rows into
// tiles and threads; the MoE's expert GEMMs see a few rows each), so a step of n rows and the same step
// padded to B rows differ in the last bits, as any two eager batches of different sizes do. So:
//   1. the bound (maxLen) is exact: the same padded batch, static vs tight layout, bit for bit;
//   2. the padded rows do not reach the live rows: padding of other contents, bit for bit;
//   3. padded vs unpadded agree to rounding (and the engine's greedy tokens agree: engine-graphs.test.ts).
const PLAN: [number[], number][] = [[[0, 1, 2, 3, 4, 5, 6, 7], 8], [[0, 1, 2, 3, 4, 5, 6], 8], [[1, 3, 5, 7, 0], 8], [[2], 2], [[5, 0, 7], 4], [[2, 4, 6, 1, 0, 3], 8], [[3], 1], [[1, 6], 8]];

function filledPools(model: DeepseekV32, n: number, format: 'f32' | 'bf16', numerics: 'f32' | 'bf16'): CachePool[] {
  const pools = Array.from({ length: n }, () => model.newPool({ blocks: BLOCKS, format }));
  for (const p of pools) prefill(model, p, numerics);
  return pools;
}

for (const numerics of ['f32', 'bf16'] as const) {
  test(`static layout (${numerics}): a padded decode step with the bound maxLen ${MAXLEN} equals the tight layout's step, logits and caches bit for bit`, () => {
    const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
    const [tight, fixed] = filledPools(model, 2, numerics, numerics);
    const next = decoder();
  PLAN.forEach(([live, B], k) => {
      const padded = pad(next(live), B);
      const layout = stepLayout(padded, fixed!, cfg.indexTopk, { maxLen: MAXLEN });
      assert.equal(layout.width, cfg.indexTopk);
      assert.equal(layout.maxPosition, MAXLEN - 1);
      assert.deepEqual(layout.groups.map((g) => [g.table.shape, g.maxCtx]), [[[B, Math.ceil(MAXLEN / 64)], MAXLEN]]);
      const got = model.step(padded, fixed!, { numerics, layout });
      const want = model.step(padded, tight!, { numerics });
      sameBits(bits(got.logits!), bits(want.logits!), `step ${k} (${live.length} live, bucket ${B})`);
    });
    const a = liveCache(tight!);
    liveCache(fixed!).forEach((x, i) => sameBits(x, a[i]!, `cache tensor ${i}`));
  });
}

test('static layout: the live rows and their cache blocks do not depend on what the padded rows hold (bit for bit, dense layers)', () => {
  // dense layers: every GEMM has the bucket's row count whatever the padding holds (a MoE layer's expert
  // GEMMs would see row counts that depend on where the pad token is routed: their rounding, see above)
  const dense = randomConfig({ num_hidden_layers: 2, vocab_size: 96, index_topk: 8, first_k_dense_replace: 2 });
  const model = DeepseekV32.fromSource(dense, mapSource(randomCheckpoint(dense, 12)));
  const [p0, p17] = filledPools(model, 2, 'f32', 'f32');
  const scratchBefore = narrow(p0!.layers[0]!.latent, 0, SCRATCH, 1).toFloat32().slice();
  const next = decoder();
  PLAN.forEach(([live, B], k) => {
    const batch = next(live);
    const a = model.step(pad(batch, B), p0!, { layout: stepLayout(pad(batch, B), p0!, cfg.indexTopk, { maxLen: MAXLEN }) });
    const b = model.step(pad(batch, B, 17), p17!, { layout: stepLayout(pad(batch, B, 17), p17!, cfg.indexTopk, { maxLen: MAXLEN }) });
    sameBits(bits(narrow(b.logits!, 0, 0, live.length)), bits(narrow(a.logits!, 0, 0, live.length)), `step ${k}: live rows`);
  });
  const a = liveCache(p0!);
  liveCache(p17!).forEach((x, i) => sameBits(x, a[i]!, `cache tensor ${i} (every sequence's blocks)`));
  const scratchAfter = narrow(p0!.layers[0]!.latent, 0, SCRATCH, 1).toFloat32();
  assert.ok(scratchAfter.some((v, i) => v !== scratchBefore[i]), 'the padded rows wrote into the scratch block');
});

for (const numerics of ['f32', 'bf16'] as const) {
  test(`static layout (${numerics}): padded steps agree with the unpadded tight steps to the rounding of the row count`, () => {
    const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
    const [tight, fixed] = filledPools(model, 2, numerics, numerics);
    // f32: GEMM reassociation; bf16: that, then a bf16 activation rounding (2⁻⁸) that may tip
    const tol = numerics === 'f32' ? 1e-5 : 3e-2;
    const next = decoder();
  PLAN.forEach(([live, B], k) => {
      const batch = next(live);
      const want = model.step(batch, tight!, { numerics }).logits!.toFloat32();
      const got = narrow(model.step(pad(batch, B), fixed!, { numerics, layout: stepLayout(pad(batch, B), fixed!, cfg.indexTopk, { maxLen: MAXLEN }) }).logits!, 0, 0, live.length).toFloat32();
      const scale = Math.max(1, ...Array.from(want, Math.abs));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      assert.ok(worst <= tol * scale, `step ${k} (${live.length} live, bucket ${B}): |Δ logits| ${worst} > ${tol * scale}`);
    });
  });
}

test('static layout: a chunk past the bound, or an arena of another shape, is refused with what was wrong', () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const pool = model.newPool({ blocks: BLOCKS });
  const batch = decoder()([2]); // position 130
  assert.throws(() => stepLayout(batch, pool, cfg.indexTopk, { maxLen: 100 }), /positions up to 130 exceed the layout's bound maxLen 100/);
  const l1 = stepLayout(pad(batch, 1), pool, cfg.indexTopk, { maxLen: MAXLEN });
  assert.throws(() => stepLayout(pad(batch, 2), pool, cfg.indexTopk, { maxLen: MAXLEN, into: l1 }), /the layout to write into has parts cpu maxLen 320 \[1\] .*; this batch needs cpu maxLen 320 \[2\]/);
});

/** The CPU stand-in: "capture" records the function (and, unlike CUDA, runs it), a replay re-runs it. */
function standIn(log: string[]): GraphCapture {
  return (fn) => {
    fn();
    log.push('capture');
    const g: CapturedGraph = { replay: () => { log.push('replay'); fn(); }, destroy: () => log.push('destroy') };
    return g;
  };
}

test('DecodeGraphs with a stand-in capture: first use eager then captured, replays on new data equal eager steps, recaptured after a weight update', () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const eager = model.newPool({ blocks: BLOCKS });
  const graphed = model.newPool({ blocks: BLOCKS });
  prefill(model, eager, 'f32');
  prefill(model, graphed, 'f32');
  const log: string[] = [];
  const runner = model.decodeGraphs(graphed, { maxLen: MAXLEN, scratchBlock: SCRATCH, maxSeqs: 3, capture: standIn(log) })!;
  assert.deepEqual(runner.buckets, [1, 2, 3]);
  const plan = [[0, 1], [0, 1], [1, 2], [0, 1, 2], [2], [0, 2, 1], [3]];
  const next = decoder();
  plan.forEach((live, k) => {
    const batch = next(live);
    const want = model.step(batch, eager, {});
    const got = runner.step(batch)!;
    assert.deepEqual(got.logits.shape, [live.length, cfg.vocabSize]);
    sameBits(bits(got.logits), bits(want.logits!), `step ${k} (${live.join(',')})`);
    // the routes the graph wrote to its static tensors: the eager step's, row for row
    assert.equal(got.routes.length, want.routes.length);
    want.routes.forEach((r, l) => {
      if (!r) return assert.equal(got.routes[l], null, `layer ${l} is dense`);
      assert.deepEqual(Array.from(got.routes[l]!.toHost() as Int32Array), Array.from(r.toHost() as Int32Array), `step ${k} layer ${l} routes`);
    });
  });
  // buckets 2, 3, 1 captured once each on first use; every later use replayed
  assert.deepEqual(runner.stats, { replays: 4, captures: 3, eager: 3, failures: [] });
  assert.equal(runner.step(next([0, 1, 2, 3])), null, 'four sequences: no bucket (maxSeqs 3), the caller runs eagerly');
  model.weights.update();
  const batch = next([0, 1]);
  sameBits(bits(runner.step(batch)!.logits), bits(model.step(batch, eager, {}).logits!), 'after the weight update');
  assert.equal(runner.stats.captures, 4, 'a new generation of the weights recaptures the bucket');
  assert.equal(log.filter((x) => x === 'destroy').length, 1, 'the stale graph was destroyed');
  runner.destroy();
  assert.equal(log.filter((x) => x === 'destroy').length, 4);
  assert.throws(() => runner.step(batch), /used after destroy/);
});

test('decode buckets and context tiers', () => {
  assert.deepEqual(decodeBuckets(1), [1]);
  assert.deepEqual(decodeBuckets(64), [1, 2, 4, 8, 16, 32, 64]);
  assert.deepEqual(decodeBuckets(48), [1, 2, 4, 8, 16, 32, 48]);
  assert.deepEqual([[1, 320], [256, 320], [257, 320], [257, 4096], [3000, 4096], [4096, 4096]].map(([n, m]) => contextTier(n!, m!)), [256, 256, 320, 512, 4096, 4096]);
  assert.throws(() => decodeBuckets(0), /maxSeqs must be a positive integer, got 0/);
});

test('DecodeGraphs: a failed capture leaves the bucket eager (reported once), and non-decode batches are refused', () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const pool = model.newPool({ blocks: BLOCKS });
  prefill(model, pool, 'f32');
  const told: string[] = [];
  const runner = model.decodeGraphs(pool, {
    maxLen: MAXLEN, scratchBlock: SCRATCH, maxSeqs: 2,
    capture: () => { throw new Error('cuda: upload is not allowed while a CUDA graph is being captured'); },
    onFallback: (b, l, r) => told.push(`${b} ${l}: ${r}`),
  })!;
  const next = decoder();
  for (let k = 0; k < 3; k++) assert.ok(runner.step(next([0, 1])));
  assert.deepEqual(told, ['2 256: cuda: upload is not allowed while a CUDA graph is being captured']);
  assert.deepEqual(runner.stats, { replays: 0, captures: 0, eager: 3, failures: [{ bucket: 2, context: 256, reason: 'cuda: upload is not allowed while a CUDA graph is being captured' }] });
  const prefillChunk: RaggedBatch = { ids: Int32Array.of(1, 2), seqs: [{ offset: 0, len: 2, start: PROMPTS[0]!, blocks: blocksOf(0) }] };
  assert.throws(() => runner.step(prefillChunk), /takes chunks of 1 token each, in order; this batch has 2 tokens in 1 chunks/);
  assert.equal(model.decodeGraphs(pool, { maxLen: MAXLEN, scratchBlock: SCRATCH, maxSeqs: 2 }), null, 'the CPU cannot capture: no runner');
  assert.throws(() => model.decodeGraphs(pool, { maxLen: MAXLEN, scratchBlock: BLOCKS, maxSeqs: 2, capture: standIn([]) }), /scratchBlock 25 is not a block of the pool \[0, 25\)/);
  const opts = { maxLen: MAXLEN, scratchBlock: SCRATCH, maxSeqs: 2, capture: standIn([]) };
  assert.throws(() => model.decodeGraphs(pool, { ...opts, rowTokens: 5 }), /rowTokens must be 1 to 4 \(1 \+ up to 3 drafts\), got 5/);
  assert.throws(() => model.decodeGraphs(pool, { ...opts, rowTokens: 2, mode: 'mha' }), /replay with MQA attention only/);
  assert.throws(() => model.decodeGraphs(pool, { ...opts, rowTokens: 2, mtp: true }), /mtp: true needs a model with MTP layers/);
  assert.throws(() => runner.propose(new Int32Array(2)), /propose\(\) needs a runner made with mtp: true/);
});

// ---- CUDA: real capture and replay (skipped without a driver) -------------------------------------------

const cudaReason = cudaUnavailableReason();
const onGpu = { skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` };

for (const numerics of ['f32', 'bf16'] as const) {
  test(`decode graphs on CUDA (${numerics}): replayed steps of 1..8 sequences equal eager steps to rounding, every bucket captured [cuda]`, onGpu, () => {
    const model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: 'cuda' });
    const pools = [0, 1].map(() => model.newPool({ blocks: BLOCKS }));
    for (const pool of pools) prefill(model, pool, numerics);
    const runner = model.decodeGraphs(pools[1]!, { maxLen: MAXLEN, scratchBlock: SCRATCH, maxSeqs: 8, numerics })!;
    assert.ok(runner, 'the CUDA backend can capture');
    // each bucket used at least twice (capture, then replays), batch sizes going up and down
    const plan = [[0], [1], [0, 1], [2, 3], [0, 1, 2], [3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3], [1, 2, 3, 4, 5, 6, 7], [2, 5], [6], [0, 3, 6]];
    const tol = numerics === 'f32' ? 1e-4 : 3e-2;
    const next = decoder();
    plan.forEach((live, k) => {
      const batch = next(live);
      const want = model.step(batch, pools[0]!, { numerics }).logits!.toFloat32();
      const step = runner.step(batch)!;
      const got = step.logits.toFloat32();
      // routes are discrete: a rounding difference at a near tie may pick another expert, so only their shape
      step.routes.forEach((r, l) => assert.deepEqual(r?.shape ?? null, model.cfg.nDenseLayers > l ? null : [live.length, model.cfg.nActivatedExperts], `layer ${l} routes`));
      assert.equal(got.length, want.length);
      const scale = Math.max(1, ...Array.from(want, Math.abs));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      assert.ok(worst <= tol * scale, `step ${k} (${live.length} sequences): |Δ logits| ${worst} > ${tol * scale}`);
    });
    assert.deepEqual(runner.stats.failures, [], 'every bucket captured');
    assert.equal(runner.stats.captures, 4, 'buckets 1, 2, 4, 8');
    assert.equal(runner.stats.replays, plan.length - 4);
    runner.destroy();
  });
}
