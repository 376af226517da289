// collateRollouts / overlayRoutes (src/rl/batch.ts) on hand-made records: the one-position shift, padding,
// the CSR over S·T rows, advantages centred per group over episodes (not segments), the masked/full
// logpOld choice, route overlay, and the errors that name the broken field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type RolloutRecord, checkRolloutRecord, collateRollouts, overlayRoutes } from '../../src/rl/batch.js';

/** tokens with trained positions `at`, each kept set {token, token + 1}, logprob −0.5, kept mass −0.25 */
function rec(group: string, episode: number, segment: number, tokens: number[], at: number[], reward: number, routes = true): RolloutRecord {
  const n = tokens.length;
  const trained = new Uint8Array(n);
  const logprobs = new Float32Array(n);
  const kept = new Float32Array(n);
  const indptr = new Int32Array(n + 1);
  const idx: number[] = [];
  for (let p = 0; p < n; p++) {
    if (at.includes(p)) {
      trained[p] = 1;
      logprobs[p] = -0.5;
      kept[p] = p === at[0] ? NaN : -0.25;
      idx.push(tokens[p]!, tokens[p]! + 1);
    }
    indptr[p + 1] = idx.length;
  }
  const r: RolloutRecord = { group, episode, segment, tokens: Int32Array.from(tokens), trained, logprobs, keptLogMass: kept, samplingMask: { indptr, indices: Int32Array.from(idx) }, reward };
  if (routes) {
    // 1 layer, k = 2; recorded at p − 1 for trained p
    const data = new Int16Array(n * 2);
    const routed = new Uint8Array(n);
    for (const p of at) {
      data[(p - 1) * 2] = 5;
      data[(p - 1) * 2 + 1] = 7;
      routed[p - 1] = 1;
    }
    r.routes = { data, tokens: n, layers: 1, k: 2 };
    r.routed = routed;
  }
  return r;
}

test('collateRollouts: shifted targets, padding, CSR rows, per-episode advantages, masked vs full logpOld', () => {
  const records = [
    rec('a', 0, 0, [10, 11, 12, 13, 14], [2, 3], 1),
    rec('a', 0, 1, [10, 20, 21], [2], 1), // a second segment of the same episode
    rec('a', 1, 0, [10, 11, 30], [2], 0),
    rec('b', 0, 0, [40, 41, 42], [1, 2], 0.5),
  ];
  const b = collateRollouts(records, { padId: 99 });
  const T = 4;
  assert.deepEqual(b.target.shape, [4, T]);
  assert.deepEqual(b.input, [
    [10, 11, 12, 13],
    [10, 20, 99, 99],
    [10, 11, 99, 99],
    [40, 41, 99, 99],
  ]);
  assert.deepEqual(Array.from(b.target.toFloat64()), [11, 12, 13, 14, 20, 21, 0, 0, 11, 30, 0, 0, 41, 42, 0, 0]);
  assert.deepEqual(Array.from(b.valid.toFloat64()), [0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0]);
  // group a: episodes 0 (R = 1, two segments) and 1 (R = 0) → ±0.5, each episode counted once; group b alone → 0
  assert.deepEqual(Array.from(b.advantages.toFloat64()), [0.5, 0.5, -0.5, 0]);
  // the first trained token of each record has an unknown kept mass (NaN): full logprob, counted
  const lp = Array.from(b.logpOld.toFloat64());
  assert.deepEqual(lp, [0, -0.5, -0.25, 0, 0, -0.5, 0, 0, 0, -0.5, 0, 0, -0.5, -0.25, 0, 0]);
  assert.equal(b.unmaskedTokens, 4);
  assert.deepEqual(Array.from(collateRollouts(records, { padId: 0, logpOld: 'full' }).logpOld.toFloat64()).filter((x) => x !== 0), Array(6).fill(-0.5));
  // CSR: row s·T + j holds target j's kept set
  const row = (s: number, j: number) => Array.from(b.samplingMask.indices.subarray(b.samplingMask.indptr[s * T + j]!, b.samplingMask.indptr[s * T + j + 1]!));
  assert.deepEqual(row(0, 1), [12, 13]);
  assert.deepEqual(row(0, 2), [13, 14]);
  assert.deepEqual(row(0, 0), []);
  assert.deepEqual(row(3, 0), [41, 42]);
  assert.equal(b.samplingMask.indptr[4 * T], 12);
  // routes: recorded where routed, 0..k−1 elsewhere; routed is the input-position mask
  assert.deepEqual(Array.from(b.routed!.toFloat64()), [0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(b.routes![0]!.data), [0, 1, 5, 7, 5, 7, 0, 1]);
  const own = records.map(() => ({ data: Int16Array.from({ length: T * 2 }, (_, i) => 2 + (i % 2)), tokens: T, layers: 1, k: 2 }));
  assert.deepEqual(Array.from(overlayRoutes(b, own)[0]!.data), [2, 3, 5, 7, 5, 7, 2, 3]);
  assert.throws(() => overlayRoutes(b, own.slice(1)), /3 own recordings for 4 sequences/);
});

test('collateRollouts and checkRolloutRecord name what is wrong', () => {
  const good = rec('a', 0, 0, [1, 2, 3], [1, 2], 1);
  assert.throws(() => collateRollouts([], { padId: 0 }), /no records/);
  assert.throws(() => checkRolloutRecord({ ...good, trained: Uint8Array.from([1, 1, 1]) }), /trained\[0\] must be 0/);
  assert.throws(() => checkRolloutRecord({ ...good, logprobs: new Float32Array(2) }), /record\.logprobs has 2 entries, expected one per token \(3\)/);
  assert.throws(() => checkRolloutRecord({ ...good, tokens: Int32Array.from([1, 9, 3]) }), /trained token 9 at position 1 is outside its sampling mask row/);
  assert.throws(() => checkRolloutRecord({ ...good, logprobs: Float32Array.from([0, 0.5, -1]) }), /record\.logprobs\[1\] = 0\.5, expected a finite log-probability ≤ 0/);
  assert.throws(() => collateRollouts([good, rec('a', 0, 1, [1, 2, 3], [2], 0)], { padId: 0 }), /episode 0 of group a has segments with rewards 1 and 0/);
  assert.throws(() => collateRollouts([good, rec('a', 1, 0, [1, 2, 3], [2], 0, false)], { padId: 0 }), /some records have routes and some do not/);
  assert.throws(() => overlayRoutes(collateRollouts([rec('a', 0, 0, [1, 2, 3], [2], 0, false)], { padId: 0 }), []), /the batch has no recorded routes/);
});
