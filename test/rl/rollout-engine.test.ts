// Rollouts end to end on the real engine (LLMEngine) with a tiny DeepSeek-V3.2 on the CPU, over the
// code-interpreter environment family, and the records checked against the model itself:
//   - the sequence decodes to the encoder's rendering; only sampled tokens are trained, the tool output
//     (the sandbox's run_python result) sits in between, masked out;
//   - each trained token's recorded logprob equals log-softmax(logits/τ) recomputed by model.forward over
//     the recorded sequence, and its sampling mask equals keep-sampling-mask's rule on those logits;
//   - the recorded routes equal the routes of that forward at p − 1 (Keep Routing: 0 % disagreement);
//   - through collateRollouts, maskedTokenLogProbs at θ = θ_old gives r ≡ 1 (rl.md §6 inv. 6) and the
//     policy loss is finite.
//
// A random model does not write tool calls, so this one is made to: every layer's output projection
// (attention o_proj, MLP and expert down_proj) is zeroed, which makes the final hidden state a function of
// the current token only (the layers still run, route and record), and lm_head rows are set so that a
// chain of added tokens follows `<think>`: reasoning → `</think>` → the DSML call of run_python → EOS.
// Its logits are still the model's, its distribution is not one-hot (other logits stay random: the chain
// token's logprob is about −0.003 … −0.02), and the engine samples at τ = 1 with top-k 4; the seeds are
// fixed, so the rollout is deterministic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';
import { EOS, THINK_END, THINK_START } from '../../src/chat/tokens.js';
import { LLMEngine } from '../../src/engine/engine.js';
import { generateCodeInterpreter } from '../../src/envs/families/code-interpreter/family.js';
import { loadEnvironment } from '../../src/envs/load.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { fromArray, type Tensor } from '../../src/tensor/index.js';
import { collateRollouts, overlayRoutes } from '../../src/rl/batch.js';
import { keptTokens, maskedTokenLogProbs } from '../../src/rl/keep-sampling-mask.js';
import { forcedRoutesFromRecorded, recordRoutes, routingDisagreement } from '../../src/rl/keep-routing.js';
import { policyLoss } from '../../src/rl/policy-loss.js';
import { parseRewardConfig } from '../../src/rl/rewards.js';
import { EngineSampler, HttpSampler, type RolloutOptions, type TokenSampler, groupRecords, rolloutGroup } from '../../src/rl/rollout.js';
import { createServer } from '../../src/server/index.js';
import { buildMiniDeepSeekTokenizer } from '../chat/mini-tokenizer.js';
import { scratchDir } from '../envs/family-helpers.js';

const CHAIN_TEXT = [
  'I will run it.',
  THINK_END,
  '\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="run_python">\n<｜DSML｜parameter name="code" string="true">',
  'print(6*7)',
  '</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>',
];
const TURN = CHAIN_TEXT.join('') + EOS;

// the test tokenizer with the chain's pieces as added tokens (the six chat tokens are already there)
const files = buildMiniDeepSeekTokenizer();
const tj = files.tokenizerJson as { added_tokens: { id: number; content: string }[]; model: { vocab: Record<string, number> } };
let nextId = Math.max(...Object.values(tj.model.vocab)) + 1;
for (const text of [CHAIN_TEXT[0]!, CHAIN_TEXT[2]!, CHAIN_TEXT[3]!, CHAIN_TEXT[4]!]) {
  tj.added_tokens.push({ id: nextId, content: text, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false } as never);
  tj.model.vocab[text] = nextId++;
}
const tok = new DeepSeekTokenizer(tj, files.tokenizerConfig, 'mini+chain');
const idOf = (s: string) => {
  const ids = tok.encode(s);
  assert.equal(ids.length, 1, `${JSON.stringify(s)} is one token`);
  return ids[0]!;
};
const chain = [THINK_START, ...CHAIN_TEXT, EOS].map(idOf);

