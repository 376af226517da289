import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCompletionLenient, type LenientResult } from '../../src/chat/parse-lenient.js';
import { parseCompletion, parseCompletionChecked } from '../../src/chat/parse-strict.js';
import type { ToolDefinition } from '../../src/chat/message.js';
import { assistantCompletions } from './fixtures.js';

const E = '<｜end▁of▁sentence｜>';
const D = '｜DSML｜';

const TOOLS: ToolDefinition[] = [
  {
    type: 'function',
    function: {
      name: 'search',
      parameters: {
        type: 'object',
        properties: { q: { type: 'string' }, n: { type: 'integer' }, exact: { type: 'boolean' }, tags: { type: 'array' }, mode: { enum: ['web', 'news'] } },
      },
    },
  },
  { type: 'function', function: { name: 'run', parameters: { type: 'object', properties: { input: { type: 'object' } } } } },
];

function noMarkup(r: LenientResult): void {
  for (const s of [r.message.content, r.message.reasoning_content]) {
    assert.ok(!/DSML|<\/?(function_calls|invoke|parameter)|<\/?think>|<｜/.test(s), `markup leaked: ${JSON.stringify(s)}`);
  }
}

function calls(r: LenientResult): [string, unknown][] {
  return r.message.tool_calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
}

test('on well-formed output the lenient parser equals the strict parser and repairs nothing', () => {
  for (const { where, text } of assistantCompletions()) {
    const r = parseCompletionLenient(text, 'thinking');
    const strict = parseCompletionChecked(text, 'thinking');
    assert.deepEqual(r.message, strict.message, where);
    assert.deepEqual(r.errors, [], where);
    assert.deepEqual(r.repairs, [], where);
    assert.deepEqual(r.warnings, [], where);
    assert.deepEqual(strict.warnings, [], where);
  }
});

test('bare <function_calls>/<invoke>/<parameter> tags are recovered', () => {
  const text = `Checking.\n\n<function_calls>\n<invoke name="search">\n<parameter name="q" string="true">weather Paris</parameter>\n<parameter name="n" string="false">3</parameter>\n</invoke>\n</function_calls>`;
  const r = parseCompletionLenient(text, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(r), [['search', { q: 'weather Paris', n: 3 }]]);
  assert.equal(r.message.content, 'Checking.');
  assert.deepEqual(r.errors, []);
  assert.ok(r.repairs.includes('non-canonical invoke tag: "<invoke>"'), r.repairs.join('; '));
  assert.equal(new Set(r.repairs).size, r.repairs.length, 'repairs are listed once');
  noMarkup(r);
  // bare invoke with no function_calls wrapper
  const bare = parseCompletionLenient('Sure.\n<invoke name="search"><parameter name="q">x</parameter></invoke>', 'chat', { tools: TOOLS });
  assert.deepEqual(calls(bare), [['search', { q: 'x' }]]);
  assert.equal(bare.message.content, 'Sure.');
});

test('doubled and variant DSML markers', () => {
  for (const [open, close] of [
    ['<｜｜DSML｜｜', '</｜｜DSML｜｜'],
    ['<‖DSML‖', '</‖DSML‖'],
    ['<|DSML|', '</|DSML|'],
    [`<${D}${D}`, `</${D}${D}`],
  ]) {
    const text = `r</think>\n\n${open}function_calls>\n${open}invoke name="search">\n${open}parameter name="q" string="true">a</${D}parameter>\n${close}invoke>\n${close}function_calls>${E}`;
    const r = parseCompletionLenient(text, 'thinking', { tools: TOOLS });
    assert.deepEqual(calls(r), [['search', { q: 'a' }]], open);
    assert.equal(r.message.reasoning_content, 'r');
    assert.equal(r.message.content, '');
    noMarkup(r);
  }
});

test('a JSON object as the invoke body', () => {
  const text = `\n\n<${D}function_calls>\n<${D}invoke name="search">\n{"q": "rust async", "n": 2, "w": 1.0}\n</${D}invoke>\n</${D}function_calls>`;
  const r = parseCompletionLenient(text, 'chat', { tools: TOOLS });
  assert.deepEqual(r.message.tool_calls, [{ type: 'function', function: { name: 'search', arguments: '{"q": "rust async", "n": 2, "w": 1.0}' } }]);
  assert.ok(r.repairs.some((x) => x.includes('JSON object body')));
  const fenced = parseCompletionLenient('<invoke name="search">```json\n{"q": "x"}\n```</invoke>', 'chat');
  assert.deepEqual(calls(fenced), [['search', { q: 'x' }]]);
});

