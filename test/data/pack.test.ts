// The packing path: our memoised BPE encoder gives the library's ids exactly, and the packed files
// decode back to every document of the corpus, in order, framed by BOS/EOS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';
import { BOS, EOS, USER } from '../../src/chat/tokens.js';
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

test('pack: every document decodes back from its slice, framed by BOS … EOS; counts and dtype recorded', () => {
  const file = join(tempDir('pack'), 'tokenizer.json');
  writeFileSync(file, JSON.stringify(result.json));
  const out = join(tempDir('packed'), 'p');
  const pack = packCorpus({ corpusDir: dir, tokenizerFile: file, outDir: out });
  assert.equal(pack.dtype, 'uint16');
  assert.equal(pack.vocabSize, 1024);
  for (const split of ['train', 'validation'] as const) {
    const { tokens, starts } = readPackedTokens(out, split);
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
    });
  }
});
