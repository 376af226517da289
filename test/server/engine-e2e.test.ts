// The server on the real engine (LLMEngine) and a tiny random DeepSeek-V3.2 on the CPU with the real
// vocabulary size (129280, so the real tokenizer's ids fit), through the official openai client:
//  - a greedy chat request's token_ids equal argmax decoding with model.forward on its prompt_token_ids,
//    and its routed_experts equal the model's routes for those tokens;
//  - sampled with top_k: each sampling mask is exactly the top-k of the model's logits at that step and
//    holds the sampled token, and each logprob is log-softmax(logits / T) at the token;
//  - token-id prompts without a tokenizer (--skip-tokenizer-init) give the same greedy tokens;
//  - 64 concurrent streams (DSV32_SERVER_STREAMS to change): none lost, each complete and parseable, no
//    5xx; client-side TTFT and TPOT percentiles are reported;
//  - a client that disconnects mid-stream frees its sequence and its cache blocks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { LLMEngine } from '../../src/engine/engine.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { post, serve, sse, type Running } from './helpers.js';

const cfg = randomConfig({
  num_hidden_layers: 2, vocab_size: 129280, hidden_size: 64, intermediate_size: 128, moe_intermediate_size: 32, index_topk: 8, max_position_embeddings: 4096,
});
const ROUTES = { layers: cfg.nLayers - cfg.nDenseLayers, k: cfg.nActivatedExperts };
const STREAMS = Number(process.env.DSV32_SERVER_STREAMS ?? 64);
let model: DeepseekV32;
let engine: LLMEngine<any>;
let srv: Running;
let client: OpenAI;

before(async () => {
  model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 7)));
  engine = new LLMEngine(model, { maxNumSeqs: 64, numBlocks: 256, maxModelLen: 1024, modelName: 'tiny' });
  srv = await serve(engine, { routeShape: ROUTES });
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: 'none', maxRetries: 0, timeout: 300_000 });
});
after(async () => {
  await srv.close();
  engine.close();
});

/** Decode `tokens` (greedy when absent) with model.forward: per step the logits row and the routes. */
function reference(prompt: readonly number[], n: number, tokens?: readonly number[]) {
  const cache = model.newCache(1);
  let o = model.forward([[...prompt]], { cache, logits: 'last' });
  const out = { tokens: [] as number[], logits: [] as Float32Array[], routes: [] as number[][][], margins: [] as number[] };
  for (let i = 0; i < n; i++) {
    const l = o.logits!.toFloat32().slice(-cfg.vocabSize);
    let best = 0;
    for (let j = 1; j < l.length; j++) if (l[j]! > l[best]!) best = j;
    const t = tokens ? tokens[i]! : best;
    let second = -Infinity;
    for (let j = 0; j < l.length; j++) if (j !== best && l[j]! > second) second = l[j]!;
    out.tokens.push(t);
    out.logits.push(l);
    out.margins.push(l[best]! - second);
    out.routes.push(o.routes.filter((r) => r).map((r) => {
      const h = r!.toHost() as Int32Array;
      return Array.from(h.slice(h.length - ROUTES.k)).sort((a, b) => a - b);
    }));
    if (i + 1 < n) o = model.forward([[t]], { cache, logits: 'last' });
  }
  return out;
}

const sorted = (rows: number[][]) => rows.map((r) => [...r].sort((a, b) => a - b));

test('greedy chat on the real engine: token_ids = argmax decoding with model.forward; routed_experts = the model\'s routes', async () => {
  const r = (await client.chat.completions.create({
    model: 'dsv32-test', messages: [{ role: 'user', content: 'Hello there, tiny model.' }], temperature: 0, max_tokens: 6,
    ignore_eos: true, return_token_ids: true, return_routed_experts: true,
  } as any)) as any;
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 6);
  assert.equal(typeof c.message.content, 'string');
  const ref = reference(r.prompt_token_ids, 6);
  ref.margins.forEach((m, i) => assert.ok(m > 1e-4, `reference step ${i} is a near tie (${m})`));
  assert.deepEqual(c.token_ids, ref.tokens);
  assert.equal(c.routed_experts.length, 6);
  c.routed_experts.forEach((t: number[][], i: number) => assert.deepEqual(sorted(t), ref.routes[i], `token ${i} routes`));
});

/** the model's routes at prompt positions 0 .. P − 2 of one whole-prompt forward, [position][MoE layer][k] */
function promptRoutesRef(prompt: readonly number[]): number[][][] {
  const moe = model.forward([[...prompt]], { logits: 'none' }).routes.filter((r) => r).map((r) => r!.toHost() as Int32Array);
  return Array.from({ length: prompt.length - 1 }, (_, p) => moe.map((h) => Array.from(h.slice(p * ROUTES.k, (p + 1) * ROUTES.k))));
}

