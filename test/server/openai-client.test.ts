// The server through the official `openai` npm client over real HTTP, against a scripted engine whose
// completions are known texts: chat (plain, thinking, tools, forced tool choice, malformed markup),
// streaming and not, n > 1, usage, logprobs and the RL fields; completions (text and token-id prompts,
// batches, echo, stop strings); models, health and metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { encodeMessages, type ChatMessage } from '../../src/chat/index.js';
import { ScriptedEngine, scriptedLogprob } from './scripted-engine.js';
import { post, serve, sse, tokenizer, type Running } from './helpers.js';

const D = '｜DSML｜';
const TOOL_BLOCK = `\n\n<${D}function_calls>\n<${D}invoke name="get_weather">\n<${D}parameter name="city" string="true">Paris</${D}parameter>\n<${D}parameter name="days" string="false">3</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;
const SCRIPTS: Record<string, string> = {
  '[plain]': 'Hello! 你好, world.',
  '[think]': 'Let me add 2 and 2.</think>The answer is 4.',
  '[tool]': 'Sure.' + TOOL_BLOCK,
  '[think-tool]': 'I need the weather.</think>' + TOOL_BLOCK,
  '[broken]': `oops <${D}invoke name="get_weather">\n<${D}parameter name="city" string="true">Rome</${D}parameter>\n</${D}invoke>`,
  '[stop]': 'alpha beta STOP gamma delta',
};
const FORCED_REST = `<${D}parameter name="city" string="true">Oslo</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;

const tools: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather forecast', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
];

let engine: ScriptedEngine;
let srv: Running;
let client: OpenAI;

function script(promptIds: readonly number[], index: number): string {
  const prompt = tokenizer().decode(promptIds);
  if (prompt.endsWith('name="get_weather">\n')) return FORCED_REST;
  const lastUser = prompt.lastIndexOf('<｜User｜>');
  for (const [k, v] of Object.entries(SCRIPTS)) if (prompt.indexOf(k, lastUser) >= 0) return index ? `${v} (${index})` : v;
  return `prompt was ${promptIds.length} tokens`;
}

before(async () => {
  engine = new ScriptedEngine({ tokenizer: tokenizer(), script, routeShape: { layers: 2, k: 2 } });
  srv = await serve(engine, { routeShape: { layers: 2, k: 2 } });
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: 'none', maxRetries: 0 });
});
after(async () => srv.close());

const lastPrompt = () => tokenizer().decode(engine.requests.at(-1)!.promptIds);

test('chat, not streamed: content, no reasoning, no tool calls; the prompt is the V3.2 encoding; usage counts EOS', async () => {
  const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hi [plain]' }];
  const r = await client.chat.completions.create({ model: 'dsv32-test', messages: messages as OpenAI.ChatCompletionMessageParam[] });
  const m = r.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string | null };
  assert.equal(m.content, SCRIPTS['[plain]']);
  assert.equal(m.reasoning_content, null);
  assert.deepEqual(m.tool_calls, []);
  assert.equal(r.choices[0]!.finish_reason, 'stop');
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'dsv32-test');
  assert.equal(lastPrompt(), encodeMessages(messages, { mode: 'chat' }));
  const n = tokenizer().encode(SCRIPTS['[plain]']!).length;
  assert.deepEqual(r.usage, { prompt_tokens: engine.requests.at(-1)!.promptIds.length, completion_tokens: n + 1, total_tokens: engine.requests.at(-1)!.promptIds.length + n + 1 });
});

