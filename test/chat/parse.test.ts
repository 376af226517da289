import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCompletion, parseCompletionChecked } from '../../src/chat/parse-strict.js';
import { CompletionStreamParser, type StreamEvent } from '../../src/chat/parse-stream.js';
import { ChatParseError, type ParseRule } from '../../src/chat/errors.js';
import type { ChatMessage, ParsedMessage, ThinkingMode } from '../../src/chat/message.js';
import { pyJsonLoads } from '../../src/chat/pyjson.js';
import { assistantCompletions } from './fixtures.js';

const E = '<｜end▁of▁sentence｜>';
const D = '｜DSML｜';

/** What the parser should return for an assistant input message (no ids, arguments as JSON values). */
function expected(m: ChatMessage) {
  assert.equal(m.role, 'assistant');
  const a = m as Extract<ChatMessage, { role: 'assistant' }>;
  return {
    content: a.content ?? '',
    reasoning: a.reasoning || a.reasoning_content || '',
    calls: (a.tool_calls ?? []).map((c) => ({ name: c.function.name, args: typeof c.function.arguments === 'string' ? pyJsonLoads(c.function.arguments) : c.function.arguments })),
  };
}

test('strict parser recovers every assistant turn of the three fixtures from its encoding', () => {
  const all = assistantCompletions();
  assert.equal(all.length, 30, `found ${all.length} assistant turns`);
  for (const { where, message, text } of all) {
    const p = parseCompletion(text, 'thinking');
    const want = expected(message);
    assert.equal(p.role, 'assistant');
    assert.equal(p.content, want.content, where);
    assert.equal(p.reasoning_content, want.reasoning, where);
    assert.deepEqual(p.tool_calls.map((c) => ({ name: c.function.name, args: pyJsonLoads(c.function.arguments) })), want.calls, where);
    assert.ok(p.tool_calls.every((c) => c.type === 'function'));
    // Servers strip EOS; the parse must not change.
    assert.deepEqual(parseCompletion(text.slice(0, -E.length), 'thinking'), p, where);
  }
});

/** Feed `chunks`, check the events rebuild the final message, return it. */
function stream(chunks: string[], mode: ThinkingMode): ParsedMessage {
  const s = new CompletionStreamParser(mode);
  const events: StreamEvent[] = [];
  for (const c of chunks) events.push(...s.push(c));
  const end = s.finish();
  events.push(...end.events);
  const m = end.message;
  let reasoning = '';
  let content = '';
  const calls: { name: string; args: string; ended: boolean }[] = [];
  for (const e of events) {
    if (e.type === 'reasoning') reasoning += e.text;
    else if (e.type === 'content') content += e.text;
    else if (e.type === 'tool_call_start') {
      assert.equal(e.index, calls.length);
      calls.push({ name: e.name, args: '', ended: false });
    } else if (e.type === 'tool_call_arguments') {
      assert.ok(!calls[e.index]!.ended);
      calls[e.index]!.args += e.text;
    } else calls[e.index]!.ended = true;
    if (e.type === 'reasoning' || e.type === 'content') {
      assert.ok(e.text.length > 0);
      // Held-back markers never leak out as text.
      assert.ok(!e.text.includes('</think>') && !e.text.includes(E) && !e.text.includes(D), JSON.stringify(e.text));
    }
  }
  assert.equal(reasoning, m.reasoning_content);
  assert.equal(content, m.content);
  assert.deepEqual(calls.map((c) => ({ type: 'function', function: { name: c.name, arguments: c.args } })), m.tool_calls);
  assert.ok(calls.every((c) => c.ended));
  return m;
}

test('streaming parser at every 2-chunk split point of every fixture completion equals the strict parser', () => {
  let splits = 0;
  for (const { where, text } of assistantCompletions()) {
    const want = parseCompletion(text, 'thinking');
    assert.deepEqual(stream([text], 'thinking'), want, where);
    for (let k = 0; k <= text.length; k++) {
      const got = stream([text.slice(0, k), text.slice(k)], 'thinking');
      if (got.content !== want.content || got.reasoning_content !== want.reasoning_content || got.tool_calls.length !== want.tool_calls.length) {
        assert.deepEqual(got, want, `${where} split at ${k}`);
      }
      assert.deepEqual(got.tool_calls, want.tool_calls, `${where} split at ${k}`);
      splits++;
    }
  }
  assert.ok(splits > 39000, `${splits} split points`);
});

