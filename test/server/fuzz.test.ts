// A seeded fuzz of malformed requests: valid chat and completions bodies with one to three fields
// replaced by values of the wrong type, range or shape, random messages, truncated or corrupted JSON,
// odd content types, and other methods and paths. Every answer must be a non-5xx with (for errors) the
// OpenAI error shape, no stream may carry an internal error, and the server must still serve afterwards.
// DSV32_FUZZ_N sets the count (default 300).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ScriptedEngine } from './scripted-engine.js';
import { post, serve, tokenizer, type Running } from './helpers.js';

const N = Number(process.env.DSV32_FUZZ_N ?? 300);

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let srv: Running;
before(async () => {
  const engine = new ScriptedEngine({ tokenizer: tokenizer(), script: (_p, i) => (i % 2 ? 'plain answer' : `reason</think>ok\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>`), maxModelLen: 2048 });
  srv = await serve(engine, { bodyLimit: 256 * 1024 });
});
after(async () => srv.close());

test(`fuzz: ${N} malformed requests, zero 5xx, error JSON on every 4xx, the server still serves`, async () => {
  const r = rng(1234);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const deep = (d: number): unknown => (d === 0 ? 1 : [deep(d - 1)]);
  const values: (() => unknown)[] = [
    () => null, () => true, () => false, () => 0, () => -1, () => 1, () => 0.5, () => 1e308, () => -1e308, () => 2 ** 53 + 1, () => 1e-320,
    () => '', () => 'x', () => 'NaN', () => '\u0000\uFFFF\uD800', () => 'a'.repeat(20000), () => [], () => [null], () => [1, 'a', {}], () => ({}),
    () => ({ a: { b: [1] } }), () => deep(60), () => Math.floor(r() * 300000) - 1000, () => r() * 10 - 5, () => [Math.floor(r() * 200000)],
    () => ({ type: 'function', function: { name: pick(['f', '', 'a b', 'x'.repeat(100)]) } }), () => pick(['none', 'auto', 'required', 'bogus']),
  ];
  const chatFields = ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'n', 'stop', 'stop_token_ids', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'tools', 'tool_choice', 'chat_template_kwargs', 'thinking', 'response_format', 'return_token_ids', 'return_sampling_mask', 'return_routed_experts', 'return_indexer_topk', 'ignore_eos', 'presence_penalty', 'unknown_field'];
  const cmplFields = ['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'stop', 'stream', 'logprobs', 'echo', 'suffix', 'best_of', 'skip_special_tokens', 'return_token_ids', 'stream_options'];
  const roles = ['system', 'user', 'assistant', 'tool', 'developer', 'function', '', 7];
  const randomMessage = (): unknown => {
    const m: Record<string, unknown> = { role: pick(roles) };
    if (r() < 0.8) m.content = r() < 0.5 ? pick(['hi', '', '<｜User｜>', '</think>', '<｜DSML｜invoke name="f">']) : pick(values)();
    if (r() < 0.2) m.tool_calls = r() < 0.5 ? [{ type: 'function', function: { name: 'f', arguments: pick(['{}', '{"a":1}', '{bad', '[]', '"s"']) } }] : pick(values)();
    if (r() < 0.1) m.reasoning_content = pick(values)();
    if (r() < 0.1) m.tools = pick(values)();
    return m;
  };
  const makeBody = (): { path: string; body: string; contentType: string; method: string } => {
    const kind = r();
    if (kind < 0.05) return { path: pick(['/v1/models', '/health', '/v1/nope', '/', '/v1/chat/completions']), body: '', contentType: 'application/json', method: pick(['GET', 'DELETE', 'PUT', 'PATCH']) };
    const isChat = r() < 0.6;
    const body: Record<string, unknown> = isChat ? { model: 'dsv32-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 } : { model: 'dsv32-test', prompt: 'hi', max_tokens: 8 };
    const fields = isChat ? chatFields : cmplFields;
    const k = 1 + Math.floor(r() * 3);
    for (let i = 0; i < k; i++) body[pick(fields)] = pick(values)();
    if (isChat && r() < 0.3) body.messages = Array.from({ length: 1 + Math.floor(r() * 4) }, randomMessage);
    let text = JSON.stringify(body);
    const corrupt = r();
    if (corrupt < 0.1) text = text.slice(0, Math.floor(r() * text.length));
    else if (corrupt < 0.15) {
      const at = Math.floor(r() * text.length);
      text = text.slice(0, at) + pick(['{', '"', '\\', ']', '\u0000', 'null']) + text.slice(at);
    } else if (corrupt < 0.17) text = `{"model":"dsv32-test","messages":${'['.repeat(3000)}${']'.repeat(3000)},"prompt":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}`;
    return { path: isChat ? '/v1/chat/completions' : '/v1/completions', body: text, contentType: pick(['application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1']), method: 'POST' };
  };

  const failures: string[] = [];
  const statuses = new Map<number, number>();
  const requests = Array.from({ length: N }, makeBody);
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const q = requests[next++]!;
      const res = await fetch(srv.url + q.path, { method: q.method, headers: { 'content-type': q.contentType }, ...(q.method === 'GET' ? {} : { body: q.body }) });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500 || text.includes('"internal_error"')) failures.push(`${res.status} ${q.method} ${q.path} ${q.body.slice(0, 300)} → ${text.slice(0, 300)}`);
      else if (res.status >= 400) {
        const e = JSON.parse(text).error;
        if (!e || typeof e.message !== 'string' || !('param' in e) || !('code' in e) || !('type' in e)) failures.push(`bad error shape: ${text.slice(0, 200)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.deepEqual(failures, []);
  assert.ok((statuses.get(400) ?? 0) > N / 3, `mostly 400s: ${JSON.stringify([...statuses])}`);
  assert.ok((statuses.get(200) ?? 0) > 0, `some mutations are still valid: ${JSON.stringify([...statuses])}`);
  assert.equal((await fetch(srv.url + '/health')).status, 200);
  const ok = await post(srv.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(ok.status, 200);
});