test('prompt_routed_experts: [P − 1][MoE layer][k] = the model\'s prompt routes, per choice (completions, n = 2) and on the first streamed chunk of chat', async () => {
  const r = await post(srv.url + '/v1/completions', { prompt: 'Routes of every position, please.', max_tokens: 2, temperature: 0, n: 2, ignore_eos: true, return_token_ids: true, return_routed_experts: true });
  assert.equal(r.status, 200, r.text);
  const ids: number[] = r.json.choices[0].prompt_token_ids;
  const ref = promptRoutesRef(ids);
  assert.ok(ROUTES.layers >= 1 && ids.length > 2);
  for (const c of r.json.choices) {
    assert.equal(c.prompt_routed_experts.length, ids.length - 1);
    c.prompt_routed_experts.forEach((pos: number[][]) => {
      assert.equal(pos.length, ROUTES.layers);
      pos.forEach((l) => assert.equal(l.length, ROUTES.k));
    });
    assert.deepEqual(c.prompt_routed_experts, ref);
  }
  // chat, streamed: the chunk with the choice's first token carries it, no other chunk does
  const s = await sse(srv.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'Stream the routes.' }], max_tokens: 3, temperature: 0, ignore_eos: true, stream: true, return_token_ids: true, return_routed_experts: true });
  assert.equal(s.status, 200);
  checkFirstChunkCarries(s.events, 'prompt_routed_experts', promptRoutesRef);
});

/** A streamed chat: exactly one chunk carries `field` — the one with the choice's first token — and it equals `ref` of the prompt's ids. */
function checkFirstChunkCarries(chunks: any[], field: string, ref: (prompt: readonly number[]) => unknown): void {
  const promptIds: number[] = chunks.find((c: any) => c.prompt_token_ids)!.prompt_token_ids;
  const withTokens = chunks.filter((c: any) => c.choices[0]?.token_ids?.length);
  const carrying = chunks.filter((c: any) => c.choices[0]?.[field]);
  assert.equal(carrying.length, 1, `${field}: one chunk carries it`);
  assert.equal(carrying[0], withTokens[0], `${field}: on the chunk with the first token`);
  assert.deepEqual(carrying[0].choices[0][field], ref(promptIds));
}

/** the model's indexer selections at prompt positions 0 .. P − 2 of one whole-prompt forward, [position][layer][kept positions] */
function promptTopkRef(prompt: readonly number[]): number[][][] {
  const sels = model.forward([[...prompt]], { logits: 'none' }).topk.map((s) => ({ w: s.width, idx: s.idx.toHost() as Int32Array }));
  return Array.from({ length: prompt.length - 1 }, (_, p) => sels.map((s) => Array.from(s.idx.slice(p * s.w, (p + 1) * s.w)).filter((x) => x >= 0)));
}

test('prompt_indexer_topk: [P − 1][layer][kept positions] = the model\'s prompt selections, per choice (completions, n = 2) and on the first streamed chunk of chat', async () => {
  const r = await post(srv.url + '/v1/completions', { prompt: 'Selections of every position, please, with a prompt longer than the top-k.', max_tokens: 2, temperature: 0, n: 2, ignore_eos: true, return_token_ids: true, return_indexer_topk: true });
  assert.equal(r.status, 200, r.text);
  const ids: number[] = r.json.choices[0].prompt_token_ids;
  const ref = promptTopkRef(ids);
  assert.ok(ids.length - 1 > cfg.indexTopk, `a prompt past index_topk (${ids.length} tokens)`);
  for (const c of r.json.choices) {
    assert.equal(c.prompt_indexer_topk.length, ids.length - 1);
    c.prompt_indexer_topk.forEach((pos: number[][], p: number) => {
      assert.equal(pos.length, cfg.nLayers);
      pos.forEach((l) => assert.equal(l.length, Math.min(p + 1, cfg.indexTopk), `position ${p}: min(p + 1, index_topk) keys`));
    });
    assert.deepEqual(c.prompt_indexer_topk, ref);
    assert.equal(c.indexer_topk.length, 2);
  }
  const s = await sse(srv.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'Stream the selections.' }], max_tokens: 3, temperature: 0, ignore_eos: true, stream: true, return_token_ids: true, return_indexer_topk: true });
  assert.equal(s.status, 200);
  checkFirstChunkCarries(s.events, 'prompt_indexer_topk', promptTopkRef);
  // not asked for: absent
  const plain = await post(srv.url + '/v1/completions', { prompt: 'plain', max_tokens: 1, temperature: 0 });
  assert.equal(plain.json.choices[0].prompt_indexer_topk, undefined);
});

