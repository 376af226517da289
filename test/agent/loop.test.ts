// End-to-end: the agent loop over real HTTP (a scripted OpenAI-compatible server on 127.0.0.1), real
// tools, streaming and non-streaming.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { runAgent } from '../../src/agent/loop.js';
import { applyReasoningRetention, type ModelDelta } from '../../src/agent/messages.js';
import { OpenAIChatClient } from '../../src/agent/openai-client.js';
import { TOOL_ERROR_MARK, defineTool } from '../../src/agent/tools.js';
import { Transcript } from '../../src/agent/transcript.js';
import { startFakeModelServer } from './fake-model-server.js';

function weatherTools(log: string[]) {
  let inFlight = 0;
  let maxInFlight = 0;
  const tools = [
    defineTool({
      name: 'get_weather',
      description: 'Weather for a city',
      input: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        log.push(`start ${city}`);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 30));
        inFlight--;
        log.push(`end ${city}`);
        return { city, temp: city.length };
      },
    }),
    defineTool({ name: 'divide', description: 'a / b', input: z.object({ a: z.number(), b: z.number() }), execute: ({ a, b }) => {
      if (b === 0) throw new RangeError('division by zero');
      return a / b;
    } }),
  ];
  return { tools, maxInFlight: () => maxInFlight };
}