test('chat, thinking via chat_template_kwargs: reasoning_content and content split, streamed and not; the prompt ends with <think>', async () => {
  const messages = [{ role: 'user' as const, content: 'What is 2+2? [think]' }];
  const body = { model: 'dsv32-test', messages, chat_template_kwargs: { thinking: true } };
  const r = (await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming)) as any;
  assert.equal(r.choices[0].message.reasoning_content, 'Let me add 2 and 2.');
  assert.equal(r.choices[0].message.content, 'The answer is 4.');
  assert.ok(lastPrompt().endsWith('<｜Assistant｜><think>'));
  assert.equal(lastPrompt(), encodeMessages(messages, { mode: 'thinking' }));

  const stream = await client.chat.completions.create({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
  let reasoning = '';
  let content = '';
  let chunks = 0;
  let finish: string | null = null;
  for await (const c of stream) {
    chunks++;
    const d = c.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
    reasoning += d?.reasoning_content ?? '';
    content += d?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(reasoning, 'Let me add 2 and 2.');
  assert.equal(content, 'The answer is 4.');
  assert.equal(finish, 'stop');
  assert.ok(chunks > 5, `streamed in ${chunks} chunks`);
  // the DeepSeek API spelling switches it too
  await client.chat.completions.create({ model: 'dsv32-test', messages, thinking: { type: 'enabled' } } as any);
  assert.ok(lastPrompt().endsWith('<think>'));
});

test('chat with tools: tools rendered on the system message; DSML parsed into tool_calls, streamed arguments concatenate to the same JSON, no markup in content', async () => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'Weather in Paris? [tool]' }];
  const r = await client.chat.completions.create({ model: 'dsv32-test', messages: messages as OpenAI.ChatCompletionMessageParam[], tools });
  const c = r.choices[0]!;
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.content, 'Sure.');
  assert.equal(c.message.tool_calls!.length, 1);
  const call = c.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
  assert.match(call.id, /^call_[0-9a-f]{24}$/);
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', days: 3 });
  const withTools = [{ role: 'system', content: '', tools } as ChatMessage, ...messages];
  assert.equal(lastPrompt(), encodeMessages(withTools, { mode: 'chat' }));
  assert.ok(lastPrompt().includes('## Tools') && lastPrompt().includes('"name": "get_time"'));

  const stream = await client.chat.completions.create({ model: 'dsv32-test', messages: messages as OpenAI.ChatCompletionMessageParam[], tools, stream: true });
  let content = '';
  const calls: { id?: string; name: string; args: string; pieces: number }[] = [];
  let finish: string | null = null;
  for await (const ch of stream) {
    const d = ch.choices[0]?.delta;
    content += d?.content ?? '';
    for (const t of d?.tool_calls ?? []) {
      const slot = (calls[t.index] ??= { name: '', args: '', pieces: 0 });
      if (t.id) slot.id = t.id;
      slot.name += t.function?.name ?? '';
      if (t.function?.arguments) {
        slot.args += t.function.arguments;
        slot.pieces++;
      }
    }
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(content, 'Sure.');
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0]!.args), { city: 'Paris', days: 3 });
  assert.ok(calls[0]!.pieces > 1, 'arguments arrive in pieces');
  assert.match(calls[0]!.id!, /^call_/);
  assert.equal(finish, 'tool_calls');

  // tool_choice "none" leaves the tools out of the prompt
  await client.chat.completions.create({ model: 'dsv32-test', messages: messages as OpenAI.ChatCompletionMessageParam[], tools, tool_choice: 'none' });
  assert.ok(!lastPrompt().includes('## Tools'));
});

test('chat, thinking with tools: reasoning, then tool calls; a tool-result turn renders and continues', async () => {
  const messages: any[] = [{ role: 'user', content: 'Weather? [think-tool]' }];
  const r = (await client.chat.completions.create({ model: 'dsv32-test', messages, tools, chat_template_kwargs: { thinking: true } } as any)) as any;
  const m = r.choices[0].message;
  assert.equal(m.reasoning_content, 'I need the weather.');
  assert.equal(m.content, null);
  assert.equal(m.tool_calls[0].function.name, 'get_weather');
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  // send the call and its result back (reasoning kept within the turn, as DeepSeek requires)
  const next = [...messages, { role: 'assistant', content: '', reasoning_content: m.reasoning_content, tool_calls: m.tool_calls }, { role: 'tool', tool_call_id: m.tool_calls[0].id, content: '{"temp": 21}' }];
  await client.chat.completions.create({ model: 'dsv32-test', messages: next, tools, chat_template_kwargs: { thinking: true } } as any);
  const p = lastPrompt();
  assert.ok(p.includes('<result>{"temp": 21}</result>\n</function_results>\n\n<think>'), p.slice(-200));
  assert.ok(p.includes('I need the weather.</think>'));
});

