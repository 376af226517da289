// The generators: arithmetic reasoning that is actually right, held-out problems that never appear,
// and chat documents whose every assistant turn re-parses with the strict parser from the exact text
// the model trains on (encoder compatibility).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessages } from '../../src/chat/encode.js';
import type { ChatMessage, ThinkingMode } from '../../src/chat/message.js';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { pyJsonLoads } from '../../src/chat/pyjson.js';
import { arithmeticConversation, explain, explainAdd, explainDiv, explainMul, explainSub, heldOutProblem, isHeldOut, randomProblem, arithmeticSource } from '../../src/data/synthetic/arithmetic.js';
import { convert, toolChatSource, toolConversation, weather } from '../../src/data/synthetic/tool-chat.js';
import { Rng } from '../../src/envs/rng.js';

test('worked arithmetic ends in the right result, and every intermediate "x op y = z" line is true', () => {
  const rng = new Rng(5);
  // two-operand equations only (a chain "200 + 10 + 8 = 218" is not read as "10 + 8 = 218")
  const eqRe = /(?<![+−×÷] |\d)(-?\d+) ([+−×÷]) (\d+) = (-?\d+)/g;
  const ops: Record<string, (a: number, b: number) => number> = { '+': (a, b) => a + b, '−': (a, b) => a - b, '×': (a, b) => a * b, '÷': (a, b) => a / b };
  let checked = 0;
  for (let i = 0; i < 2000; i++) {
    const p = randomProblem(rng);
    const text = explain(p);
    const last = text.trim().split('\n').at(-1)!;
    assert.ok(last.endsWith(`= ${p.answer}.`), `${p.a} ${p.op} ${p.b}: ${last}`);
    for (const m of text.matchAll(eqRe)) {
      const [, a, op, b, z] = m;
      const num = Number;
      assert.equal(ops[op!]!(num(a!), num(b!)), num(z!), `${p.a} ${p.op} ${p.b}: "${m[0]}" in\n${text}`);
      checked++;
    }
  }
  assert.ok(checked > 6000, `only ${checked} equations checked`);
  assert.match(explainAdd(38, 46), /ones: 8 \+ 6 = 14, write 4 and carry 1\.\ntens: 3 \+ 4 \+ 1 \(carried\) = 8\.\nSo 38 \+ 46 = 84\./);
  assert.match(explainSub(52, 38), /12 − 8 = 4/);
  assert.match(explainSub(3, 10), /So 10 − 3 = 7, and 3 − 10 = -7\./);
  assert.match(explainMul(47, 36), /47 × 30 = 1410\n47 × 6 = 282\nAdd the parts: 1410 \+ 282 = 1692/);
  assert.match(explainDiv(1692, 36), /36 × 40 = 1440; 1692 − 1440 = 252\n36 × 7 = 252; 252 − 252 = 0/);
});

test('held-out problems are about 5%, never generated, and heldOutProblem yields them', () => {
  const rng = new Rng(9);
  for (let i = 0; i < 20000; i++) assert.ok(!isHeldOut(randomProblem(rng)));
  let held = 0;
  for (let a = 10; a < 100; a++) for (let b = 10; b < 100; b++) if (isHeldOut({ a, b, op: '+' })) held++;
  assert.ok(held > 8100 * 0.03 && held < 8100 * 0.07, `${held} of 8100`);
  const seen = new Set<string>();
  for (let n = 0; n < 50; n++) {
    const p = heldOutProblem(n);
    assert.ok(isHeldOut(p) && p.answer === p.a + p.b);
    seen.add(`${p.a}+${p.b}`);
  }
  assert.equal(seen.size, 50);
  assert.throws(() => heldOutProblem(held), RangeError);
});

/** Every assistant turn after the last user message, as the completion the model must produce. */
function checkReparse(messages: ChatMessage[], mode: ThinkingMode, where: string): number {
  const full = encodeMessages(messages, { mode });
  let lastUser = -1;
  messages.forEach((m, i) => (m.role === 'user' ? (lastUser = i) : 0));
  let checked = 0;
  for (let i = lastUser + 1; i < messages.length; i++) {
    const m = messages[i]!;
    if (m.role !== 'assistant') continue;
    const prompt = encodeMessages(messages.slice(0, i), { mode });
    const upTo = encodeMessages(messages.slice(0, i + 1), { mode });
    assert.ok(full.startsWith(upTo) && upTo.startsWith(prompt), `${where}: prefix property at message ${i}`);
    const parsed = parseCompletion(upTo.slice(prompt.length), mode);
    assert.equal(parsed.content, m.content ?? '', `${where} message ${i}`);
    if (mode === 'thinking') assert.equal(parsed.reasoning_content, m.reasoning_content ?? '', `${where} message ${i}`);
    const calls = m.tool_calls ?? [];
    assert.equal(parsed.tool_calls.length, calls.length, `${where} message ${i}`);
    parsed.tool_calls.forEach((c, k) => {
      assert.equal(c.function.name, calls[k]!.function.name);
      assert.deepEqual(JSON.parse(JSON.stringify(pyJsonLoads(c.function.arguments))), calls[k]!.function.arguments);
    });
    checked++;
  }
  return checked;
}

test('tool-chat conversations: every assistant turn re-parses to the message it was encoded from', () => {
  const rng = new Rng(3);
  let turns = 0;
  let calls = 0;
  for (let i = 0; i < 300; i++) {
    const { messages, mode } = toolConversation(rng);
    turns += checkReparse(messages, mode, `conversation ${i}`);
    calls += messages.filter((m) => m.role === 'tool').length;
  }
  assert.ok(turns > 300 && calls > 200, `${turns} turns, ${calls} tool results`);
});

test('tool results agree with the answers: weather is a function of (city, date), conversions are exact', () => {
  assert.deepEqual(weather('Oslo', '2026-01-02'), weather('Oslo', '2026-01-02'));
  const w = weather('Oslo', '2026-01-02');
  assert.ok(w.low_c < w.high_c);
  assert.equal(convert(100, 'C', 'F'), 212);
  assert.equal(convert(1, 'mile', 'km'), 1.61);
  assert.equal(convert(10, 'kg', 'lb'), 22.05);
});

test('arithmetic conversations re-parse, and the sources are deterministic per seed within budget', async () => {
  const rng = new Rng(4);
  for (let i = 0; i < 200; i++) {
    const { messages, mode } = arithmeticConversation(rng, 1 + (i % 3));
    checkReparse(messages, mode, `arithmetic ${i}`);
  }
  for (const src of [arithmeticSource, toolChatSource]) {
    const take = async (seed: number) => {
      const out: string[] = [];
      for await (const d of src.documents({ rng: new Rng(seed), budgetBytes: 20_000, log: () => {} })) out.push(d.text);
      return out;
    };
    const a = await take(1);
    assert.deepEqual(a, await take(1));
    assert.notDeepEqual(a, await take(2));
    const bytes = a.reduce((s, t) => s + Buffer.byteLength(t), 0);
    assert.ok(bytes >= 20_000 && bytes < 40_000, `${src.name}: ${bytes} bytes for a 20000 budget`);
  }
});
