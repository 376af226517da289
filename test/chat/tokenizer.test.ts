import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  ApproximateTokenCounter,
  DeepSeekTokenizer,
  DSV32_SPECIAL_TOKENS,
  TokenizerLoadError,
  loadTokenizer,
  tokenCounterFor,
} from '../../src/chat/tokenizer.js';
import { buildMiniDeepSeekTokenizer } from './mini-tokenizer.js';

// Tests run from the repo root (scripts/run-tests.mjs); the fixture lives in the source tree.
const FIXTURE = resolve('test/chat/fixtures/mini-dsv3-tokenizer');

test('the committed mini tokenizer fixture is what the generator produces', () => {
  const { tokenizerJson, tokenizerConfig } = buildMiniDeepSeekTokenizer();
  assert.deepEqual(JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')), tokenizerJson);
  assert.deepEqual(JSON.parse(readFileSync(join(FIXTURE, 'tokenizer_config.json'), 'utf8')), tokenizerConfig);
});

test('encodes exactly as Python `tokenizers` does (golden ids recorded from it)', () => {
  const tok = loadTokenizer(FIXTURE);
  const golden = JSON.parse(readFileSync(join(FIXTURE, 'golden-ids.json'), 'utf8')) as { cases: { text: string; ids: number[] }[] };
  assert.ok(golden.cases.length >= 5);
  for (const { text, ids } of golden.cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
});

test('special tokens are single ids; DSML markers are text split into several tokens', () => {
  const tok = loadTokenizer(join(FIXTURE, 'tokenizer.json'));
  assert.equal(tok.special.bos, 0);
  assert.equal(tok.special.eos, 1);
  for (const s of DSV32_SPECIAL_TOKENS) {
    const ids = tok.encode(s);
    assert.equal(ids.length, 1, s);
    assert.equal(tok.idToToken(ids[0]!), s);
  }
  const prompt = '<｜begin▁of▁sentence｜>sys<｜User｜>hi<｜Assistant｜><think>r</think>ok<｜end▁of▁sentence｜>';
  const ids = tok.encode(prompt);
  assert.equal(ids[0], tok.special.bos);
  assert.equal(ids.at(-1), tok.special.eos);
  assert.ok(ids.includes(tok.special.user) && ids.includes(tok.special.assistant));
  assert.ok(ids.includes(tok.special.thinkStart) && ids.includes(tok.special.thinkEnd));
  // no BOS is added on its own: the chat prompt carries it as text
  assert.notEqual(tok.encode('hello')[0], tok.special.bos);
  const dsml = '<｜DSML｜function_calls>';
  assert.ok(tok.encode(dsml).length > 3);
  assert.equal(tok.decode(tok.encode(dsml)), dsml);
});

test('decode round-trips arbitrary text, and skipSpecialTokens drops BOS/EOS but keeps think tags', () => {
  const tok = loadTokenizer(FIXTURE);
  const texts = [
    'plain ASCII with  double  spaces\tand\ttabs\r\n',
    '数字 1234567 and 混合 text こんにちは',
    'emoji 🎉🧪 and combining é (e\u0301) and a lone surrogate-free astral 𝔘',
    '{"a": [1, 2.5, -3e-7], "b": null}\n\n\n',
    '',
  ];
  for (const t of texts) assert.equal(tok.decode(tok.encode(t)), t, JSON.stringify(t));
  const ids = tok.encode('<｜begin▁of▁sentence｜>x<think>y</think>z<｜end▁of▁sentence｜>');
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'x<think>y</think>z');
  assert.equal(tok.count('<｜User｜><｜Assistant｜>'), 2);
});

test('a tokenizer.json without the DeepSeek special tokens is rejected, naming the file and the token', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-tok-'));
  const { tokenizerJson } = buildMiniDeepSeekTokenizer();
  const stripped = { ...tokenizerJson, added_tokens: (tokenizerJson.added_tokens as { content: string }[]).filter((t) => t.content !== '<｜User｜>') };
  const path = join(dir, 'tokenizer.json');
  writeFileSync(path, JSON.stringify(stripped));
  assert.throws(() => loadTokenizer(path), (e: unknown) => e instanceof TokenizerLoadError && e.message.includes(path) && e.message.includes('<｜User｜>'));
  writeFileSync(path, '{not json');
  assert.throws(() => loadTokenizer(dir), (e: unknown) => e instanceof TokenizerLoadError && /not valid JSON/.test(e.message));
  assert.throws(() => loadTokenizer(join(dir, 'missing')), TokenizerLoadError);
  assert.throws(() => new DeepSeekTokenizer([1, 2], {}, 'x.json'), /x\.json: expected a Hugging Face tokenizer\.json/);
});

test('token counters: exact from the tokenizer, approximate heuristic says so', () => {
  const exact = tokenCounterFor(FIXTURE);
  assert.equal(exact.exact, true);
  const approx = tokenCounterFor();
  assert.ok(approx instanceof ApproximateTokenCounter);
  assert.equal(approx.exact, false);
  assert.match(approx.description, /approximate/);
  // 10 ASCII chars → 3 tokens; 5 CJK chars → 3 tokens; each special token is 1
  assert.equal(approx.count('abcdefghij'), 3);
  assert.equal(approx.count('你好世界啊'), 3);
  assert.equal(approx.count('<｜User｜>abcdefghij<｜Assistant｜><think>'), 6);
  assert.equal(approx.count(''), 0);
  // The heuristic should be within a factor of ~3 of a real BPE on English prose.
  const prose = 'The quick brown fox jumps over the lazy dog while the assistant calls tools. '.repeat(20);
  const ratio = approx.count(prose) / exact.count(prose);
  assert.ok(ratio > 0.33 && ratio < 3, `ratio ${ratio}`);
});