const cfg = randomConfig({ vocab_size: 640, num_hidden_layers: 2, eos_token_id: tok.special.eos, max_position_embeddings: 8192 });
assert.ok(tok.vocabSize <= cfg.vocabSize);
const ckpt = randomCheckpoint(cfg, 3);
for (const [name, t] of ckpt) if (/(o_proj|down_proj)\.weight$/.test(name)) ckpt.set(name, fromArray(new Float32Array(t.numel), t.shape, { dtype: t.dtype }));
{
  // h(a): the final hidden state after token a (independent of context and of lm_head); row b of lm_head
  // gets α·h(a)/|h(a)|² for each chain step a → b, so logit_b ≈ α after a
  const probe = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const head = ckpt.get('lm_head.weight')!;
  const w = Float32Array.from(head.toFloat32());
  const D = cfg.dim;
  const alpha = 12;
  for (let i = 0; i + 1 < chain.length; i++) {
    const h = probe.forward([[chain[i]!]]).hidden.toFloat32();
    const n2 = h.reduce((s, x) => s + x * x, 0);
    for (let d = 0; d < D; d++) w[chain[i + 1]! * D + d]! += (alpha * h[d]!) / n2;
  }
  ckpt.set('lm_head.weight', fromArray(w, head.shape, { dtype: head.dtype }));
}
const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));

const root = scratchDir('rl-engine-');
generateCodeInterpreter({ seed: 3, tasks: 1, outDir: join(root, 'ci') });
const env = loadEnvironment(join(root, 'ci'));
const SAMPLING = { temperature: 1, topP: 1, topK: 4, minP: 0, maxTokens: 12 };
const ROUTES = { layers: cfg.nLayers - cfg.nDenseLayers, k: cfg.nActivatedExperts };
const options = (sampler: TokenSampler): RolloutOptions => ({
  sampler,
  tokenizer: tok,
  mode: 'thinking',
  sampling: SAMPLING,
  stopTokenIds: [tok.special.eos],
  vocabSize: cfg.vocabSize,
  maxContextTokens: 4096,
  routes: ROUTES,
  topLogprobs: 4,
  groupSize: 2,
  maxSteps: 2,
  reward: parseRewardConfig({}),
  seed: 7,
});
const newEngine = () => new LLMEngine(model, { numBlocks: 64, maxNumSeqs: 4, maxModelLen: 4096 });

