import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessages } from '../../src/chat/encode.js';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { ChatEncodeError, type EncodeRule } from '../../src/chat/errors.js';
import type { ChatMessage, ToolDefinition } from '../../src/chat/message.js';
import { PyFloat, pyJsonLoads } from '../../src/chat/pyjson.js';
import { loadFixtures } from './fixtures.js';

const B = '<｜begin▁of▁sentence｜>';
const E = '<｜end▁of▁sentence｜>';

test('the three official fixtures encode byte-exact (thinking, drop_thinking, bos)', () => {
  const fixtures = loadFixtures();
  assert.equal(fixtures.length, 3);
  for (const f of fixtures) {
    const got = encodeMessages(f.messages, { mode: 'thinking', dropThinking: true, bos: true });
    if (got !== f.gold) {
      let k = 0;
      while (got[k] === f.gold[k]) k++;
      assert.fail(`${f.name}: prompt differs from gold at offset ${k}: ${JSON.stringify(got.slice(k, k + 60))} vs ${JSON.stringify(f.gold.slice(k, k + 60))}`);
    }
  }
});

test('official round trip: messages[4] (tool calls) encoded in context parses back to itself minus ids', () => {
  const msgs = loadFixtures()[0]!.messages;
  const prompt = encodeMessages([msgs[4]!], { mode: 'thinking', context: msgs.slice(0, 4) });
  const parsed = parseCompletion(prompt, 'thinking');
  const original = msgs[4] as Extract<ChatMessage, { role: 'assistant' }>;
  const { content: _c, ...parsedNoContent } = parsed;
  assert.deepEqual(parsedNoContent, {
    role: 'assistant',
    reasoning_content: original.reasoning_content,
    tool_calls: original.tool_calls!.map(({ id: _id, ...rest }) => rest),
  });
});

test('official round trip: messages[-6] (reasoning + content) parses back to itself', () => {
  const msgs = loadFixtures()[0]!.messages;
  const i = msgs.length - 6;
  const prompt = encodeMessages([msgs[i]!], { mode: 'thinking', context: msgs.slice(0, i) });
  const { tool_calls: _t, ...parsed } = parseCompletion(prompt, 'thinking');
  assert.deepEqual(parsed, msgs[i]);
});

test('incremental encoding with context is the suffix of the full encoding, for every split point', () => {
  for (const f of loadFixtures()) {
    const full = encodeMessages(f.messages, { mode: 'thinking' });
    for (let k = 0; k <= f.messages.length; k++) {
      const inc = encodeMessages(f.messages.slice(k), { mode: 'thinking', context: f.messages.slice(0, k) });
      assert.ok(full.endsWith(inc), `${f.name} split ${k}`);
      if (k > 0) assert.ok(!inc.startsWith(B), 'no BOS when context is given');
      // Without a new user turn in the suffix, the context renders the same on its own.
      if (!f.messages.slice(k).some((m) => m.role === 'user' || m.role === 'developer')) {
        assert.equal(encodeMessages(f.messages.slice(0, k), { mode: 'thinking' }) + inc, full, `${f.name} split ${k}`);
      }
    }
  }
});

test('drop-thinking cannot change the prompt: reasoning is only rendered after the last user turn', () => {
  for (const f of loadFixtures()) {
    assert.equal(encodeMessages(f.messages, { mode: 'thinking', dropThinking: false }), f.gold, f.name);
  }
  // ... and the dropped reasoning of the first turn really is absent from the gold.
  const msgs = loadFixtures()[0]!.messages as { reasoning_content?: string }[];
  assert.ok(!loadFixtures()[0]!.gold.includes(msgs[2]!.reasoning_content!));
  assert.ok(loadFixtures()[0]!.gold.includes(msgs[9]!.reasoning_content!));
});

