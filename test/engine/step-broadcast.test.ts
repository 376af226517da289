// Multi-rank inference through step broadcast (src/engine/step-broadcast.ts): the STEP / POOL encodings
// round-trip exactly; an engine on rank 0 of 2 thread ranks, each rank holding half of the tiny model
// (tensor + expert parallel) and the follower repeating every step, generates what the plain one-rank
// model computes (each token's reported logprob = the log-softmax of a teacher-forced model.forward over
// prompt + generated tokens, so no check rests on which token a near tie sampled);
// rank 0's close ends the follower; a step failing on every rank fails its batch and nothing else; a
// follower fed garbage fails naming what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../../src/backend/cpu/index.js';
import { SingleProcessCollective } from '../../src/dist/collective.js';
import { runThreadRanks, ThreadRanksError } from '../../src/dist/thread-collective.js';
import { LLMEngine, type EngineModel } from '../../src/engine/engine.js';
import { BroadcastModel, decodePool, decodeStep, encodePool, encodeStep, followSteps, type BroadcastStepOptions } from '../../src/engine/step-broadcast.js';
import type { RaggedBatch } from '../../src/model/batch.js';
import type { CachePool } from '../../src/model/cache.js';
import { MAX_FP8_TIE_FLIPS, resolveFp8Ties } from '../../src/model/fp8-ties.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { cfg, SEED, requests, type Generated, type RankCase } from './step-broadcast-cases.js';

const WORKER = new URL('./step-broadcast.worker.js', import.meta.url);
type Out = Record<string, unknown>;

test('step broadcast: STEP and POOL payloads decode to exactly what was encoded', () => {
  const batches: [RaggedBatch, BroadcastStepOptions][] = [
    // a prefill chunk over 3 blocks, a decode token, 1 + 2 drafts; logit rows given
    [{ ids: Int32Array.from([5, 6, 7, 8, 9, 1, 2, 3, 4]), seqs: [{ offset: 0, len: 5, start: 130, blocks: [4, 0, 7] }, { offset: 5, len: 1, start: 0, blocks: [2] }, { offset: 6, len: 3, start: 63, blocks: [1, 3, 9, 10] }], logitRows: Int32Array.from([4, 5, 6, 7, 8]) },
      { numerics: 'bf16', mode: 'mqa', record: { topk: true }, logitsWanted: true, dense: true }],
    // empty logit rows, record without topk, logits not wanted
    [{ ids: Int32Array.from([3]), seqs: [{ offset: 0, len: 1, start: 64, blocks: [0, 1] }], logitRows: new Int32Array(0) }, { numerics: 'f32', mode: 'mha', record: {}, logitsWanted: false, dense: false }],
    // no logit rows at all, no options
    [{ ids: Int32Array.from([3, 4]), seqs: [{ offset: 0, len: 2, start: 0, blocks: [6] }] }, {}],
    [{ ids: Int32Array.from([3]), seqs: [{ offset: 0, len: 1, start: 0, blocks: [6] }] }, { mode: 'auto', record: { topk: false } }],
  ];
  for (const [batch, opts] of batches) {
    const p = encodeStep(batch, opts);
    assert.ok(p instanceof Int32Array);
    const d = decodeStep(p);
    assert.deepEqual(d.batch, batch);
    assert.deepEqual(d.opts, opts);
    assert.deepEqual(encodeStep(d.batch, d.opts), p, 'encode ∘ decode is the identity on payloads too');
  }
  assert.equal(decodeStep(encodeStep(batches[1]![0], batches[1]![1])).batch.logitRows!.length, 0, 'empty logit rows stay empty, not absent');
  assert.ok(!('logitRows' in decodeStep(encodeStep(batches[2]![0])).batch), 'absent logit rows stay absent');
  for (const o of [{ blocks: 17 }, { blocks: 1, format: 'fp8' as const }, { blocks: 9, format: 'bf16' as const }, { blocks: 2, format: 'f32' as const }]) assert.deepEqual(decodePool(encodePool(o)), o);
});

