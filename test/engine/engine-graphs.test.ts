// Graph decode in the engine (src/model/decode-graph.ts, EngineOptions.cudaGraphs): the same requests
// through an engine that replays its plain decode steps and one that runs every step eagerly give the
// same tokens, with logprobs equal to rounding (a padded step's GEMMs see another row count).
//   CPU: the capture is a stand-in whose replay re-runs the recorded function; the runner reads nothing
//        the host held at capture time but the static tensors, so this checks the plumbing (buckets,
//        padding, static inputs rewritten per step, the static output, fallbacks, finish/preemption
//        between steps) on every CI machine.
//   CUDA (skipped without a driver and GPU): the engine on real captures and replays (the runner alone,
//   bucket by bucket: test/model/static-layout.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LLMEngine, type EngineOptions } from '../../src/engine/engine.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import type { CapturedGraph, GraphCapture } from '../../src/model/decode-graph.js';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';
import { getBackend } from '../../src/tensor/backend.js';
import { collect, type Result } from './collect.js';

const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8 });
const ckpt = randomCheckpoint(cfg, 21);
const cudaReason = cudaUnavailableReason();
const onGpu = { skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` };

const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 2 + ((i * 17 + seed * 29) % 120));
const req = (id: string, p: number[], params: GenerateRequest['params']): GenerateRequest => ({ id, promptIds: p, params: { ignoreEos: true, ...params } });

/**
 * The CPU stand-in: records fn (and runs it, which CUDA capture does not); a replay re-runs it. As a real
 * capture, it refuses host↔device copies inside fn (a replay would not redo them): the CPU backend's
 * fromHost/toHost throw the CUDA backend's error while fn runs. (The first H100 run of graph decode failed
 * every capture on such an upload, the FP8 round trip's scale index, which no CPU test had caught.)
 */
const standIn: GraphCapture = (fn) => {
  const cpu = getBackend('cpu');
  const [up, down] = [cpu.fromHost, cpu.toHost];
  const refuse = (what: string) => (): never => {
    throw new Error(`cuda: ${what} is not allowed while a CUDA graph is being captured (CPU stand-in)`);
  };
  cpu.fromHost = refuse('copying host data to the device');
  cpu.toHost = refuse('copying device data to the host');
  try {
    fn();
  } finally {
    [cpu.fromHost, cpu.toHost] = [up, down];
  }
  const g: CapturedGraph = { replay: fn, destroy: () => {} };
  return g;
};

/** Five requests of different lengths finishing at different steps: buckets 8 → 4 → 2 → 1 as they end. */
const MIXED: GenerateRequest[] = [
  req('a', prompt(3, 1), { temperature: 0, maxTokens: 4, logprobs: 2 }),
  req('b', prompt(70, 2), { temperature: 0, maxTokens: 12, logprobs: 2 }),
  req('c', prompt(20, 3), { temperature: 0.8, seed: 5, n: 2, maxTokens: 7, logprobs: 2 }),
  req('d', prompt(130, 4), { temperature: 0, maxTokens: 10, logprobs: 2 }),
  req('e', prompt(9, 5), { temperature: 0, maxTokens: 14, logprobs: 2 }),
];

async function runAll(model: DeepseekV32, opts: EngineOptions, reqs: GenerateRequest[]): Promise<{ results: Result[]; engine: LLMEngine<{ readonly blocks: number }> }> {
  const engine = new LLMEngine(model, opts);
  const results = await Promise.all(reqs.map((r) => collect(engine.generate(r))));
  return { results, engine };
}

function sameResults(got: Result[], want: Result[], tol: number, what: string): void {
  want.forEach((w, i) => {
    assert.deepEqual(got[i]!.tokens, w.tokens, `${what}: request ${i} tokens`);
    assert.deepEqual(got[i]!.finish.map((f) => f.reason), w.finish.map((f) => f.reason), `${what}: request ${i} finish`);
    w.events.forEach((evs, s) => evs.forEach((ev, t) => {
      const g = got[i]!.events[s]![t]!;
      assert.ok(Math.abs(g.logprob - ev.logprob) <= tol, `${what}: request ${i} seq ${s} token ${t}: logprob ${g.logprob} vs ${ev.logprob}`);
    }));
  });
}

test('engine graphs (CPU stand-in): mixed prefill/decode, sampling with n = 2, sequences finishing at different steps: the tokens of an eager engine', async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const base: EngineOptions = { numBlocks: 16, maxNumSeqs: 8, maxBatchTokens: 48 };
  const eager = await runAll(model, { ...base, cudaGraphs: false }, MIXED);
  const graphed = await runAll(model, { ...base, graphCapture: standIn }, MIXED);
  sameResults(graphed.results, eager.results, 1e-4, 'graphs vs eager');
  assert.equal(eager.engine.graphStats(), null, 'cudaGraphs: false runs no graphs');
  const st = graphed.engine.graphStats()!;
  assert.deepEqual(st.failures, []);
  assert.ok(st.captures >= 3, `buckets captured: ${st.captures}`);
  assert.ok(st.replays >= 5, `steps replayed: ${st.replays}`);
  assert.deepEqual(graphed.engine.stats(), eager.engine.stats(), 'the same schedule: the scratch block is outside the block pool');
  graphed.engine.close();
  eager.engine.close();
  assert.equal(graphed.engine.graphStats(), null, 'close() drops the graphs');
});

test('engine graphs (CPU stand-in): steps that record routes replay too, with the eager engine\'s routes; a pool too small preempts; the same tokens', async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  // every request records routes (as RL rollouts do), so every decode step that replays carries them
  const reqs = [
    req('r', prompt(40, 6), { temperature: 0, maxTokens: 6, returnRoutedExperts: true }),
    req('p0', prompt(60, 7), { temperature: 0.9, seed: 3, maxTokens: 10, returnRoutedExperts: true }),
    req('p1', prompt(62, 8), { temperature: 0, maxTokens: 10, returnRoutedExperts: true }),
  ];
  const base: EngineOptions = { numBlocks: 4, maxNumSeqs: 4 };
  const eager = await runAll(model, { ...base, cudaGraphs: false }, reqs);
  const graphed = await runAll(model, { ...base, graphCapture: standIn }, reqs);
  sameResults(graphed.results, eager.results, 1e-4, 'graphs vs eager');
  eager.results.forEach((res, i) => res.events[0]!.forEach((ev, t) => {
    assert.deepEqual(Array.from(graphed.results[i]!.events[0]![t]!.routedExperts!), Array.from(ev.routedExperts!), `request ${i}: routes of token ${t}`);
  }));
  assert.ok(graphed.engine.stats().preempted > 0, 'the pool was too small for all three');
  assert.ok(graphed.engine.graphStats()!.replays > 0, 'every request records routes: each replay was a route-recording step');
  assert.equal(graphed.engine.blockPool.numUsed, 0);
  graphed.engine.close();
  eager.engine.close();
});

test('engine graphs (CPU stand-in): MTP speculative decoding (1 and 2 drafts) replays its verification steps and first MTP pass, with the eager engine\'s tokens and acceptance', async () => {
  const cfgM = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8, num_nextn_predict_layers: 1 });
  const model = DeepseekV32.fromSource(cfgM, mapSource(randomCheckpoint(cfgM, 23)));
  const reqs = [
    req('g0', prompt(30, 9), { temperature: 0, maxTokens: 12, logprobs: 2 }),
    req('g1', prompt(75, 10), { temperature: 0, maxTokens: 9, logprobs: 2 }),
    req('s', prompt(12, 11), { temperature: 0.8, seed: 7, maxTokens: 10, logprobs: 2 }),
  ];
  for (const k of [1, 2]) {
    // MQA for both: the graphs attend multi-token chunks with MQA ('auto' would take MHA for the eager
    // engine's verification steps, the same attention up to rounding)
    const base: EngineOptions = { numBlocks: 12, maxNumSeqs: 4, speculativeTokens: k, attention: 'mqa' };
    const eager = await runAll(model, { ...base, cudaGraphs: false }, reqs);
    const graphed = await runAll(model, { ...base, graphCapture: standIn }, reqs);
    sameResults(graphed.results, eager.results, 1e-4, `${k} drafts: graphs vs eager`);
    const [es, gs] = [eager.engine.stats(), graphed.engine.stats()];
    assert.equal(gs.draftProposed, es.draftProposed, `${k} drafts: proposed`);
    assert.equal(gs.draftAccepted, es.draftAccepted, `${k} drafts: accepted`);
    assert.ok(gs.draftProposed > 0);
    const st = graphed.engine.graphStats()!;
    assert.deepEqual(st.failures, []);
    // each bucket: a verification graph and an MTP graph
    assert.ok(st.captures >= 2 && st.captures % 2 === 0, `${k} drafts: captures ${st.captures}`);
    assert.ok(st.replays >= 4, `${k} drafts: replays ${st.replays}`);
    graphed.engine.close();
    eager.engine.close();
  }
});

test('engine graphs (CPU stand-in): a context crossing a tier (256 → 512) gets a graph of its own; the FP8 cache (bf16, MQA) too', async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const reqs = [req('long', prompt(250, 9), { temperature: 0, maxTokens: 12, logprobs: 1 }), req('short', prompt(30, 10), { temperature: 0, maxTokens: 12, logprobs: 1 })];
  for (const extra of [{}, { numerics: 'bf16', cacheFormat: 'fp8' }] as const) {
    const base: EngineOptions = { numBlocks: 8, maxNumSeqs: 2, ...extra };
    const eager = await runAll(model, { ...base, cudaGraphs: false }, reqs);
    const graphed = await runAll(model, { ...base, graphCapture: standIn }, reqs);
    sameResults(graphed.results, eager.results, extra.numerics ? 1e-2 : 1e-4, `graphs vs eager ${JSON.stringify(extra)}`);
    const st = graphed.engine.graphStats()!;
    // 11 decode steps of bucket 2: positions 250..255 of the long prompt in tier 256 (capture, then 5
    // replays), 256..260 in tier 512 (capture, then 4 replays)
    assert.deepEqual({ captures: st.captures, eager: st.eager, replays: st.replays }, { captures: 2, eager: 2, replays: 9 });
    graphed.engine.close();
    eager.engine.close();
  }
});

test('engine graphs (CPU stand-in): a bucket whose capture fails runs eagerly and warns once', async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    const failing: GraphCapture = () => {
      throw new Error('cuda: fromHost is not allowed while a CUDA graph is being captured');
    };
    const reqs = MIXED.slice(0, 2);
    const eager = await runAll(model, { numBlocks: 8, maxNumSeqs: 2, cudaGraphs: false }, reqs);
    const graphed = await runAll(model, { numBlocks: 8, maxNumSeqs: 2, graphCapture: failing }, reqs);
    sameResults(graphed.results, eager.results, 1e-4, 'failed capture vs eager');
    const st = graphed.engine.graphStats()!;
    assert.equal(st.replays, 0);
    assert.deepEqual(st.failures.map((f) => f.bucket).sort(), [1, 2]);
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.filter((w) => /decode bucket \d \(contexts ≤ 256\) could not be captured; those steps run eagerly: cuda: fromHost/.test(w)).length, 2);
    graphed.engine.close();
    eager.engine.close();
  } finally {
    process.off('warning', onWarning);
  }
});

/** Unfiltered requests, greedy and drawn (one recording its masks), without top logprobs: their steps sample where the logits are (deviceSampling). */
const PLAIN: GenerateRequest[] = [
  req('g0', prompt(5, 12), { temperature: 0, maxTokens: 9, returnSamplingMask: true }),
  req('t1', prompt(90, 13), { temperature: 1, seed: 4, maxTokens: 14 }),
  req('t2', prompt(33, 14), { temperature: 0.7, seed: 5, n: 2, maxTokens: 6, returnSamplingMask: true }),
];
/** Filtered requests recording their masks (top-p, top-k with min-p) beside PLAIN's: sampled on the device too. */
const FILTERED: GenerateRequest[] = [
  req('p', prompt(20, 15), { temperature: 0.8, topP: 0.9, seed: 3, maxTokens: 24, returnSamplingMask: true }),
  req('k', prompt(41, 17), { temperature: 1.2, topK: 9, minP: 0.02, seed: 8, maxTokens: 11, returnSamplingMask: true }),
  ...PLAIN,
];

/** Every token's sampling mask of got is want's. */
function sameMasks(got: Result[], want: Result[], what: string): void {
  want.forEach((w, i) => w.events.forEach((evs, s) => evs.forEach((ev, t) => assert.deepEqual(got[i]!.events[s]![t]!.samplingMask, ev.samplingMask, `${what}: request ${i} seq ${s} token ${t}: mask`))));
}

test('engine deviceSampling (CPU, graphs on the stand-in): the host sampler\'s tokens, logprobs, top logprobs and masks bit for bit, filtered rows and top logprobs included', async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const base: EngineOptions = { numBlocks: 16, maxNumSeqs: 4, maxBatchTokens: 48, graphCapture: standIn };
  const host = await runAll(model, { ...base, deviceSampling: false }, PLAIN);
  const dev = await runAll(model, { ...base, deviceSampling: true }, PLAIN);
  sameResults(dev.results, host.results, 0, 'deviceSampling vs the host sampler');
  sameMasks(dev.results, host.results, 'deviceSampling vs the host sampler');
  // a greedy row's mask is its token, an unfiltered drawn row's the whole vocabulary
  assert.deepEqual([...dev.results[0]!.events[0]![0]!.samplingMask!], [dev.results[0]!.tokens[0]![0]]);
  assert.equal(dev.results[2]!.events[0]![0]!.samplingMask!.length, cfg.vocabSize);
  assert.equal(host.engine.stats().deviceSampledSteps, 0, 'off: nothing sampled by the op');
  assert.ok(dev.engine.stats().deviceSampledSteps >= 14, `sampled by the op: ${dev.engine.stats().deviceSampledSteps} steps`);
  // top-p, top-k and min-p rows in every step (admitted first, finishing last): sampled by the op too
  const filteredDev = await runAll(model, { ...base, deviceSampling: true }, FILTERED);
  const filteredHost = await runAll(model, { ...base, deviceSampling: false }, FILTERED);
  sameResults(filteredDev.results, filteredHost.results, 0, 'filtered steps');
  sameMasks(filteredDev.results, filteredHost.results, 'filtered steps');
  const cutMasks = filteredDev.results.slice(0, 2).flatMap((r) => r.events[0]!.map((ev) => ev.samplingMask!.length));
  assert.ok(cutMasks.some((n) => n > 1 && n < cfg.vocabSize), `the filtered rows' masks cut the vocabulary: sizes ${cutMasks.join(' ')}`);
  assert.ok(filteredDev.engine.stats().deviceSampledSteps >= 24, `filtered steps sampled by the op: ${filteredDev.engine.stats().deviceSampledSteps}`);
  // top logprobs (greedy and drawn, two counts in one step): the topk op and the op's logZ
  const withTop = [req('t', prompt(7, 16), { temperature: 0, maxTokens: 5, logprobs: 1 }), req('u', prompt(8, 18), { temperature: 0.9, topP: 0.8, seed: 2, maxTokens: 7, logprobs: 5 })];
  const topDev = await runAll(model, { ...base, deviceSampling: true }, withTop);
  const topHost = await runAll(model, { ...base, deviceSampling: false }, withTop);
  sameResults(topDev.results, topHost.results, 0, 'top logprobs');
  topHost.results.forEach((w, i) => w.events.forEach((evs, s) => evs.forEach((ev, t) => assert.deepEqual(topDev.results[i]!.events[s]![t]!.topLogprobs, ev.topLogprobs, `request ${i} seq ${s} token ${t}: top logprobs`))));
  assert.equal(topDev.results[1]!.events[0]![0]!.topLogprobs!.length, 5);
  assert.ok(topDev.engine.stats().deviceSampledSteps >= 7, `top-logprob steps sampled by the op: ${topDev.engine.stats().deviceSampledSteps}`);
  for (const r of [host, dev, filteredDev, filteredHost, topDev, topHost]) r.engine.close();
});

