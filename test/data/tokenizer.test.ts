// The trained tokenizer through @huggingface/tokenizers and src/chat/tokenizer.ts: exact round trip on
// held-out text, the V3.2 chat tokens and DSML markers as single ids, and the official encoding
// fixtures surviving tokenize → detokenize → parse unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeepSeekTokenizer, DSV32_SPECIAL_TOKENS, loadTokenizer } from '../../src/chat/tokenizer.js';
import { encodeMessages } from '../../src/chat/encode.js';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { ASSISTANT, BOS, EOS, FUNCTION_CALLS_OPEN, THINK_END, THINK_START, USER } from '../../src/chat/tokens.js';
import { ADDED_TOKENS } from '../../src/data/special-tokens.js';
import { toolConversation } from '../../src/data/synthetic/tool-chat.js';
import { Rng } from '../../src/envs/rng.js';
import { assistantCompletions, loadFixtures } from '../chat/fixtures.js';
import { smallTokenizer, tempDir } from './helpers.js';

const { result, validation } = await smallTokenizer(1024);
const tok = new DeepSeekTokenizer(result.json, {}, 'trained');

test('the trained vocabulary has the requested size, added tokens first (BOS 0, EOS 1)', () => {
  assert.equal(tok.vocabSize, 1024);
  assert.deepEqual(tok.special, { bos: 0, eos: 1, user: 3, assistant: 4, thinkStart: 5, thinkEnd: 6 });
  ADDED_TOKENS.forEach((t, id) => assert.equal(tok.tokenToId(t.content), id, t.content));
});

test('validation documents (never seen in training) decode to exactly their text', () => {
  assert.ok(validation.length >= 5, `only ${validation.length} validation documents`);
  let bytes = 0;
  let tokens = 0;
  for (const text of validation) {
    const ids = tok.encode(text);
    assert.equal(tok.decode(ids), text);
    bytes += Buffer.byteLength(text);
    tokens += ids.length;
  }
  // a 1K byte-level BPE on English compresses well beyond one byte per token (about 3 measured)
  assert.ok(bytes / tokens > 2.2, `${(bytes / tokens).toFixed(2)} bytes/token`);
});

test('arbitrary text round-trips: control characters, CJK, emoji, odd whitespace, lone markers', () => {
  const samples = [
    'tabs\tand\r\nCRLF\u0000nul\u0007bell',
    '中文和日本語のテキスト、한국어',
    'emoji 🐋🧪 and combining é (e\u0301)',
    '   leading and trailing spaces   \n\n\n',
    '12345678901234567890 digits 3.14159 -42',
    `text with ${USER} and ${THINK_START}inside${THINK_END} and ${FUNCTION_CALLS_OPEN} markers ${EOS}`,
    '｜DSML｜ alone, <｜DSML｜invoke without name, < | > ｜',
  ];
  for (const s of samples) assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
});

test('each chat token and DSML marker is one id when encoded from text', () => {
  for (const s of [...DSV32_SPECIAL_TOKENS, ...ADDED_TOKENS.map((t) => t.content)]) {
    const ids = tok.encode(s);
    assert.equal(ids.length, 1, `${s} → ${ids.length} ids`);
    assert.equal(ids[0], tok.tokenToId(s));
  }
  // inside text, too: a turn boundary is exactly the expected ids
  const ids = tok.encode(`${BOS}${USER}hi${ASSISTANT}${THINK_START}`);
  assert.deepEqual([ids[0], ids[1], ids.at(-2), ids.at(-1)], [0, 3, 4, 5]);
});

test('the official V3.2 fixtures tokenize and detokenize byte-exact, and every assistant turn re-parses', () => {
  for (const f of loadFixtures()) assert.equal(tok.decode(tok.encode(f.gold)), f.gold, f.name);
  const turns = assistantCompletions();
  assert.ok(turns.length > 0);
  for (const c of turns) {
    const back = tok.decode(tok.encode(c.text));
    assert.equal(back, c.text, c.where);
    const parsed = parseCompletion(back, 'thinking');
    const m = c.message as { content?: string | null; tool_calls?: unknown[] | null };
    assert.equal(parsed.content, m.content ?? '', c.where);
    assert.equal(parsed.tool_calls.length, m.tool_calls?.length ?? 0, c.where);
  }
});

test('our tool-call conversations survive the tokenizer and re-parse with the strict parser', () => {
  const rng = new Rng(11);
  for (let i = 0; i < 20; i++) {
    const { messages, mode } = toolConversation(rng);
    const full = encodeMessages(messages, { mode });
    assert.equal(tok.decode(tok.encode(full)), full);
    const last = messages.at(-1)!;
    const prompt = encodeMessages(messages.slice(0, -1), { mode });
    const parsed = parseCompletion(tok.decode(tok.encode(full.slice(prompt.length))), mode);
    assert.equal(parsed.content, (last as { content: string }).content);
  }
});

test('written to disk, loadTokenizer (the chat tokenizer loader) accepts it and matches in memory', () => {
  const dir = join(tempDir('tok'), 'model');
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(result.json));
  const loaded = loadTokenizer(dir);
  const text = validation[0]!;
  assert.deepEqual(loaded.encode(text), tok.encode(text));
  assert.deepEqual(loaded.special, tok.special);
});
