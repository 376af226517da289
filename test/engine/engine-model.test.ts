// The engine end to end with a tiny random DeepSeek-V3.2 (DSA top-k far below the context, dense + MoE
// layers, MTP layer), against the model's own equal-length API (model.forward) decoded one token at a
// time, on the CPU and, when a driver and GPU are present, on CUDA (weights, cache pool and every step
// there). Reference steps assert an argmax margin, so no check rests on a near tie.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LLMEngine } from '../../src/engine/engine.js';
import { collect } from './collect.js';
import { type EngineEvent, type FinishEvent, type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { keptTokens } from '../../src/rl/keep-sampling-mask.js';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';

const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8, num_nextn_predict_layers: 1 });
const K = cfg.nActivatedExperts;
const ckpt = randomCheckpoint(cfg, 5);
const cudaReason = cudaUnavailableReason();
const devices: { name: string; skip: string | false }[] = [
  { name: 'cpu', skip: false },
  { name: 'cuda', skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` },
];
let model: DeepseekV32;
const MARGIN = 1e-3;


const argmax = (l: Float32Array): number => l.reduce((b, x, i) => (x > l[b]! ? i : b), 0);

/**
 * Decode `tokens` (or greedy when absent) one token at a time with the equal-length API; per step the
 * logits row that produced the token, its routes per MoE layer and the argmax margin.
 */
function reference(prompt: number[], n: number, tokens?: number[], dense = false): { tokens: number[]; logits: Float32Array[]; routes: number[][]; topk: number[][][]; margins: number[] } {
  const cache = model.newCache(1);
  let o = model.forward([prompt], { cache, logits: 'last', dense });
  const out = { tokens: [] as number[], logits: [] as Float32Array[], routes: [] as number[][], topk: [] as number[][][], margins: [] as number[] };
  for (let i = 0; i < n; i++) {
    const l = o.logits!.toFloat32().slice(-cfg.vocabSize);
    const rows = o.routes.filter((r) => r).map((r) => Array.from((r!.toHost() as Int32Array).slice((r!.shape[0]! - 1) * K, r!.shape[0]! * K)));
    const t = tokens ? tokens[i]! : argmax(l);
    const sorted = Array.from(l).sort((a, b) => b - a);
    out.tokens.push(t);
    out.logits.push(l);
    out.routes.push(rows.flat());
    out.topk.push(o.topk.map((sel) => {
      const idx = sel.idx.toHost() as Int32Array;
      const R = idx.length / sel.width;
      return Array.from(idx.slice((R - 1) * sel.width, R * sel.width)).filter((x) => x >= 0);
    }));
    out.margins.push(sorted[0]! - sorted[1]!);
    if (i + 1 < n) o = model.forward([[t]], { cache, logits: 'last', dense });
  }
  return out;
}

const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 2 + ((i * 17 + seed * 29) % 120));
const req = (id: string, p: number[], params: GenerateRequest['params']): GenerateRequest => ({ id, promptIds: p, params: { ignoreEos: true, ...params } });

for (const dev of devices) {
  test(`engine on a tiny model (${dev.name}): greedy tokens equal argmax decoding with model.forward; routes and indexer top-k equal the model's`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const e = new LLMEngine(model, { numBlocks: 16, maxBatchTokens: 40 });
    const p = prompt(70, 1);
    const r = await collect(e.generate(req('g', p, { temperature: 0, maxTokens: 12, returnRoutedExperts: true, returnIndexerTopk: true })));
    const ref = reference(p, 12);
    ref.margins.forEach((m, i) => assert.ok(m > MARGIN, `reference step ${i}: argmax margin ${m} is a near tie`));
    assert.deepEqual(r.tokens[0], ref.tokens);
    r.events[0]!.forEach((ev, i) => {
      assert.deepEqual(Array.from(ev.routedExperts!), ref.routes[i], `token ${i} routes`);
      assert.deepEqual(ev.indexerTopk!.map((x) => Array.from(x)), ref.topk[i], `token ${i} indexer top-k`);
    });
    assert.ok(ref.topk[11]!.every((l) => l.length === cfg.indexTopk), 'the selection is sparse: top-k below the context');
    e.close();
  });

  test(`engine with dense attention (${dev.name}): greedy tokens equal model.forward's with dense attention, not DSA's; the indexer top-k is refused`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const e = new LLMEngine(model, { numBlocks: 16, maxBatchTokens: 40, denseAttention: true });
    const p = prompt(70, 1);
    const r = await collect(e.generate(req('d', p, { temperature: 0, maxTokens: 12 })));
    const ref = reference(p, 12, undefined, true);
    ref.margins.forEach((m, i) => assert.ok(m > MARGIN, `reference step ${i}: argmax margin ${m} is a near tie`));
    assert.deepEqual(r.tokens[0], ref.tokens);
    // the recorded selection of the dense reference is every causal key (70 + i of them at token i)
    ref.topk.forEach((layers, i) => layers.forEach((l) => assert.deepEqual(l, Array.from({ length: p.length + i }, (_, j) => j), `token ${i}: every causal key`)));
    // attending to 8 of ~75 keys is another function: DSA's logits differ by far more than rounding
    const sparse = reference(p, 1, ref.tokens);
    const gap = Math.max(...Array.from(sparse.logits[0]!, (x, j) => Math.abs(x - ref.logits[0]![j]!)));
    assert.ok(gap > 1e-2, `dense and sparse logits of the prompt's last row differ by ${gap}`);
    assert.throws(() => e.generate(req('t', p, { maxTokens: 2, returnIndexerTopk: true })), /the indexer top-k cannot be returned: this engine runs dense attention/);
    e.close();
  });

  test(`engine on a tiny model (${dev.name}): several prompts batched (mixed prefill chunks and decodes) give each prompt's tokens alone`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const ps = [prompt(9, 2), prompt(75, 3), prompt(30, 4)];
    const alone = ps.map((p) => reference(p, 8));
    alone.forEach((a, i) => a.margins.forEach((m, j) => assert.ok(m > MARGIN, `prompt ${i} step ${j}: margin ${m}`)));
    const e = new LLMEngine(model, { numBlocks: 16, maxBatchTokens: 32 });
    const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`b${i}`, p, { temperature: 0, maxTokens: 8 })))));
    rs.forEach((r, i) => assert.deepEqual(r.tokens[0], alone[i]!.tokens, `prompt ${i}`));
    e.close();
  });

  test(`engine on a tiny model (${dev.name}): a pool too small for all preempts, and every request completes with its greedy tokens; prefix hits give the same tokens`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const ps = [prompt(60, 5), prompt(62, 6), prompt(58, 7)];
    const refs = ps.map((p) => reference(p, 10));
    refs.forEach((a, i) => a.margins.forEach((m, j) => assert.ok(m > MARGIN, `prompt ${i} step ${j}: margin ${m}`)));
    const e = new LLMEngine(model, { numBlocks: 4 });
    const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`p${i}`, p, { temperature: 0, maxTokens: 10 })))));
    rs.forEach((r, i) => assert.deepEqual(r.tokens[0], refs[i]!.tokens, `prompt ${i}`));
    assert.ok(e.stats().preempted > 0);
    assert.equal(e.blockPool.numUsed, 0);
    // the same long prompt twice: the second request reuses the first one's full blocks
    const long = prompt(140, 8);
    const ref = reference(long, 6);
    ref.margins.forEach((m, j) => assert.ok(m > MARGIN, `long prompt step ${j}: margin ${m}`));
    const e2 = new LLMEngine(model, { numBlocks: 12 });
    const a = await collect(e2.generate(req('a', long, { temperature: 0, maxTokens: 6 })));
    const b = await collect(e2.generate(req('b', long, { temperature: 0, maxTokens: 6 })));
    assert.equal(e2.stats().prefixHitTokens, 128);
    assert.deepEqual(a.tokens[0], ref.tokens);
    assert.deepEqual(b.tokens[0], ref.tokens);
    e.close();
    e2.close();
  });

  test(`engine on a tiny model (${dev.name}): sampled tokens lie in their masks, and each mask equals keptTokens on the model's logits for that token`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const p = prompt(20, 9);
    const params = { temperature: 0.9, topP: 0.8, topK: 20, minP: 0.01, seed: 3, maxTokens: 12, returnSamplingMask: true, logprobs: 2 };
    const e = new LLMEngine(model, { numBlocks: 8 });
    const r = await collect(e.generate(req('s', p, params)));
    const toks = r.tokens[0]!;
    const ref = reference(p, toks.length, toks);
    let checked = 0;
    r.events[0]!.forEach((ev, i) => {
      assert.ok(ev.samplingMask!.includes(ev.tokenId), `token ${i} outside its mask`);
      const l = ref.logits[i]!;
      const kept = keptTokens(l, params);
      // a boundary within rounding of the filters would make any comparison a coin toss: skip those
      const nudged = [1e-4, -1e-4].map((d) => keptTokens(l.map((x, v) => x + d * ((v * 7919) % 13 - 6)), params));
      if (nudged.some((k) => k.length !== kept.length || k.some((v, j) => v !== kept[j]))) return;
      assert.deepEqual(Array.from(ev.samplingMask!), Array.from(kept), `token ${i} mask`);
      const Z = Array.from(l).reduce((s, x) => s + Math.exp(x / 0.9), 0);
      assert.ok(Math.abs(ev.logprob - (l[ev.tokenId]! / 0.9 - Math.log(Z))) < 1e-4, `token ${i} logprob`);
      checked++;
    });
    assert.ok(checked >= toks.length / 2, `only ${checked} of ${toks.length} masks were away from a boundary`);
    e.close();
  });

  test(`engine on a tiny model (${dev.name}): an aborted request frees its blocks at once`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const e = new LLMEngine(model, { numBlocks: 8 });
    const ac = new AbortController();
    let n = 0;
    let last: EngineEvent | null = null;
    for await (const ev of e.generate(req('a', prompt(100, 1), { temperature: 0, maxTokens: 50 }), ac.signal)) {
      last = ev;
      if (++n === 2) {
        assert.equal(e.blockPool.numUsed, 2);
        ac.abort();
        assert.equal(e.blockPool.numUsed, 0);
      }
    }
    assert.equal(last!.type === 'finish' && last!.reason, 'abort');
    e.close();
  });

  test(`engine on a tiny model (${dev.name}): bf16 numerics with a bf16 and an FP8 latent cache equal model.forward decoding in the same numerics`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const p = prompt(70, 1);
    for (const format of ['bf16', 'fp8'] as const) {
      // the FP8 cache holds no clear latent rows for MHA: both sides run absorbed MQA throughout
      const mode = format === 'fp8' ? 'mqa' : 'auto';
      const cache = model.newCache(1, { format });
      let o = model.forward([p], { cache, logits: 'last', numerics: 'bf16', mode });
      const ref: number[] = [];
      for (let i = 0; i < 8; i++) {
        const l = o.logits!.toFloat32().slice(-cfg.vocabSize);
        const sorted = Array.from(l).sort((a, b) => b - a);
        assert.ok(sorted[0]! - sorted[1]! > MARGIN, `${format} step ${i}: margin ${sorted[0]! - sorted[1]!}`);
        ref.push(argmax(l));
        o = model.forward([[ref[i]!]], { cache, logits: 'last', numerics: 'bf16', mode });
      }
      const e = new LLMEngine(model, { numBlocks: 8, numerics: 'bf16', cacheFormat: format, maxBatchTokens: 32 });
      const r = await collect(e.generate(req(`f${format}`, p, { temperature: 0, maxTokens: 8 })));
      assert.deepEqual(r.tokens[0], ref, format);
      e.close();
    }
  });

  test(`engine on a tiny model (${dev.name}): MTP speculative decoding (1–3 drafts) leaves greedy output unchanged and counts drafts`, { skip: dev.skip }, async () => {
    model = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    const p = prompt(40, 11);
    const ref = reference(p, 10);
    ref.margins.forEach((m, j) => assert.ok(m > MARGIN, `step ${j}: margin ${m}`));
    for (const k of [1, 3]) {
      const e = new LLMEngine(model, { numBlocks: 8, speculativeTokens: k });
      const r = await collect(e.generate(req(`m${k}`, p, { temperature: 0, maxTokens: 10 })));
      assert.deepEqual(r.tokens[0], ref.tokens, `k = ${k}`);
      const s = e.stats();
      assert.ok(s.draftProposed > 0 && s.draftAccepted <= s.draftProposed);
      e.close();
    }
  });
}