test('rollout on LLMEngine (tiny model, CPU, code-interpreter): records agree with model.forward — logprobs, masks, routes, loss mask', async () => {
  const engine = newEngine();
  try {
    const group = await rolloutGroup(env, env.tasks[0]!.id, options(new EngineSampler(engine)));
    const recs = groupRecords([group]);
    assert.equal(recs.length, 2);
    for (const ep of group.episodes) {
      assert.equal(ep.steps, 2);
      assert.equal(ep.status, 'max_steps', 'the chain calls run_python every turn and never submits');
      assert.equal(ep.toolCalls, 2);
      assert.equal(ep.reward.outcome, 0);
      assert.equal(ep.reward.format, 1, 'the model wrote well-formed thinking + DSML turns');
    }
    const V = cfg.vocabSize;
    const L = cfg.nLayers - cfg.nDenseLayers;
    const k = cfg.nActivatedExperts;
    let trainedTotal = 0;
    let compared = 0;
    let promptCompared = 0;
    for (const r of recs) {
      const n = r.tokens.length;
      const text = tok.decode(Array.from(r.tokens));
      // two sampled turns; between them the tool output, masked
      const trainedText = [0, 1].map(() => '');
      let turn = -1;
      for (let p = 0; p < n; p++) {
        if (r.trained[p] && !r.trained[p - 1]) turn++;
        if (r.trained[p]) trainedText[turn] += tok.decode([r.tokens[p]!]);
      }
      assert.equal(turn, 1);
      assert.deepEqual(trainedText, [TURN, TURN], 'exactly the sampled turns are trained');
      const i1 = text.indexOf(TURN) + TURN.length;
      const between = text.slice(i1, text.indexOf(TURN, i1));
      assert.match(between, /^\n\n<function_results>\n<result>\{.*42\\n.*\}<\/result>\n<\/function_results>\n\n<think>$/, 'the sandbox ran print(6*7); its output is in the sequence');
      // the model's own view of the recorded sequence
      const fwd = model.forward([Array.from(r.tokens.subarray(0, n - 1))]);
      const logits = fwd.logits!.toFloat32();
      const own = recordRoutes(cfg, fwd.routes, 1)[0]!;
      // every position but the last is routed, and its recorded routes (from a turn's prompt rows where the
      // next token was not sampled: the prompt, the tool output) equal the model's own over the sequence
      assert.equal(r.routed![n - 1], 0);
      for (let p = 0; p < n - 1; p++) {
        assert.equal(r.routed![p], 1, `position ${p} routed`);
        if (r.trained[p + 1]) continue;
        promptCompared++;
        for (let l = 0; l < L; l++) {
          const at = (p * L + l) * k;
          assert.deepEqual(Array.from(r.routes!.data.subarray(at, at + k)).sort((a, b) => a - b), Array.from(own.data.subarray(at, at + k)).sort((a, b) => a - b), `prompt position ${p}, MoE layer ${l}: routes`);
        }
      }
      for (let p = 1; p < n; p++) {
        if (!r.trained[p]) continue;
        trainedTotal++;
        const row = logits.subarray((p - 1) * V, p * V);
        let m = -Infinity;
        for (const z of row) m = Math.max(m, z);
        let s = 0;
        for (const z of row) s += Math.exp(z - m);
        const lp = row[r.tokens[p]!]! - m - Math.log(s);
        assert.ok(Math.abs(r.logprobs[p]! - lp) < 1e-6 + 1e-3 * Math.abs(lp), `position ${p}: recorded logprob ${r.logprobs[p]} vs recomputed ${lp}`);
        const kept = Array.from(r.samplingMask.indices.subarray(r.samplingMask.indptr[p]!, r.samplingMask.indptr[p + 1]!));
        assert.deepEqual(kept, Array.from(keptTokens(row, SAMPLING)), `position ${p}: sampling mask`);
        assert.equal(r.routed![p - 1], 1);
        for (let l = 0; l < L; l++) {
          const rec = Array.from(r.routes!.data.subarray(((p - 1) * L + l) * k, ((p - 1) * L + l + 1) * k)).sort((a, b) => a - b);
          const mine = Array.from(own.data.subarray(((p - 1) * L + l) * k, ((p - 1) * L + l + 1) * k)).sort((a, b) => a - b);
          assert.deepEqual(rec, mine, `position ${p - 1}, MoE layer ${l}: routes`);
          compared++;
        }
      }
    }
    assert.equal(trainedTotal, 2 * 2 * tok.encode(TURN).length);
    assert.equal(compared, trainedTotal * L);
    assert.ok(promptCompared > 100, `${promptCompared} prompt / tool-output positions compared`);

    // the loss batch at θ = θ_old: masked π_θ over the recorded support equals the renormalised π_old
    const b = collateRollouts(recs, { padId: tok.special.eos });
    assert.equal(b.unmaskedTokens, 0, 'top-4 logprobs cover the top-4 kept set');
    // Keep Routing replay: the recorded routes (the trainer's own where none was recorded) forced into the
    // training forward agree with the free forward everywhere and give the same logits
    const free = model.forward(b.input);
    const own = recordRoutes(cfg, free.routes, b.input.length);
    const replayed = overlayRoutes(b, own);
    // what the trainer forces (overlayRoutes → forcedRoutesFromRecorded) at prompt and tool-output positions is
    // the recording, never the fallback: an overlay from routes that differ everywhere leaves those positions
    const other = own.map((o) => ({ ...o, data: o.data.map((_, i) => (i % k) + 1) }));
    const forcedOther = forcedRoutesFromRecorded(cfg, overlayRoutes(b, other), b.input[0]!.length);
    const T = b.input[0]!.length;
    recs.forEach((r, s) => {
      for (let p = 0; p < r.tokens.length - 1; p++) {
        if (r.trained[p + 1]) continue;
        for (let l = 0; l < L; l++) {
          const f = forcedOther[cfg.nDenseLayers + l]!;
          assert.deepEqual(Array.from(f.subarray((s * T + p) * k, (s * T + p + 1) * k)), Array.from(r.routes!.data.subarray((p * L + l) * k, (p * L + l + 1) * k)), `sequence ${s}, prompt position ${p}, layer ${l}: forced = recorded`);
        }
      }
    });
    assert.equal(routingDisagreement(cfg, replayed, own).fraction, 0);
    const forced = model.forward(b.input, { forcedRoutes: forcedRoutesFromRecorded(cfg, replayed, b.input[0]!.length) });
    const fl = free.logits!.toFloat32();
    const gl = forced.logits!.toFloat32();
    for (let i = 0; i < fl.length; i++) assert.ok(Math.abs(fl[i]! - gl[i]!) <= 1e-5 * (1 + Math.abs(fl[i]!)), `replayed logits differ at ${i}`);
    const logitsB: Tensor = forced.logits!;
    const logp = maskedTokenLogProbs(logitsB, b.target, b.samplingMask, SAMPLING.temperature, b.valid);
    const lpv = logp.toFloat64();
    const old = b.logpOld.toFloat64();
    const valid = b.valid.toFloat64();
    let nValid = 0;
    for (let i = 0; i < lpv.length; i++) {
      if (!valid[i]) continue;
      nValid++;
      assert.ok(Math.abs(lpv[i]! - old[i]!) < 1e-6, `token ${i}: r = exp(${lpv[i]! - old[i]!}) ≠ 1`);
    }
    assert.equal(nValid, trainedTotal);
    const out = policyLoss({ logp, logpOld: b.logpOld, advantages: b.advantages, mask: b.valid }, { eps: 0.2, beta: 0, opsmDelta: 1e-4 });
    assert.ok(Number.isFinite(out.loss.item()));
    assert.equal(out.stats.clipFraction, 0);
    assert.ok(Math.max(...Array.from(out.opsmStatistic.toFloat64()).map(Math.abs)) < 1e-6);
  } finally {
    engine.close();
  }
});

