// Indexer replay (src/rl/indexer-replay.ts, use_indexer_replay): the rollout's DSA key selections forced in the
// RL training forward, as Keep Routing forces its routes.
//   - the pure helpers (packing, forced selections with the trainer's own fill, the disagreement metric);
//   - both samplers (in-process engine, `dsv32 serve` over HTTP) return each turn's prompt-row and token
//     selections equal to model.forward's at every position;
//   - the trainer end to end on the CPU with index_topk below the rows' length (sparse attention): the forced
//     selections are the recorded ones at every prompt and generated position; at θ = θ_old the loss with
//     replay equals the loss without (the FP8 round trip makes the trainer choose what the engine chose) and
//     a recording altered at one trained row changes it (the recording is what the forward uses).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LLMEngine } from '../../src/engine/engine.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { forcedTopkFromRecorded, indexerDisagreement, packSelection, type RecordedSelections } from '../../src/rl/indexer-replay.js';
import { EngineSampler, HttpSampler, type SampleRequest, type SampledTurn } from '../../src/rl/rollout.js';
import { parseRlConfig } from '../../src/rl/config.js';
import type { RolloutRecord } from '../../src/rl/batch.js';
import { type RlStepLog, rlTrain } from '../../src/rl/trainer.js';
import { serve } from '../server/helpers.js';
import { rlFixture, tinyRlConfig } from './rl-fixture.js';

test('indexer replay helpers: packing with −1 holes, recorded rows forced and the own selection elsewhere, the disagreement fraction', () => {
  const shape = { layers: 2, topk: 3 };
  assert.deepEqual(Array.from(packSelection([[4, -1, 2], [0]], shape, 't')), [4, 2, -1, 0, -1, -1]);
  assert.throws(() => packSelection([[0, 1, 2, 3], []], shape, 't'), /more than index_topk/);
  assert.throws(() => packSelection([[0]], shape, 't'), /1 layers/);
  // S = 1, T = 2: position 0 recorded, position 1 not
  const rec: RecordedSelections = { data: Int32Array.from([0, -1, -1, 0, -1, -1, /* row 1, unrecorded */ -1, -1, -1, -1, -1, -1]), tokens: 2, layers: 2, topk: 3 };
  const selected = Uint8Array.from([1, 0]);
  // own selections of width 2 per layer (rows 0, 1)
  const own = [{ width: 2, idx: Int32Array.from([0, -1, 1, 0]) }, { width: 2, idx: Int32Array.from([0, -1, 0, 1]) }];
  const f = forcedTopkFromRecorded([rec], selected, own, 2);
  assert.deepEqual(f.map((x) => Array.from(x)), [[0, -1, -1, 1, 0, -1], [0, -1, -1, 0, 1, -1]]);
  assert.equal(indexerDisagreement([rec], selected, own, 2), 0);
  const own2 = [{ width: 2, idx: Int32Array.from([0, -1, 1, 0]) }, { width: 2, idx: Int32Array.from([-1, -1, 0, 1]) }];
  assert.equal(indexerDisagreement([rec], selected, own2, 2), 0.5, 'layer 1 of row 0 misses its one key: 1 of 2 recorded keys');
});

// ---- samplers on a tiny model (index_topk 8, prompts of 40)
const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8, num_nextn_predict_layers: 0 });
const SHAPE = { layers: cfg.nLayers, topk: cfg.indexTopk };

/** model.forward's selection at every row of `ids`, packed per row as the samplers record them */
function forwardRows(m: DeepseekV32, ids: number[]): number[][] {
  const sels = m.forward([ids], { logits: 'none' }).topk.map((s) => ({ w: s.width, idx: s.idx.toHost() as Int32Array }));
  return ids.map((_, p) => Array.from(packSelection(sels.map((s) => s.idx.subarray(p * s.w, (p + 1) * s.w)), SHAPE, `row ${p}`)));
}

