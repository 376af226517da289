// ChatOutput (exact streaming parser with lenient recovery), fed completions in random chunkings: the
// concatenated deltas equal the final message for well-formed output (thinking, content, several tool
// calls), and for malformed output the final message comes from the lenient parser with no markup in
// content or reasoning, and the streamed deltas extend to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatOutput, type ChatDelta } from '../../src/server/chat-output.js';

const D = '｜DSML｜';
const call = (name: string, params: [string, string, boolean][]) =>
  `<${D}invoke name="${name}">\n${params.map(([k, v, s]) => `<${D}parameter name="${k}" string="${s}">${v}</${D}parameter>`).join('\n')}\n</${D}invoke>`;
const block = (...calls: string[]) => `\n\n<${D}function_calls>\n${calls.join('\n')}\n</${D}function_calls>`;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function feed(out: ChatOutput, text: string, r: () => number): ChatDelta[] {
  const deltas: ChatDelta[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(r() * 6);
    deltas.push(...out.push(text.slice(i, i + n)));
    i += n;
  }
  return deltas;
}

function collect(deltas: ChatDelta[]) {
  const c = { reasoning: '', content: '', calls: [] as { id: string; name: string; args: string }[] };
  for (const d of deltas) {
    if (d.type === 'reasoning') c.reasoning += d.text;
    else if (d.type === 'content') c.content += d.text;
    else if (d.type === 'tool_call_start') c.calls[d.index] = { id: d.id, name: d.name, args: '' };
    else c.calls[d.index]!.args += d.text;
  }
  return c;
}

const WELL_FORMED: [string, 'thinking' | 'chat'][] = [
  ['Let me think about 你好.</think>The answer is 42.', 'thinking'],
  ['Plain answer with <tags> and | pipes.', 'chat'],
  ['x < y, <b>bold</b>, and a trailing <', 'chat'],
  ['reason with a < sign</think>answer', 'thinking'],
  ['Checking.</think>Sure.' + block(call('get_weather', [['city', 'Paris "north"', true], ['days', '3', false]]), call('get_time', [])), 'thinking'],
  ['' + block(call('f', [['x', '[1, 2]', false], ['y', 'multi\nline', true]])), 'chat'],
];

test('well-formed completions in random chunkings: streamed deltas = the final message, tool-call ids agree', () => {
  const r = rng(3);
  for (const [text, mode] of WELL_FORMED) {
    for (let trial = 0; trial < 30; trial++) {
      const out = new ChatOutput(mode, []);
      const deltas = feed(out, text, r);
      const fin = out.finish();
      deltas.push(...fin.deltas);
      const got = collect(deltas);
      assert.equal(fin.result.recovered, false);
      assert.equal(got.reasoning, fin.result.reasoning);
      assert.equal(got.content, fin.result.content);
      assert.deepEqual(got.calls.map((c) => [c.id, c.name, c.args]), fin.result.toolCalls.map((c) => [c.id, c.name, c.arguments]));
      for (const c of fin.result.toolCalls) JSON.parse(c.arguments);
    }
  }
});

const MALFORMED: [string, 'thinking' | 'chat'][] = [
  [`oops <${D}invoke name="f">\n<${D}parameter name="a" string="true">x</${D}parameter>\n</${D}invoke>`, 'chat'],
  [`no end of thinking <｜User｜> <think> ${block(call('g', [['n', '1', false]]))}`, 'thinking'],
  [`text <function_calls><invoke name="h"><parameter name="q">v</parameter></invoke></function_calls>`, 'chat'],
  [`cut off ${block(call('k', [['z', '2', false]])).slice(0, 60)}`, 'chat'],
  [`</think>done<｜end▁of▁sentence｜>trailing`, 'thinking'],
  [`Sure, here it comes: <｜｜DSML｜｜function_calls>\n<｜｜DSML｜｜invoke name="w">\n</｜｜DSML｜｜invoke>\n</｜｜DSML｜｜function_calls>`, 'chat'],
];

test('malformed completions: the lenient reading, no markup in content or reasoning, deltas extend to it', () => {
  const r = rng(5);
  for (const [text, mode] of MALFORMED) {
    for (let trial = 0; trial < 20; trial++) {
      const out = new ChatOutput(mode, []);
      const deltas = feed(out, text, r);
      const fin = out.finish();
      deltas.push(...fin.deltas);
      const got = collect(deltas);
      assert.equal(fin.result.recovered, true, text);
      for (const s of [fin.result.content, fin.result.reasoning, got.content, got.reasoning]) {
        assert.ok(!/DSML|<\/?(function_calls|invoke|parameter)\b|<think>|<\/think>/.test(s), `${JSON.stringify(text)} → ${JSON.stringify(s)}`);
      }
      assert.equal(got.content, fin.result.content, text);
      assert.equal(got.reasoning, fin.result.reasoning, text);
      assert.deepEqual(got.calls.map((c) => c.name), fin.result.toolCalls.map((c) => c.name));
    }
  }
});
