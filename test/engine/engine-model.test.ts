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
function reference(prompt: number[], n: number, tokens?: number[]): { tokens: number[]; logits: Float32Array[]; routes: number[][]; topk: number[][][]; margins: number[] } {
  const cache = model.newCache(1);
  let o = model.forward([prompt], { cache, logits: 'last' });
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
    if (i + 1 < n) o = model.forward([[t]], { cache, logits: 'last' });
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