for (const stream of [false, true]) {
  test(`tool round trip over HTTP (${stream ? 'streaming' : 'non-streaming'}): parallel calls, reasoning sent back, transcript`, async (t) => {
    const server = await startFakeModelServer([
      {
        reasoning_content: 'I need the weather in two cities.',
        content: '',
        tool_calls: [
          { id: 'call_a', name: 'get_weather', arguments: '{"city": "Paris"}' },
          { id: 'call_b', name: 'get_weather', arguments: '{"city": "Hangzhou 杭州"}' },
        ],
        usage: { prompt_tokens: 100, completion_tokens: 20 },
      },
      {
        reasoning_content: 'Now compute a ratio, and try a bad call.',
        tool_calls: [
          { id: 'call_c', name: 'divide', arguments: '{"a": 1, "b": 0}' },
          { id: 'call_d', name: 'divide', arguments: '{"a": "one"}' },
        ],
      },
      { reasoning_content: 'Done.', content: 'Paris is 5 and Hangzhou is 11.', usage: { prompt_tokens: 200, completion_tokens: 9 } },
    ]);
    t.after(() => server.close());
    const log: string[] = [];
    const { tools, maxInFlight } = weatherTools(log);
    const dir = mkdtempSync(join(tmpdir(), 'dsv32-agent-'));
    const transcript = new Transcript(join(dir, 't.jsonl'));
    const deltas: ModelDelta[] = [];
    const afterSteps: number[] = [];
    const result = await runAgent({
      client: new OpenAIChatClient({ baseUrl: server.url, model: 'deepseek-reasoner', stream, apiKey: 'sk-test' }),
      system: 'You are a weather agent.',
      task: 'Compare the weather in Paris and Hangzhou.',
      tools,
      transcript,
      hooks: { onDelta: (_s, d) => deltas.push(d), afterStep: (r) => void afterSteps.push(r.step) },
    });
    transcript.close();

    assert.equal(result.status, 'final');
    assert.equal(result.finalAnswer, 'Paris is 5 and Hangzhou is 11.');
    assert.equal(result.steps, 3);
    assert.deepEqual(afterSteps, [1, 2, 3]);
    assert.equal(maxInFlight(), 2, 'both get_weather calls ran concurrently');
    assert.deepEqual(log.slice(0, 2).sort(), ['start Hangzhou 杭州', 'start Paris']);

    // request shape: tools as OpenAI function declarations with JSON Schema, auth header, stream flag
    const [r1, r2, r3] = server.requests;
    assert.equal(server.requests.length, 3);
    assert.equal(r1!.headers.authorization, 'Bearer sk-test');
    assert.equal(r1!.body.stream, stream);
    assert.deepEqual(r1!.body.tools.map((x: any) => x.function.name), ['get_weather', 'divide']);
    assert.deepEqual(r1!.body.tools[0].function.parameters.properties.city, { type: 'string' });
    assert.deepEqual(r1!.body.messages, [
      { role: 'system', content: 'You are a weather agent.' },
      { role: 'user', content: 'Compare the weather in Paris and Hangzhou.' },
    ]);
    // within the user turn, reasoning_content goes back with the assistant's tool-call message
    const m2 = r2!.body.messages;
    assert.equal(m2[2].role, 'assistant');
    assert.equal(m2[2].reasoning_content, 'I need the weather in two cities.');
    assert.deepEqual(m2[2].tool_calls.map((c: any) => [c.id, c.function.name, c.function.arguments]), [
      ['call_a', 'get_weather', '{"city": "Paris"}'],
      ['call_b', 'get_weather', '{"city": "Hangzhou 杭州"}'],
    ]);
    assert.deepEqual(m2.slice(3), [
      { role: 'tool', tool_call_id: 'call_a', content: '{"city":"Paris","temp":5}' },
      { role: 'tool', tool_call_id: 'call_b', content: '{"city":"Hangzhou 杭州","temp":11}' },
    ]);
    // the exception and the validation error came back to the model as marked tool results
    const m3 = r3!.body.messages;
    assert.equal(m3[5].reasoning_content, 'Now compute a ratio, and try a bad call.');
    assert.equal(m3[6].tool_call_id, 'call_c');
    assert.equal(m3[6].content, `${TOOL_ERROR_MARK}tool_exception] Tool "divide" failed: RangeError: division by zero`);
    assert.equal(m3[7].tool_call_id, 'call_d');
    assert.ok(m3[7].content.startsWith(`${TOOL_ERROR_MARK}invalid_arguments]`));
    assert.match(m3[7].content, /- a: .*\n- b: /s);

    if (stream) {
      assert.equal(deltas.filter((d) => d.type === 'reasoning').map((d) => (d as { text: string }).text).join(''), 'I need the weather in two cities.Now compute a ratio, and try a bad call.Done.');
      assert.ok(deltas.filter((d) => d.type === 'tool_call').length > 4, 'tool-call arguments arrived in pieces');
    } else assert.equal(deltas.length, 0);

    // JSONL transcript: run_start, 3 steps, run_end; token counts on every step
    const lines: any[] = readFileSync(join(dir, 't.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.type), ['run_start', 'step', 'step', 'step', 'run_end']);
    assert.deepEqual(transcript.events, lines);
    const s1 = lines[1];
    assert.deepEqual(s1.tool_results.map((r: any) => [r.id, r.ok]), [['call_a', true], ['call_b', true]]);
    assert.deepEqual(s1.tokens.server, { promptTokens: 100, completionTokens: 20 });
    assert.equal(s1.tokens.exact, false);
    for (const s of lines.slice(1, 4)) assert.ok(s.tokens.prompt > 0 && s.tokens.completion > 0);
    assert.ok(lines[2].tokens.prompt > s1.tokens.prompt, 'context grows with each step');
    assert.deepEqual(lines[2].tool_results.map((r: any) => r.errorKind), ['tool_exception', 'invalid_arguments']);
    assert.equal(lines[4].status, 'final');
    assert.equal(lines[4].totalTokens.prompt, s1.tokens.prompt + lines[2].tokens.prompt + lines[3].tokens.prompt);
  });
}

test('reasoning of earlier user turns is cleared, the current turn keeps it (DeepSeek rule)', async (t) => {
  const server = await startFakeModelServer([
    { reasoning_content: 'r1', tool_calls: [{ id: 'c1', name: 'divide', arguments: '{"a": 4, "b": 2}' }] },
    { reasoning_content: 'r2', content: 'It is 2.' },
    { reasoning_content: 'r3', tool_calls: [{ id: 'c2', name: 'divide', arguments: '{"a": 9, "b": 3}' }] },
    { reasoning_content: 'r4', content: 'It is 3.' },
  ]);
  t.after(() => server.close());
  const { tools } = weatherTools([]);
  const client = new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: true });
  const first = await runAgent({ client, system: 'sys', task: 'What is 4/2?', tools });
  assert.equal(first.finalAnswer, 'It is 2.');
  // the run's own messages keep every reasoning_content (the rule applies on the wire)
  assert.deepEqual(first.messages.filter((m) => m.role === 'assistant').map((m) => (m as { reasoning_content?: string }).reasoning_content), ['r1', 'r2']);
  const second = await runAgent({ client, system: 'ignored: history has one', history: first.messages, task: 'And 9/3?', tools });
  assert.equal(second.status, 'final');
  assert.equal(second.finalAnswer, 'It is 3.');
  const [, , r3, r4] = server.requests.map((r) => r.body.messages as any[]);
  assert.equal(r3!.filter((m) => m.role === 'system').length, 1);
  // the new user turn: earlier assistant messages lose reasoning, keep their tool calls and results
  assert.deepEqual(r3!.filter((m) => m.role === 'assistant').map((m) => [m.reasoning_content, m.tool_calls?.[0]?.id]), [[undefined, 'c1'], [undefined, undefined]]);
  assert.deepEqual(r3!.at(-1), { role: 'user', content: 'And 9/3?' });
  // within the new turn, its own tool-call message carries r3 back
  assert.deepEqual(r4!.filter((m) => m.role === 'assistant').map((m) => m.reasoning_content), [undefined, undefined, 'r3']);
  assert.equal(r4!.filter((m) => m.role === 'tool').length, 2);
  // pure function form
  const wire = applyReasoningRetention(second.messages);
  assert.deepEqual(wire.filter((m) => m.role === 'assistant').map((m) => (m as { reasoning_content?: string }).reasoning_content), [undefined, undefined, 'r3', 'r4']);
});