test('tool_choice naming a function commits the prompt to its invoke; "required" without tools is a 400', async () => {
  const r = await client.chat.completions.create({ model: 'dsv32-test', messages: [{ role: 'user', content: 'Oslo please' }], tools, tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  assert.ok(lastPrompt().endsWith(`</think>\n\n<${D}function_calls>\n<${D}invoke name="get_weather">\n`));
  const call = r.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Oslo' });
  assert.equal(r.choices[0]!.message.content, null);
  await assert.rejects(client.chat.completions.create({ model: 'dsv32-test', messages: [{ role: 'user', content: 'x' }], tool_choice: 'required' }), (e: any) => e.status === 400 && /tool_choice/.test(e.message));
});

test('response_format json_schema and the developer role render as the V3.2 format does', async () => {
  const schema = { type: 'object', properties: { answer: { type: 'integer' } }, required: ['answer'] };
  await client.chat.completions.create({
    model: 'dsv32-test', messages: [{ role: 'system', content: 'Be exact.' }, { role: 'user', content: '[plain]' }],
    response_format: { type: 'json_schema', json_schema: { name: 'a', schema } },
  });
  assert.equal(lastPrompt(), encodeMessages([{ role: 'system', content: 'Be exact.', response_format: schema }, { role: 'user', content: '[plain]' }], { mode: 'chat' }));
  assert.ok(lastPrompt().includes('## Response Format:'));
  const dev: ChatMessage[] = [{ role: 'developer', content: 'Find the date [plain]' }];
  await client.chat.completions.create({ model: 'dsv32-test', messages: dev as OpenAI.ChatCompletionMessageParam[], chat_template_kwargs: { thinking: true } } as any);
  assert.equal(lastPrompt(), encodeMessages(dev, { mode: 'thinking' }));
  assert.ok(lastPrompt().includes("# The user's message is: Find the date"));
});

test('malformed DSML in the output is recovered by the lenient parser: a tool call, no markup in content (streamed and not)', async () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'go [broken]' }];
  const r = await client.chat.completions.create({ model: 'dsv32-test', messages, tools });
  const m = r.choices[0]!.message;
  assert.ok(!(m.content ?? '').includes('DSML'), JSON.stringify(m.content));
  assert.equal(m.tool_calls!.length, 1);
  assert.deepEqual(JSON.parse((m.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments), { city: 'Rome' });
  const stream = await client.chat.completions.create({ model: 'dsv32-test', messages, tools, stream: true });
  let content = '';
  let args = '';
  for await (const ch of stream) {
    content += ch.choices[0]?.delta?.content ?? '';
    for (const t of ch.choices[0]?.delta?.tool_calls ?? []) args += t.function?.arguments ?? '';
  }
  assert.ok(!content.includes('DSML') && !content.includes('invoke'), JSON.stringify(content));
  assert.deepEqual(JSON.parse(args), { city: 'Rome' });
});