function checkTurn(m: DeepseekV32, prompt: number[], turn: SampledTurn, what: string): void {
  const per = SHAPE.layers * SHAPE.topk;
  const ids = [...prompt, ...turn.tokens.map((t) => t.id)];
  const ref = forwardRows(m, ids);
  assert.ok(turn.promptIndexerTopk instanceof Int32Array, `${what}: prompt selections`);
  assert.equal(turn.promptIndexerTopk!.length, (prompt.length - 1) * per);
  for (let p = 0; p + 1 < prompt.length; p++) assert.deepEqual(Array.from(turn.promptIndexerTopk!.subarray(p * per, (p + 1) * per)), ref[p], `${what}: prompt row ${p}`);
  // token i came from the forward at position P − 1 + i
  turn.tokens.forEach((t, i) => assert.deepEqual(Array.from(t.indexerTopk!), ref[prompt.length - 1 + i], `${what}: token ${i}`));
}

test('samplers: in-process and HTTP turns carry the prompt rows\' and tokens\' indexer selections, equal to model.forward at every position', async () => {
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 9)));
  const engine = new LLMEngine(m, { numBlocks: 32, maxBatchTokens: 16, modelName: 'tiny' });
  const prompt = Array.from({ length: 40 }, (_, i) => 2 + ((i * 13) % 120));
  const req: SampleRequest = { id: 'r.t0', promptIds: prompt, sampling: { temperature: 1, topP: 1, topK: 0, minP: 0, maxTokens: 5 }, stopTokenIds: [1], topLogprobs: 0, routes: false, indexer: SHAPE, seed: 3 };
  const inproc = await new EngineSampler(engine).sample(req);
  assert.ok(inproc.tokens.length > 0);
  checkTurn(m, prompt, inproc, 'engine');
  const srv = await serve(engine, { codec: null });
  try {
    const viaHttp = await new HttpSampler({ baseUrl: `${srv.url}/v1`, model: 'dsv32-test', maxRetries: 0 }).sample({ ...req, id: 'h.t0' });
    checkTurn(m, prompt, viaHttp, 'http');
    assert.deepEqual(viaHttp.tokens.map((t) => t.id), inproc.tokens.map((t) => t.id), 'the same seed samples the same tokens');
    // without the indexer: no selections asked for or returned
    const plain = await new HttpSampler({ baseUrl: `${srv.url}/v1`, model: 'dsv32-test', maxRetries: 0 }).sample({ ...req, id: 'p.t0', indexer: undefined as never });
    assert.equal(plain.promptIndexerTopk, undefined);
    assert.equal(plain.tokens[0]!.indexerTopk, undefined);
  } finally {
    await srv.close();
    engine.close();
  }
});

// ---- the trainer
const f = rlFixture(5, { index_topk: 16 });

interface Run {
  logs: RlStepLog[];
  records: RolloutRecord[];
  forced: { selections: RecordedSelections[]; selected: Uint8Array; forced: Int32Array[]; T: number }[];
}

async function train(name: string, over: Parameters<typeof tinyRlConfig>[2], alter?: (records: RolloutRecord[]) => void): Promise<Run> {
  const run: Run = { logs: [], records: [], forced: [] };
  await rlTrain(parseRlConfig(tinyRlConfig(f, join(f.root, name), { steps: 1, num_minibatches: 1, ...over })), {
    onStep: (l) => run.logs.push(l),
    onRecords: (r) => {
      alter?.(r);
      run.records = r;
    },
    onForcedTopk: ({ batch, forced, T }) => run.forced.push({ selections: batch.indexerTopk!, selected: batch.selected!, forced: [...forced], T }),
  });
  return run;
}

