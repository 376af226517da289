// The engine-shaped step (src/model/batch.ts): a flat ragged batch over a paged pool. A sequence's
// results must not depend on what else is in the batch, where its blocks sit in the pool, how its
// prompt is chunked, or whether its first blocks are shared with another sequence (prefix caching).
// Each case is compared with the sequence run alone through the equal-length API (forward), on every
// available device; choices (top-k positions, routes) exactly, logits within 1e-5 of the largest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';
import { BatchError, DeepseekV32, PAGE, mapSource, randomCheckpoint, randomConfig, selectionIndices, type CachePool, type RaggedBatch, type SequenceChunk, type StepResult } from '../../src/model/index.js';
import { diff } from './golden-data.js';

const cudaReason = cudaUnavailableReason();
const devices = [
  { name: 'cpu', skip: false as string | false },
  { name: 'cuda', skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` },
];

// index_topk 5 far below the contexts, so every sparse choice matters; 2 MoE layers record routes
const cfg = randomConfig({ num_hidden_layers: 3, vocab_size: 200, index_topk: 5 });
const ckpt = randomCheckpoint(cfg, 21);

function tokens(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2147483648) % cfg.vocabSize);
}

/** The last-position logits, per-layer selections and routes of `ids` run alone in one prefill. */
function alone(m: DeepseekV32, ids: number[]) {
  const r = m.forward([ids], { logits: 'last' });
  return {
    logits: r.logits!.toFloat32(),
    topk: r.topk.map((s) => { const a = selectionIndices(s); return Array.from(a.subarray(a.length - s.width)); }),
    routes: r.routes.map((t) => (t ? Array.from((t.toHost() as Int32Array).slice(-cfg.nActivatedExperts)) : null)),
  };
}

/** Row `row` of a ragged step's results, in the same form. */
function rowOf(r: StepResult, logitIndex: number, row: number) {
  const V = cfg.vocabSize;
  return {
    logits: r.logits!.toFloat32().slice(logitIndex * V, (logitIndex + 1) * V),
    topk: r.topk.map((s) => Array.from(selectionIndices(s).subarray(row * s.width, (row + 1) * s.width))),
    routes: r.routes.map((t) => (t ? Array.from((t.toHost() as Int32Array).slice(row * cfg.nActivatedExperts, (row + 1) * cfg.nActivatedExperts)) : null)),
  };
}

function same(got: ReturnType<typeof rowOf>, want: ReturnType<typeof alone>, what: string): void {
  for (let l = 0; l < cfg.nLayers; l++) {
    // the step's width is that of its longest sequence: extra columns are −1 holes
    const g = got.topk[l]!.filter((x) => x >= 0);
    assert.deepEqual(g, want.topk[l]!.filter((x) => x >= 0), `${what}: layer ${l} top-k`);
    assert.deepEqual(got.routes[l], want.routes[l], `${what}: layer ${l} routes`);
  }
  const v = diff(got.logits, want.logits);
  assert.ok(v.maxAbs <= 1e-5 * v.maxRef, `${what}: logits max |Δ| ${v.maxAbs} (max |logit| ${v.maxRef})`);
}

/** A batch from chunks given as [ids, start, blocks]. */
function batchOf(chunks: [number[], number, number[]][]): RaggedBatch {
  let offset = 0;
  const seqs: SequenceChunk[] = chunks.map(([ids, start, blocks]) => {
    const s = { offset, len: ids.length, start, blocks };
    offset += ids.length;
    return s;
  });
  return { ids: Int32Array.from(chunks.flatMap(([ids]) => ids)), seqs };
}

for (const dev of devices) {
  test(`ragged step on ${dev.name}: mixed prefill chunks and decode tokens over scattered blocks equal each sequence alone`, { skip: dev.skip }, () => {
    const m = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const pool: CachePool = m.newPool({ blocks: 12 });
    const a = tokens(150, 1); // 3 blocks
    const b = tokens(70, 2); // 2 blocks
    const c = tokens(9, 3);
    const blocksA = [7, 2, 10];
    const blocksB = [4, 0];
    const blocksC = [11];
    // step 1: A's first chunk (100 tokens), B's whole prompt but its last token, C's prompt
    const s1 = m.step(batchOf([[a.slice(0, 100), 0, blocksA], [b.slice(0, 69), 0, blocksB], [c, 0, blocksC]]), pool, { record: { topk: true } });
    assert.equal(s1.logits!.shape[0], 3);
    same(rowOf(s1, 1, 100 + 68), alone(m, b.slice(0, 69)), 'B prefill');
    same(rowOf(s1, 2, 100 + 69 + 8), alone(m, c), 'C prefill');
    // step 2: B's and C's next tokens (decode, one group) then A's second chunk (a prefill chunk)
    const s2 = m.step(batchOf([[[b[69]!], 69, blocksB], [[5], 9, blocksC], [a.slice(100), 100, blocksA]]), pool, { record: { topk: true } });
    same(rowOf(s2, 0, 0), alone(m, b), 'B decode');
    same(rowOf(s2, 1, 1), alone(m, [...c, 5]), 'C decode');
    same(rowOf(s2, 2, 2 + 49), alone(m, a), 'A chunked prefill');
  });

  test(`ragged step on ${dev.name}: a shared prefix block (prefix caching) and MQA decode with two tokens (MTP verify)`, { skip: dev.skip }, () => {
    const m = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const pool = m.newPool({ blocks: 6 });
    const prefix = tokens(PAGE, 4);
    const x = [...prefix, ...tokens(10, 5)];
    const y = [...prefix, ...tokens(20, 6)];
    // X fills the shared block 3 and its own block 1; Y reuses block 3 and prefills from position 64
    m.step(batchOf([[x, 0, [3, 1]]]), pool);
    const sy = m.step(batchOf([[y.slice(PAGE), PAGE, [3, 5]]]), pool, { record: { topk: true } });
    same(rowOf(sy, 0, 19), alone(m, y), 'Y after a shared prefix');
    // two new tokens per sequence in one MQA step (positions 74, 75 of X and 84, 85 of Y)
    const s = m.step(batchOf([[[7, 8], x.length, [3, 1]], [[9, 10], y.length, [3, 5]]]), pool, { record: { topk: true }, mode: 'mqa' });
    assert.equal(s.logits!.shape[0], 2);
    same(rowOf(s, 1, 3), alone(m, [...y, 9, 10]), 'Y two-token MQA step');
    same(rowOf(s, 0, 1), alone(m, [...x, 7, 8]), 'X two-token MQA step');
  });
}

test('ragged step: a batch that does not fit the pool or the vocabulary is refused, naming the field', () => {
  const m = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const pool = m.newPool({ blocks: 2 });
  const bad = (b: RaggedBatch, re: RegExp): void => assert.throws(() => m.step(b, pool), (e: unknown) => e instanceof BatchError && re.test((e as Error).message));
  bad(batchOf([[tokens(70, 1), 0, [0]]]), /seqs\[0\]\.blocks lists 1 blocks; positions \[0, 70\) need 2/);
  bad(batchOf([[tokens(3, 1), 0, [2]]]), /seqs\[0\]\.blocks\[0\] = 2 is not a block of the pool \[0, 2\)/);
  bad(batchOf([[[cfg.vocabSize], 0, [0]]]), /batch\.ids\[0\] = 200 is not a token id/);
  bad({ ids: Int32Array.of(1, 2), seqs: [{ offset: 0, len: 1, start: 0, blocks: [0] }] }, /chunks cover 1 rows, ids has 2/);
  bad({ ids: Int32Array.of(1, 2), seqs: [{ offset: 0, len: 1, start: 0, blocks: [0] }, { offset: 0, len: 1, start: 0, blocks: [1] }] }, /seqs\[1\]\.offset is 0, expected 1/);
  bad({ ...batchOf([[[1], 0, [0]]]), logitRows: Int32Array.of(3) }, /logitRows: row 3 is not in \[0, 1\)/);
});

test('mtpStep given the main step\'s layout (other logit rows) equals mtpStep building its own, bit for bit; a layout of another batch is refused', () => {
  const mc = randomConfig({ num_hidden_layers: 2, vocab_size: 200, index_topk: 5, num_nextn_predict_layers: 1 });
  const m = DeepseekV32.fromSource(mc, mapSource(randomCheckpoint(mc, 3)));
  const run = (reuse: boolean): Float32Array => {
    const pool = m.newPool({ blocks: 6 });
    const a = tokens(70, 7);
    const b = tokens(9, 8);
    const batch = batchOf([[a, 0, [4, 1]], [b, 0, [2]]]);
    const s = m.step(batch, pool);
    const next = Int32Array.from({ length: batch.ids.length }, (_, i) => batch.ids[(i + 1) % batch.ids.length]!);
    const mtpBatch = { ...batch, logitRows: Int32Array.from([3, 69, 75]) };
    return m.mtpStep(mtpBatch, s.hidden, next, pool, reuse ? { layout: s.layout } : {}).logits.toFloat32();
  };
  const own = run(false);
  assert.equal(own.length, 3 * mc.vocabSize);
  assert.deepEqual(run(true), own);
  const pool = m.newPool({ blocks: 6 });
  const s = m.step(batchOf([[tokens(5, 9), 0, [0]]]), pool);
  const other = batchOf([[tokens(6, 9), 0, [0]]]);
  assert.throws(() => m.mtpStep(other, s.hidden, new Int32Array(6), pool, { layout: s.layout }), (e: Error) => /layout is of a step of 5 rows, this batch has 6/.test(e.message));
});