test('n = 2 streamed with include_usage: two choices complete, a final usage chunk; not streamed: two choices', async () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: '[plain]' }];
  const stream = await client.chat.completions.create({ model: 'dsv32-test', messages, n: 2, stream: true, stream_options: { include_usage: true } });
  const text = ['', ''];
  const finish: (string | null)[] = [null, null];
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const ch of stream) {
    for (const c of ch.choices) {
      text[c.index] += c.delta.content ?? '';
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
    if (ch.usage) usage = ch.usage;
  }
  assert.deepEqual(text, [SCRIPTS['[plain]'], SCRIPTS['[plain]'] + ' (1)']);
  assert.deepEqual(finish, ['stop', 'stop']);
  const n0 = tokenizer().encode(text[0]!).length + 1;
  const n1 = tokenizer().encode(text[1]!).length + 1;
  assert.equal(usage!.completion_tokens, n0 + n1);
  const r = await client.chat.completions.create({ model: 'dsv32-test', messages, n: 2 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
});

test('logprobs, top_logprobs and the RL fields (token_ids, prompt_token_ids, sampling_mask, routed_experts, indexer_topk), streamed and not', async () => {
  const body = {
    model: 'dsv32-test', messages: [{ role: 'user', content: '[plain]' }], logprobs: true, top_logprobs: 2,
    return_token_ids: true, return_sampling_mask: true, return_routed_experts: true, return_indexer_topk: true,
  };
  const ids = [...tokenizer().encode(SCRIPTS['[plain]']!), 1];
  const r = await post(srv.url + '/v1/chat/completions', body);
  assert.equal(r.status, 200);
  const c = r.json.choices[0];
  assert.deepEqual(c.token_ids, ids);
  assert.deepEqual(r.json.prompt_token_ids, [...engine.requests.at(-1)!.promptIds]);
  assert.equal(c.logprobs.content.length, ids.length);
  c.logprobs.content.forEach((e: any, i: number) => {
    assert.equal(e.logprob, scriptedLogprob(ids[i]!, i));
    assert.equal(e.top_logprobs.length, 2);
    assert.equal(e.token, tokenizer().decode([ids[i]!]));
  });
  // a token holding part of 你 has bytes that are not its text's
  const bytes = c.logprobs.content.flatMap((e: any) => e.bytes);
  assert.ok(Buffer.from(bytes).toString('utf8').includes('你好'));
  assert.equal(c.sampling_mask.length, ids.length);
  c.sampling_mask.forEach((m: number[], i: number) => assert.ok(m.includes(ids[i]!)));
  assert.deepEqual(c.routed_experts[0], Array.from({ length: 2 }, (_, l) => Array.from(engine.routes(ids[0]!).subarray(l * 2, l * 2 + 2))));
  assert.equal(c.routed_experts.length, ids.length);
  assert.deepEqual(c.indexer_topk[3], [[0, 3], [3, -1]]);

  const s = await sse(srv.url + '/v1/chat/completions', { ...body, stream: true });
  assert.ok(s.done);
  const tokenIds = s.events.flatMap((e) => e.choices[0]?.token_ids ?? []);
  assert.deepEqual(tokenIds, ids);
  assert.deepEqual(s.events.flatMap((e) => e.choices[0]?.logprobs?.content ?? []).map((x: any) => x.logprob), ids.map((id, i) => scriptedLogprob(id, i)));
  assert.equal(s.events.flatMap((e) => e.choices[0]?.routed_experts ?? []).length, ids.length);
  assert.ok(s.events[0].prompt_token_ids.length > 0);
});

test('completions: text prompt, token-id prompt, batch with n, echo, stop strings, legacy logprobs, skip_special_tokens', async () => {
  const r = await client.completions.create({ model: 'dsv32-test', prompt: 'Q: [plain]', max_tokens: 100 });
  assert.equal(r.choices[0]!.text, SCRIPTS['[plain]']);
  assert.equal(r.choices[0]!.finish_reason, 'stop');
  assert.deepEqual(engine.requests.at(-1)!.promptIds, tokenizer().encode('Q: [plain]'));

  const ids = tokenizer().encode('Q: [think]');
  const t = await client.completions.create({ model: 'dsv32-test', prompt: ids, max_tokens: 100, skip_special_tokens: false } as any);
  assert.equal(t.choices[0]!.text, SCRIPTS['[think]']);
  const skipped = await client.completions.create({ model: 'dsv32-test', prompt: ids, max_tokens: 100 });
  assert.equal(skipped.choices[0]!.text, SCRIPTS['[think]']!.replace('</think>', ''));

  const b = await client.completions.create({ model: 'dsv32-test', prompt: ['Q: [plain]', 'Q: [stop]'], n: 2, max_tokens: 100, stop: ['STOP'] });
  assert.deepEqual(b.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(b.choices[0]!.text, SCRIPTS['[plain]']);
  assert.equal(b.choices[2]!.text, 'alpha beta ');
  assert.equal(b.choices[2]!.finish_reason, 'stop');

  const e = await client.completions.create({ model: 'dsv32-test', prompt: 'Q: [plain]', echo: true, max_tokens: 3 });
  assert.equal(e.choices[0]!.finish_reason, 'length');
  assert.equal(e.choices[0]!.text, 'Q: [plain]' + tokenizer().decode(tokenizer().encode(SCRIPTS['[plain]']!).slice(0, 3)));

  const lp = await client.completions.create({ model: 'dsv32-test', prompt: 'Q: [plain]', logprobs: 2, max_tokens: 4 });
  const L = lp.choices[0]!.logprobs!;
  assert.equal(L.tokens!.length, 4);
  assert.equal(L.top_logprobs!.length, 4);
  assert.deepEqual(L.text_offset, [0, 5, 6, 7].map((_, i) => L.tokens!.slice(0, i).join('').length));

  // streamed: the stop string is cut even when it arrives split over tokens
  const stream = await client.completions.create({ model: 'dsv32-test', prompt: 'Q: [stop]', stop: 'STOP', max_tokens: 100, stream: true });
  let text = '';
  let finish: string | null = null;
  for await (const ch of stream) {
    text += ch.choices[0]?.text ?? '';
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, 'alpha beta ');
  assert.equal(finish, 'stop');
});

test('models, health and metrics', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['dsv32-test']);
  assert.equal((await client.models.retrieve('dsv32-test')).id, 'dsv32-test');
  await assert.rejects(client.models.retrieve('other'), (e: any) => e.status === 404);
  const h = await fetch(srv.url + '/health');
  assert.equal(h.status, 200);
  const m = await (await fetch(srv.url + '/metrics')).text();
  for (const name of ['dsv32_queue_depth', 'dsv32_running_sequences', 'dsv32_cache_usage_ratio', 'dsv32_time_to_first_token_seconds_bucket', 'dsv32_time_per_output_token_seconds_bucket', 'dsv32_generation_tokens_per_second', 'dsv32_requests_total']) {
    assert.ok(m.includes(name), `metrics has ${name}`);
  }
  const ttftCount = Number(/dsv32_time_to_first_token_seconds_count (\d+)/.exec(m)![1]);
  assert.ok(ttftCount >= 10, `TTFT observed ${ttftCount} times`);
  assert.match(m, /dsv32_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
});