test('engine on a tiny model (cpu): n = 3 greedy sequences share the prompt blocks and each equals argmax decoding', async () => {
  model = DeepseekV32.fromSource(cfg, mapSource(ckpt));
  const p = prompt(100, 12);
  const ref = reference(p, 6);
  ref.margins.forEach((m, j) => assert.ok(m > MARGIN, `step ${j}: margin ${m}`));
  const e = new LLMEngine(model, { numBlocks: 12 });
  const r = await collect(e.generate(req('n3', p, { temperature: 0, maxTokens: 6, n: 3 })));
  assert.equal(r.finish.length, 3);
  for (let i = 0; i < 3; i++) assert.deepEqual(r.tokens[i], ref.tokens, `sequence ${i}`);
  assert.equal(e.stats().prefixHitTokens, 2 * 64, 'the followers hit the leader\'s full prompt block');
  e.close();
});

// ---- prompt routes (returnRoutedExperts → TokenEvent.promptRoutedExperts), on a model with 2 MoE layers so
// the layer-major layout within a row is exercised
const cfgR = randomConfig({ num_hidden_layers: 3, vocab_size: 128, index_topk: 8, num_nextn_predict_layers: 0 });
const LR = cfgR.nLayers - cfgR.nDenseLayers;
const KR = cfgR.nActivatedExperts;
const modelR = (): DeepseekV32 => DeepseekV32.fromSource(cfgR, mapSource(randomCheckpoint(cfgR, 7)));

