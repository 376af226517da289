import { test } from 'node:test';
import assert from 'node:assert/strict';
import { distribution, logprobs, packMasks, sampleRow } from '../../src/engine/sampler.js';
import { verifyDrafts } from '../../src/engine/speculative.js';
import { SamplerPool, sampleOne, type SampleJob } from '../../src/engine/sampler-pool.js';
import { keptTokens } from '../../src/rl/keep-sampling-mask.js';
import { Rng } from '../../src/tensor/random.js';

const randomRow = (r: Rng, V: number, scale: number): Float32Array => Float32Array.from({ length: V }, () => scale * r.normal());

test('sampler: temperature 0 is the argmax with ties to the lowest id, and its mask is that id', () => {
  const row = Float32Array.from([0.5, 2, -1, 2, 1.75]);
  const s = sampleRow(row, { temperature: 0, topP: 1, topK: 0, minP: 0 }, null, { logprobs: 2, mask: true });
  assert.equal(s.token, 1);
  assert.deepEqual(Array.from(s.mask!), [1]);
  // logprobs at τ = 0 are the model's own (τ = 1)
  const z = Math.log([0.5, 2, -1, 2, 1.75].reduce((a, x) => a + Math.exp(x), 0));
  assert.ok(Math.abs(s.logprob - (2 - z)) < 1e-12);
  assert.deepEqual(s.topLogprobs!.map(([id]) => id), [1, 3]);
});

test('sampler: the mask equals the RL trainer\'s independent recomputation (keptTokens) for every filter mix, ties included', () => {
  const r = new Rng(3);
  const grid = [
    { topP: 1, topK: 0, minP: 0 }, { topP: 0.9, topK: 0, minP: 0 }, { topP: 1, topK: 5, minP: 0 }, { topP: 1, topK: 0, minP: 0.1 },
    { topP: 0.7, topK: 12, minP: 0 }, { topP: 0.8, topK: 0, minP: 0.05 }, { topP: 0.5, topK: 20, minP: 0.02 }, { topP: 0.95, topK: 64, minP: 0 },
  ];
  for (let trial = 0; trial < 40; trial++) {
    const V = 64;
    const row = randomRow(r, V, 1 + (trial % 4));
    if (trial % 3 === 0) for (let v = 0; v < V; v += 4) row[v] = row[0]!; // exact ties
    for (const temperature of [0.6, 1, 1.7]) {
      for (const g of grid) {
        const p = { temperature, ...g };
        const mine = Int32Array.from(distribution(row, p).ids).sort();
        assert.deepEqual(Array.from(mine), Array.from(keptTokens(row, p)), `trial ${trial} ${JSON.stringify(p)}`);
      }
    }
  }
});

test('sampler: sampled tokens lie in their mask, follow the renormalised kept distribution, and a seed repeats them', () => {
  const r = new Rng(9);
  const V = 16;
  const row = randomRow(r, V, 1.5);
  const p = { temperature: 0.8, topP: 0.9, topK: 8, minP: 0 };
  const dist = distribution(row, p);
  const counts = new Map<number, number>();
  const rng = new Rng(42);
  const N = 40000;
  for (let i = 0; i < N; i++) {
    const s = sampleRow(row, p, rng, { logprobs: 0, mask: true });
    assert.ok(s.mask!.includes(s.token));
    counts.set(s.token, (counts.get(s.token) ?? 0) + 1);
  }
  dist.ids.forEach((v, j) => {
    const f = (counts.get(v) ?? 0) / N;
    const sd = Math.sqrt((dist.probs[j]! * (1 - dist.probs[j]!)) / N);
    assert.ok(Math.abs(f - dist.probs[j]!) < 5 * sd + 1e-9, `token ${v}: ${f} vs ${dist.probs[j]}`);
  });
  assert.equal([...counts.keys()].filter((v) => !dist.ids.includes(v)).length, 0);
  const a = new Rng(5);
  const b = new Rng(5);
  for (let i = 0; i < 50; i++) assert.equal(sampleRow(row, p, a, { logprobs: 0, mask: false }).token, sampleRow(row, p, b, { logprobs: 0, mask: false }).token);
});

test('sampler: logprob is the log-softmax of logits/τ over the full vocabulary; top logprobs descend', () => {
  const row = Float32Array.from([1, 3, -2, 0.5, 2.5]);
  const tau = 0.7;
  const Z = Array.from(row).reduce((a, x) => a + Math.exp(x / tau), 0);
  const out = logprobs(row, distribution(row, { temperature: tau, topP: 0.5, topK: 2, minP: 0 }), 3, 3);
  assert.ok(Math.abs(out.logprob - (0.5 / tau - Math.log(Z))) < 1e-12);
  assert.deepEqual(out.topLogprobs!.map(([id]) => id), [1, 4, 0]);
  assert.ok(Math.abs(out.topLogprobs![0]![1] - (3 / tau - Math.log(Z))) < 1e-12);
});

test('sampler: packMasks lays masks out in CSR', () => {
  const m = packMasks([Int32Array.of(1, 4), Int32Array.of(), Int32Array.of(0, 2, 3)]);
  assert.deepEqual(Array.from(m.indptr), [0, 2, 2, 5]);
  assert.deepEqual(Array.from(m.indices), [1, 4, 0, 2, 3]);
});

