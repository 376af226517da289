// Keep Routing (../shared/docs/rl.md §1.5, invariant 9 of §6): replaying recorded routes through the model's gate,
// the conversion from the engine's int16 [tokens, layers, k] recording, and the routing-disagreement metric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { DeepseekV32, MoE, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { RoutesError, checkRecordedRoutes, forcedRoutesFromRecorded, recordRoutes, routingDisagreement } from '../../src/rl/keep-routing.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
const sig = (z: number): number => 1 / (1 + Math.exp(-z));

// 4 experts, one group, top-2; gate weight column 0 holds the logits so x = e_0 gives logits = L
function gateMoE(L: number[]): MoE {
  const cfg = randomConfig({ n_routed_experts: 4, n_group: 1, topk_group: 1, num_experts_per_tok: 2 });
  const map = randomCheckpoint(cfg, 7);
  const w = new Float32Array(4 * cfg.dim);
  L.forEach((v, e) => (w[e * cfg.dim] = v));
  map.set('model.layers.1.mlp.gate.weight', T.fromArray(w, [4, cfg.dim], { dtype: 'bf16' }));
  map.set('model.layers.1.mlp.gate.e_score_correction_bias', T.fromArray(new Float32Array(4), [4], { dtype: 'f32' }));
  return DeepseekV32.fromSource(cfg, mapSource(map)).layers[1]!.ffn as MoE;
}
const e0 = (dim: number): T.Tensor => T.fromArray(Float32Array.from({ length: dim }, (_, i) => (i === 0 ? 1 : 0)), [1, dim]);

test('invariant 9: scores of logits [0.5, 2.0, −1.0, 1.0] = [0.622459, 0.880797, 0.268941, 0.731059]; replayed [1, 3] → weights [1.366123, 1.133877], sum 2.5', () => {
  const moe = gateMoE([0.5, 2.0, -1.0, 1.0]);
  const x = e0(256);
  const s = moe.gate.scores(x).toFloat64();
  [0.622459, 0.880797, 0.268941, 0.731059].forEach((v, i) => close(s[i]!, v, 1e-6, `s[${i}]`));
  const r = moe.gate.route(x, Int32Array.from([3, 1]));
  assert.deepEqual(Array.from(r.experts.toHost() as Int32Array), [1, 3]);
  const w = r.weights.toFloat64();
  close(w[0]!, 1.366123, 1e-6, 'w[expert 1]');
  close(w[1]!, 1.133877, 1e-6, 'w[expert 3]');
  close(w[0]! + w[1]!, 2.5, 1e-6, 'Σw');
});

test('invariant 9: replay ignores the current top-k; weights use the current router at the forced ids; the router gets a non-zero gradient', () => {
  const moe = gateMoE([0.5, 2.0, -1.0, 1.0]);
  const x = e0(256);
  // the gate's own choice is {1, 3}; force {0, 2}, the two worst-but-one and worst
  assert.deepEqual(Array.from(moe.gate.route(x).experts.toHost() as Int32Array), [1, 3]);
  const gw = moe.gate.weight;
  gw.requiresGrad = true;
  try {
    const r = moe.gate.route(x, Int32Array.from([2, 0]));
    assert.deepEqual(Array.from(r.experts.toHost() as Int32Array), [0, 2]);
    const s0 = sig(0.5);
    const s2 = sig(-1.0);
    const w = r.weights.toFloat64();
    close(w[0]!, (2.5 * s0) / (s0 + s2), 1e-6, 'w[expert 0]');
    close(w[1]!, (2.5 * s2) / (s0 + s2), 1e-6, 'w[expert 2]');
    // loss = w0: ∂/∂W[0,0] = 2.5·s0(1−s0)·s2/(s0+s2)², ∂/∂W[2,0] = −2.5·s2(1−s2)·s0/(s0+s2)²; unforced experts get 0
    const loss = T.sum(T.mul(r.weights, T.fromArray([1, 0], [1, 2])));
    T.backward(loss);
    const g = gw.grad!.toFloat64();
    const den = (s0 + s2) ** 2;
    close(g[0]!, (2.5 * s0 * (1 - s0) * s2) / den, 1e-5, 'dW[0,0]');
    close(g[2 * 256]!, (-2.5 * s2 * (1 - s2) * s0) / den, 1e-5, 'dW[2,0]');
    assert.ok(Math.abs(g[0]!) > 0.1, 'the router has a non-zero gradient');
    assert.equal(g[1 * 256], 0);
    assert.equal(g[3 * 256], 0);
  } finally {
    gw.requiresGrad = false;
    gw.grad = null;
  }
});

