// src/model/flops.ts against independent counts: the mean number of keys by brute force over the
// positions, and the weight products by walking a random checkpoint's tensors (every 2-D weight but the
// embedding is one multiply-add per element and token; a routed expert only for the k of E tokens
// routed to it; the MTP module's logits reuse the LM head).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/backend/cpu/index.js';
import { forwardFlopsPerToken, meanCausalKeys, trainFlopsPerToken } from '../../src/model/flops.js';
import { randomCheckpoint, randomConfig } from '../../src/model/random-weights.js';

test('meanCausalKeys: the mean over positions of min(cap, p + 1), by brute force', () => {
  for (const [S, cap] of [[1, Infinity], [7, Infinity], [512, Infinity], [7, 3], [2048, 256], [100, 100], [100, 1000]] as const) {
    let sum = 0;
    for (let p = 0; p < S; p++) sum += Math.min(cap, p + 1);
    assert.ok(Math.abs(meanCausalKeys(S, cap) - sum / S) < 1e-9 * (sum / S), `S ${S}, cap ${cap}: ${meanCausalKeys(S, cap)} vs ${sum / S}`);
  }
});

test('forward FLOPs per token: the weight products equal a walk over the checkpoint; attention adds H·(qk + v) per key per layer', () => {
  const c = randomConfig({ num_nextn_predict_layers: 1 });
  let macs = 0;
  for (const [name, t] of randomCheckpoint(c, 0)) {
    if (t.shape.length !== 2 || name.includes('embed_tokens') || name.includes('.indexer.')) continue;
    const n = t.shape[0]! * t.shape[1]!;
    macs += /\.experts\.\d+\./.test(name) ? (n * c.nActivatedExperts) / c.nRoutedExperts : n;
    if (name === 'lm_head.weight') macs += n * c.nMtpLayers; // the MTP module's logits
  }
  // S = 1: one key per query, so the attention term is exactly one key's worth
  const perKey = (c.nLayers + c.nMtpLayers) * c.nHeads * (c.qkHeadDim + c.vHeadDim);
  assert.equal(forwardFlopsPerToken(c, 1, 'dense'), 2 * (macs + perKey));
  const S = 64;
  assert.equal(forwardFlopsPerToken(c, S, 'dense') - forwardFlopsPerToken(c, 1, 'dense'), 2 * perKey * (meanCausalKeys(S) - 1));
});

test('training FLOPs: dense = 3 forwards; the warm-up (main model frozen) costs less; at S ≤ top-k sparse attention is dense attention plus the indexer, trained as 3 forwards', () => {
  const c = randomConfig({ num_nextn_predict_layers: 1 });
  for (const S of [1, Math.ceil(c.indexTopk / 2) + 1, c.indexTopk]) {
    assert.equal(trainFlopsPerToken(c, S, 'dense'), 3 * forwardFlopsPerToken(c, S, 'dense'));
    assert.ok(trainFlopsPerToken(c, S, 'warmup') < trainFlopsPerToken(c, S, 'dense'));
    const extra = trainFlopsPerToken(c, S, 'sparse') - trainFlopsPerToken(c, S, 'dense');
    const extraFwd = forwardFlopsPerToken(c, S, 'sparse') - forwardFlopsPerToken(c, S, 'dense');
    assert.ok(extraFwd > 0);
    assert.ok(Math.abs(extra - 3 * extraFwd) <= 1e-9 * extra, `S ${S}: ${extra} vs 3 × ${extraFwd}`);
  }
});