test('hooks can rewrite the conversation before a step and stop the run', async (t) => {
  const server = await startFakeModelServer(() => ({ content: 'ok' }));
  t.after(() => server.close());
  const client = new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: false });
  const r = await runAgent({
    client,
    task: 'original task',
    hooks: { beforeStep: ({ messages }) => ({ messages: [...messages.slice(0, -1), { role: 'user', content: 'rewritten task' }] }) },
  });
  assert.equal(r.status, 'final');
  assert.deepEqual(server.requests[0]!.body.messages, [{ role: 'user', content: 'rewritten task' }]);
  const stopped = await runAgent({ client, task: 'x', hooks: { beforeStep: () => ({ stop: true }) } });
  assert.equal(stopped.status, 'stopped');
  assert.equal(server.requests.length, 1, 'no model call after stop');
});

test('step cap: a model that never stops calling tools ends with max_steps', async (t) => {
  const server = await startFakeModelServer((_r, i) => ({ reasoning_content: `again ${i}`, tool_calls: [{ name: 'divide', arguments: `{"a": ${i}, "b": 1}` }] }));
  t.after(() => server.close());
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm' }), task: 't', tools: weatherTools([]).tools, maxSteps: 3 });
  assert.equal(r.status, 'max_steps');
  assert.equal(r.steps, 3);
  assert.equal(server.requests.length, 3);
  assert.match(r.error!, /3 steps/);
  // ids the server sent are used to pair results with calls
  assert.equal((r.messages.at(-1) as { tool_call_id: string }).tool_call_id, 'call_fake_2_0');
});

test('sequential tool calls when parallelToolCalls is false', async (t) => {
  const server = await startFakeModelServer([
    { tool_calls: [{ name: 'get_weather', arguments: '{"city": "A"}' }, { name: 'get_weather', arguments: '{"city": "B"}' }] },
    { content: 'done' },
  ]);
  t.after(() => server.close());
  const log: string[] = [];
  const { tools, maxInFlight } = weatherTools(log);
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm' }), task: 't', tools, parallelToolCalls: false });
  assert.equal(r.status, 'final');
  assert.equal(maxInFlight(), 1);
  assert.deepEqual(log, ['start A', 'end A', 'start B', 'end B']);
});

test('cancellation: aborting during a slow model call ends the run promptly with status aborted', async (t) => {
  const server = await startFakeModelServer(() => ({ content: 'too late', delayMs: 5000 }));
  t.after(() => server.close());
  for (const stream of [false, true]) {
    const ctl = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ctl.abort(), 50);
    const transcript = new Transcript();
    const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream }), task: 't', signal: ctl.signal, transcript });
    assert.equal(r.status, 'aborted');
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    assert.equal(transcript.events.at(-1)!.type, 'run_end');
  }
  // cancelled during a tool call: the tool sees the abort and the run stops
  const server2 = await startFakeModelServer([{ tool_calls: [{ name: 'wait', arguments: '{}' }] }, { content: 'never' }]);
  t.after(() => server2.close());
  const ctl = new AbortController();
  const wait = defineTool({ name: 'wait', description: '', input: z.object({}), execute: (_a, ctx) => new Promise((res) => {
    ctx.signal.addEventListener('abort', () => res('stopped'));
    setTimeout(() => ctl.abort(), 20);
  }) });
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server2.url, model: 'm' }), task: 't', tools: [wait], signal: ctl.signal });
  assert.equal(r.status, 'aborted');
  assert.equal(server2.requests.length, 1);
});