test('sampled with top_k on the real engine: masks are the top-k of the model\'s logits and hold the token; logprobs are log-softmax(logits / T)', async () => {
  const T = 0.7;
  const r = await post(srv.url + '/v1/completions', {
    prompt: 'The quick brown fox', max_tokens: 5, temperature: T, top_k: 5, seed: 3, ignore_eos: true, logprobs: 2,
    return_token_ids: true, return_sampling_mask: true,
  });
  assert.equal(r.status, 200, r.text);
  const c = r.json.choices[0];
  const ref = reference(c.prompt_token_ids, 5, c.token_ids);
  c.token_ids.forEach((tok: number, i: number) => {
    const l = ref.logits[i]!;
    const top5 = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]! || a - b).slice(0, 5).sort((a, b) => a - b);
    assert.deepEqual(c.sampling_mask[i], top5, `step ${i} mask`);
    assert.ok(c.sampling_mask[i].includes(tok), `step ${i}: the sampled token is in its mask`);
    let max = -Infinity;
    for (const x of l) max = Math.max(max, x / T);
    let z = 0;
    for (const x of l) z += Math.exp(x / T - max);
    const lp = l[tok]! / T - max - Math.log(z);
    assert.ok(Math.abs(c.logprobs.token_logprobs[i] - lp) < 1e-3, `step ${i} logprob ${c.logprobs.token_logprobs[i]} vs ${lp}`);
  });
});

test('sampled with top_k then top_p on the real engine: masks equal the independent recomputation (top-k of softmax(z/T), renormalised, shortest prefix with mass ≥ top_p)', async () => {
  const T = 0.9;
  const r = await post(srv.url + '/v1/completions', {
    prompt: 'Once upon a time', max_tokens: 5, temperature: T, top_k: 40, top_p: 0.6, seed: 11, ignore_eos: true, return_token_ids: true, return_sampling_mask: true,
  });
  assert.equal(r.status, 200, r.text);
  const c = r.json.choices[0];
  const ref = reference(c.prompt_token_ids, 5, c.token_ids);
  c.token_ids.forEach((tok: number, i: number) => {
    const l = ref.logits[i]!;
    let max = -Infinity;
    for (const x of l) max = Math.max(max, x / T);
    const order = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]! || a - b).slice(0, 40);
    const e = order.map((v) => Math.exp(l[v]! / T - max));
    const z = e.reduce((a, b) => a + b, 0);
    const kept: number[] = [];
    let mass = 0;
    for (let j = 0; j < order.length && mass < 0.6; j++) {
      kept.push(order[j]!);
      mass += e[j]! / z;
    }
    assert.deepEqual(c.sampling_mask[i], kept.sort((a, b) => a - b), `step ${i} mask`);
    assert.ok(kept.includes(tok));
    assert.ok(kept.length > 1 && kept.length < 40, `step ${i}: top-p cut inside the top-k (${kept.length})`);
  });
});

test('token-id prompts without a tokenizer on the real engine: same greedy tokens; engine rejections (stop strings without a detokenizer, a prompt beyond the cache) are 400s naming the field', async () => {
  const raw = await serve(engine, { codec: null });
  try {
    const ids = [0, 4, 900, 12000, 77, 129279];
    const r = await post(raw.url + '/v1/completions', { prompt: ids, max_tokens: 4, temperature: 0, ignore_eos: true, return_token_ids: true });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.choices[0].token_ids, reference(ids, 4).tokens);
    assert.deepEqual(r.json.choices[0].prompt_token_ids, ids);
    // the engine's own rejections come back as 400s naming the request field
    const stop = await post(raw.url + '/v1/completions', { prompt: ids, stop: ['x'] });
    assert.equal(stop.status, 400);
    assert.equal(stop.json.error.param, 'stop');
  } finally {
    await raw.close();
  }
  const small = new LLMEngine(model, { numBlocks: 2, maxModelLen: 1024 });
  const s2 = await serve(small, { codec: null });
  try {
    const long = await post(s2.url + '/v1/completions', { prompt: Array.from({ length: 200 }, (_, i) => i + 2), max_tokens: 4 });
    assert.equal(long.status, 400, long.text);
    assert.equal(long.json.error.param, 'prompt');
    assert.equal(long.json.error.code, 'context_length_exceeded');
  } finally {
    await s2.close();
    small.close();
  }
});