test('speculative: rejection sampling leaves the first token distributed as the target p; greedy accepts while the argmax matches', () => {
  const r = new Rng(17);
  const V = 8;
  const target = randomRow(r, V, 1.2);
  const draft = randomRow(r, V, 1.2);
  const params = { temperature: 1, topP: 0.95, topK: 0, minP: 0 };
  const p = distribution(target, params);
  const q = distribution(draft, params);
  const rng = new Rng(1);
  const N = 40000;
  const counts = new Float64Array(V);
  let accepted = 0;
  for (let i = 0; i < N; i++) {
    const d = q.ids[(() => { const u = rng.uniform(); let c = 0; for (let j = 0; j < q.ids.length; j++) { c += q.probs[j]!; if (c > u) return j; } return q.ids.length - 1; })()]!;
    const v = verifyDrafts(() => target, [d], [q], params, rng);
    counts[v.tokens[0]!]!++;
    accepted += v.accepted;
  }
  p.ids.forEach((v, j) => {
    const sd = Math.sqrt((p.probs[j]! * (1 - p.probs[j]!)) / N);
    assert.ok(Math.abs(counts[v]! / N - p.probs[j]!) < 5 * sd + 1e-9, `token ${v}: ${counts[v]! / N} vs ${p.probs[j]}`);
  });
  assert.ok(accepted > 0 && accepted < N);
  // greedy: drafts [argmax0, wrong] → accept 1, then the correction is row 1's argmax
  const rows = [Float32Array.of(0, 5, 1), Float32Array.of(4, 0, 1), Float32Array.of(0, 0, 9)];
  const g = verifyDrafts((i) => rows[i]!, [1, 2], [null, null], { temperature: 0, topP: 1, topK: 0, minP: 0 }, null);
  assert.deepEqual([g.tokens, g.accepted, g.dists.map((d) => Array.from(d.ids))], [[1, 0], 1, [[1], [0]]]);
  const all = verifyDrafts((i) => rows[i]!, [1, 0], [null, null], { temperature: 0, topP: 1, topK: 0, minP: 0 }, null);
  assert.deepEqual([all.tokens, all.accepted], [[1, 0, 2], 2]);
});

test('sampler: the top-k selection path agrees with keptTokens on a large vocabulary with many exact ties', () => {
  const r = new Rng(21);
  const V = 4096;
  for (let trial = 0; trial < 6; trial++) {
    // logits on a grid of 0.25: hundreds of exact ties, at the k-th value too
    const row = Float32Array.from({ length: V }, () => Math.round(4 * 2 * r.normal()) / 4);
    for (const topK of [1, 7, 100, 1000, V - 1]) {
      for (const topP of [1, 0.6]) {
        const p = { temperature: 1.3, topP, topK, minP: trial % 2 ? 0.001 : 0 };
        assert.deepEqual(Array.from(distribution(row, p).ids), Array.from(keptTokens(row, p)), `trial ${trial} ${JSON.stringify(p)}`);
      }
    }
  }
});

test('sampler: top-p over a large vocabulary (only its prefix sorted, topPrefix) agrees with keptTokens, peaked and flat rows, ties included', () => {
  const r = new Rng(33);
  const V = 20000;
  for (let trial = 0; trial < 4; trial++) {
    // flat rows (logits spread over a few units) and peaked ones (a few tokens far above the rest); trial 2
    // on a grid of 0.25 (many exact ties, the prefix's boundary among them)
    const row = Float32Array.from({ length: V }, () => (trial === 2 ? Math.round(8 * r.normal()) / 4 : 2 * r.normal()));
    if (trial % 2) for (let j = 0; j < 12; j++) row[(j * 7919) % V] = 14 - j;
    for (const topP of [0.05, 0.5, 0.9, 0.999]) {
      for (const minP of [0, 1e-4]) {
        const p = { temperature: 1, topP, topK: 0, minP };
        assert.deepEqual(Array.from(distribution(row, p).ids), Array.from(keptTokens(row, p)), `trial ${trial} ${JSON.stringify(p)}`);
      }
    }
  }
});

test('sampler pool: every call equals the inline sampler, as its shared buffers grow (more rows, masks, another vocabulary)', () => {
  const rng = new Rng(5);
  const pool = new SamplerPool(2);
  try {
    const calls: { V: number; rows: number; mask: boolean }[] = [
      { V: 300, rows: 3, mask: false }, { V: 300, rows: 10, mask: true }, { V: 300, rows: 4, mask: false }, { V: 517, rows: 6, mask: true }, { V: 517, rows: 6, mask: true },
    ];
    for (const { V, rows, mask } of calls) {
      const logits = Float32Array.from({ length: rows * V }, () => 3 * rng.normal());
      const jobs: SampleJob[] = Array.from({ length: rows }, (_, i) => ({
        row: rows - 1 - i, // not in row order
        params: [{ temperature: 1, topP: 1, topK: 0, minP: 0 }, { temperature: 0.7, topP: 0.8, topK: 40, minP: 0 }, { temperature: 0, topP: 1, topK: 0, minP: 0 }, { temperature: 1.2, topP: 1, topK: 0, minP: 0.1 }][i % 4]!,
        u: i % 4 === 2 ? null : rng.uniform(),
        logprobs: i % 3,
        mask,
      }));
      const got = pool.sample(logits, V, jobs);
      const want = jobs.map((j) => sampleOne(logits.subarray(j.row * V, (j.row + 1) * V), j));
      assert.deepEqual(got, want, `V ${V}, ${rows} rows${mask ? ', masks' : ''}`);
    }
    assert.ok(pool.usable);
  } finally {
    pool.close();
  }
  assert.equal(pool.usable, false);
});
