// The engine loop against the test double of the model step (fake-model.ts): scheduling, prefix caching,
// preemption, abort, stops, n > 1, seeds and MTP verification, checked against decoding the double's
// logits function directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LLMEngine } from '../../src/engine/engine.js';
import { collect } from './collect.js';
import { distribution } from '../../src/engine/sampler.js';
import { type EngineEvent, EngineRequestError, type FinishEvent, type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import { CachePool } from '../../src/model/cache.js';
import { FakeModel } from './fake-model.js';


function greedyRef(m: FakeModel, prompt: number[], n: number): number[] {
  const ids = prompt.slice();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const l = m.logitsOf(ids);
    let best = 0;
    for (let v = 1; v < l.length; v++) if (l[v]! > l[best]!) best = v;
    out.push(best);
    ids.push(best);
  }
  return out;
}

const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 2 + ((i * 7 + seed * 13) % 40));
const req = (id: string, p: number[], params: GenerateRequest['params']): GenerateRequest => ({ id, promptIds: p, params: { ignoreEos: true, ...params } });

test('engine (test double): greedy generation equals argmax decoding, alone and batched with other prompts, with chunked prefill', async () => {
  const m = new FakeModel();
  const lens = [5, 70, 130, 1];
  const alone: number[][] = [];
  for (const [i, n] of lens.entries()) {
    const e = new LLMEngine(m, { numBlocks: 32, maxBatchTokens: 48 });
    const r = await collect(e.generate(req(`a${i}`, prompt(n, i), { temperature: 0, maxTokens: 20 })));
    assert.deepEqual(r.tokens[0], greedyRef(m, prompt(n, i), 20));
    assert.deepEqual(r.finish[0]!.reason, 'length');
    alone.push(r.tokens[0]!);
    e.close();
  }
  const e = new LLMEngine(m, { numBlocks: 32, maxBatchTokens: 48 });
  const all = await Promise.all(lens.map((n, i) => collect(e.generate(req(`b${i}`, prompt(n, i), { temperature: 0, maxTokens: 20 })))));
  all.forEach((r, i) => assert.deepEqual(r.tokens[0], alone[i]));
  assert.ok(m.steps.some((b) => b.seqs.length > 1 && b.seqs.some((s) => s.len > 1) && b.seqs.some((s) => s.len === 1)), 'some step mixed decode rows and prefill chunks');
  assert.equal(e.stats().cacheUsage, 0);
  e.close();
});

test('engine (test double): a tiny pool preempts and every request still completes with its greedy tokens', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 5, maxBatchTokens: 256 });
  const ps = [0, 1, 2, 3].map((i) => prompt(60 + 10 * i, i));
  const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`p${i}`, p, { temperature: 0, maxTokens: 40 })))));
  rs.forEach((r, i) => assert.deepEqual(r.tokens[0], greedyRef(m, ps[i]!, 40)));
  assert.ok(e.stats().preempted > 0, 'the pool was too small: preemption happened');
  assert.equal(e.blockPool.numUsed, 0);
  e.close();
});

test('engine (test double): a request that can never fit is rejected naming the field', () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 2, maxModelLen: 1000 });
  assert.throws(() => e.generate(req('x', prompt(129, 0), {})), (err: unknown) => err instanceof EngineRequestError && err.field === 'promptIds' && /128 fit/.test(err.message));
  const e2 = new LLMEngine(m, { numBlocks: 64, maxModelLen: 100 });
  assert.throws(() => e2.generate(req('x', prompt(101, 0), {})), (err: unknown) => err instanceof EngineRequestError && err.field === 'promptIds' && /maxModelLen 100/.test(err.message));
  assert.throws(() => e2.generate(req('x', [3, 999], {})), (err: unknown) => err instanceof EngineRequestError && err.field === 'promptIds');
  assert.throws(() => e2.generate(req('x', [3], { topP: 0 })), (err: unknown) => err instanceof EngineRequestError && err.field === 'topP');
  assert.throws(() => e2.generate(req('x', [3], { stop: ['\n'] })), (err: unknown) => err instanceof EngineRequestError && err.field === 'stop' && /detokenizer/.test(err.message));
  e.close();
  e2.close();
});

