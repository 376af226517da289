// Property test: random assistant turns (reasoning, content, tool calls with every kind of argument value)
// encoded in a random conversation and parsed back by all three parsers give the original turn. The
// lenient parser must give exactly the strict result on every such text, with no repairs: also when EOS
// is stripped, when text looks like the start of markup (`a <| b`, `<｜DSM`, `‹‖`), when whitespace sits
// next to the tool-call block, and when a `string="false"` value is not JSON (then both warn alike).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessages } from '../../src/chat/encode.js';
import { parseCompletionChecked } from '../../src/chat/parse-strict.js';
import { parseCompletionLenient } from '../../src/chat/parse-lenient.js';
import { CompletionStreamParser } from '../../src/chat/parse-stream.js';
import type { AssistantMessage, ChatMessage, ParsedMessage, ThinkingMode } from '../../src/chat/message.js';
import { PyFloat, pyJsonDumps, pyJsonLoads, type PyJson } from '../../src/chat/pyjson.js';
import { EOS, DSML } from '../../src/chat/tokens.js';
import { rng } from './rng.js';

// Characters that stress the format (angle brackets, quotes, newlines, braces, non-BMP, bars and
// brackets that markers are made of, beginnings of special tokens) but cannot spell a special token or a
// DSML marker (no piece continues `<｜DSM` with `L`, `<｜end▁of` with `▁sentence`, `<thi` with `nk>`).
const POOL = ['a', 'b', 'Z', ' ', '\n', '\n\n', '<', '>', '/', '"', '\\', '{', '}', '=', '中', 'é', '😀', '\t',
  '|', '｜', '‖', '‹', '<|', '<｜', '‹｜', '‹‖', '<‖', '< |', '<｜DSM', '<｜end▁of', '<thi', 'Sure, let me check! '];
/** `string="false"` values that are not JSON; the official decoder pastes them raw into `arguments`. */
const NOT_JSON = ['not json', 'True', 'None', '{"a": 1', '1, "b": 2', '', "'x'", '[1,]'];

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
  // Sometimes the model writes a string="false" value that is not JSON into one call: the strict parser
  // accepts it as the official one does, and both parsers warn about it. A placeholder number is encoded
  // and then replaced by the bad text.
  const bad = r() < 0.2 ? { call: Math.floor(r() * 3), text: pick(NOT_JSON) } : undefined;
  const calls = Array.from({ length: r() < 0.5 ? 0 : 1 + Math.floor(r() * 3) }, (_, i) => {
    const args: Record<string, PyJson> = {};
    for (let j = Math.floor(r() * 4); j > 0; j--) args[`p_${j}${pick(['', 'x', 'long_name'])}`] = value(2);
    if (bad?.call === i) args.bad_param = 987654321;
    return { id: `call_${i}`, type: 'function' as const, function: { name: pick(['search', 'run_code', 'f']), arguments: r() < 0.5 ? pyJsonDumps(args) : args } };
  });
  const reasoning = mode === 'thinking' && (calls.length === 0 || r() < 0.7) ? 'r' + text(40) : '';
  const turn: AssistantMessage = { role: 'assistant', content: r() < 0.8 ? text(40) : null, reasoning_content: reasoning, tool_calls: calls };
  const context: ChatMessage[] = [{ role: 'system', content: text(10) }, { role: 'user', content: text(20) }];
  let completion = encodeMessages([turn], { mode, context });
  if (r() < 0.3) completion = completion.slice(0, -EOS.length);
  const badAt = bad && bad.call < calls.length ? bad.call : -1;
  if (badAt >= 0) completion = completion.replace('name="bad_param" string="false">987654321<', `name="bad_param" string="false">${bad!.text}<`);
  const where = JSON.stringify(completion);

  const want = {
    role: 'assistant',
    content: turn.content ?? '',
    reasoning_content: mode === 'thinking' ? reasoning : '',
    tool_calls: calls.map((c) => ({ name: c.function.name, args: typeof c.function.arguments === 'string' ? pyJsonLoads(c.function.arguments) : c.function.arguments })),
  };
  const norm = (m: ParsedMessage) => ({ ...m, tool_calls: m.tool_calls.map((c, i) => ({ name: c.function.name, args: i === badAt ? want.tool_calls[i]!.args : pyJsonLoads(c.function.arguments) })) });
  const { message: strict, warnings } = parseCompletionChecked(completion, mode);
  assert.deepEqual(norm(strict), want, where);
  const lenient = parseCompletionLenient(completion, mode);
  if (badAt < 0) {
    assert.deepEqual(warnings, [], where);
    assert.deepEqual(lenient, { message: strict, errors: [], repairs: [], warnings: [] }, where);
  } else {
    // Pasted raw as the official decoder does, and reported.
    assert.ok(strict.tool_calls[badAt]!.function.arguments.endsWith(`"bad_param": ${bad!.text}}`), where);
    assert.deepEqual(warnings.map((w) => [w.tool_call, w.name, w.parameter]), [[badAt, calls[badAt]!.function.name, 'bad_param']], where);
    assert.match(warnings[0]!.problem, /^the string="false" value ".*" is not valid JSON: /, where);
    // The lenient parser gives the same warning and repairs the value so that every call stays JSON.
    assert.deepEqual(lenient.warnings, warnings, where);
    assert.deepEqual(lenient.errors, [], where);
    assert.deepEqual({ ...lenient.message, tool_calls: lenient.message.tool_calls.filter((_, i) => i !== badAt) }, { ...strict, tool_calls: strict.tool_calls.filter((_, i) => i !== badAt) }, where);
    assert.ok(lenient.repairs.length > 0, where);
    for (const c of lenient.message.tool_calls) pyJsonLoads(c.function.arguments);
  }
  const cuts = [Math.floor(r() * completion.length), Math.floor(r() * completion.length)].sort((a, b) => a - b);
  const s = new CompletionStreamParser(mode);
  s.push(completion.slice(0, cuts[0]));
  s.push(completion.slice(cuts[0], cuts[1]));
  s.push(completion.slice(cuts[1]));
  assert.deepEqual(s.finish().message, strict, `${where} cut at ${cuts}`);
}

test('2000 random assistant turns round-trip through encode and every parser; lenient equals strict on them', () => {
  const r = rng(7);
  for (let i = 0; i < 2000; i++) run(r);
});
