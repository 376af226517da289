// The packing path: our memoised BPE encoder gives the library's ids exactly, and the packed files
// decode back to every document of the corpus, in order, framed by BOS/EOS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';
import { BOS, EOS, THINK_END, THINK_START, USER } from '../../src/chat/tokens.js';
import { encodeMessages } from '../../src/chat/encode.js';
import type { ChatMessage } from '../../src/chat/message.js';
import { completionSpans, maskedIds } from '../../src/data/loss-mask.js';
import { TOOLS } from '../../src/data/synthetic/tool-chat.js';
import { BpeEncoder } from '../../src/data/bpe-encoder.js';
import { readDocuments } from '../../src/data/manifest.js';
import { packCorpus, readPackedTokens } from '../../src/data/pack.js';
import { smallTokenizer, tempDir } from './helpers.js';

const { result, dir } = await smallTokenizer(1024);
const hf = new DeepSeekTokenizer(result.json, {}, 'trained');
const ours = new BpeEncoder(result.json);

test('BpeEncoder ids equal @huggingface/tokenizers ids on every corpus document and on edge cases', () => {
  // the library is slow (~0.2 MB/s here): validation plus 60 training documents, every source among them
  const texts = [...readDocuments(dir, 'validation'), ...[...readDocuments(dir, 'train')].slice(0, 60)].map((d) => d.text);
  texts.push('aaaa aaa  \t\r\n 1234567 中文 🐋', `${BOS}${USER}<｜DSML｜invoke name="x">${EOS}`, '', ' ', '｜DSML｜｜DSML｜');
  let n = 0;
  for (const t of texts) {
    assert.deepEqual(ours.encode(t), t ? hf.encode(t) : [], JSON.stringify(t.slice(0, 60)));
    n++;
  }
  assert.ok(n > 80);
});

test('pack: every document decodes back from its slice, framed by BOS … EOS, with its loss mask; counts and dtype recorded', () => {
  const file = join(tempDir('pack'), 'tokenizer.json');
  writeFileSync(file, JSON.stringify(result.json));
  const out = join(tempDir('packed'), 'p');
  const pack = packCorpus({ corpusDir: dir, tokenizerFile: file, outDir: out });
  assert.equal(pack.dtype, 'uint16');
  assert.equal(pack.vocabSize, 1024);
  let chat = 0;
  let plain = 0;
  for (const split of ['train', 'validation'] as const) {
    const { tokens, starts, mask } = readPackedTokens(out, split);
    const docs = [...readDocuments(dir, split)];
    assert.equal(starts.length, docs.length + 1);
    assert.equal(starts.at(-1), tokens.length);
    assert.equal(pack.splits[split].tokens, tokens.length);
    docs.forEach((d, i) => {
      const ids = [...tokens.subarray(starts[i]!, starts[i + 1]!)];
      assert.equal(ids[0], pack.bos);
      assert.equal(ids.at(-1), pack.eos);
      const text = hf.decode(ids); // decode is fast; only encode is slow in the library
      const body = text.startsWith(BOS) && !d.text.startsWith(BOS) ? text.slice(BOS.length) : text;
      assert.equal(d.text.endsWith(EOS) ? body : body.slice(0, -EOS.length), d.text, d.id);
      // the loss mask: a chat document's targets decode to exactly its last exchange's completions
      const m = [...mask.subarray(starts[i]!, starts[i + 1]!)];
      if (d.messages) {
        const want = completionSpans(d.messages, d.mode!).map(([a, b]) => d.text.slice(a, b)).join('');
        assert.ok(want.endsWith(EOS) && want.length > EOS.length, d.id);
        assert.equal(hf.decode(ids.filter((_, k) => m[k] === 1)), want, d.id);
        chat++;
      } else {
        assert.deepEqual(m, [0, ...Array(ids.length - 1).fill(1)], d.id);
        plain++;
      }
    });
    assert.equal(pack.splits[split].targets, mask.reduce((a, x) => a + x, 0));
  }
  assert.ok(chat > 50 && plain > 5, `${chat} chat and ${plain} plain documents checked`);
});

test('completion spans: thinking turns start after <think>, tool turns after the results, all end with EOS', () => {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'sys', tools: TOOLS },
    { role: 'user', content: 'first' },
    { role: 'assistant', reasoning_content: 'old reasoning', content: 'one' },
    { role: 'user', content: 'Weather?' },
    { role: 'assistant', reasoning_content: 'call it', content: '', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Oslo', date: '2026-01-01' } } }] },
    { role: 'tool', content: '{"high_c": 3}' },
    { role: 'assistant', reasoning_content: 'cold', content: 'It is 3 °C.' },
  ];
  const text = encodeMessages(messages, { mode: 'thinking' });
  const spans = completionSpans(messages, 'thinking');
  assert.equal(spans.length, 2, 'the first exchange is context only');
  assert.ok(text.slice(0, spans[0]![0]).endsWith(`${USER}Weather?<｜Assistant｜>${THINK_START}`));
  assert.match(text.slice(...spans[0]!), /^call it<\/think>\n\n<｜DSML｜function_calls>[\s\S]*<｜end▁of▁sentence｜>$/);
  assert.ok(text.slice(0, spans[1]![0]).endsWith(`</function_results>\n\n${THINK_START}`));
  assert.equal(text.slice(...spans[1]!), `cold${THINK_END}It is 3 °C.${EOS}`);
  const { mask } = maskedIds('t', text, spans, (x) => ours.encode(x));
  assert.ok(mask.includes(0) && mask.includes(1));
});