test('step broadcast: malformed payloads and options unknown to the protocol are errors naming what is wrong', () => {
  const good = encodeStep({ ids: Int32Array.from([1, 2]), seqs: [{ offset: 0, len: 2, start: 0, blocks: [0] }] });
  assert.throws(() => decodeStep(good.subarray(0, good.length - 1)), /STEP payload \(14 words\): chunk 0's blocks needs 1 words at word 14, only 0 left/);
  assert.throws(() => decodeStep(Int32Array.from([...good, 0])), /1 words left over after the logit rows/);
  assert.throws(() => decodeStep(Int32Array.from([1, 1, -1, 7, 0, 0, 0, 0, 1, 0, 1, 0, 0])), /numerics code must be in \[0, 2\], got 7/);
  assert.throws(() => decodeStep(Int32Array.from([1, 2])), /shorter than its 8-word head/);
  assert.throws(() => decodeStep(Int32Array.from([1, 1, -1, 0, 0, 0, 0, 3, 1, 0, 1, 0, 0])), /dense code must be in \[0, 2\], got 3/);
  assert.throws(() => decodePool(Int32Array.from([4, 9])), /POOL payload: format code must be in \[0, 3\], got 9/);
  const batch: RaggedBatch = { ids: Int32Array.from([1]), seqs: [{ offset: 0, len: 1, start: 0, blocks: [0] }] };
  assert.throws(() => encodeStep(batch, { forcedRoutes: [] } as BroadcastStepOptions), /option 'forcedRoutes' cannot be broadcast to the other ranks .*not supported with world size > 1/);
  assert.throws(() => encodeStep(batch, { mode: 'fast' } as unknown as BroadcastStepOptions), /step: mode must be one of "auto", "mha", "mqa", got "fast"/);
  assert.throws(() => encodePool({ blocks: 0 }), /newPool: blocks must be a positive 32-bit integer, got 0/);
});

test('step broadcast: rank 0 checks a batch before broadcasting it; the wrapper offers no MTP or graphs, so the engine refuses speculative tokens', () => {
  const mtpCfg = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8, num_nextn_predict_layers: 1 });
  const model = DeepseekV32.fromSource(mtpCfg, mapSource(randomCheckpoint(mtpCfg, 1)));
  const sent: number[] = [];
  const one = new SingleProcessCollective();
  const spy = Object.assign(Object.create(one) as SingleProcessCollective, { broadcast: (x: { numel: number }) => void sent.push(x.numel) });
  const bm = new BroadcastModel(model, spy);
  const asEngineModel: EngineModel<CachePool> = bm;
  assert.equal(asEngineModel.mtpStep, undefined);
  assert.equal(asEngineModel.decodeGraphs, undefined);
  assert.throws(() => new LLMEngine(bm, { numBlocks: 4, speculativeTokens: 1 }), /engine: speculativeTokens must be 0 for a model without MTP layers, got 1/);
  const pool = bm.newPool({ blocks: 2 });
  assert.deepEqual(sent, [4, 2], 'POOL: the header, then its 2-word payload');
  assert.throws(() => bm.step({ ids: Int32Array.from([1, 999]), seqs: [{ offset: 0, len: 2, start: 0, blocks: [0] }] }, pool), /batch.ids\[1\] = 999 is not a token id/);
  assert.throws(() => bm.step({ ids: Int32Array.from([1]), seqs: [{ offset: 0, len: 1, start: 0, blocks: [5] }] }, pool), /batch.seqs\[0\].blocks\[0\] = 5 is not a block of the pool \[0, 2\)/);
  assert.throws(() => bm.step({ ids: Int32Array.from([1]), seqs: [{ offset: 0, len: 1, start: 0, blocks: [0] }] }, model.newPool({ blocks: 2 })), /step: pool is not the last pool this BroadcastModel's newPool made/);
  assert.deepEqual(sent, [4, 2], 'nothing was broadcast for the bad batches or the foreign pool');
  bm.close();
  bm.close();
  assert.deepEqual(sent, [4, 2, 4], 'STOP once: a header without payload');
  assert.throws(() => bm.step({ ids: Int32Array.from([1]), seqs: [{ offset: 0, len: 1, start: 0, blocks: [0] }] }, pool), /the broadcast model was closed/);
  assert.throws(() => followSteps(model, one), /followSteps runs on ranks ≠ 0/);
});

/** log-softmax of a row at `token` (f64). */
function logSoftmaxAt(row: Float32Array, token: number): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return row[token]! - m - Math.log(s);
}