test('chat mode: README example and </think> after every user turn and tool block', () => {
  const msgs: ChatMessage[] = [
    { role: 'user', content: 'hello' },
    { role: 'assistant', content: 'Hello! I am DeepSeek.', reasoning_content: 'thinking...' },
    { role: 'user', content: '1+1=?' },
  ];
  assert.equal(encodeMessages(msgs, { mode: 'thinking' }), `${B}<｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek.${E}<｜User｜>1+1=?<｜Assistant｜><think>`);
  assert.equal(encodeMessages(msgs, { mode: 'chat' }), `${B}<｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek.${E}<｜User｜>1+1=?<｜Assistant｜></think>`);
  const withTools: ChatMessage[] = [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: null, reasoning_content: 'r', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', content: 'out' },
  ];
  const tail = `<｜User｜>q<｜Assistant｜>`;
  assert.equal(
    encodeMessages(withTools, { mode: 'chat' }),
    `${B}${tail}</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls>${E}\n\n<function_results>\n<result>out</result>\n</function_results>\n\n</think>`,
  );
  assert.equal(
    encodeMessages(withTools, { mode: 'thinking' }),
    `${B}${tail}<think>r</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls>${E}\n\n<function_results>\n<result>out</result>\n</function_results>\n\n<think>`,
  );
});

test('parameters: strings raw with string="true", other values as Python JSON; object or JSON-text arguments', () => {
  const call = (args: string | Record<string, unknown>): ChatMessage[] => [
    { role: 'user', content: 'u' },
    { role: 'assistant', tool_calls: [{ function: { name: 'g', arguments: args } }] },
  ];
  const expectParams = '<｜DSML｜parameter name="s" string="true">a "b" \\n中</｜DSML｜parameter>\n' +
    '<｜DSML｜parameter name="f" string="false">1.0</｜DSML｜parameter>\n' +
    '<｜DSML｜parameter name="e" string="false">1e-05</｜DSML｜parameter>\n' +
    '<｜DSML｜parameter name="o" string="false">{"k": [1, true, null], "z": "é"}</｜DSML｜parameter>';
  const fromText = encodeMessages(call('{"s": "a \\"b\\" \\\\n中", "f": 1.0, "e": 0.00001, "o": {"k": [1, true, null], "z": "é"}}'), { mode: 'chat' });
  assert.ok(fromText.includes(expectParams), fromText);
  const fromObject = encodeMessages(call({ s: 'a "b" \\n中', f: new PyFloat(1), e: 1e-5, o: { k: [1, true, null], z: 'é' } }), { mode: 'chat' });
  assert.equal(fromObject, fromText);
});

test('tools and response_format on system and developer messages', () => {
  const tools: ToolDefinition[] = [{ type: 'function', function: { name: 't', description: 'd', parameters: { type: 'object', properties: { x: { type: 'number', minimum: new PyFloat(0) } } } } }];
  const schema = { type: 'json_object', b: [1, 2] };
  const sys = encodeMessages([{ role: 'system', content: 'S', tools, response_format: schema }, { role: 'user', content: 'u' }], { mode: 'thinking' });
  assert.ok(sys.startsWith(`${B}S\n\n## Tools\n\nYou have access`));
  assert.ok(sys.includes('\n<functions>\n{"name": "t", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "number", "minimum": 0.0}}}}\n</functions>\n'));
  assert.ok(sys.endsWith('</functions>\n\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n{"type": "json_object", "b": [1, 2]}<｜User｜>u<｜Assistant｜><think>'));
  const dev = encodeMessages([{ role: 'developer', content: 'D', response_format: schema }], { mode: 'chat' });
  assert.equal(dev, `${B}<｜User｜>\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n{"type": "json_object", "b": [1, 2]}\n\n# The user's message is: D<｜Assistant｜></think>`);
  // Empty tools / response_format are skipped, as Python's truthiness does.
  assert.equal(encodeMessages([{ role: 'system', content: 'S', tools: [], response_format: {} }], { mode: 'chat' }), `${B}S`);
});

test('OpenAI-style input: reasoning alias, text parts, null content, tool_call ids ignored', () => {
  const base: ChatMessage[] = [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }];
  const viaAlias = encodeMessages([...base, { role: 'assistant', content: 'c', reasoning: 'R' }], { mode: 'thinking' });
  const viaField = encodeMessages([...base, { role: 'assistant', content: 'c', reasoning_content: 'R' }], { mode: 'thinking' });
  assert.equal(viaAlias, `${B}<｜User｜>ab<｜Assistant｜><think>R</think>c${E}`);
  assert.equal(viaField, viaAlias);
  // Python: msg.get("reasoning") or msg.get("reasoning_content")
  assert.equal(encodeMessages([...base, { role: 'assistant', content: 'c', reasoning: '', reasoning_content: 'RC' }], { mode: 'thinking' }), `${B}<｜User｜>ab<｜Assistant｜><think>RC</think>c${E}`);
  assert.equal(encodeMessages([...base, { role: 'assistant', content: 'c', reasoning: 'R2', reasoning_content: 'RC' }], { mode: 'thinking' }), `${B}<｜User｜>ab<｜Assistant｜><think>R2</think>c${E}`);
  assert.equal(encodeMessages([{ role: 'system', content: null }], { mode: 'chat', bos: false }), '');
});