/** rows 0 .. P − 2 of one whole-prompt model.forward, flattened [(P − 1), MoE layer, k] as the engine lays them out */
function promptRoutesRef(m: DeepseekV32, p: number[]): number[] {
  const o = m.forward([p], { logits: 'none' });
  const moe = o.routes.filter((r) => r).map((r) => r!.toHost() as Int32Array);
  assert.equal(moe.length, LR);
  const out: number[] = [];
  for (let pos = 0; pos < p.length - 1; pos++) for (const r of moe) out.push(...r.slice(pos * KR, (pos + 1) * KR));
  return out;
}

/** A prompt of one token has no prompt rows (an empty record); a request that does not ask gets none. */
async function checkPromptRecordEdges(e: LLMEngine<{ readonly blocks: number }>, p: number[], ask: GenerateRequest['params'], field: 'promptRoutedExperts' | 'promptIndexerTopk'): Promise<void> {
  const one = await collect(e.generate(req('one', [5], { temperature: 0, maxTokens: 2, ...ask })));
  assert.equal(one.events[0]![0]![field]!.length, 0, `${field}: a one-token prompt has no prompt rows`);
  const plain = await collect(e.generate(req('plain', p, { temperature: 0, maxTokens: 2 })));
  assert.equal(plain.events[0]![0]![field], undefined, `${field}: not asked for, not sent`);
}

