// Property test: random assistant turns (reasoning, content, tool calls with every kind of argument value)
// encoded in a random conversation and parsed back by all three parsers give the original turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessages } from '../../src/chat/encode.js';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { parseCompletionLenient } from '../../src/chat/parse-lenient.js';
import { CompletionStreamParser } from '../../src/chat/parse-stream.js';
import type { AssistantMessage, ChatMessage, ThinkingMode } from '../../src/chat/message.js';
import { PyFloat, pyJsonDumps, pyJsonLoads, type PyJson } from '../../src/chat/pyjson.js';
import { rng } from './rng.js';

// Characters that stress the format (angle brackets, quotes, newlines, braces, non-BMP) but cannot spell
// a special token or a DSML marker.
const POOL = ['a', 'b', 'Z', ' ', '\n', '\n\n', '<', '>', '/', '"', '\\', '{', '}', '=', '中', 'é', '😀', '\t'];

function run(r: () => number): void {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const text = (max: number) => Array.from({ length: Math.floor(r() * max) }, () => pick(POOL)).join('');
  const value = (depth: number): PyJson => {
    const k = r();
    if (k < 0.25) return text(12);
    if (k < 0.35) return Math.floor((r() - 0.5) * 1e6);
    if (k < 0.45) return new PyFloat(Math.floor(r() * 100));
    if (k < 0.5) return (r() - 0.5) * 10 ** Math.floor(r() * 30 - 15);
    if (k < 0.55) return 10n ** 25n + BigInt(Math.floor(r() * 1000));
    if (k < 0.62) return r() < 0.5;
    if (k < 0.67) return null;
    if (k < 0.8 && depth > 0) return Array.from({ length: Math.floor(r() * 4) }, () => value(depth - 1));
    if (depth > 0) return Object.fromEntries(Array.from({ length: Math.floor(r() * 4) }, (_, i) => [`k${i}${text(3)}`, value(depth - 1)]));
    return text(5);
  };
  const mode: ThinkingMode = r() < 0.7 ? 'thinking' : 'chat';
  const calls = Array.from({ length: r() < 0.5 ? 0 : 1 + Math.floor(r() * 3) }, (_, i) => {
    const args: Record<string, PyJson> = {};
    for (let j = Math.floor(r() * 4); j > 0; j--) args[`p_${j}${pick(['', 'x', 'long_name'])}`] = value(2);
    return { id: `call_${i}`, type: 'function' as const, function: { name: pick(['search', 'run_code', 'f']), arguments: r() < 0.5 ? pyJsonDumps(args) : args } };
  });
  const reasoning = mode === 'thinking' && (calls.length === 0 || r() < 0.7) ? 'r' + text(40) : '';
  const turn: AssistantMessage = { role: 'assistant', content: r() < 0.8 ? text(40) : null, reasoning_content: reasoning, tool_calls: calls };
  const context: ChatMessage[] = [{ role: 'system', content: text(10) }, { role: 'user', content: text(20) }];
  const completion = encodeMessages([turn], { mode, context });

  const want = {
    role: 'assistant',
    content: turn.content ?? '',
    reasoning_content: mode === 'thinking' ? reasoning : '',
    tool_calls: calls.map((c) => ({ name: c.function.name, args: typeof c.function.arguments === 'string' ? pyJsonLoads(c.function.arguments) : c.function.arguments })),
  };
  const norm = (m: ReturnType<typeof parseCompletion>) => ({ ...m, tool_calls: m.tool_calls.map((c) => ({ name: c.function.name, args: pyJsonLoads(c.function.arguments) })) });
  const strict = parseCompletion(completion, mode);
  assert.deepEqual(norm(strict), want, JSON.stringify(completion));
  assert.deepEqual(parseCompletionLenient(completion, mode).message, strict, JSON.stringify(completion));
  const cuts = [Math.floor(r() * completion.length), Math.floor(r() * completion.length)].sort((a, b) => a - b);
  const s = new CompletionStreamParser(mode);
  s.push(completion.slice(0, cuts[0]));
  s.push(completion.slice(cuts[0], cuts[1]));
  s.push(completion.slice(cuts[1]));
  assert.deepEqual(s.finish().message, strict, `${JSON.stringify(completion)} cut at ${cuts}`);
}

test('1500 random assistant turns round-trip through encode and every parser', () => {
  const r = rng(7);
  for (let i = 0; i < 1500; i++) run(r);
});
