// FP8 rounding ties (src/model/fp8-ties.ts, actQuant's probe): the probe finds values next to an e4m3
// midpoint and flips exactly the ones named; the resolver repairs a reference that rounded a tie the
// other way, and does not repair a real difference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveFp8Ties } from '../../src/model/fp8-ties.js';
import { actDequant, actQuant, newTieProbe, tieKey, withFp8TieProbe } from '../../src/tensor/ops/quant.js';
import { fromArray } from '../../src/tensor/index.js'; // (the index registers the CPU backend)

// One 128-value block with amax 448 (ue8m0 scale 1): y = x. The e4m3 grid between 1 and 2 has step 1/8,
// so 1.0625 is the midpoint of 1 and 1.125; 1.0625 + 1e-5 rounds up to 1.125, 1.0625 − 1e-5 down to 1.
function block(values: Record<number, number>): Float32Array {
  const x = new Float32Array(128).fill(0.5);
  x[0] = 448;
  for (const [i, v] of Object.entries(values)) x[Number(i)] = v;
  return x;
}
const quantRoundTrip = (x: Float32Array): Float32Array => {
  const { q, s } = actQuant(fromArray(x, [1, 128]), 128, { ue8m0: true });
  return actDequant(q, s, 128).toFloat32();
};

test('tie probe: records values within the band of a midpoint, flips only those named', () => {
  const x = block({ 3: 1.0625 + 1e-5, 7: 1.0625 - 1e-5, 9: 1.0625 + 0.01, 11: -(3.375 + 2e-5) });
  const probe = newTieProbe(1e-4);
  const plain = withFp8TieProbe(probe, () => quantRoundTrip(x));
  assert.deepEqual(probe.ties.map((t) => t.index), [3, 7, 11], 'index 9 is 0.01 from its midpoint, outside the band');
  assert.equal(probe.calls, 1);
  assert.deepEqual([plain[3], plain[7], plain[9], plain[11]], [1.125, 1, 1.125, -3.5]);
  const flip = newTieProbe(1e-4, new Set([tieKey({ call: 0, index: 3 }), tieKey({ call: 0, index: 11 })]));
  const flipped = withFp8TieProbe(flip, () => quantRoundTrip(x));
  assert.deepEqual([flipped[3], flipped[7], flipped[9], flipped[11]], [1, 1, 1.125, -3.25]);
  for (let i = 0; i < 128; i++) if (![3, 11].includes(i)) assert.equal(flipped[i], plain[i], `value ${i} untouched`);
  assert.throws(() => withFp8TieProbe(newTieProbe(1e-4), () => withFp8TieProbe(newTieProbe(1e-4), () => 0)), /already active/);
});

test('resolveFp8Ties: finds the tie a reference rounded the other way; a real difference stays a failure', () => {
  // "model": two round trips whose outputs are compared element by element in causal (index) order
  const x1 = block({ 20: 1.0625 + 3e-5, 40: 2.125 - 3e-5, 60: 1.0625 + 2e-5 });
  const x2 = block({ 5: 0.5 });
  const run = (): Float32Array[] => [quantRoundTrip(x1), quantRoundTrip(x2)];
  const mine = run();
  // 2.125 − 3e-5 lies just below the midpoint of 2 and 2.25: we round it to 2, the "reference" to 2.25
  const ref = [Float32Array.from(mine[0]!), Float32Array.from(mine[1]!)];
  assert.equal(mine[0]![40], 2);
  ref[0]![40] = 2.25;
  const firstFailure = (r: Float32Array[]): number => {
    for (let c = 0; c < r.length; c++) for (let i = 0; i < 128; i++) if (r[c]![i] !== ref[c]![i]) return c * 128 + i;
    return Infinity;
  };
  const res = resolveFp8Ties(run, firstFailure, { band: 1e-4 });
  assert.deepEqual(res.flips.map(tieKey), ['0:40']);
  assert.equal(firstFailure(res.result), Infinity);
  assert.equal(res.ties, 3);

  // a difference no tie explains (index 5 of the second call): the tie at 40 is still found, then no flip
  // moves the failure later
  ref[1]![5] = 0.5625;
  const bad = resolveFp8Ties(run, firstFailure, { band: 1e-4 });
  assert.equal(firstFailure(bad.result), 128 + 5);
});