function checkPromptRoutes(ev: TokenEvent[], p: number[], ref: number[], what: string): void {
  const pr = ev[0]!.promptRoutedExperts!;
  assert.ok(pr instanceof Int16Array, `${what}: first event carries Int16Array prompt routes`);
  assert.equal(pr.length, (p.length - 1) * LR * KR, `${what}: (P − 1)·L·k`);
  assert.deepEqual(Array.from(pr), ref, `${what}: prompt routes equal model.forward's rows 0 .. P − 2`);
  for (let i = 0; i < pr.length; i += KR) for (let j = 1; j < KR; j++) assert.ok(pr[i + j]! > pr[i + j - 1]!, `${what}: ascending within a row`);
  ev.slice(1).forEach((e, i) => assert.equal(e.promptRoutedExperts, undefined, `${what}: only the first event, not event ${i + 1}`));
}

test('engine on a tiny model (cpu): prompt routes over a chunked prefill equal the whole-prompt forward; each of n = 2 sequences gets them once', async () => {
  const m = modelR();
  const p = prompt(70, 21);
  const ref = promptRoutesRef(m, p);
  // 70 prompt rows in chunks of ≤ 16
  const e = new LLMEngine(m, { numBlocks: 8, maxBatchTokens: 16 });
  const r = await collect(e.generate(req('c', p, { temperature: 0, maxTokens: 3, n: 2, returnRoutedExperts: true })));
  checkPromptRoutes(r.events[0]!, p, ref, 'sequence 0');
  checkPromptRoutes(r.events[1]!, p, ref, 'sequence 1');
  // the first generated token's routes are row P − 1: the next row after the prompt routes
  const last = m.forward([p], { logits: 'none' }).routes.filter((x) => x).flatMap((x) => Array.from((x!.toHost() as Int32Array).slice((p.length - 1) * KR, p.length * KR)));
  assert.deepEqual(Array.from(r.events[0]![0]!.routedExperts!), last);
  // a prompt of one token has no prompt rows
  await checkPromptRecordEdges(e, p, { returnRoutedExperts: true }, 'promptRoutedExperts');
  e.close();
});

