// The train forward against the inference forward, and a tiny overfit run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backward, noGrad } from '../../src/tensor/autograd.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { objective, shiftedTargets } from '../../src/train/objective.js';
import { AdamW } from '../../src/train/optim.js';
import { tinyModel, tokenRows, forcedOf } from './tiny.js';


function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function rowsOf(ids: Int32Array, B: number, S: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * S, (b + 1) * S)));
}

test('train forward logits equal the inference forward with the same choices (sparse, S ≫ top-k, FP8 latent simulated)', () => {
  const model = tinyModel();
  model.weights.parameters(); // as in training: master weights with requiresGrad
  const B = 2;
  const S = 12; // top-k 4: sparse
  const ids = tokenRows(B, S, model.cfg.vocabSize, 5);
  const tr = noGrad(() => model.trainForward(ids, B, S, { attention: 'sparse', fp8: true }));
  const inf = noGrad(() =>
    model.forward(rowsOf(ids, B, S), {
      mode: 'mqa',
      forcedTopk: tr.topk.map((s) => forcedOf(s, model.cfg.indexTopk)),
      forcedRoutes: tr.routes.map((r) => (r ? (r.toHost() as Int32Array) : null)),
    }),
  );
  // the same choices were made (inference's routes come back ascending, as the train forward's)
  tr.routes.forEach((r, l) => {
    if (r) assert.deepEqual(Array.from(r.toHost() as Int32Array), Array.from(inf.routes[l]!.toHost() as Int32Array), `layer ${l} routes`);
  });
  const d = maxAbsDiff(tr.logits.toFloat32(), inf.logits!.toFloat32());
  const scale = maxAbsDiff(inf.logits!.toFloat32(), new Float32Array(inf.logits!.numel));
  assert.ok(scale > 1, `logits have a real scale (${scale})`);
  assert.ok(d < 1e-4, `train vs inference logits: max |Δ| ${d} (logit scale ${scale})`);
});

test('train forward with the FP8 round trips on (RL) chooses what the inference forward chooses: the same top-k and routes, unforced; without them it does not', () => {
  const model = tinyModel();
  model.weights.parameters();
  const B = 2;
  const S = 24; // top-k 4: sparse
  let unroundedDiffer = 0;
  for (const seed of [1, 2, 3, 4]) {
    const ids = tokenRows(B, S, model.cfg.vocabSize, seed);
    const inf = noGrad(() => model.forward(rowsOf(ids, B, S), { mode: 'mqa' }));
    const tr = noGrad(() => model.trainForward(ids, B, S, { attention: 'sparse', fp8: true }));
    tr.topk.forEach((sel, l) => {
      const a = forcedOf(sel, model.cfg.indexTopk);
      const b = forcedOf(inf.topk[l]!, model.cfg.indexTopk);
      assert.deepEqual(Array.from(a), Array.from(b), `seed ${seed} layer ${l} top-k`);
    });
    tr.routes.forEach((r, l) => {
      if (r) assert.deepEqual(Array.from(r.toHost() as Int32Array), Array.from(inf.routes[l]!.toHost() as Int32Array), `seed ${seed} layer ${l} routes`);
    });
    const d = maxAbsDiff(tr.logits.toFloat32(), inf.logits!.toFloat32());
    assert.ok(d < 1e-4, `seed ${seed}: train vs inference logits, unforced: max |Δ| ${d}`);
    // the same forward choosing from the unrounded indexer scores (fp8 off) picks other keys: the round
    // trips are what makes the choices agree (measured: 106 of 4 × 2 layers × 48 rows × 4 entries differ)
    const plain = noGrad(() => model.trainForward(ids, B, S, { attention: 'sparse', fp8: false }));
    plain.topk.forEach((sel, l) => {
      const a = forcedOf(sel, model.cfg.indexTopk);
      const b = forcedOf(inf.topk[l]!, model.cfg.indexTopk);
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) unroundedDiffer++;
    });
  }
  assert.ok(unroundedDiffer >= 40, `without the FP8 round trips ${unroundedDiffer} selected entries differ from inference (expected many)`);
});