test('engine (test double): a sequence reaching maxModelLen stops with length', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 8, maxModelLen: 70 });
  const r = await collect(e.generate(req('x', prompt(65, 0), { temperature: 0 })));
  assert.equal(r.tokens[0]!.length, 6); // positions 65..69 fed, the 6th token is sampled at position 69
  assert.equal(r.finish[0]!.reason, 'length');
  e.close();
});

test('engine (test double): prefix-cache hits give identical results and are counted', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 32 });
  const p = prompt(200, 4);
  const first = await collect(e.generate(req('a', p, { temperature: 0, maxTokens: 10 })));
  assert.equal(e.stats().prefixHitTokens, 0);
  const second = await collect(e.generate(req('b', p, { temperature: 0, maxTokens: 10 })));
  assert.deepEqual(second.tokens[0], first.tokens[0]);
  assert.equal(e.stats().prefixHitTokens, 192);
  const longer = [...p, ...first.tokens[0]!.slice(0, 5), 3];
  const third = await collect(e.generate(req('c', longer, { temperature: 0, maxTokens: 10 })));
  assert.deepEqual(third.tokens[0], greedyRef(m, longer, 10));
  e.close();
});

test('engine (test double): n > 1 shares the prompt blocks; a seeded request repeats its tokens whatever else runs', async () => {
  const m = new FakeModel(48, 1);
  const p = prompt(150, 2);
  const params = { temperature: 0.9, topP: 0.9, seed: 1234, maxTokens: 12, n: 3 };
  const e = new LLMEngine(m, { numBlocks: 40 });
  const alone = await collect(e.generate(req('s', p, params)));
  assert.equal(e.stats().prefixHitTokens, 2 * 128, 'the two followers hit the leader\'s two full prompt blocks');
  assert.equal(alone.tokens.length, 3);
  assert.notDeepEqual(alone.tokens[0], alone.tokens[1], 'the n sequences draw from their own streams');
  const e2 = new LLMEngine(m, { numBlocks: 40, maxBatchTokens: 64 });
  const noise = [0, 1, 2].map((i) => collect(e2.generate(req(`n${i}`, prompt(30 + 40 * i, 9 + i), { temperature: 1, maxTokens: 15 }))));
  const again = await collect(e2.generate(req('s', p, params)));
  await Promise.all(noise);
  assert.deepEqual(again.tokens, alone.tokens);
  e.close();
  e2.close();
});

test('engine (test double): logprobs, top logprobs, masks and routes come from the row that produced the token', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 16 });
  const p = prompt(20, 5);
  const params = { temperature: 0.8, topK: 6, topP: 0.9, minP: 0, seed: 7, maxTokens: 8, logprobs: 3, returnSamplingMask: true, returnRoutedExperts: true };
  const r = await collect(e.generate(req('x', p, params)));
  const ids = p.slice();
  for (const ev of r.events[0]!) {
    const l = m.logitsOf(ids);
    const kept = Int32Array.from(distribution(l, params).ids).sort();
    assert.deepEqual(Array.from(ev.samplingMask!), Array.from(kept));
    assert.ok(ev.samplingMask!.includes(ev.tokenId));
    const Z = Array.from(l).reduce((a, x) => a + Math.exp(x / 0.8), 0);
    assert.ok(Math.abs(ev.logprob - (l[ev.tokenId]! / 0.8 - Math.log(Z))) < 1e-9);
    assert.equal(ev.topLogprobs!.length, 3);
    assert.deepEqual(Array.from(ev.routedExperts!), [...m.routesOf(ids, 1), ...m.routesOf(ids, 2)]);
    ids.push(ev.tokenId);
  }
  e.close();
});

