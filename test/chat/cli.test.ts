// `dsv32 encode` and `dsv32 parse`, run as a user would: spawning the built CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { assistantCompletions, FIXTURE_DIR, loadFixtures, REPO_ROOT } from './fixtures.js';

const CLI = resolve(REPO_ROOT, 'dist/src/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'dsv32-chat-cli-'));

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function file(name: string, content: string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

test('encode prints each official fixture byte-exact with no added newline', () => {
  const gold = loadFixtures();
  const inputs = ['test_input.json', 'test_input_search_wo_date.json', 'test_input_search_w_date.json'];
  inputs.forEach((name, i) => {
    const r = cli(['encode', '--messages', join(FIXTURE_DIR, name)]);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out === gold[i]!.gold, `${name}: CLI output differs from the gold prompt`);
  });
});

test('encode: array file, chat mode, tools lifted onto a new leading system message, --no-bos', () => {
  const arr = file('arr.json', JSON.stringify([{ role: 'user', content: 'hi' }]));
  assert.equal(cli(['encode', '--messages', arr, '--mode', 'chat']).out, '<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>');
  assert.equal(cli(['encode', '--messages', arr, '--no-bos']).out, '<｜User｜>hi<｜Assistant｜><think>');
  const withTools = file('tools.json', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] }));
  const r = cli(['encode', '--messages', withTools]);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.startsWith('<｜begin▁of▁sentence｜>\n\n## Tools\n'), r.out.slice(0, 60));
  assert.ok(r.out.endsWith('{"name": "f", "parameters": {"type": "object"}}\n</functions>\n<｜User｜>hi<｜Assistant｜><think>'));
  // Floats in the file keep their Python spelling.
  const floats = file('floats.json', '[{"role": "user", "content": "u"}, {"role": "assistant", "reasoning_content": "r", "tool_calls": [{"function": {"name": "f", "arguments": {"t": 1.0, "n": 1}}}]}]');
  assert.match(cli(['encode', '--messages', floats]).out, /name="t" string="false">1\.0<.*name="n" string="false">1</s);
});

test('encode: bad files give one clear line naming the file, exit status 2, no stack trace', () => {
  const cases: [string, RegExp][] = [
    [join(dir, 'missing.json'), /^dsv32: cannot read .*missing\.json: ENOENT\n$/],
    [file('broken.json', '[{"role": "user",'), /^dsv32: .*broken\.json: expected a property name in double quotes at line 1, offset 17\n$/],
    [file('shape.json', '{"msgs": []}'), /^dsv32: .*shape\.json: expected a JSON array of messages or an object/],
    [file('conv.json', '[{"role": "user", "content": "u"}, {"role": "assistant", "content": "no reasoning"}]'), /^dsv32: .*conv\.json: message 1: .*\[missing-reasoning\]\n$/],
    [file('role.json', '[{"role": "bot", "content": "x"}]'), /^dsv32: .*role\.json: message 0: .*\[invalid-message\]\n$/],
  ];
  for (const [path, re] of cases) {
    const r = cli(['encode', '--messages', path]);
    assert.equal(r.code, 2, path);
    assert.match(r.err, re);
    assert.equal(r.out, '');
  }
});

test('parse prints the message as JSON (strict), and reports malformed input with its offset', () => {
  const { text } = assistantCompletions()[1]!;
  const r = cli(['parse'], text);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), parseCompletion(text, 'thinking'));
  assert.deepEqual(JSON.parse(cli(['parse', '--mode', 'chat'], 'Hello').out), { role: 'assistant', content: 'Hello', reasoning_content: '', tool_calls: [] });
  const bad = cli(['parse'], 'no think end');
  assert.equal(bad.code, 2);
  assert.equal(bad.err, 'dsv32: stdin: completion offset 12: thinking-mode completion has no </think> [missing-think-end] (try --lenient)\n');
});

test('parse --lenient repairs, coerces with --tools, and exits 1 when a call is unrecoverable', () => {
  const tools = file('t.json', JSON.stringify([{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { n: { type: 'integer' }, s: { type: 'string' } } } } }]));
  const ok = cli(['parse', '--mode', 'chat', '--lenient', '--tools', tools], 'x\n\n<function_calls><invoke name="f"><parameter name="n" string="true">3</parameter><parameter name="s" string="false">hi</parameter></invoke></function_calls>');
  assert.equal(ok.code, 0, ok.err);
  const m = JSON.parse(ok.out);
  assert.equal(m.content, 'x');
  assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), { n: 3, s: 'hi' });
  assert.match(ok.err, /repaired: f\.n: string="true" value coerced/);
  const lost = cli(['parse', '--mode', 'chat', '--lenient'], 'a<invoke name="g"><parameter name="q">x');
  assert.equal(lost.code, 1);
  assert.equal(JSON.parse(lost.out).content, 'a');
  assert.match(lost.err, /unrecoverable tool call "g": .*not closed/);
  const badTools = cli(['parse', '--lenient', '--tools', file('bt.json', '{"x": 1}')], 'r</think>');
  assert.equal(badTools.code, 2);
  assert.match(badTools.err, /bt\.json: expected a JSON array of tools/);
});

test('parse prints warnings in its JSON (and on stderr) for a string="false" value that is not JSON, in both modes', () => {
  const D = '｜DSML｜';
  const text = `ok\n\n<${D}function_calls>\n<${D}invoke name="f">\n<${D}parameter name="x" string="false">not json</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;
  const warning = { tool_call: 0, name: 'f', parameter: 'x', problem: 'the string="false" value "not json" is not valid JSON: expected a value at line 1, offset 0' };
  const strict = cli(['parse', '--mode', 'chat'], text);
  assert.equal(strict.code, 0, strict.err);
  const m = JSON.parse(strict.out);
  assert.deepEqual(m.warnings, [warning]);
  assert.equal(m.tool_calls[0].function.arguments, '{"x": not json}');
  assert.equal(strict.err, `dsv32 parse: warning: tool call 0 "f" parameter "x": ${warning.problem}\n`);
  const lenient = cli(['parse', '--mode', 'chat', '--lenient'], text);
  assert.equal(lenient.code, 0, lenient.err);
  assert.deepEqual(JSON.parse(lenient.out).warnings, [warning]);
  assert.match(lenient.err, /warning: tool call 0 "f" parameter "x"/);
  // A clean parse prints the message alone.
  assert.ok(!('warnings' in JSON.parse(cli(['parse', '--mode', 'chat'], 'Hello').out)));
});