test('a lone arguments/input wrapper is unwrapped unless the tool declares that parameter', () => {
  const asParam = parseCompletionLenient(`<invoke name="search"><parameter name="arguments" string="false">{"q": "x", "n": 1}</parameter></invoke>`, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(asParam), [['search', { q: 'x', n: 1 }]]);
  assert.ok(asParam.repairs.some((x) => x.includes('lone "arguments" wrapper')));
  const asBody = parseCompletionLenient(`<invoke name="search">{"input": "{\\"q\\": \\"y\\"}"}</invoke>`, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(asBody), [['search', { q: 'y' }]]);
  const declared = parseCompletionLenient(`<invoke name="run"><parameter name="input" string="false">{"a": 1}</parameter></invoke>`, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(declared), [['run', { input: { a: 1 } }]]);
});

test('values are coerced by the tool schema type', () => {
  const p = (name: string, flag: string, v: string) => `<${D}parameter name="${name}" string="${flag}">${v}</${D}parameter>`;
  const text = `\n\n<${D}function_calls>\n<${D}invoke name="search">\n${[p('q', 'false', 'hello world'), p('n', 'true', '5'), p('exact', 'false', 'True'), p('tags', 'false', '["a", "b"]'), p('mode', 'false', 'web')].join('\n')}\n</${D}invoke>\n</${D}function_calls>`;
  const r = parseCompletionLenient(text, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(r), [['search', { q: 'hello world', n: 5, exact: true, tags: ['a', 'b'], mode: 'web' }]]);
  assert.deepEqual(r.errors, []);
  // A number where the schema wants a string becomes that string.
  const num = parseCompletionLenient(`<invoke name="search">${p('q', 'false', '123')}</invoke>`, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(num), [['search', { q: '123' }]]);
  // Without a schema, string="false" text that is not JSON is kept as a string, with a repair note.
  const loose = parseCompletionLenient(`<invoke name="other">${p('x', 'false', 'not json')}</invoke>`, 'chat');
  assert.deepEqual(calls(loose), [['other', { x: 'not json' }]]);
  assert.ok(loose.repairs.length > 0);
});

test('unrecoverable calls are reported as errors, not dropped, and never leak into content', () => {
  const truncated = parseCompletionLenient(`Let me search.\n\n<${D}function_calls>\n<${D}invoke name="search">\n<${D}parameter name="q" string="true">partial que`, 'chat', { tools: TOOLS });
  assert.equal(truncated.message.tool_calls.length, 0);
  assert.equal(truncated.errors.length, 1);
  assert.equal(truncated.errors[0]!.name, 'search');
  assert.match(truncated.errors[0]!.reason, /not closed/);
  assert.ok(truncated.errors[0]!.raw.startsWith(`<${D}invoke name="search">`));
  assert.equal(truncated.message.content, 'Let me search.');
  noMarkup(truncated);

  const badType = parseCompletionLenient(`<invoke name="search"><parameter name="n" string="false">three</parameter></invoke><invoke name="search"><parameter name="q">ok</parameter></invoke>`, 'chat', { tools: TOOLS });
  assert.deepEqual(calls(badType), [['search', { q: 'ok' }]]);
  assert.equal(badType.errors.length, 1);
  assert.match(badType.errors[0]!.reason, /"n" is not valid JSON for schema type integer/);

  const noName = parseCompletionLenient('<invoke><parameter name="q">x</parameter></invoke>', 'chat');
  assert.equal(noName.errors.length, 1);
  assert.match(noName.errors[0]!.reason, /no name/);

  const junkBody = parseCompletionLenient('<invoke name="f">just words</invoke>', 'chat');
  assert.match(junkBody.errors[0]!.reason, /neither parameters nor a JSON object/);
});