test('rollout through `dsv32 serve` (src/server over LLMEngine) records what the in-process engine records', async () => {
  const inProc = newEngine();
  let direct: Awaited<ReturnType<typeof rolloutGroup>>;
  try {
    direct = await rolloutGroup(env, env.tasks[0]!.id, options(new EngineSampler(inProc)));
  } finally {
    inProc.close();
  }
  const server = createServer({ engine: newEngine(), codec: tok, servedModelName: 'policy', routeShape: ROUTES });
  const url = await server.listen(0, '127.0.0.1');
  try {
    const http = new HttpSampler({ baseUrl: `${url}/v1`, model: 'policy', maxRetries: 0, tokenText: (id) => tok.decode([id]) });
    const viaHttp = await rolloutGroup(env, env.tasks[0]!.id, options(http));
    viaHttp.episodes.forEach((e, i) => {
      const d = direct.episodes[i]!;
      assert.equal(e.records.length, 1);
      const [a, b] = [e.records[0]!, d.records[0]!];
      assert.equal(e.reward.reward, d.reward.reward);
      assert.deepEqual(Array.from(a.tokens), Array.from(b.tokens), 'same seeds, same tokens');
      assert.deepEqual(Array.from(a.trained), Array.from(b.trained));
      // equal up to the f32 noise of different batch compositions (prefix-cache hits, step mixes)
      a.logprobs.forEach((lp, p) => assert.ok(Math.abs(lp - b.logprobs[p]!) < 1e-5, `position ${p}: logprob ${lp} vs ${b.logprobs[p]}`));
      assert.deepEqual(Array.from(a.samplingMask.indptr), Array.from(b.samplingMask.indptr));
      assert.deepEqual(Array.from(a.samplingMask.indices), Array.from(b.samplingMask.indices));
      assert.deepEqual(Array.from(a.routes!.data), Array.from(b.routes!.data));
      assert.deepEqual(Array.from(a.routed!), Array.from(b.routed!));
      // kept mass: exact, from top logprobs keyed token_id:<id> (return_tokens_as_token_ids), also where two
      // kept ids show the same text (a text-keyed list cannot tell them apart)
      for (let p = 0; p < a.tokens.length; p++) {
        if (!a.trained[p]) continue;
        assert.ok(Math.abs(a.keptLogMass[p]! - b.keptLogMass[p]!) < 1e-6, `position ${p}: kept mass ${a.keptLogMass[p]} vs ${b.keptLogMass[p]}`);
      }
    });
  } finally {
    await server.drain();
    await server.app.close();
  }
});
