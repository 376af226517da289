import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { TOOL_ERROR_MARK, ToolBox, ToolDefinitionError, defineTool } from '../../src/agent/tools.js';
import type { AgentToolCall } from '../../src/agent/messages.js';

const call = (name: string, args: string, id = 'call_1'): AgentToolCall => ({ id, type: 'function', function: { name, arguments: args } });

const weather = defineTool({
  name: 'get_weather',
  description: 'Weather for a city on a date',
  input: z.object({ city: z.string().min(1).describe('City name'), date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/), units: z.enum(['c', 'f']).default('c') }),
  execute: ({ city, date, units }) => ({ city, date, units, temp: 15 }),
});

test('zod schema becomes the JSON Schema of OpenAI tools (no $schema noise, defaults optional)', () => {
  const box = new ToolBox([weather]);
  const [def] = box.definitions();
  assert.equal(def!.type, 'function');
  assert.equal(def!.function.name, 'get_weather');
  assert.equal(def!.function.description, 'Weather for a city on a date');
  const params = def!.function.parameters as Record<string, any>;
  assert.equal(params.$schema, undefined);
  assert.equal(params.type, 'object');
  assert.deepEqual(Object.keys(params.properties), ['city', 'date', 'units']);
  assert.equal(params.properties.city.description, 'City name');
  assert.deepEqual(params.properties.units.enum, ['c', 'f']);
  // io: 'input' → a field with a default is not required of the model
  assert.deepEqual(params.required, ['city', 'date']);
});

test('valid arguments run the tool; defaults applied; objects are returned as JSON text', async () => {
  const r = await new ToolBox([weather]).call(call('get_weather', '{"city": "Paris", "date": "2025-12-01"}'));
  assert.equal(r.ok, true);
  assert.deepEqual(JSON.parse(r.content), { city: 'Paris', date: '2025-12-01', units: 'c', temp: 15 });
});

test('schema violations are marked tool results and the tool does not run', async () => {
  let ran = 0;
  const t = defineTool({ name: 'count', description: '', input: z.object({ n: z.number().int().positive() }), execute: () => ++ran });
  const box = new ToolBox([t, weather]);
  const bad = await box.call(call('count', '{"n": -2}'));
  assert.equal(bad.ok, false);
  assert.equal(bad.errorKind, 'invalid_arguments');
  assert.ok(bad.content.startsWith(`${TOOL_ERROR_MARK}invalid_arguments]`), bad.content);
  assert.match(bad.content, /- n: /);
  const missing = await box.call(call('get_weather', '{"date": "tomorrow"}'));
  assert.match(missing.content, /- city: /);
  assert.match(missing.content, /- date: /);
  const notJson = await box.call(call('count', '{"n": 3'));
  assert.equal(notJson.errorKind, 'invalid_arguments');
  assert.match(notJson.content, /not valid JSON/);
  const unknown = await box.call(call('nope', '{}'));
  assert.equal(unknown.errorKind, 'unknown_tool');
  assert.match(unknown.content, /Available tools: count, get_weather/);
  assert.equal(ran, 0);
  assert.equal((await box.call(call('count', '{"n": 2}'))).content, '1');
  assert.equal(ran, 1);
});

test('a throwing tool, a sync throw, a hung tool and a cancelled run are all marked results', async () => {
  const boom = defineTool({ name: 'boom', description: '', input: z.object({}), execute: async () => { throw new TypeError('bad thing'); } });
  const syncBoom = defineTool({ name: 'sync_boom', description: '', input: z.object({}), execute: () => { throw new Error('sync'); } });
  let sawAbort = false;
  const hang = defineTool({
    name: 'hang',
    description: '',
    input: z.object({}),
    execute: (_a, ctx) => new Promise((_res, rej) => ctx.signal.addEventListener('abort', () => { sawAbort = true; rej(new Error('stopped')); })),
  });
  const box = new ToolBox([boom, syncBoom, hang], { timeoutMs: 50 });
  const r1 = await box.call(call('boom', '{}'));
  assert.equal(r1.errorKind, 'tool_exception');
  assert.equal(r1.content, `${TOOL_ERROR_MARK}tool_exception] Tool "boom" failed: TypeError: bad thing`);
  assert.equal((await box.call(call('sync_boom', ''))).errorKind, 'tool_exception');
  const t0 = Date.now();
  const r2 = await box.call(call('hang', '{}'));
  assert.equal(r2.errorKind, 'tool_timeout');
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(sawAbort, true, 'the tool saw its signal aborted');
  const ctl = new AbortController();
  const pending = new ToolBox([hang]).call(call('hang', '{}'), ctl.signal);
  setTimeout(() => ctl.abort(), 10);
  assert.equal((await pending).errorKind, 'aborted');
});

test('bad declarations fail at definition time with the tool named', () => {
  assert.throws(() => defineTool({ name: 'has space', description: '', input: z.object({}), execute: () => 0 }), ToolDefinitionError);
  assert.throws(() => defineTool({ name: 'str', description: '', input: z.string(), execute: () => 0 }), /tool "str": arguments schema must be a z\.object/);
  assert.throws(() => new ToolBox([weather, weather]), /declared twice/);
});
