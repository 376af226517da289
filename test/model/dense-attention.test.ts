// Dense attention on the inference path (model.ts StepOptions.dense, cache.ts LayoutOptions.dense): every
// query attends to every causal key and the lightning indexer does not run — the dense baseline that DSA
// is measured against, on the same weights, caches and kernels.
//   1. where every context fits in index_topk, DSA selects every causal key too: the two steps are the
//      same function, bit for bit, prefill and decode, MHA and MQA;
//   2. where it does not, dense attention is the training forward's dense attention (the FP8 latent
//      round trip simulated, routes forced so no MoE tie can flip), and not DSA's function;
//   3. graph decode replays dense steps bit for bit (a CPU stand-in for the capture), and nothing is
//      written to the indexer's cache;
//   4. a forced selection or a layout of the other kind is refused with what was wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeepseekV32, type RaggedBatch, mapSource, randomCheckpoint, randomConfig, stepLayout } from '../../src/model/index.js';
import type { CapturedGraph, GraphCapture } from '../../src/model/decode-graph.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { tinyModel, tokenRows } from '../train/tiny.js';

const bits = (t: { toFloat32(): Float32Array }): Uint32Array => new Uint32Array(t.toFloat32().slice().buffer);
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
const rows = (ids: Int32Array, B: number, S: number): number[][] => Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * S, (b + 1) * S)));

for (const mode of ['mha', 'mqa'] as const) {
  test(`dense attention (${mode}): with every context within index_topk it is DSA's step bit for bit, prefill and decode; the selection is every causal key`, () => {
    const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 96, index_topk: 64 });
    const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 4)));
    const ids = tokenRows(2, 40, cfg.vocabSize, 7);
    const dense = model.newCache(2);
    const sparse = model.newCache(2);
    const a = model.forward(rows(ids, 2, 40), { cache: dense, dense: true, mode });
    const b = model.forward(rows(ids, 2, 40), { cache: sparse, mode });
    assert.deepEqual(bits(a.logits!), bits(b.logits!), 'prefill logits');
    a.topk.forEach((sel, l) => {
      assert.equal(sel.width, 40);
      const idx = sel.idx.toHost() as Int32Array;
      assert.deepEqual(Array.from(idx), Array.from(b.topk[l]!.idx.toHost() as Int32Array), `layer ${l}: DSA's top-k of ≤ 64 keys is every key`);
      for (let t = 0; t < 80; t++) for (let j = 0; j < 40; j++) assert.equal(idx[t * 40 + j], j <= t % 40 ? j : -1, `layer ${l} row ${t} key ${j}`);
    });
    for (let k = 0; k < 3; k++) {
      const next = [[k + 3], [k + 50]];
      assert.deepEqual(bits(model.forward(next, { cache: dense, dense: true, mode }).logits!), bits(model.forward(next, { cache: sparse, mode }).logits!), `decode step ${k}`);
    }
  });
}

test('dense attention (S ≫ index_topk) is the training forward\'s dense attention, and not DSA\'s function', () => {
  const model = tinyModel();
  const B = 2;
  const S = 12; // index_topk 4
  const ids = tokenRows(B, S, model.cfg.vocabSize, 5);
  const tr = noGrad(() => model.trainForward(ids, B, S, { attention: 'dense', fp8: true }));
  const forcedRoutes = tr.routes.map((r) => (r ? (r.toHost() as Int32Array) : null));
  const inf = noGrad(() => model.forward(rows(ids, B, S), { mode: 'mqa', dense: true, forcedRoutes }));
  const sparse = noGrad(() => model.forward(rows(ids, B, S), { mode: 'mqa', forcedRoutes }));
  const want = tr.logits.toFloat32();
  const scale = Math.max(...Array.from(want, Math.abs));
  assert.ok(scale > 1, `logits have a real scale (${scale})`);
  // the training forward's dense attention runs as GEMMs (causalMlaPrefillTrain), inference's through the
  // sparse MLA op over every slot: the same function to f32 rounding
  const d = maxAbsDiff(inf.logits!.toFloat32(), want);
  assert.ok(d < 1e-4, `dense inference vs dense training logits: max |Δ| ${d} (scale ${scale})`);
  const gap = maxAbsDiff(sparse.logits!.toFloat32(), want);
  assert.ok(gap > 1e-2 * scale, `DSA (top-4 of 12) should be another function: its logits differ by only ${gap}`);
});

test('dense attention through decode graphs (CPU stand-in capture): replays equal eager dense steps bit for bit; the indexer cache stays unwritten', () => {
  const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 96, index_topk: 8 });
  const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 11)));
  const BLOCKS = 7;
  const SCRATCH = 6;
  const blocksOf = (s: number): number[] => [3 * s, 3 * s + 1, 3 * s + 2];
  const prompts = [30, 100];
  const pools = [model.newPool({ blocks: BLOCKS }), model.newPool({ blocks: BLOCKS })];
  const prefill: RaggedBatch = {
    ids: Int32Array.from({ length: 130 }, (_, i) => (i * 7 + 3) % cfg.vocabSize),
    seqs: [{ offset: 0, len: 30, start: 0, blocks: blocksOf(0) }, { offset: 30, len: 100, start: 0, blocks: blocksOf(1) }],
  };
  for (const p of pools) model.step(prefill, p, { dense: true });
  const log: string[] = [];
  const capture: GraphCapture = (fn) => {
    fn();
    log.push('capture');
    const g: CapturedGraph = { replay: () => { log.push('replay'); fn(); }, destroy: () => {} };
    return g;
  };
  const runner = model.decodeGraphs(pools[1]!, { maxLen: 192, scratchBlock: SCRATCH, maxSeqs: 2, capture, dense: true })!;
  const len = [...prompts];
  for (let k = 0; k < 4; k++) {
    const batch: RaggedBatch = { ids: Int32Array.of(k + 1, k + 40), seqs: [0, 1].map((s) => ({ offset: s, len: 1, start: len[s]!, blocks: blocksOf(s) })) };
    len[0]!++;
    len[1]!++;
    const want = model.step(batch, pools[0]!, { dense: true });
    assert.deepEqual(bits(runner.step(batch)!.logits), bits(want.logits!), `decode step ${k}`);
  }
  assert.deepEqual(log, ['capture', 'replay', 'replay', 'replay']);
  for (const p of pools) {
    for (const l of p.layers) assert.ok((l.index.toHost() as Uint8Array).every((x) => x === 0), 'no indexer key was written');
  }
});

test('dense attention: a forced selection, or a layout of the other kind, is refused with what was wrong', () => {
  const cfg = randomConfig({ num_hidden_layers: 1, vocab_size: 96, index_topk: 8 });
  const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 2)));
  const pool = model.newPool({ blocks: 2 });
  const batch: RaggedBatch = { ids: Int32Array.of(1, 2, 3), seqs: [{ offset: 0, len: 3, start: 0, blocks: [0] }] };
  assert.throws(() => model.step(batch, pool, { dense: true, forcedTopk: [new Int32Array(3 * 8).fill(-1)] }), /forcedTopk replaces the indexer's selection, which dense attention does not make/);
  assert.throws(() => model.step(batch, pool, { dense: true, layout: stepLayout(batch, pool, cfg.indexTopk) }), /dense is true, the given layout was built for sparse attention/);
  const layout = stepLayout(batch, pool, cfg.indexTopk, { dense: true });
  assert.equal(layout.width, 3);
  assert.throws(() => model.step(batch, pool, { dense: false, layout }), /dense is false, the given layout was built for dense attention/);
});