test('engine on a tiny model (cpu): a request asking for routes takes no prefix-cache hits over unrecorded prompt rows, still fills the cache for others', async () => {
  const m = modelR();
  const shared = prompt(140, 22);
  const p2 = [...shared, 9, 10, 11];
  const ref2 = promptRoutesRef(m, p2);
  const e = new LLMEngine(m, { numBlocks: 12 });
  await collect(e.generate(req('a', shared, { temperature: 0, maxTokens: 2 })));
  assert.equal(e.stats().prefixHitTokens, 0);
  // b shares a's two full blocks but computes them itself
  const b = await collect(e.generate(req('b', p2, { temperature: 0, maxTokens: 2, returnRoutedExperts: true })));
  assert.equal(e.stats().prefixHitTokens, 0, 'the routes request took no hit');
  checkPromptRoutes(b.events[0]!, p2, ref2, 'b');
  // a plain request still hits (blocks of a, or b's registered ones)
  await collect(e.generate(req('c', p2, { temperature: 0, maxTokens: 2 })));
  assert.equal(e.stats().prefixHitTokens, 128);
  // n = 3 with routes: the followers hit the leader's recorded blocks and get the leader's rows
  const d = await collect(e.generate(req('d', p2, { temperature: 0, maxTokens: 2, n: 3, returnRoutedExperts: true })));
  assert.equal(e.stats().prefixHitTokens, 128 + 2 * 128, 'only the two followers hit');
  for (let i = 0; i < 3; i++) checkPromptRoutes(d.events[i]!, p2, ref2, `d#${i}`);
  e.close();
});

test('engine on a tiny model (cpu): prompt routes survive preemption and recompute (stored by position)', async () => {
  const m = modelR();
  const ps = [prompt(60, 23), prompt(62, 24), prompt(58, 25)];
  const refs = ps.map((p) => promptRoutesRef(m, p));
  const e = new LLMEngine(m, { numBlocks: 4, maxBatchTokens: 24 });
  const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`q${i}`, p, { temperature: 0, maxTokens: 10, returnRoutedExperts: true })))));
  assert.ok(e.stats().preempted > 0, 'the pool forced preemptions');
  rs.forEach((r, i) => checkPromptRoutes(r.events[0]!, ps[i]!, refs[i]!, `q${i}`));
  e.close();
});

// ---- prompt indexer selections (returnIndexerTopk → TokenEvent.promptIndexerTopk)
const LT = cfgR.nLayers;
const KT = cfgR.indexTopk;

/** rows 0 .. P − 2 of one whole-prompt model.forward's selections, laid out [(P − 1), layer, index_topk] with −1 holes */
function promptTopkRef(m: DeepseekV32, p: number[]): number[] {
  const o = m.forward([p], { logits: 'none' });
  assert.equal(o.topk.length, LT);
  const sels = o.topk.map((s) => ({ width: s.width, idx: s.idx.toHost() as Int32Array }));
  const out: number[] = [];
  for (let pos = 0; pos < p.length - 1; pos++) {
    for (const s of sels) {
      const row = Array.from(s.idx.slice(pos * s.width, (pos + 1) * s.width)).filter((x) => x >= 0);
      out.push(...row, ...new Array<number>(KT - row.length).fill(-1));
    }
  }
  return out;
}

