// The host sampler's cost per row (a script, not a test): src/engine/sampler.ts sampleRow on one row of
// logits, mask recorded, µs per row (host clock, median of 5 batches of 40 rows after a warm-up).
//   flat:   z ~ sin-spread over [−4, 4] (a random-weight model's rows: top-p 0.9 keeps most of them)
//   peaked: z spread over [−8, −4] plus 20 tokens at 8 .. 2.3 (a trained model's rows: a few tokens)
//   node dist/bench/sampler.js [--vocab 32000,129280]
import { sampleRow } from '../src/engine/sampler.js';
import { Rng } from '../src/tensor/random.js';
import { argError, median, opt } from './harness.js';

const vocabs = (opt('--vocab') ?? '32000,129280').split(',').map(Number);
if (vocabs.some((v) => !Number.isInteger(v) || v < 64)) argError(`--vocab must list integers ≥ 64, got '${opt('--vocab')}'`);
const params = {
  greedy: { temperature: 0, topP: 1, topK: 0, minP: 0 },
  'top-p 0.9': { temperature: 1, topP: 0.9, topK: 0, minP: 0 },
  'top-k 50, top-p 0.9': { temperature: 1, topP: 0.9, topK: 50, minP: 0 },
};
const rng = new Rng(7);
for (const V of vocabs) {
  for (const shape of ['flat', 'peaked'] as const) {
    const row = new Float32Array(V);
    for (let i = 0; i < V; i++) row[i] = shape === 'flat' ? Math.sin(i * 12.9898) * 4 : Math.sin(i * 12.9898) * 2 - 6;
    if (shape === 'peaked') for (let j = 0; j < 20; j++) row[(j * 7919) % V] = 8 - j * 0.3;
    for (const [name, p] of Object.entries(params)) {
      for (let w = 0; w < 10; w++) sampleRow(row, p, p.temperature ? rng : null, { logprobs: 0, mask: true });
      const ts: number[] = [];
      let kept = 0;
      for (let b = 0; b < 5; b++) {
        const t = performance.now();
        for (let i = 0; i < 40; i++) kept = sampleRow(row, p, p.temperature ? rng : null, { logprobs: 0, mask: true }).mask!.length;
        ts.push(((performance.now() - t) / 40) * 1000);
      }
      console.log(JSON.stringify({ vocab: V, row: shape, sampling: name, usPerRow: Math.round(median(ts)), kept }));
    }
  }
}