test('streaming parser: one character at a time and 3-chunk splits of the short fixture completions', () => {
  const short = assistantCompletions().filter((c) => c.where.startsWith('test_input.json'));
  for (const { where, text } of short) {
    const want = parseCompletion(text, 'thinking');
    assert.deepEqual(stream([...text], 'thinking'), want, `${where} char by char`);
    // Every (i, j) split in steps of 7 code units, which still crosses each marker at several offsets.
    for (let i = 0; i <= text.length; i += 7) {
      for (let j = i; j <= text.length; j += 7) assert.deepEqual(stream([text.slice(0, i), text.slice(i, j), text.slice(j)], 'thinking'), want, `${where} ${i}/${j}`);
    }
  }
});

const BAD: [string, ThinkingMode, ParseRule, number][] = [
  ['no end of thinking', 'thinking', 'missing-think-end', 18],
  [`r\n\n<${D}function_calls>\n</${D}function_calls>`, 'thinking', 'tool-calls-in-reasoning', 1],
  [`r</think>a${E}b`, 'thinking', 'text-after-eos', 29],
  [`r</think>a<think>b`, 'thinking', 'special-token-in-text', 10],
  [`r${E}x</think>a`, 'thinking', 'special-token-in-text', 1],
  [`a${D}b`, 'chat', 'special-token-in-text', 1],
  [`a\n\n<${D}function_calls>\n<${D}invoke name="f">\n</${D}invoke>\n</${D}function_calls>x`, 'chat', 'text-after-tool-calls', 89],
  [`a\n\n<${D}function_calls> \n<${D}invoke name="f">\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-tool-calls', 24],
  [`a\n\n<${D}function_calls>\n<${D}invoke nam="f">\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-invoke', 39],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="maybe">1</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 65],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">1</${D}parameter>\n<${D}parameter name="x" string="true">2</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'duplicate-parameter', 125],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">1</${D}parameter>X\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 107],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">1</${D}param`, 'chat', 'unterminated-tool-calls', 103],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n</${D}invoke>`, 'chat', 'unterminated-tool-calls', 64],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n</${D}invoke>\n</${D}function_calls>\n${E}`, 'chat', 'text-after-tool-calls', 88],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">1<\n\n/${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 65],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">1/${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 65],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true"/${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 65],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter  name="x" string="true">1</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`, 'chat', 'malformed-parameter', 65],
  [`\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="true">unterminated value`, 'chat', 'unterminated-tool-calls', 107],
];

test('malformed completions: strict and streaming (at every split point) fail with the same rule and offset', () => {
  for (const [text, mode, rule, offset] of BAD) {
    const check = (f: () => unknown, how: string) =>
      assert.throws(f, (e: unknown) => {
        assert.ok(e instanceof ChatParseError, `${how}: ${String(e)}`);
        assert.equal(e.rule, rule, `${how}: ${e.message}`);
        assert.equal(e.offset, offset, `${how}: ${e.message}`);
        assert.match(e.message, new RegExp(`^completion offset ${offset}: .*\\[${rule}\\]$`));
        return true;
      });
    check(() => parseCompletion(text, mode), `strict ${JSON.stringify(text)}`);
    for (let k = 0; k <= text.length; k++) check(() => stream([text.slice(0, k), text.slice(k)], mode), `stream split ${k} of ${JSON.stringify(text)}`);
  }
});

test('chat-mode completions, unusual but valid forms, and arguments built the official way', () => {
  assert.deepEqual(parseCompletion(`Hi there${E}`, 'chat'), { role: 'assistant', content: 'Hi there', reasoning_content: '', tool_calls: [] });
  assert.deepEqual(parseCompletion('', 'chat'), { role: 'assistant', content: '', reasoning_content: '', tool_calls: [] });
  assert.deepEqual(parseCompletion('</think>', 'thinking'), { role: 'assistant', content: '', reasoning_content: '', tool_calls: [] });
  const text = `plan</think>Let me look.\n\n<${D}function_calls>\n<${D}invoke name="search">\n` +
    `<${D}parameter name="q" string="true">a "quoted"\nline<b></${D}parameter>\n` +
    `<${D}parameter name="n" string="false">[1,2]</${D}parameter>\n</${D}invoke>\n` +
    `<${D}invoke name="noargs">\n</${D}invoke>\n</${D}function_calls>${E}`;
  const p = parseCompletion(text, 'thinking');
  assert.deepEqual(p, {
    role: 'assistant',
    content: 'Let me look.',
    reasoning_content: 'plan',
    tool_calls: [
      // non-string values are copied raw, as the official decoder does
      { type: 'function', function: { name: 'search', arguments: '{"q": "a \\"quoted\\"\\nline<b>", "n": [1,2]}' } },
      { type: 'function', function: { name: 'noargs', arguments: '{}' } },
    ],
  });
  for (let k = 0; k <= text.length; k++) assert.deepEqual(stream([text.slice(0, k), text.slice(k)], 'thinking'), p);
  // Python's `$` also matches before one final newline, so the official header regex accepts an extra blank line.
  assert.equal(parseCompletion(`\n\n<${D}function_calls>\n<${D}invoke name="f">\n\n</${D}invoke>\n</${D}function_calls>`, 'chat').tool_calls[0]!.function.name, 'f');
  // A truncated marker at the very end is plain content, as in the official parser.
  assert.equal(parseCompletion('x\n\n<｜DSM', 'chat').content, 'x\n\n<｜DSM');
  assert.equal(stream(['x\n\n<｜', 'DSM'], 'chat').content, 'x\n\n<｜DSM');
});

test('the streaming parser refuses use after an error or after finish', () => {
  const s = new CompletionStreamParser('chat');
  assert.throws(() => s.push(`a${E}b`), ChatParseError);
  assert.throws(() => s.push('more'), ChatParseError);
  const t = new CompletionStreamParser('chat');
  t.push('a');
  t.finish();
  assert.throws(() => t.push('b'), /after finish/);
});

test('parameter values stream as they arrive, and the official value/header edge cases hold', () => {
  const s = new CompletionStreamParser('chat');
  const head = `\n\n<${D}function_calls>\n<${D}invoke name="write">\n<${D}parameter name="text" string="true">line "one"\n`;
  const ev = s.push(head);
  assert.deepEqual(ev.filter((e) => e.type === 'tool_call_arguments').map((e) => (e as { text: string }).text), ['{"text": "', 'line \\"one\\"\\n']);
  // A possible end marker is held back, not streamed as value text.
  assert.deepEqual(s.push('two<'), [{ type: 'tool_call_arguments', index: 0, text: 'two' }]);
  assert.deepEqual(s.push('3'), [{ type: 'tool_call_arguments', index: 0, text: '<3' }]);
  const rest = `</${D}parameter>\n<${D}parameter name="n" string="false">[1, 2]</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;
  s.push(rest);
  const { message } = s.finish();
  assert.deepEqual(message.tool_calls, [{ type: 'function', function: { name: 'write', arguments: '{"text": "line \\"one\\"\\ntwo<3", "n": [1, 2]}' } }]);
  assert.deepEqual(message, parseCompletion(head + 'two<3' + rest, 'chat'));

  // `<\n` before /｜DSML｜parameter is accepted (Python's `$` matches before a final newline); a name may
  // contain `" string="` text when no true/false follows it (the lazy regex moves on).
  const odd = `\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="a" string="maybe" string="true">v<\n/${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;
  const want = parseCompletion(odd, 'chat');
  assert.equal(want.tool_calls[0]!.function.arguments, '{"a\\" string=\\"maybe": "v"}');
  for (let k = 0; k <= odd.length; k++) assert.deepEqual(stream([odd.slice(0, k), odd.slice(k)], 'chat'), want, `split ${k}`);
});

test('a string="false" value that is not JSON is pasted raw, as the official decoder does, and warned about', () => {
  const p = (name: string, v: string) => `<${D}parameter name="${name}" string="false">${v}</${D}parameter>`;
  const text = `\n\n<${D}function_calls>\n<${D}invoke name="f">\n${p('n', '[1, 2]')}\n</${D}invoke>\n` +
    `<${D}invoke name="g">\n${p('a', 'not json')}\n${p('b', '1, "x": 2')}\n${p('c', ' 3 ')}\n</${D}invoke>\n</${D}function_calls>`;
  const r = parseCompletionChecked(text, 'chat');
  assert.deepEqual(r.message, parseCompletion(text, 'chat'));
  assert.equal(r.message.tool_calls[1]!.function.arguments, '{"a": not json, "b": 1, "x": 2, "c":  3 }');
  assert.deepEqual(r.warnings, [
    { tool_call: 1, name: 'g', parameter: 'a', problem: 'the string="false" value "not json" is not valid JSON: expected a value at line 1, offset 0' },
    { tool_call: 1, name: 'g', parameter: 'b', problem: 'the string="false" value "1, \\"x\\": 2" is not valid JSON: extra data after the JSON value at line 1, offset 1' },
  ]);
  const long = parseCompletionChecked(`\n\n<${D}function_calls>\n<${D}invoke name="f">\n${p('v', 'x'.repeat(200))}\n</${D}invoke>\n</${D}function_calls>`, 'chat');
  assert.match(long.warnings[0]!.problem, /^the string="false" value "x{80}…" is not valid JSON/);
});
