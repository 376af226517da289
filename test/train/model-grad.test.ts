// Gradient check of the whole tiny model: the training objective (LM + λ·MTP + indexer KL, sparse
// attention) in f64 numerics with f64 master weights, its backward against central differences of
// the same objective, on elements of a parameter of every kind. The discrete choices (top-k
// selections, expert routes) are taken from one unperturbed forward and replayed (forced top-k, Keep
// Routing), so the objective is a smooth function of the weights and the difference quotient is exact
// to O(eps²) — which also tests that replay works in the train forward.
// The indexer's input is detached by design (paper §2.1), so the gradient of the summed objective is
// not the total derivative: a main-model weight moves the indexer's scores and so its KL, which the
// backward deliberately ignores. The main model's gradient is the derivative of L_LM + λ·L_MTP, the
// indexer's that of L_I; each is compared with the difference quotient of its own part.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backward, noGrad } from '../../src/tensor/autograd.js';
import { Tensor, fromArray } from '../../src/tensor/tensor.js';
import type { DeepseekV32 } from '../../src/model/model.js';
import { objective, type ObjectiveOptions } from '../../src/train/objective.js';
import { tinyModel, tokenRows, forcedOf } from './tiny.js';

const B = 2;
const S = 7;


function replayed(model: DeepseekV32, ids: Int32Array): ObjectiveOptions {
  const f = noGrad(() => model.trainForward(ids, B, S, { numerics: 'f64' }));
  const k = model.cfg.indexTopk;
  const routes = (r: (Tensor | null)[]): (Int32Array | null)[] => r.map((t) => (t ? (t.toHost() as Int32Array) : null));
  return {
    numerics: 'f64',
    attention: 'sparse',
    indexerLoss: true,
    forcedTopk: f.topk.map((s) => forcedOf(s, k)),
    forcedRoutes: routes(f.routes),
    mtpForcedTopk: f.mtpTopk.map((s) => forcedOf(s, k)),
    mtpForcedRoutes: routes(f.mtpRoutes),
  };
}

/** Write one weight in place, and tell the model (its cached stacked experts / absorbed wkv_b rebuild). */
function setElem(model: DeepseekV32, p: Tensor, j: number, v: number): void {
  const h = p.toFloat64();
  h[j] = v;
  p.backend.copy(p, fromArray(h, p.shape, { dtype: 'f64', device: p.device }));
  model.weights.update();
}