test('trainer with use_indexer_replay: forced = recorded selections at every prompt and generated position; loss at θ = θ_old equals the unreplayed one; an altered recording changes it', async () => {
  const off = await train('off', {});
  const on = await train('on', { use_indexer_replay: true });
  assert.equal(off.logs[0]!.indexer_disagreement, undefined, 'the metric is logged only with the flag');
  assert.equal(off.forced.length, 0);
  // recordings: every position but the last, prompt (trained = 0) and generated alike
  assert.ok(on.records.length > 0);
  for (const r of on.records) {
    const n = r.tokens.length;
    assert.ok(r.indexerTopk && r.selected);
    assert.deepEqual(Array.from(r.selected!), [...new Array<number>(n - 1).fill(1), 0]);
    assert.ok(r.trained.some((t) => t) && r.trained.some((t, p) => p > 0 && !t), 'the record has prompt and generated positions');
  }
  const [fb] = on.forced;
  assert.ok(fb, 'rows longer than index_topk run the replayed sparse attention');
  const K = fb.selections[0]!.topk;
  assert.ok(fb.T > K, `T = ${fb.T} > index_topk = ${K}`);
  const L = fb.selections[0]!.layers;
  let checked = 0;
  fb.selections.forEach((rec, s) => {
    for (let j = 0; j < fb.T; j++) {
      if (!fb.selected[s * fb.T + j]) continue;
      for (let l = 0; l < L; l++) {
        assert.deepEqual(Array.from(fb.forced[l]!.subarray((s * fb.T + j) * K, (s * fb.T + j + 1) * K)), Array.from(rec.data.subarray((j * L + l) * K, (j * L + l + 1) * K)), `sequence ${s} position ${j} layer ${l}`);
        checked++;
      }
    }
  });
  assert.ok(checked > 0);
  // the batch holds the records' own recordings (same order, one minibatch)
  on.records.forEach((r, s) => {
    const per = L * K;
    for (let j = 0; j < r.tokens.length - 1; j++) assert.deepEqual(Array.from(fb.selections[s]!.data.subarray(j * per, (j + 1) * per)), Array.from(r.indexerTopk!.data.subarray(j * per, (j + 1) * per)));
  });
  // the engine's and the trainer's FP8 selections agree: nothing to correct, the same loss
  const [m0off] = off.logs[0]!.minibatches;
  const [m0on] = on.logs[0]!.minibatches;
  assert.equal(on.logs[0]!.indexer_disagreement, 0);
  assert.equal(m0on!.indexer_disagreement, 0);
  assert.deepEqual(on.records.map((r) => Array.from(r.tokens)), off.records.map((r) => Array.from(r.tokens)), 'the same rollouts');
  assert.ok(Math.abs(m0on!.loss - m0off!.loss) <= 1e-6 * Math.max(1, Math.abs(m0off!.loss)), `loss with replay ${m0on!.loss} vs without ${m0off!.loss}`);
  assert.ok(m0on!.ratio_max_abs_dev < 1e-4);
  // alter one recorded selection at the last trained row (its logits score a trained token): swap one
  // selected key for an unselected causal one in every layer
  let altered = '';
  const alt = await train('altered', { use_indexer_replay: true }, (records) => {
    const r = records[0]!;
    const p = r.tokens.length - 2;
    assert.equal(r.trained[p + 1], 1);
    const t = r.indexerTopk!;
    for (let l = 0; l < t.layers; l++) {
      const o = (p * t.layers + l) * t.topk;
      const row = new Set(t.data.subarray(o, o + t.topk));
      const fresh = Array.from({ length: p + 1 }, (_, i) => i).find((i) => !row.has(i))!;
      altered += ` layer ${l}: ${t.data[o]} → ${fresh}`;
      t.data[o] = fresh;
    }
  });
  const [m0alt] = alt.logs[0]!.minibatches;
  assert.ok(alt.logs[0]!.indexer_disagreement! > 0, 'the altered keys are not the trainer\'s own');
  assert.ok(Math.abs(m0alt!.loss - m0on!.loss) > 1e-7, `altered recording (${altered}) changes the loss: ${m0alt!.loss} vs ${m0on!.loss}`);
});