test('step broadcast: an engine on rank 0 of 2 thread ranks generates what the plain model computes; its close stops the follower', async () => {
  const outs = await runThreadRanks<Out>(2, WORKER, { kind: 'engine' } satisfies RankCase, { timeoutMs: 60_000 });
  assert.deepEqual(outs.map((o) => o.sharded), [true, true], 'each rank holds a share of the weights');
  const gen = outs[0]!.generated as Generated[];
  const expected = requests.flatMap((r) => Array.from({ length: r.params!.n ?? 1 }, (_, i) => `${r.id}/${i}`));
  assert.deepEqual(gen.map((g) => `${g.id}/${g.index}`), expected);
  const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, SEED)));
  const V = cfg.vocabSize;
  let worst = 0;
  let flips = 0;
  for (const g of gen) {
    const req = requests.find((r) => r.id === g.id)!;
    const want = req.params!.maxTokens!;
    assert.equal(g.finish, 'length', `${g.id}/${g.index} finished by length`);
    assert.equal(g.tokens.length, want, `${g.id}/${g.index}: ${want} tokens`);
    assert.equal(g.completionTokens, want);
    // teacher forcing: the logits at position P − 1 + i are those the engine sampled token i from. The
    // ranks' GEMMs reduce over shards, so their rounding differs from the whole model's by ~1e-8, which
    // can tip an e4m3 rounding of the latent (fp8-ties.ts: measured with OpenBLAS's SkylakeX kernels, the
    // input of layer 1's output projection moved 3.8e-6 and a logprob 4.2e-4); such a tie may be rounded
    // the other way in the reference, as the tensor-parallel test does.
    const seq = [...req.promptIds, ...g.tokens.slice(0, -1)];
    const refLogprobs = (logits: Float32Array): number[] =>
      g.tokens.map((t, i) => {
        const pos = req.promptIds.length - 1 + i;
        return logSoftmaxAt(logits.subarray(pos * V, (pos + 1) * V), t);
      });
    const res = resolveFp8Ties(() => refLogprobs(model.forward([seq]).logits!.toFloat32()), (ref) => {
      const i = ref.findIndex((r, j) => !(Math.abs(r - g.logprobs[j]!) <= 1e-4));
      return i < 0 ? Infinity : i;
    });
    assert.ok(res.flips.length <= MAX_FP8_TIE_FLIPS, `${g.id}/${g.index}: ${res.flips.length} FP8 tie flips`);
    flips += res.flips.length;
    res.result.forEach((ref, i) => {
      const d = Math.abs(ref - g.logprobs[i]!);
      worst = Math.max(worst, d);
      assert.ok(d <= 1e-4, `${g.id}/${g.index} token ${i}: logprob ${g.logprobs[i]} vs the model's ${ref}`);
    });
  }
  // every step the engine ran was repeated by the follower: 1 POOL + steps + STOP
  const sum = outs[1]!.summary as { commands: number; steps: number; failedSteps: number };
  assert.equal(sum.failedSteps, 0);
  assert.equal(sum.commands, sum.steps + 2);
  assert.ok(sum.steps >= 8, `the follower ran ${sum.steps} steps`);
  // and computed them as rank 0 did, over its own cache pool: the same logits at every step
  const [l0, l1] = [outs[0]!.stepLogits as number[][], outs[1]!.stepLogits as number[][]];
  assert.equal(l0.length, sum.steps);
  assert.equal(l1.length, sum.steps);
  l0.forEach((l, s) => {
    assert.equal(l1[s]!.length, l.length, `step ${s}: logit rows`);
    l.forEach((v, i) => assert.ok(Math.abs(v - l1[s]![i]!) <= 1e-5, `step ${s} logit ${i}: rank 0 ${v}, rank 1 ${l1[s]![i]}`));
  });
  assert.match(String(outs[0]!.afterClose), /^newPool: the broadcast model was closed \(STOP sent\)$/);
  process.stdout.write(`# 2 thread ranks: ${gen.length} sequences, ${sum.steps} steps, worst logprob difference ${worst.toExponential(2)} after ${flips} FP8 tie flips\n`);
});

test("step broadcast: rank 0's close (sent once however often called) ends the follower's loop and its thread", async () => {
  const outs = await runThreadRanks<Out>(2, WORKER, { kind: 'close' } satisfies RankCase, { timeoutMs: 20_000 });
  assert.deepEqual(outs[1]!.summary, { commands: 2, steps: 0, failedSteps: 0 });
});

