// The agent loop over a raw `/v1/completions` endpoint: our encoder renders the prompt, our parser
// (strict or streaming) reads the DSML tool calls back. The server is a scripted double on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { CompletionClient } from '../../src/agent/completion-client.js';
import { runAgent } from '../../src/agent/loop.js';
import type { ModelDelta } from '../../src/agent/messages.js';
import { TOOL_ERROR_MARK, defineTool } from '../../src/agent/tools.js';
import { Transcript } from '../../src/agent/transcript.js';
import { encodeMessages } from '../../src/chat/encode.js';
import { loadTokenizer } from '../../src/chat/tokenizer.js';
import { startFakeModelServer } from './fake-model-server.js';

const EOS = '<｜end▁of▁sentence｜>';
const call = (name: string, params: [string, string, boolean][]) =>
  `<｜DSML｜invoke name="${name}">\n` + params.map(([k, v, s]) => `<｜DSML｜parameter name="${k}" string="${s}">${v}</｜DSML｜parameter>`).join('\n') + '\n</｜DSML｜invoke>';
const calls = (...invokes: string[]) => `\n\n<｜DSML｜function_calls>\n${invokes.join('\n')}\n</｜DSML｜function_calls>`;

const T1 = 'I need the weather for both cities.</think>' + calls(call('get_weather', [['city', 'Paris', true], ['days', '2', false]]), call('get_weather', [['city', '杭州', true], ['days', 'two', true]])) + EOS;
const T2 = 'One call had a bad argument; Paris is enough.</think>Paris: 15 degrees for 2 days.' + EOS;

const weather = defineTool({
  name: 'get_weather',
  description: 'Weather forecast',
  input: z.object({ city: z.string(), days: z.number().int() }),
  execute: ({ city, days }) => `${city}: 15C x${days}`,
});

for (const stream of [false, true]) {
  test(`raw completion endpoint (${stream ? 'streaming parser' : 'strict parser'}): prompts are our encoding and extend prefix-stably`, async (t) => {
    const server = await startFakeModelServer([
      { text: T1, usage: { prompt_tokens: 500, completion_tokens: 60 } },
      { text: T2 },
    ]);
    t.after(() => server.close());
    const tok = loadTokenizer('test/chat/fixtures/mini-dsv3-tokenizer');
    const deltas: ModelDelta[] = [];
    const transcript = new Transcript();
    const r = await runAgent({
      client: new CompletionClient({ baseUrl: server.url, model: 'dsv32', stream }),
      system: 'You are a weather bot.',
      task: 'Weather in Paris and Hangzhou?',
      tools: [weather],
      counter: tok,
      transcript,
      hooks: { onDelta: (_s, d) => deltas.push(d) },
    });
    assert.equal(r.status, 'final', r.error);
    assert.equal(r.finalAnswer, 'Paris: 15 degrees for 2 days.');
    assert.equal(server.requests.length, 2);
    const [q1, q2] = server.requests.map((q) => q.body);
    assert.equal(server.requests[0]!.path, '/v1/completions');
    assert.equal(q1!.skip_special_tokens, false);
    // request 1 is the V3.2 prompt with the tools block on the system message, ending in <think>
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather forecast', parameters: weather.parameters } }];
    assert.equal(q1!.prompt, encodeMessages([{ role: 'system', content: 'You are a weather bot.', tools }, { role: 'user', content: 'Weather in Paris and Hangzhou?' }], { mode: 'thinking' }));
    assert.ok(q1!.prompt.endsWith('<｜User｜>Weather in Paris and Hangzhou?<｜Assistant｜><think>'));
    // request 2 = request 1 + the completion verbatim + the tool results block: the prompt only grows
    // at the end, so an engine can reuse the KV cache of request 1. (This holds when the model's DSML
    // is canonical; the encoder re-renders parsed calls, e.g. a string written with string="false".)
    const results = r.messages.filter((m) => m.role === 'tool').map((m) => m.content);
    assert.equal(results[0], 'Paris: 15C x2');
    assert.ok(results[1]!.startsWith(`${TOOL_ERROR_MARK}invalid_arguments]`), results[1]);
    assert.equal(q2!.prompt, q1!.prompt + T1 + `\n\n<function_results>\n<result>${results[0]}</result>\n<result>${results[1]}</result>\n</function_results>\n\n<think>`);
    // parsed tool calls: string="false" values are raw JSON in the arguments
    const asst = r.messages[2]!;
    assert.ok(asst.role === 'assistant');
    assert.deepEqual(asst.tool_calls!.map((c) => JSON.parse(c.function.arguments)), [{ city: 'Paris', days: 2 }, { city: '杭州', days: 'two' }]);
    assert.match(asst.tool_calls![0]!.id, /^call_/);
    assert.equal(asst.reasoning_content, 'I need the weather for both cities.');
    // exact token counts from the tokenizer
    const steps = transcript.events.filter((e) => e.type === 'step');
    assert.equal(steps[0]!.type === 'step' && steps[0]!.tokens.prompt, tok.count(q1!.prompt));
    assert.equal(steps[0]!.type === 'step' && steps[0]!.tokens.exact, true);
    if (stream) {
      assert.equal(deltas.filter((d) => d.type === 'content').map((d) => (d as { text: string }).text).join(''), 'Paris: 15 degrees for 2 days.');
      const names = deltas.filter((d) => d.type === 'tool_call' && d.name).map((d) => (d as { name: string }).name);
      assert.deepEqual(names, ['get_weather', 'get_weather']);
      assert.ok(!deltas.some((d) => 'text' in d && /DSML|<｜|think>/.test(d.text)), 'no markup leaks into deltas');
    }
  });
}