const tinyCfg = () => randomConfig({ vocab_size: 64 });
const tokens = [[5, 9, 2, 33, 17, 41, 8], [60, 3, 3, 12, 50, 7, 21]];

test('end to end: replaying routes recorded from a first forward gives 100% identical routes (disagreement 0) and identical logits', () => {
  const cfg = tinyCfg();
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 11)));
  const first = m.forward(tokens);
  const rec = recordRoutes(cfg, first.routes, 2);
  assert.equal(rec.length, 2);
  assert.ok(rec[0]!.data instanceof Int16Array);
  assert.equal(rec[0]!.layers, cfg.nLayers - cfg.nDenseLayers);
  const forced = forcedRoutesFromRecorded(cfg, rec, tokens[0]!.length);
  assert.equal(forced.length, cfg.nLayers);
  assert.equal(forced[0], null, 'dense layer');
  const replay = m.forward(tokens, { forcedRoutes: forced });
  const d = routingDisagreement(cfg, rec, recordRoutes(cfg, replay.routes, 2));
  assert.equal(d.fraction, 0);
  assert.equal(d.compared, 2 * 7 * (cfg.nLayers - cfg.nDenseLayers));
  assert.equal(d.tokensAnyLayer, 0);
  assert.deepEqual(Array.from(replay.logits!.toFloat32()), Array.from(first.logits!.toFloat32()));
  // SGLang's all-layer layout (dense rows ignored) gives the same forced routes
  const all = rec.map((r) => {
    const L = cfg.nLayers;
    const data = new Int16Array(r.tokens * L * r.k);
    for (let t = 0; t < r.tokens; t++) for (let l = 0; l < r.layers; l++) for (let j = 0; j < r.k; j++) data[(t * L + cfg.nDenseLayers + l) * r.k + j] = r.data[(t * r.layers + l) * r.k + j]!;
    return { data, tokens: r.tokens, layers: L, k: r.k };
  });
  const forcedAll = forcedRoutesFromRecorded(cfg, all, 7);
  forced.forEach((f, l) => assert.deepEqual(forcedAll[l] ? Array.from(forcedAll[l]!) : null, f ? Array.from(f) : null));
});

test('end to end: replaying routes of a different model gives a measured non-zero disagreement and changes the logits', () => {
  const cfg = tinyCfg();
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 11)));
  const other = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 12)));
  const own = recordRoutes(cfg, m.forward(tokens).routes, 2);
  const foreign = recordRoutes(cfg, other.forward(tokens).routes, 2);
  const d = routingDisagreement(cfg, foreign, own);
  // two independent random routers (8 experts, 4 groups keep 2, top-2): measured 100 % of the 28 token×layer
  // pairs for these seeds; anything above 0 shows the metric sees the mismatch
  assert.ok(d.fraction > 0 && d.fraction <= 1, `disagreement ${d.fraction}`);
  assert.equal(d.differing, Math.round(d.fraction * d.compared));
  console.log(`routing disagreement between two random models: ${(100 * d.fraction).toFixed(1)}% of token×layer pairs, ${(100 * d.tokensAnyLayer).toFixed(1)}% of tokens in ≥ 1 layer`);
  // the realistic case: the same model after a router update (gate weights + 0.3·N(0, 1/dim)): partial
  // disagreement, measured 25.0 % of pairs (7/28), 35.7 % of tokens in ≥ 1 layer
  const map = randomCheckpoint(cfg, 11);
  const rng = new T.Rng(5);
  for (const [n, t] of map) {
    if (!n.endsWith('mlp.gate.weight')) continue;
    const v = t.toFloat32().map((x) => x + (0.3 * rng.normal()) / Math.sqrt(cfg.dim));
    map.set(n, T.fromArray(v, t.shape, { dtype: 'bf16' }));
  }
  const updated = recordRoutes(cfg, DeepseekV32.fromSource(cfg, mapSource(map)).forward(tokens).routes, 2);
  const du = routingDisagreement(cfg, own, updated);
  assert.ok(du.fraction > 0 && du.fraction < 1, `disagreement after a router update ${du.fraction}`);
  console.log(`routing disagreement after a router update: ${(100 * du.fraction).toFixed(1)}% of token×layer pairs, ${(100 * du.tokensAnyLayer).toFixed(1)}% of tokens in ≥ 1 layer`);
  const base = m.forward(tokens).logits!.toFloat32();
  const replayed = m.forward(tokens, { forcedRoutes: forcedRoutesFromRecorded(cfg, foreign, 7) });
  const r = recordRoutes(cfg, replayed.routes, 2);
  assert.equal(routingDisagreement(cfg, foreign, r).fraction, 0, 'the forced routes are the ones used');
  const lg = replayed.logits!.toFloat32();
  assert.ok(lg.some((v, i) => v !== base[i]), 'different routes change the logits');
});