test('HTTP errors and unreachable servers end the run with status error, not an exception', async (t) => {
  const server = await startFakeModelServer([{ status: 400, error: 'Missing `reasoning_content` field in the assistant message at message index 2.' }]);
  t.after(() => server.close());
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: true }), task: 't' });
  assert.equal(r.status, 'error');
  assert.match(r.error!, /HTTP 400: Missing `reasoning_content`/);
  const closed = await startFakeModelServer([]);
  const url = closed.url;
  await closed.close();
  const r2 = await runAgent({ client: new OpenAIChatClient({ baseUrl: url, model: 'm' }), task: 't' });
  assert.equal(r2.status, 'error');
  assert.match(r2.error!, /POST http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions/);
  assert.throws(() => new OpenAIChatClient({ baseUrl: 'not a url', model: 'm' }), /--base-url "not a url": not a valid URL/);
});

test('tool-call markup leaked into content by the server is recovered and run', async (t) => {
  const leaked =
    'Let me check.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="divide">\n<｜DSML｜parameter name="a" string="false">9</｜DSML｜parameter>\n' +
    '<｜DSML｜parameter name="b" string="false">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>';
  const server = await startFakeModelServer([{ content: leaked }, { content: 'It is 3.' }, { content: leaked }]);
  t.after(() => server.close());
  const transcript = new Transcript();
  const { tools } = weatherTools([]);
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: true }), task: '9/3?', tools, transcript });
  assert.equal(r.status, 'final');
  assert.equal(r.finalAnswer, 'It is 3.');
  const m2 = server.requests[1]!.body.messages;
  assert.equal(m2[1].content, 'Let me check.', 'markup removed from the content');
  assert.deepEqual(JSON.parse(m2[1].tool_calls[0].function.arguments), { a: 9, b: 3 });
  assert.equal(m2[2].content, '3');
  const step = transcript.events.find((e) => e.type === 'step')!;
  assert.ok(step.type === 'step' && /recovered with the lenient parser/.test(step.warnings![0]!));
  // opt-out: the markup stays as the final text
  const off = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', recoverToolMarkup: false }), task: '9/3?', tools });
  assert.equal(off.finalAnswer, leaked);
});

test('a call whose arguments are not a JSON object does not end the run: the history sends it as {} (encodable), the tool error quotes the raw text, the transcript keeps it', async (t) => {
  const raw = '{"a": 1, "b": two}'; // a DSML string="false" value that is not JSON, pasted raw by the parser
  const server = await startFakeModelServer([
    { reasoning_content: 'divide', tool_calls: [{ id: 'call_x', name: 'divide', arguments: raw }] },
    { reasoning_content: 'retry', content: 'I could not divide.' },
  ]);
  t.after(() => server.close());
  const { tools } = weatherTools([]);
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-agent-'));
  const transcript = new Transcript(join(dir, 't.jsonl'));
  const result = await runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: false }), task: 'Divide.', tools, transcript });
  transcript.close();
  assert.equal(result.status, 'final');
  const m = server.requests[1]!.body.messages;
  const call = m.find((x: any) => x.role === 'assistant').tool_calls[0];
  assert.equal(call.function.arguments, '{}');
  const err = m.find((x: any) => x.role === 'tool').content;
  assert.ok(err.startsWith(`${TOOL_ERROR_MARK}invalid_arguments]`) && err.includes(raw), err);
  // what our own V3.2 encoder accepts is what a server accepts: the history encodes
  const { encodeMessages } = await import('../../src/chat/encode.js');
  assert.doesNotThrow(() => encodeMessages(m, { mode: 'thinking' }));
  const step = readFileSync(join(dir, 't.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l)).find((l) => l.type === 'step');
  assert.ok(JSON.stringify(step).includes(JSON.stringify(raw).slice(1, -1)), 'the transcript keeps the raw arguments');
});