// ---- CUDA: real capture and replay ------------------------------------------------------------------

test('engine on CUDA: graph decode gives the eager engine\'s greedy tokens, and replays [cuda]', onGpu, async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: 'cuda' });
  const greedy = MIXED.map((r) => ({ ...r, params: { ...r.params, temperature: 0, n: 1 } }));
  const base: EngineOptions = { numBlocks: 16, maxNumSeqs: 8, maxBatchTokens: 48 };
  const eager = await runAll(model, { ...base, cudaGraphs: false }, greedy);
  const graphed = await runAll(model, base, greedy);
  sameResults(graphed.results, eager.results, 1e-3, 'CUDA graphs vs eager');
  const st = graphed.engine.graphStats()!;
  assert.deepEqual(st.failures, []);
  assert.ok(st.replays > 0);
  graphed.engine.close();
  eager.engine.close();
});

test('engine on CUDA: tokens and masks sampled on the device (deviceSampling, the default there; top-p, top-k, min-p rows and top logprobs included) are the host sampler\'s, logprobs to rounding [cuda]', onGpu, async () => {
  const model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: 'cuda' });
  const base: EngineOptions = { numBlocks: 16, maxNumSeqs: 4, maxBatchTokens: 48 };
  const withTop = [...FILTERED, req('l', prompt(8, 18), { temperature: 0.9, seed: 2, maxTokens: 7, logprobs: 5 })];
  const host = await runAll(model, { ...base, deviceSampling: false }, withTop);
  const dev = await runAll(model, base, withTop);
  // the same logits either way; the sums of exp in another order (src/tensor/ops/pick.ts): at this
  // 128-token vocabulary a draw or a top-p edge lands on a rounding tie with a chance of about 1e-13
  sameResults(dev.results, host.results, 1e-9, 'deviceSampling vs the host sampler');
  sameMasks(dev.results, host.results, 'deviceSampling vs the host sampler');
  host.results.at(-1)!.events[0]!.forEach((ev, t) => {
    const g = dev.results.at(-1)!.events[0]![t]!.topLogprobs!;
    assert.deepEqual(g.map(([id]) => id), ev.topLogprobs!.map(([id]) => id), `token ${t}: top ids`);
    g.forEach(([, lp], i) => assert.ok(Math.abs(lp - ev.topLogprobs![i]![1]) <= 1e-9, `token ${t}: top logprob ${i}: ${lp} vs ${ev.topLogprobs![i]![1]}`));
  });
  assert.ok(dev.engine.stats().deviceSampledSteps >= 24, `sampled on the device: ${dev.engine.stats().deviceSampledSteps} steps`);
  host.engine.close();
  dev.engine.close();
});