test('train forward: with S ≤ index_topk sparse attention selects every causal key, so it equals dense attention', () => {
  const model = tinyModel();
  const S = model.cfg.indexTopk;
  const ids = tokenRows(2, S, model.cfg.vocabSize, 9);
  const a = noGrad(() => model.trainForward(ids, 2, S, { attention: 'sparse' }));
  const b = noGrad(() => model.trainForward(ids, 2, S, { attention: 'dense' }));
  // the same keys in every layer: the top-k of ≤ index_topk keys is all of them (ascending, −1 padded)
  a.topk.forEach((sel, l) => assert.deepEqual(sel.idx.toHost(), b.topk[l]!.idx.toHost(), `layer ${l}: the sparse selection is every causal key`));
  // dense attention runs as GEMMs (causalMlaPrefillTrain), sparse through the gather kernel: the same
  // function up to f32 rounding (measured 1.4e-6 of logits of magnitude ~1)
  const la = a.logits.toFloat32();
  const scale = Math.max(...Array.from(la, Math.abs));
  assert.ok(maxAbsDiff(la, b.logits.toFloat32()) <= 1e-5 * scale, `logits differ by ${maxAbsDiff(la, b.logits.toFloat32())} (scale ${scale})`);
});

test('overfit: AdamW on one fixed batch drives the tiny model’s LM loss down by more than 50× in 30 steps, and the indexer’s KL down', () => {
  const model = tinyModel({ seed: 11 });
  const params = model.weights.parameters();
  const opt = new AdamW(params, { lr: 3e-3, weightDecay: 0 });
  const B = 2;
  const S = 16;
  const ids = tokenRows(B, S, model.cfg.vocabSize, 21);
  const lm: number[] = [];
  const kl: number[] = [];
  for (let i = 0; i < 30; i++) {
    const r = objective(model, ids, B, S, { attention: 'sparse', indexerLoss: true });
    lm.push(r.lm!);
    kl.push(r.indexer!);
    opt.zeroGrad();
    backward(r.loss);
    opt.step();
    model.weights.update();
  }
  // measured (2026-12-05, this seed): LM 4.84 → 0.02 (≈ 240×); indexer KL 0.92 → 0.58 (its target, the
  // main attention, moves while the main model memorises the batch)
  const curve = `LM ${lm.map((l) => l.toFixed(3)).join(' ')}; KL ${kl.map((l) => l.toFixed(3)).join(' ')}`;
  assert.ok(lm[0]! > 4, `initial LM loss ${lm[0]} (≈ ln 64 for a random model)`);
  assert.ok(lm[29]! < lm[0]! / 50, `LM loss ratio ${(lm[0]! / lm[29]!).toFixed(1)}: ${curve}`);
  assert.ok(kl[29]! < 0.85 * kl[0]!, `indexer KL ${kl[0]} → ${kl[29]}: ${curve}`);
});

test('objective targets: shifted by the depth within each row; a loss mask keeps only the marked targets', () => {
  const ids = Int32Array.from([10, 11, 12, 13, 20, 21, 22, 23]);
  assert.deepEqual(Array.from(shiftedTargets(ids, 2, 4, 1).targets), [11, 12, 13, -100, 21, 22, 23, -100]);
  assert.deepEqual(Array.from(shiftedTargets(ids, 2, 4, 2).targets), [12, 13, -100, -100, 22, 23, -100, -100]);
  const mask = Uint8Array.from([0, 0, 1, 1, 0, 1, 0, 0]);
  const m = shiftedTargets(ids, 2, 4, 1, mask);
  assert.deepEqual(Array.from(m.targets), [-100, 12, 13, -100, 21, -100, -100, -100]);
  assert.equal(m.count, 3);
});

test('dense warm-up: the indexers alone learn the head-summed attention (KL falls > 3× in 20 steps), the main model stays bit-identical', () => {
  const model = tinyModel({ seed: 11 });
  const params = model.weights.parameters();
  for (const [n, p] of params) p.requiresGrad = n.includes('.indexer.');
  const frozen = params.filter(([n]) => !n.includes('.indexer.')).map(([n, p]) => [n, p.toFloat32().slice()] as const);
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
  const ids = tokenRows(2, 16, model.cfg.vocabSize, 21);
  const kl: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = objective(model, ids, 2, 16, { attention: 'dense', indexerLoss: true, lm: false });
    kl.push(r.indexer!);
    opt.zeroGrad();
    backward(r.loss);
    opt.step();
    model.weights.update();
  }
  // measured (2026-12-05): 1.607 → 0.311 (5.2×); at the paper's lr 1e-3, 1.607 → 0.618
  assert.ok(kl[19]! < kl[0]! / 3, `KL ${kl.map((v) => v.toFixed(3)).join(' ')}`);
  const now = new Map(params.map(([n, p]) => [n, p.toFloat32()]));
  for (const [n, v] of frozen) assert.deepEqual(now.get(n), v, `${n} is frozen`);
});
