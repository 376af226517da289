// Bad requests get OpenAI-style error JSON with the right status and the offending field named: 400 for
// bad fields and JSON, 404 for unknown models and routes, 413 for an oversized body, 429 when too many
// requests wait; never a 5xx. Also --skip-tokenizer-init: token ids only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ScriptedEngine } from './scripted-engine.js';
import { post, serve, tokenizer, type Running } from './helpers.js';

let engine: ScriptedEngine;
let srv: Running;
before(async () => {
  engine = new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'ok', maxModelLen: 512 });
  srv = await serve(engine, { bodyLimit: 64 * 1024 });
});
after(async () => srv.close());

function isError(r: { status: number; json: any }, status: number, param?: string | null, code?: string): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  const e = r.json?.error;
  assert.ok(e && typeof e.message === 'string' && e.message.length > 0, `error.message in ${JSON.stringify(r.json)}`);
  assert.ok('type' in e && 'param' in e && 'code' in e);
  if (param !== undefined) assert.equal(e.param, param, e.message);
  if (code !== undefined) assert.equal(e.code, code, e.message);
}

const chat = (body: unknown) => post(srv.url + '/v1/chat/completions', body);
const cmpl = (body: unknown) => post(srv.url + '/v1/completions', body);
const user = [{ role: 'user', content: 'hi' }];

test('400 for malformed JSON and non-object bodies', async () => {
  isError(await chat('{"messages": ['), 400, 'body', 'invalid_json');
  isError(await chat('[1,2]'), 400, 'body');
  isError(await chat(''), 400, 'body');
  isError(await post(srv.url + '/v1/chat/completions', '{"messages":1}', { 'content-type': 'text/plain' }), 400, 'messages');
});