test('train forward: gradients of the whole tiny model match f64 central differences on every kind of parameter', (t) => {
  const model = tinyModel({ master: 'f64' });
  const cfg = model.cfg;
  const ids = tokenRows(B, S, cfg.vocabSize);
  const params = new Map(model.weights.parameters());
  const opts = replayed(model, ids);
  const r = objective(model, ids, B, S, opts);
  assert.ok(r.indexer !== null && r.indexer > 0, 'the indexer loss is formed');
  assert.equal(r.mtp.length, 1, 'the MTP loss is formed');
  backward(r.loss);
  const lossAt = (indexer: boolean): number => noGrad(() => objective(model, ids, B, S, { ...opts, indexerLoss: indexer, lm: !indexer }).loss.item());

  // the routed expert of layer 1 chosen by the first token (it has rows, so a nonzero gradient)
  const e = (opts.forcedRoutes![1] as Int32Array)[0]!;
  const mtpL = cfg.nLayers;
  const names = [
    'model.embed_tokens.weight',
    'model.layers.0.input_layernorm.weight',
    'model.layers.0.self_attn.q_a_proj.weight',
    'model.layers.0.self_attn.q_a_layernorm.weight',
    'model.layers.0.self_attn.q_b_proj.weight',
    'model.layers.0.self_attn.kv_a_proj_with_mqa.weight',
    'model.layers.0.self_attn.kv_a_layernorm.weight',
    'model.layers.0.self_attn.kv_b_proj.weight',
    'model.layers.0.self_attn.o_proj.weight',
    'model.layers.0.self_attn.indexer.wq_b.weight',
    'model.layers.0.self_attn.indexer.wk.weight',
    'model.layers.0.self_attn.indexer.k_norm.weight',
    'model.layers.0.self_attn.indexer.k_norm.bias',
    'model.layers.0.self_attn.indexer.weights_proj.weight',
    'model.layers.0.mlp.gate_proj.weight',
    'model.layers.1.mlp.gate.weight',
    `model.layers.1.mlp.experts.${e}.up_proj.weight`,
    `model.layers.1.mlp.experts.${e}.down_proj.weight`,
    'model.layers.1.mlp.shared_experts.gate_proj.weight',
    'model.layers.1.self_attn.kv_b_proj.weight',
    'model.norm.weight',
    'lm_head.weight',
    `model.layers.${mtpL}.eh_proj.weight`,
    `model.layers.${mtpL}.enorm.weight`,
    `model.layers.${mtpL}.hnorm.weight`,
    `model.layers.${mtpL}.shared_head.norm.weight`,
    `model.layers.${mtpL}.self_attn.kv_b_proj.weight`,
    `model.layers.${mtpL}.self_attn.indexer.wk.weight`,
  ];
  const eps = 1e-6;
  let worst = 0;
  let checked = 0;
  let nonzero = 0;
  for (const name of names) {
    const p = params.get(name);
    assert.ok(p, `parameter ${name}`);
    assert.ok(p.grad, `${name} has a gradient`);
    const g = p.grad.toFloat64();
    // the 3 elements of largest |gradient| (a zero-gradient element would check nothing)
    const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!)).slice(0, 3);
    for (const j of order) {
      const x0 = p.toFloat64()[j]!;
      const ofIndexer = name.includes('.indexer.');
      setElem(model, p, j, x0 + eps);
      const fp = lossAt(ofIndexer);
      setElem(model, p, j, x0 - eps);
      const fm = lossAt(ofIndexer);
      setElem(model, p, j, x0);
      const numeric = (fp - fm) / (2 * eps);
      const err = Math.abs(numeric - g[j]!);
      worst = Math.max(worst, err / Math.abs(numeric));
      assert.ok(err <= 1e-8 + 1e-5 * Math.abs(numeric), `${name}[${j}]: analytic ${g[j]} vs numeric ${numeric} (err ${err})`);
      checked++;
      if (Math.abs(numeric) > 1e-6) nonzero++;
    }
  }
  // every checked element carries a real signal, not a 0 = 0 comparison
  assert.equal(nonzero, checked, `${checked - nonzero} checked elements had a negligible gradient`);
  assert.equal(checked, names.length * 3);
  t.diagnostic(`${checked} elements of ${names.length} parameters; worst relative error ${worst.toExponential(2)}`);
});

test('indexer warm-up: with the main model frozen, only the indexer receives gradients (KL over all causal keys)', () => {
  const model = tinyModel({ master: 'f64' });
  const ids = tokenRows(B, S, model.cfg.vocabSize);
  const all = model.weights.parameters();
  for (const [n, p] of all) p.requiresGrad = n.includes('.indexer.');
  const r = objective(model, ids, B, S, { numerics: 'f64', attention: 'dense', indexerLoss: true, lm: false });
  assert.equal(r.lm, null);
  backward(r.loss);
  for (const [n, p] of all) {
    if (n.includes('.indexer.')) assert.ok(p.grad && p.grad.toFloat64().some((v) => v !== 0), `${n} learns`);
    else assert.equal(p.grad, null, `${n} is frozen`);
  }
});

test('sparse stage: the LM loss never reaches the indexer and the KL never reaches the main model', () => {
  const model = tinyModel({ master: 'f64' });
  const ids = tokenRows(B, S, model.cfg.vocabSize);
  const all = model.weights.parameters();
  // LM (+MTP) only: the indexer gets nothing
  const lmOnly = objective(model, ids, B, S, { numerics: 'f64', attention: 'sparse', indexerLoss: false });
  backward(lmOnly.loss);
  for (const [n, p] of all) if (n.includes('.indexer.')) assert.equal(p.grad, null, `${n}: no LM gradient`);
  for (const [, p] of all) p.grad = null;
  // KL only (lm off): the main model gets nothing
  const klOnly = objective(model, ids, B, S, { numerics: 'f64', attention: 'sparse', indexerLoss: true, lm: false });
  backward(klOnly.loss);
  for (const [n, p] of all) {
    if (n.includes('.indexer.')) assert.ok(p.grad && p.grad.toFloat64().some((v) => v !== 0), `${n} learns from the KL`);
    else assert.equal(p.grad, null, `${n}: no KL gradient`);
  }
});