test('padding: a shorter sequence is padded with valid routes; its recorded positions keep their logits', () => {
  const cfg = tinyCfg();
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 11)));
  const short = [tokens[1]!.slice(0, 4)];
  const recShort = recordRoutes(cfg, m.forward(short).routes, 1)[0]!;
  const recLong = recordRoutes(cfg, m.forward([tokens[0]!]).routes, 1)[0]!;
  const forced = forcedRoutesFromRecorded(cfg, [recLong, recShort], 7);
  const padded = [tokens[0]!, [...short[0]!, 0, 0, 0]];
  const out = m.forward(padded, { forcedRoutes: forced });
  const alone = m.forward(short, { forcedRoutes: forcedRoutesFromRecorded(cfg, [recShort], 4) }).logits!.toFloat32();
  const lg = out.logits!.toFloat32();
  const V = cfg.vocabSize;
  for (let s = 0; s < 4; s++) for (let v = 0; v < V; v++) close(lg[(7 + s) * V + v]!, alone[s * V + v]!, 1e-4, `logit (1, ${s}, ${v})`);
  const pad = forced[cfg.nDenseLayers]!;
  assert.deepEqual(Array.from(pad.subarray((7 + 5) * 2, (7 + 6) * 2)), [0, 1]);
});

test('validation: shapes, layer count, k and id ranges give clear errors naming the recording', () => {
  const cfg = tinyCfg();
  const L = cfg.nLayers - cfg.nDenseLayers;
  const k = cfg.nActivatedExperts;
  const ok = { data: new Int16Array(3 * L * k).map((_, i) => i % k), tokens: 3, layers: L, k };
  checkRecordedRoutes(cfg, ok);
  const bad = (r: typeof ok, re: RegExp, S = 3): void =>
    assert.throws(() => forcedRoutesFromRecorded(cfg, [r], S), (e: unknown) => e instanceof RoutesError && re.test(e.message), String(re));
  bad({ ...ok, layers: L + 5 }, new RegExp(`routes\\[0\\]: ${L + 5} layers recorded, expected the model's ${L} MoE layers`));
  bad({ ...ok, k: k + 1 }, /k = 3 experts per token recorded, the model routes to 2/);
  bad({ ...ok, data: ok.data.slice(1) }, /data holds \d+ ids, expected tokens·layers·k/);
  bad({ ...ok, data: ok.data.map((v, i) => (i === 5 ? cfg.nRoutedExperts : v)) }, new RegExp(`expert id ${cfg.nRoutedExperts}, expected 0..${cfg.nRoutedExperts - 1}`));
  bad({ ...ok, data: ok.data.map((v, i) => (i === 1 ? -1 : v)) }, /token 0, layer 1 has expert id -1/);
  bad({ ...ok, data: ok.data.map(() => 0) }, /token 0, layer 1 repeats expert 0/);
  bad(ok, /3 tokens recorded, more than the forward's 2 positions/, 2);
  assert.throws(() => forcedRoutesFromRecorded(cfg, [], 3), RoutesError);
  assert.throws(() => routingDisagreement(cfg, [ok], []), /1 sequences against 0/);
});