function checkPromptTopk(ev: TokenEvent[], p: number[], ref: number[], what: string): void {
  const pt = ev[0]!.promptIndexerTopk!;
  assert.ok(pt instanceof Int32Array, `${what}: first event carries an Int32Array of prompt selections`);
  assert.equal(pt.length, (p.length - 1) * LT * KT, `${what}: (P − 1)·layers·index_topk`);
  assert.deepEqual(Array.from(pt), ref, `${what}: prompt selections equal model.forward's rows 0 .. P − 2`);
  // row p sees p + 1 keys: min(p + 1, index_topk) selected, each causal
  for (let pos = 0; pos < p.length - 1; pos++) {
    for (let l = 0; l < LT; l++) {
      const row = Array.from(pt.subarray((pos * LT + l) * KT, (pos * LT + l + 1) * KT)).filter((x) => x >= 0);
      assert.equal(row.length, Math.min(pos + 1, KT), `${what}: row ${pos} layer ${l} count`);
      assert.ok(row.every((x) => x <= pos), `${what}: row ${pos} layer ${l} causal`);
    }
  }
  ev.slice(1).forEach((e, i) => assert.equal(e.promptIndexerTopk, undefined, `${what}: only the first event, not event ${i + 1}`));
}

test('engine on a tiny model (cpu): prompt indexer selections over a chunked prefill equal the whole-prompt forward at every row; each of n = 2 sequences gets them once', async () => {
  const m = modelR();
  const p = prompt(70, 31);
  const ref = promptTopkRef(m, p);
  const e = new LLMEngine(m, { numBlocks: 8, maxBatchTokens: 16 });
  const r = await collect(e.generate(req('t', p, { temperature: 0, maxTokens: 3, n: 2, returnIndexerTopk: true, returnRoutedExperts: true })));
  checkPromptTopk(r.events[0]!, p, ref, 'sequence 0');
  checkPromptTopk(r.events[1]!, p, ref, 'sequence 1');
  checkPromptRoutes(r.events[0]!, p, promptRoutesRef(m, p), 'routes alongside');
  // the first generated token's selection is row P − 1
  const o = m.forward([p], { logits: 'none' });
  assert.deepEqual(r.events[0]![0]!.indexerTopk!.map((x) => Array.from(x)), o.topk.map((s) => Array.from((s.idx.toHost() as Int32Array).slice((p.length - 1) * s.width, p.length * s.width)).filter((x) => x >= 0)));
  await checkPromptRecordEdges(e, p, { returnIndexerTopk: true }, 'promptIndexerTopk');
  e.close();
});

test('engine on a tiny model (cpu): a request asking for indexer selections takes no prefix hits over unrecorded rows; selections survive preemption', async () => {
  const m = modelR();
  const shared = prompt(140, 32);
  const p2 = [...shared, 9, 10, 11];
  const ref2 = promptTopkRef(m, p2);
  const e = new LLMEngine(m, { numBlocks: 12 });
  await collect(e.generate(req('a', shared, { temperature: 0, maxTokens: 2 })));
  const b = await collect(e.generate(req('b', p2, { temperature: 0, maxTokens: 2, returnIndexerTopk: true })));
  assert.equal(e.stats().prefixHitTokens, 0, 'the selections request took no hit');
  checkPromptTopk(b.events[0]!, p2, ref2, 'b');
  e.close();
  const ps = [prompt(60, 33), prompt(62, 34), prompt(58, 35)];
  const refs = ps.map((p) => promptTopkRef(m, p));
  const e2 = new LLMEngine(m, { numBlocks: 4, maxBatchTokens: 24 });
  const rs = await Promise.all(ps.map((p, i) => collect(e2.generate(req(`q${i}`, p, { temperature: 0, maxTokens: 10, returnIndexerTopk: true })))));
  assert.ok(e2.stats().preempted > 0, 'the pool forced preemptions');
  rs.forEach((r, i) => checkPromptTopk(r.events[0]!, ps[i]!, refs[i]!, `q${i}`));
  e2.close();
});