test('400 naming the field for each bad chat field', async () => {
  isError(await chat({}), 400, 'messages');
  isError(await chat({ messages: [] }), 400, 'messages');
  isError(await chat({ messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role');
  isError(await chat({ messages: [{ role: 'user', content: 5 }] }), 400, 'messages[0].content');
  isError(await chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400, 'messages[0].content');
  isError(await chat({ messages: user, temperature: 3 }), 400, 'temperature');
  isError(await chat({ messages: user, temperature: 'hot' }), 400, 'temperature');
  isError(await chat({ messages: user, top_p: 0 }), 400, 'top_p');
  isError(await chat({ messages: user, n: 0 }), 400, 'n');
  isError(await chat({ messages: user, n: 1000 }), 400, 'n');
  isError(await chat({ messages: user, max_tokens: 1.5 }), 400, 'max_tokens');
  isError(await chat({ messages: user, max_tokens: 100000 }), 400, 'max_tokens', 'context_length_exceeded');
  isError(await chat({ messages: user, max_completion_tokens: 100000 }), 400, 'max_completion_tokens', 'context_length_exceeded');
  isError(await chat({ messages: user, top_logprobs: 3 }), 400, 'top_logprobs');
  isError(await chat({ messages: user, logprobs: true, top_logprobs: 50 }), 400, 'top_logprobs');
  isError(await chat({ messages: user, presence_penalty: 0.5 }), 400, 'presence_penalty', 'unsupported_parameter');
  isError(await chat({ messages: user, stop: ['a', ''] }), 400, 'stop[1]');
  isError(await chat({ messages: user, stop_token_ids: [200000] }), 400, 'stop_token_ids[0]');
  isError(await chat({ messages: user, tools: [{ type: 'function', function: { name: 'has space' } }] }), 400, 'tools[0].function.name');
  isError(await chat({ messages: user, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }), 400, 'tool_choice');
  isError(await chat({ messages: user, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'required', chat_template_kwargs: { thinking: true } }), 400, 'tool_choice');
  isError(await chat({ messages: user, response_format: { type: 'json_object' } }), 400, 'response_format');
  isError(await chat({ messages: user, stream_options: { include_usage: 'yes' } }), 400, 'stream_options.include_usage');
  // conversations the V3.2 format cannot render: the message is named
  isError(await chat({ messages: [{ role: 'user', content: 'x' }, { role: 'tool', content: 'r' }] }), 400, 'messages[1]', 'tool-result-without-call');
  isError(await chat({ messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{not json' } }] }] }), 400, 'messages[1]', 'invalid-tool-arguments');
  const longText = 'word '.repeat(600);
  isError(await chat({ messages: [{ role: 'user', content: longText }] }), 400, 'messages', 'context_length_exceeded');
});

test('400 for bad completions fields; token ids checked against the vocabulary', async () => {
  isError(await cmpl({}), 400, 'prompt');
  isError(await cmpl({ prompt: [] }), 400, 'prompt');
  isError(await cmpl({ prompt: [1, -2] }), 400, 'prompt[1]');
  isError(await cmpl({ prompt: [1, 129280] }), 400, 'prompt[1]');
  isError(await cmpl({ prompt: [[1], [2, 999999]] }), 400, 'prompt[1][1]');
  isError(await cmpl({ prompt: 'x', logprobs: 21 }), 400, 'logprobs');
  isError(await cmpl({ prompt: 'x', suffix: 'y' }), 400, 'suffix');
  isError(await cmpl({ prompt: 'x', best_of: 3 }), 400, 'best_of');
  isError(await cmpl({ prompt: 'x', echo: true, logprobs: 1 }), 400, 'echo');
  isError(await cmpl({ prompt: { text: 'x' } }), 400, 'prompt');
});

test('404 for an unknown model and an unknown route; 405-style methods are 404 too', async () => {
  isError(await chat({ model: 'gpt-5', messages: user }), 404, 'model', 'model_not_found');
  isError(await cmpl({ model: 'gpt-5', prompt: 'x' }), 404, 'model', 'model_not_found');
  isError(await post(srv.url + '/v1/embeddings', { input: 'x' }), 404);
  const r = await fetch(srv.url + '/v1/chat/completions');
  assert.equal(r.status, 404);
  assert.ok(((await r.json()) as { error: { message: string } }).error.message);
});

test('413 for a body over the limit', async () => {
  isError(await chat({ messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }] }), 413, 'body', 'body_too_large');
});

test('429 when too many requests wait; they are served again once the queue empties', async () => {
  const slow = new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'ok', startDelayMs: 300 });
  const s = await serve(slow, { maxWaiting: 2 });
  try {
    const first = [post(s.url + '/v1/completions', { prompt: 'a' }), post(s.url + '/v1/completions', { prompt: 'b' })];
    await new Promise((r) => setTimeout(r, 50));
    isError(await post(s.url + '/v1/completions', { prompt: 'c' }), 429, null, 'too_many_waiting_requests');
    for (const r of await Promise.all(first)) assert.equal(r.status, 200);
    assert.equal((await post(s.url + '/v1/completions', { prompt: 'd' })).status, 200);
  } finally {
    await s.close();
  }
});

test('--skip-tokenizer-init: chat and text prompts are 400, token-id prompts are served with token_ids', async () => {
  const raw = new ScriptedEngine({ tokenizer: null, script: () => [5, 6, 7] });
  const s = await serve(raw, { codec: null });
  try {
    isError(await post(s.url + '/v1/chat/completions', { messages: user }), 400, 'messages', 'tokenizer_unavailable');
    isError(await post(s.url + '/v1/completions', { prompt: 'text' }), 400, 'prompt', 'tokenizer_unavailable');
    const r = await post(s.url + '/v1/completions', { prompt: [3, 4], return_token_ids: true, logprobs: 1 });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.choices[0].token_ids, [5, 6, 7, 1]);
    assert.deepEqual(r.json.choices[0].prompt_token_ids, [3, 4]);
    assert.equal(r.json.choices[0].text, '');
    assert.deepEqual(r.json.choices[0].logprobs.tokens, ['token_id:5', 'token_id:6', 'token_id:7', 'token_id:1']);
  } finally {
    await s.close();
  }
});