test('step broadcast: a step that fails on every rank fails its batch on rank 0 and is reported by the follower, which goes on with the next', async () => {
  const outs = await runThreadRanks<Out>(2, WORKER, { kind: 'step-error' } satisfies RankCase, { timeoutMs: 60_000 });
  assert.equal(outs[0]!.first, 'a: injected failure of step 2');
  assert.equal(outs[0]!.second, `b: ${requests[1]!.params!.maxTokens} tokens`);
  assert.deepEqual(outs[1]!.failed, ['2: injected failure of step 2']);
  const sum = outs[1]!.summary as { commands: number; steps: number; failedSteps: number };
  assert.equal(sum.failedSteps, 1);
  assert.equal(sum.commands, sum.steps + 2);
});

for (const [kind, msg] of [
  ['garbage-header', /^followSteps \(rank 1, command 0\): the header \[1, 2, 3, 4\] does not start with the magic word/],
  ['garbage-payload', /^followSteps \(rank 1, command 0\): STEP payload \(14 words\): chunk 0's blocks needs 9 words at word 14, only 0 left$/],
  ['lost-command', /^followSteps \(rank 1, command 0\): the header's sequence number is 1, expected 0 \(a command was lost or repeated\)$/],
] as const) {
  test(`step broadcast: a follower receiving a malformed command (${kind}) fails with a clear message`, async () => {
    const outs = await runThreadRanks<Out>(2, WORKER, { kind } satisfies RankCase, { timeoutMs: 20_000 }).catch((e: unknown) => {
      assert.ok(e instanceof ThreadRanksError, String(e));
      return e.results as Out[];
    });
    assert.match(String(outs[1]!.error), msg);
  });
}

test('dsv32 serve with world size 2: --speculative-tokens, --enable-weight-updates and a CPU device are one-line errors naming the flag', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dsv32-sb-'));
  try {
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'deepseek_v32', vocab_size: 128, hidden_size: 64, intermediate_size: 128, moe_intermediate_size: 32, num_hidden_layers: 2, first_k_dense_replace: 1, num_attention_heads: 4, num_key_value_heads: 4, q_lora_rank: 128, kv_lora_rank: 128, qk_nope_head_dim: 32, qk_rope_head_dim: 16, v_head_dim: 32, n_routed_experts: 8, n_shared_experts: 1, num_experts_per_tok: 2, n_group: 4, topk_group: 2, scoring_func: 'sigmoid', routed_scaling_factor: 2.5, norm_topk_prob: true, topk_method: 'noaux_tc', index_n_heads: 4, index_head_dim: 128, index_topk: 8, rope_theta: 10000, max_position_embeddings: 2048, rms_norm_eps: 1e-6, bos_token_id: 0, eos_token_id: 1, tie_word_embeddings: false, num_nextn_predict_layers: 1 }));
    // the environment `dsv32 launch --gpus 2` gives rank 0
    const env = { ...process.env, DSV32_WORLD_SIZE: '2', DSV32_RANK: '0', DSV32_NCCL_ID_FILE: path.join(dir, 'id') };
    const run = (args: string[]): Promise<{ code: number | null; stderr: string }> => new Promise((res) => {
      const p = spawn(process.execPath, [path.resolve('dist/src/cli/main.js'), 'serve', '--model', dir, '--port', '0', ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => res({ code, stderr }));
    });
    const cases: [string[], RegExp][] = [
      [['--speculative-tokens', '1'], /^dsv32: --speculative-tokens 1: MTP speculative decoding is not supported under dsv32 launch \(world size 2\); use 0$/],
      [['--enable-weight-updates'], /^dsv32: --enable-weight-updates: weight updates are not supported under dsv32 launch \(world size 2\)$/],
      [['--device', 'cpu'], /^dsv32: --device cpu: DSV32_WORLD_SIZE is 2: multi-process runs need the cuda backend, got 'cpu'$/],
    ];
    const runs = await Promise.all(cases.map(([a]) => run(a)));
    runs.forEach((r, i) => {
      assert.notEqual(r.code, 0, cases[i]![0].join(' '));
      assert.match(r.stderr.trim(), cases[i]![1]);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
