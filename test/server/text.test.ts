// The text path of a generated sequence, checked as properties over random inputs: the incremental
// detokenizer's pieces concatenate to the decode of the whole sequence (multi-byte characters split
// across byte-level tokens included) and never end in a half character before the end; the stop-string
// trimmer releases exactly the text before the first stop string however the text is chunked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IncrementalDetokenizer } from '../../src/server/detokenizer.js';
import { StopTrimmer } from '../../src/server/stop.js';
import { tokenizer } from './helpers.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const ALPHABET = ['a', 'Z', ' ', '\n', '你', '好', 'é', '😀', '｜', '<', '>', 'DSML', '</think>', '<｜end▁of▁sentence｜>', '٣', 'ß', '\t', '{"k": 1}'];

test('incremental detokenizer: pieces concatenate to the full decode, with and without special tokens; no half characters mid-stream', () => {
  const tok = tokenizer();
  const r = rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const text = Array.from({ length: 1 + Math.floor(r() * 30) }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join('');
    let ids = tok.encode(text);
    // random ids too (byte tokens that do not form characters, unknown ids)
    if (trial % 3 === 0) ids = [...ids, ...Array.from({ length: 5 }, () => Math.floor(r() * 129280))];
    for (const skip of [false, true]) {
      const d = new IncrementalDetokenizer(tok, skip);
      const pieces = ids.map((id) => d.push(id));
      const all = pieces.join('') + d.flush();
      assert.equal(all, tok.decode(ids, { skipSpecialTokens: skip }), `trial ${trial} skip=${skip}`);
      for (const p of pieces) assert.ok(!p.endsWith('\uFFFD') || trial % 3 === 0, `a piece ends in U+FFFD: ${JSON.stringify(p)}`);
    }
  }
});

test('a character split over byte tokens is released whole', () => {
  const tok = tokenizer();
  const ids = tok.encode('😀');
  assert.ok(ids.length > 1, 'the emoji spans several tokens');
  const d = new IncrementalDetokenizer(tok, false);
  const pieces = ids.map((id) => d.push(id));
  assert.deepEqual(pieces.slice(0, -1).filter(Boolean), []);
  assert.equal(pieces.at(-1), '😀');
});

test('stop trimmer: the text before the first stop string, however the text is chunked', () => {
  const r = rng(11);
  const stops = ['STOP', 'END!', '\n\n'];
  for (let trial = 0; trial < 300; trial++) {
    const parts = Array.from({ length: Math.floor(r() * 12) }, () => ['ab', 'ST', 'OP', 'S', 'END', '!', '\n', 'xyz', 'TOP'][Math.floor(r() * 9)]);
    const text = parts.join('');
    let first = -1;
    for (const s of stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    const t = new StopTrimmer(stops);
    let out = '';
    let i = 0;
    while (i < text.length) {
      const n = 1 + Math.floor(r() * 4);
      out += t.push(text.slice(i, i + n));
      i += n;
    }
    out += t.flush();
    assert.equal(out, first >= 0 ? text.slice(0, first) : text, JSON.stringify(text));
    assert.equal(t.done, first >= 0);
  }
  const none = new StopTrimmer([]);
  assert.equal(none.push('abc') + none.flush(), 'abc');
});