function expectEncodeError(msgs: unknown[], rule: EncodeRule, index: number, mode: 'thinking' | 'chat' = 'thinking', context: unknown[] = []): void {
  assert.throws(
    () => encodeMessages(msgs as ChatMessage[], { mode, context: context as ChatMessage[] }),
    (e: unknown) => {
      assert.ok(e instanceof ChatEncodeError, String(e));
      assert.equal(e.rule, rule, e.message);
      assert.equal(e.index, index, e.message);
      assert.match(e.message, new RegExp(`^message ${index}: .*\\[${rule}\\]$`));
      return true;
    },
  );
}

test('invalid conversations raise ChatEncodeError naming the message index and the rule', () => {
  const u = { role: 'user', content: 'u' };
  const call = (n: number) => ({ role: 'assistant', reasoning_content: 'r', tool_calls: Array.from({ length: n }, () => ({ function: { name: 'f', arguments: '{}' } })) });
  const tool = { role: 'tool', content: 'x' };
  expectEncodeError([u, tool], 'tool-result-without-call', 1);
  expectEncodeError([tool], 'tool-result-without-call', 0);
  expectEncodeError([u, { role: 'assistant', content: 'no calls', reasoning_content: 'r' }, tool], 'tool-result-without-call', 2);
  expectEncodeError([u, call(1), tool, tool], 'too-many-tool-results', 3);
  expectEncodeError([u, call(2), tool, u], 'missing-tool-results', 3);
  expectEncodeError([u, { role: 'assistant', content: 'answer only' }], 'missing-reasoning', 1);
  expectEncodeError([{ role: 'system', content: 's' }, { role: 'assistant', content: 'answer only' }], 'missing-reasoning', 1);
  expectEncodeError([{ role: 'assistant', content: 'answer' }], 'missing-reasoning', 1, 'thinking', [u]);
  expectEncodeError([u, { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: '[1]' } }] }], 'invalid-tool-arguments', 1);
  expectEncodeError([u, { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: '{"a": ' } }] }], 'invalid-tool-arguments', 1);
  expectEncodeError([{ role: 'developer', content: '' }], 'empty-developer-content', 0);
  expectEncodeError([u, { role: 'robot', content: 'x' }], 'invalid-message', 1);
  expectEncodeError([{ role: 'user' }], 'invalid-message', 0);
  expectEncodeError([u, { role: 'assistant', tool_calls: [{ function: { arguments: '{}' } }] }], 'invalid-message', 1);
  expectEncodeError([{ role: 'user', content: 'u', tools: [{ type: 'function', function: { name: 'f' } }] }], 'misplaced-field', 0);
  // In chat mode an answer without reasoning is fine.
  assert.equal(encodeMessages([u, { role: 'assistant', content: 'a' }] as ChatMessage[], { mode: 'chat' }), `${B}<｜User｜>u<｜Assistant｜></think>a${E}`);
  // A run of results may stop early at the end of the conversation (the agent is still collecting them).
  assert.ok(encodeMessages([u, call(2), tool] as ChatMessage[], { mode: 'thinking' }).endsWith('\n\n<function_results>\n<result>x</result>'));
});

test('the fixture JSON loaded by pyJsonLoads and by JSON.parse encode alike (no integral floats in it)', () => {
  // Guards the loader choice: the fixtures do not depend on float-vs-int, so both loaders must agree.
  const f = loadFixtures()[1]!;
  const viaJs = JSON.parse(JSON.stringify(f.messages)) as ChatMessage[];
  assert.equal(encodeMessages(viaJs, { mode: 'thinking' }), f.gold);
  assert.ok(pyJsonLoads('1.0') instanceof PyFloat);
});