test('MTP speculative decoding behind the server (2 draft tokens): greedy tokens unchanged, draft counts in /metrics', async () => {
  const mcfg = randomConfig({
    num_hidden_layers: 2, vocab_size: 129280, hidden_size: 64, intermediate_size: 128, moe_intermediate_size: 32, index_topk: 8, max_position_embeddings: 4096, num_nextn_predict_layers: 1,
  });
  const mtpModel = DeepseekV32.fromSource(mcfg, mapSource(randomCheckpoint(mcfg, 9)));
  const spec = new LLMEngine(mtpModel, { speculativeTokens: 2, maxNumSeqs: 4, numBlocks: 32, maxModelLen: 1024 });
  const s2 = await serve(spec, { codec: null });
  try {
    const ids = [0, 11, 222, 3333, 44444];
    const r = await post(s2.url + '/v1/completions', { prompt: ids, max_tokens: 8, temperature: 0, ignore_eos: true, return_token_ids: true });
    assert.equal(r.status, 200, r.text);
    const saved = model;
    model = mtpModel;
    try {
      assert.deepEqual(r.json.choices[0].token_ids, reference(ids, 8).tokens);
    } finally {
      model = saved;
    }
    const m = await (await fetch(s2.url + '/metrics')).text();
    const proposed = Number(/^dsv32_spec_decode_draft_tokens (\d+)/m.exec(m)![1]);
    assert.ok(proposed > 0, `drafts proposed: ${proposed}`);
    assert.match(m, /^dsv32_spec_decode_acceptance_ratio [\d.e-]+$/m);
  } finally {
    await s2.close();
    spec.close();
  }
});

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

test(`${STREAMS} concurrent chat streams on the real engine: none lost, each complete and parseable, no 5xx`, { timeout: 600_000 }, async (t) => {
  const MAX = 6;
  const t0 = performance.now();
  const runs = await Promise.all(Array.from({ length: STREAMS }, async (_, i) => {
    const start = performance.now();
    const stream = await client.chat.completions.create({
      model: 'dsv32-test', messages: [{ role: 'user', content: `Stream number ${i}, go.` }], max_tokens: MAX, stream: true, seed: i,
      stream_options: { include_usage: true }, ignore_eos: true, return_token_ids: true,
    } as any) as unknown as AsyncIterable<any>;
    const stamps: number[] = [];
    let tokens = 0;
    let finish: string | null = null;
    let usage: any;
    for await (const ch of stream) {
      const c = ch.choices[0];
      if (c?.token_ids?.length) {
        tokens += c.token_ids.length;
        stamps.push(performance.now());
      }
      if (c?.finish_reason) finish = c.finish_reason;
      if (ch.usage) usage = ch.usage;
    }
    return { start, stamps, tokens, finish, usage };
  }));
  const wall = (performance.now() - t0) / 1000;
  for (const [i, r] of runs.entries()) {
    assert.equal(r.tokens, MAX, `stream ${i} tokens`);
    assert.equal(r.finish, 'length', `stream ${i} finish`);
    assert.equal(r.usage.completion_tokens, MAX, `stream ${i} usage`);
  }
  const ttft = runs.map((r) => (r.stamps[0]! - r.start) / 1000);
  const tpot = runs.flatMap((r) => r.stamps.slice(1).map((s, j) => (s - r.stamps[j]!) / 1000));
  const line = `${STREAMS} streams × ${MAX} tokens in ${wall.toFixed(1)} s (${((STREAMS * MAX) / wall).toFixed(1)} tok/s); TTFT p50 ${pct(ttft, 50).toFixed(2)} s p99 ${pct(ttft, 99).toFixed(2)} s; TPOT p50 ${(pct(tpot, 50) * 1000).toFixed(0)} ms p99 ${(pct(tpot, 99) * 1000).toFixed(0)} ms`;
  t.diagnostic(line);
  const m = await (await fetch(srv.url + '/metrics')).text();
  assert.ok(Number(/dsv32_time_to_first_token_seconds_count (\d+)/.exec(m)![1]) >= STREAMS);
  assert.match(m, /dsv32_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
  assert.ok(!/status="5\d\d"/.test(m), 'no 5xx answered');
});

test('a client that disconnects mid-stream frees its sequence and its cache blocks in the real engine', async () => {
  const ctl = new AbortController();
  const generatedBefore = engine.stats().generatedTokens;
  const res = await fetch(srv.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Count forever:', max_tokens: 500, ignore_eos: true, stream: true }), signal: ctl.signal });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.read();
  assert.equal(engine.stats().running, 1);
  assert.ok(engine.stats().cacheUsage > 0);
  ctl.abort();
  const end = Date.now() + 10_000;
  while (engine.stats().running > 0 || engine.stats().cacheUsage > 0) {
    if (Date.now() > end) assert.fail(`still running: ${JSON.stringify(engine.stats())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(engine.stats().generatedTokens - generatedBefore < 400, 'generation stopped early');
});