test('engine (test double): stop token ids, EOS, ignoreEos and stop strings', async () => {
  const m = new FakeModel();
  const p = prompt(10, 1);
  const ref = greedyRef(m, p, 30);
  const detok = (ids: readonly number[]): string => ids.map((t) => String.fromCharCode(97 + (t % 26))).join('');
  const e = new LLMEngine(m, { numBlocks: 16, detokenize: detok, eosTokenIds: [ref[5]!] });
  const byEos = await collect(e.generate({ id: 'a', promptIds: p, params: { temperature: 0, maxTokens: 30 } }));
  assert.deepEqual(byEos.tokens[0], ref.slice(0, ref.indexOf(ref[5]!) + 1));
  assert.deepEqual([byEos.finish[0]!.reason, byEos.finish[0]!.stoppedBy], ['stop', ref[5]]);
  const ignoring = await collect(e.generate(req('b', p, { temperature: 0, maxTokens: 30 })));
  assert.deepEqual(ignoring.tokens[0], ref);
  const byId = await collect(e.generate(req('c', p, { temperature: 0, maxTokens: 30, stopTokenIds: [ref[3]!] })));
  assert.deepEqual(byId.tokens[0], ref.slice(0, ref.indexOf(ref[3]!) + 1));
  const target = detok(ref.slice(7, 9));
  const byString = await collect(e.generate(req('d', p, { temperature: 0, maxTokens: 30, stop: [target] })));
  const text = detok(ref);
  const cut = ref.findIndex((_, i) => detok(ref.slice(0, i + 1)).includes(target));
  assert.ok(text.includes(target) && cut >= 0 && cut <= 8);
  assert.deepEqual(byString.tokens[0], ref.slice(0, cut + 1));
  assert.deepEqual([byString.finish[0]!.reason, byString.finish[0]!.stoppedBy], ['stop', target]);
  e.close();
});

test('engine (test double): aborting frees the sequence\'s blocks at once; breaking out of the stream aborts too; drain and close', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 16 });
  const ac = new AbortController();
  const it = e.generate(req('a', prompt(100, 1), { temperature: 0, maxTokens: 1000 }), ac.signal);
  const events: EngineEvent[] = [];
  for await (const ev of it) {
    events.push(ev);
    if (events.length === 3) {
      assert.ok(e.blockPool.numUsed >= 2);
      ac.abort();
      assert.equal(e.blockPool.numUsed, 0, 'blocks freed synchronously by the abort');
    }
  }
  const fin = events[events.length - 1] as FinishEvent;
  assert.equal(fin.type, 'finish');
  assert.equal(fin.reason, 'abort');
  const it2 = e.generate(req('b', prompt(50, 2), { temperature: 0, maxTokens: 1000 }));
  for await (const ev of it2) if (ev.type === 'token') break;
  assert.equal(e.blockPool.numUsed, 0);
  assert.equal(e.stats().running, 0);
  const pending = collect(e.generate(req('c', prompt(50, 3), { temperature: 0, maxTokens: 5 })));
  await e.drain();
  assert.equal((await pending).tokens[0]!.length, 5, 'drain finishes what is running');
  assert.throws(() => e.generate(req('d', [3], {})), /draining/);
  e.close();
});

test('engine (test double): MTP drafts — greedy output is unchanged, drafts are counted, a perfect drafter is always accepted', async () => {
  const m = new FakeModel(48, 3, { mtp: true });
  const ps = [prompt(40, 1), prompt(90, 2)];
  for (const k of [1, 2, 3]) {
    const e = new LLMEngine(m, { numBlocks: 16, speculativeTokens: k });
    const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`m${i}`, p, { temperature: 0, maxTokens: 25 })))));
    rs.forEach((r, i) => assert.deepEqual(r.tokens[0], greedyRef(m, ps[i]!, 25)));
    const s = e.stats();
    assert.ok(s.draftProposed > 0);
    assert.equal(s.draftAccepted, s.draftProposed, `k = ${k}: the oracle drafter is always right`);
    assert.equal(s.generatedTokens, 50);
    assert.ok(m.steps.some((b) => b.seqs.some((c) => c.len === 1 + k)));
    e.close();
  }
  // a noisy drafter: some drafts are rejected, the output is still the greedy one
  m.mtpNoise = 4;
  const e = new LLMEngine(m, { numBlocks: 16, speculativeTokens: 3 });
  const r = await collect(e.generate(req('z', ps[1]!, { temperature: 0, maxTokens: 40 })));
  assert.deepEqual(r.tokens[0], greedyRef(m, ps[1]!, 40));
  const s = e.stats();
  assert.ok(s.draftAccepted < s.draftProposed && s.draftAccepted > 0, `accepted ${s.draftAccepted} of ${s.draftProposed}`);
  e.close();
});