test('thinking without </think>, a cut-off opener, stray markers and text after EOS', () => {
  const noEnd = parseCompletionLenient(`I should search.\n\n<${D}function_calls>\n<${D}invoke name="search">\n<${D}parameter name="q" string="true">x</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'thinking');
  assert.equal(noEnd.message.reasoning_content, 'I should search.\n\n');
  assert.deepEqual(calls(noEnd), [['search', { q: 'x' }]]);
  assert.ok(noEnd.repairs[0]!.includes('no </think>'));

  const cut = parseCompletionLenient(`r</think>Answer is 4.\n\n<${D}function_ca`, 'thinking');
  assert.equal(cut.message.content, 'Answer is 4.');
  noMarkup(cut);

  const stray = parseCompletionLenient(`<think>r</think>a ${D} b<think>c${E}ignored`, 'thinking');
  assert.equal(stray.message.reasoning_content, 'r');
  assert.equal(stray.message.content, 'a  bc');
  assert.ok(stray.repairs.some((x) => x.includes('after')));
  noMarkup(stray);

  const truncatedThinking = parseCompletionLenient('still thinking', 'thinking');
  assert.equal(truncatedThinking.message.reasoning_content, 'still thinking');
  assert.equal(truncatedThinking.message.content, '');
});

test('text that only looks like the start of a tag is content, exactly as the strict parser reads it', () => {
  for (const [text, mode] of [
    ['<｜DSM some regular text', 'chat'],
    ['‹｜DSM some regular text', 'chat'],
    [`a <| b${E}`, 'chat'],
    ['a <‖ b', 'chat'],
    ['x\n\n<｜DSM', 'chat'],
    [`r</think>a <| b\n\n<${D}function_calls>\n<${D}invoke name="f">\n</${D}invoke>\n</${D}function_calls>${E}`, 'thinking'],
  ] as const) {
    const r = parseCompletionLenient(text, mode);
    assert.deepEqual(r.message, parseCompletion(text, mode), JSON.stringify(text));
    assert.deepEqual(r.repairs, [], JSON.stringify(text));
  }
});

test('a tag cut off at the end is removed with the blank line before it, not the space the model wrote', () => {
  const cases: [string, string][] = [
    [`Sure, let me check! \n\n<${D}fun`, 'Sure, let me check! '],
    [`Sure, let me check! <${D}invoke name="sea`, 'Sure, let me check! '],
    [`x\n\n</${D}`, 'x'],
    [`x <${D}｜DS`, 'x '],
    [`x <|DSML|parameter name="q`, 'x '],
  ];
  for (const [text, content] of cases) {
    const r = parseCompletionLenient(text, 'chat');
    assert.equal(r.message.content, content, JSON.stringify(text));
    assert.deepEqual(r.repairs, ['removed a cut-off tag at the end of the content'], JSON.stringify(text));
  }
  const thinking = parseCompletionLenient(`still thinking <${D}function_ca`, 'thinking');
  assert.equal(thinking.message.reasoning_content, 'still thinking ');
  assert.ok(thinking.repairs.includes('removed a cut-off tag at the end of the reasoning'), thinking.repairs.join('; '));
  noMarkup(thinking);
});

test('a string="false" value that is not JSON: the same warnings as the strict parser, and the value repaired', () => {
  const p = (name: string, flag: string, v: string) => `<${D}parameter name="${name}" string="${flag}">${v}</${D}parameter>`;
  const text = `\n\n<${D}function_calls>\n<${D}invoke name="f">\n${p('ok', 'false', '1')}\n</${D}invoke>\n<${D}invoke name="g">\n${p('a', 'false', 'not json')}\n${p('b', 'true', 'not json')}\n${p('c', 'false', 'True')}\n</${D}invoke>\n</${D}function_calls>`;
  const strict = parseCompletionChecked(text, 'chat');
  assert.deepEqual(strict.warnings.map((w) => [w.tool_call, w.name, w.parameter]), [[1, 'g', 'a'], [1, 'g', 'c']]);
  const r = parseCompletionLenient(text, 'chat');
  assert.deepEqual(r.warnings, strict.warnings);
  assert.deepEqual(calls(r), [['f', { ok: 1 }], ['g', { a: 'not json', b: 'not json', c: true }]]);
  // With a tool schema that rules the text out, the call is lost, and the warning still names it.
  const lost = parseCompletionLenient(`<invoke name="search">${p('n', 'false', 'three')}</invoke>`, 'chat', { tools: TOOLS });
  assert.equal(lost.errors.length, 1);
  assert.deepEqual(lost.warnings.map((w) => [w.tool_call, w.name, w.parameter]), [[0, 'search', 'n']]);
});