test('strict parser: a malformed completion ends the run with an error naming the parse rule; chat mode works', async (t) => {
  const server = await startFakeModelServer([{ text: 'never closes the thinking', finish_reason: 'length' }, { text: 'Hello there.' + EOS }]);
  t.after(() => server.close());
  const r = await runAgent({ client: new CompletionClient({ baseUrl: server.url, model: 'm', stream: false, parser: 'strict' }), task: 'hi' });
  assert.equal(r.status, 'error');
  assert.match(r.error!, /not a valid DeepSeek-V3\.2 message \(the completion was cut off by max_tokens\).*missing-think-end/);
  const chat = await runAgent({ client: new CompletionClient({ baseUrl: server.url, model: 'm', mode: 'chat', stream: true, parser: 'strict' }), task: 'hi' });
  assert.equal(chat.status, 'final');
  assert.equal(chat.finalAnswer, 'Hello there.');
  assert.ok(server.requests[1]!.body.prompt.endsWith('<｜User｜>hi<｜Assistant｜></think>'));
});

for (const stream of [false, true]) {
  test(`lenient recovery (${stream ? 'streaming' : 'non-streaming'}): bare tags are run, an unrecoverable call is fed back as malformed_call`, async (t) => {
    // Real-model failure modes: DSML markers missing, a string="false" number, and an invoke without a name.
    const bad =
      'Check the weather.</think>\n\n<function_calls>\n<invoke name="get_weather">\n<parameter name="city" string="true">Oslo</parameter>\n' +
      '<parameter name="days" string="false">3</parameter>\n</invoke>\n<invoke>\n<parameter name="city" string="true">Rome</parameter>\n</invoke>\n</function_calls>' + EOS;
    const server = await startFakeModelServer([{ text: bad }, { text: 'Retrying is not needed.</think>Oslo: 15C for 3 days.' + EOS }]);
    t.after(() => server.close());
    const transcript = new Transcript();
    const r = await runAgent({ client: new CompletionClient({ baseUrl: server.url, model: 'm', stream }), task: 'Weather?', tools: [weather], transcript });
    assert.equal(r.status, 'final', r.error);
    assert.equal(r.finalAnswer, 'Oslo: 15C for 3 days.');
    const tools = r.messages.filter((m) => m.role === 'tool').map((m) => m.content);
    assert.equal(tools[0], 'Oslo: 15C x3');
    assert.ok(tools[1]!.startsWith(`${TOOL_ERROR_MARK}malformed_call] Your call could not be parsed (`), tools[1]);
    const step1 = transcript.events.find((e) => e.type === 'step')!;
    assert.ok(step1.type === 'step');
    assert.match(step1.warnings![0]!, /used the lenient parser/);
    assert.deepEqual(step1.tool_results.map((x) => x.errorKind ?? 'ok'), ['ok', 'malformed_call']);
    // no markup leaked into the content, and the next prompt shows the model both results
    const asst = r.messages[1]!;
    assert.ok(asst.role === 'assistant' && asst.content === '');
    assert.match(server.requests[1]!.body.prompt, /<result>Oslo: 15C x3<\/result>\n<result>\[tool_error:malformed_call\]/);
  });
}