test('engine (test double): a failing model step fails the requests of that batch with the error; the engine goes on serving', async () => {
  const m = new FakeModel();
  m.poison = 47;
  const e = new LLMEngine(m, { numBlocks: 16 });
  await assert.rejects(collect(e.generate(req('bad', [3, 4, 47], { temperature: 0, maxTokens: 5 }))), /poisoned token 47/);
  assert.equal(e.blockPool.numUsed, 0);
  assert.equal(e.stats().running, 0);
  const p = prompt(12, 3).map((t) => (t === 47 ? 46 : t));
  const ref = greedyRef(m, p, 5);
  assert.ok(!ref.slice(0, 4).includes(47), 'precondition: the good request never feeds the poisoned token');
  const ok = await collect(e.generate(req('good', p, { temperature: 0, maxTokens: 5 })));
  assert.deepEqual(ok.tokens[0], ref);
  e.close();
});

test('engine (test double): speculative sampling with a poor drafter leaves the distribution of the verified token unchanged', async () => {
  const m = new FakeModel(8, 1, { mtp: true });
  m.mtpNoise = 2;
  const p = [3, 5, 7];
  const params = { temperature: 1, topP: 0.95, topK: 0, minP: 0 };
  // exact marginal of the second token: Σ_t1 p(t1) p(t2 | t1), under the filters
  const exact = new Float64Array(8);
  const d1 = distribution(m.logitsOf(p), params);
  d1.ids.forEach((t1, i) => {
    const d2 = distribution(m.logitsOf([...p, t1]), params);
    d2.ids.forEach((t2, j) => (exact[t2]! += d1.probs[i]! * d2.probs[j]!));
  });
  const e = new LLMEngine(m, { numBlocks: 64, maxNumSeqs: 64, speculativeTokens: 1 });
  const counts = new Float64Array(8);
  const R = 60;
  const N = 50;
  for (let r = 0; r < R; r += 6) {
    const rs = await Promise.all(Array.from({ length: 6 }, (_, j) => collect(e.generate(req(`s${r + j}`, p, { ...params, seed: r + j, n: N, maxTokens: 2 })))));
    for (const x of rs) for (const t of x.tokens) counts[t![1]!]!++;
  }
  const total = R * N;
  exact.forEach((q, v) => {
    const sd = Math.sqrt((q * (1 - q)) / total);
    assert.ok(Math.abs(counts[v]! / total - q) < 5 * sd + 1e-9, `token ${v}: ${counts[v]! / total} vs exact ${q}`);
  });
  const s = e.stats();
  assert.ok(s.draftAccepted > 0 && s.draftAccepted < s.draftProposed * 0.9, `accepted ${s.draftAccepted} of ${s.draftProposed}: the drafter is poor but not useless`);
  e.close();
});

test('engine (test double): stats report waiting requests, running sequences, cache use and generated tokens', async () => {
  const m = new FakeModel();
  const e = new LLMEngine(m, { numBlocks: 10, maxNumSeqs: 1 });
  assert.deepEqual(e.info, { modelName: 'dsv32', vocabSize: 48, maxModelLen: m.cfg.maxPositions, eosTokenId: 1, indexTopk: m.cfg.indexTopk });
  const a = e.generate(req('a', prompt(70, 1), { temperature: 0, maxTokens: 3 }));
  const b = collect(e.generate(req('b', prompt(10, 2), { temperature: 0, maxTokens: 3 })));
  const it = a[Symbol.asyncIterator]();
  await it.next(); // a's first token: a runs, b waits (maxNumSeqs 1)
  let s = e.stats();
  assert.equal(s.running, 1);
  assert.equal(s.waiting, 1);
  assert.equal(s.totalBlocks, 10);
  assert.ok(Math.abs(s.cacheUsage - 2 / 10) < 1e-12, `a holds 2 of 10 blocks, usage ${s.cacheUsage}`);
  while (!(await it.next()).done);
  await b;
  s = e.stats();
  assert.deepEqual([s.running, s.waiting, s.cacheUsage, s.generatedTokens], [0, 0, 0, 6]);
  e.close();
});

test('engine (test double): cacheBytes sizes the pool from the model\'s bytes per block', () => {
  const m = new FakeModel();
  const per = CachePool.bytesPerBlock(m.cfg, 'bf16');
  const e = new LLMEngine(m, { cacheBytes: 7.5 * per, cacheFormat: 'bf16' });
  assert.equal(e.blockPool.numBlocks, 7);
  assert.throws(() => new LLMEngine(m, { cacheBytes: per / 2, cacheFormat: 'bf16' }), /cacheBytes must be at least one block/);
  e.close();
});

test('engine (test double): MTP drafts under a pool small enough to preempt still give the greedy tokens', async () => {
  const m = new FakeModel(48, 3, { mtp: true });
  m.mtpNoise = 1.5;
  const e = new LLMEngine(m, { numBlocks: 5, speculativeTokens: 3 });
  const ps = [0, 1, 2].map((i) => prompt(58 + 3 * i, 20 + i));
  const rs = await Promise.all(ps.map((p, i) => collect(e.generate(req(`q${i}`, p, { temperature: 0, maxTokens: 60 })))));
  rs.forEach((r, i) => assert.deepEqual(r.tokens[0], greedyRef(m, ps[i]!, 60)));
  const s = e.stats();
  assert.ok(s.preempted > 0 && s.draftAccepted > 0, `preempted ${s.preempted}, accepted ${s.draftAccepted} of ${s.draftProposed}`);
  assert.equal(e.blockPool.numUsed, 0);
  e.close();
});

test('engine (test double): sampling on a pool of threads gives the inline sampler\'s tokens, logprobs, top logprobs and masks, bit for bit', async () => {
  // a vocabulary where rows cost something, several sequences a step (n = 3 and 4 requests), every filter
  const m = new FakeModel(4096, 2);
  const reqs: GenerateRequest['params'][] = [
    { temperature: 1, maxTokens: 12, n: 3, seed: 7, logprobs: 5, returnSamplingMask: true },
    { temperature: 0.8, topP: 0.9, topK: 50, maxTokens: 12, seed: 8, logprobs: 3, returnSamplingMask: true },
    { temperature: 0, maxTokens: 12, logprobs: 2 },
    { temperature: 1.3, minP: 0.05, maxTokens: 12, seed: 9, returnSamplingMask: true },
  ];
  const run = async (samplerThreads: number) => {
    const e = new LLMEngine(m, { numBlocks: 64, maxBatchTokens: 256, samplerThreads });
    const rs = await Promise.all(reqs.map((p, i) => collect(e.generate(req(`s${i}`, prompt(20 + 9 * i, i), p)))));
    e.close();
    return rs.map((r) => r.events.map((evs) => evs.map((ev) => ({ t: ev.tokenId, lp: ev.logprob, top: ev.topLogprobs, mask: ev.samplingMask && Array.from(ev.samplingMask) }))));
  };
  const inline = await run(0);
  const pooled = await run(2);
  assert.deepEqual(pooled, inline);
  assert.equal(inline[0]!.length, 3);
  assert.ok(inline[1]![0]!.every((ev) => ev.mask!.length <= 50), 'top-k 50 bounds the masks');
});
