// The passkey generator (src/data/synthetic/passkey.ts): the layout of one document, determinism of the
// corpus source (same seed, same bytes), its length range, and that it is opt-in for `dsv32 data build`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCorpus, planSources } from '../../src/data/build.js';
import type { CorpusDocument } from '../../src/data/source.js';
import { makePasskeySource, PASSKEY_FILLER, PASSKEY_QUESTION, passkeyLayout, passkeyNeedle, passkeySource } from '../../src/data/synthetic/passkey.js';
import { Rng } from '../../src/envs/rng.js';
import { tempDir } from './helpers.js';

async function docs(source = passkeySource, seed = 7, budgetBytes = 60_000): Promise<CorpusDocument[]> {
  const out: CorpusDocument[] = [];
  for await (const d of source.documents({ rng: new Rng(seed), budgetBytes, log: () => {} })) out.push(d);
  return out;
}

test('layout: filler lines, the needle after round(depth·n) of them, the question, the key', () => {
  for (const [n, depth, before] of [[10, 0, 0], [10, 1, 10], [10, 0.5, 5], [7, 0.25, 2], [0, 0.6, 0], [3, 0.5, 2]] as const) {
    const l = passkeyLayout({ key: '48213', fillerLines: n, depth });
    assert.equal(l.text, `${l.prompt}${l.answer}.`);
    assert.equal(l.answer, ' 48213');
    assert.ok(l.prompt.endsWith(PASSKEY_QUESTION));
    const lines = l.text.split('\n');
    assert.equal(lines.length, n + 2);
    assert.equal(lines.at(-1), `${PASSKEY_QUESTION} 48213.`);
    assert.equal(lines.filter((x) => x === PASSKEY_FILLER).length, n);
    assert.equal(lines.indexOf(passkeyNeedle('48213')), before, `n ${n} depth ${depth}`);
    assert.equal(l.needleLine, before);
    assert.equal(l.text.slice(l.needleChar).split('\n')[0], 'The pass key is 48213. Remember it. 48213 is the pass key.');
    assert.ok(l.text.slice(l.questionChar).startsWith(PASSKEY_QUESTION));
    assert.equal(l.text.split('48213').length - 1, 3); // twice in the needle, once as the answer
  }
  assert.throws(() => passkeyLayout({ key: '12a', fillerLines: 1, depth: 0 }), /digits/);
  assert.throws(() => passkeyLayout({ key: '1', fillerLines: 1, depth: 1.5 }), /depth/);
  assert.throws(() => passkeyLayout({ key: '1', fillerLines: -1, depth: 0 }), /fillerLines/);
});

test('the source is deterministic: the same seed gives the same bytes, another seed other documents', async () => {
  const a = await docs();
  const b = await docs();
  assert.ok(a.length > 5);
  assert.equal(JSON.stringify(a), JSON.stringify(b));
  const c = await docs(passkeySource, 8);
  assert.notEqual(JSON.stringify(a.map((d) => d.text)), JSON.stringify(c.map((d) => d.text)));
  for (const d of a) {
    const m = /^What is the pass key\? The pass key is (\d{5})\.$/.exec(d.text.split('\n').at(-1)!);
    assert.ok(m, d.id);
    assert.ok(d.text.includes(passkeyNeedle(m[1]!)), d.id);
    assert.match(d.id, /^passkey\/\d{7}$/);
  }
  assert.equal(new Set(a.map((d) => d.id)).size, a.length);
});

test('documents spread over the length range (log-uniform) and over depths', async () => {
  const src = makePasskeySource({ minChars: 1000, maxChars: 8000 });
  const ds = await docs(src, 3, 400_000);
  const lens = ds.map((d) => d.text.length);
  const line = PASSKEY_FILLER.length + 1;
  for (const n of lens) assert.ok(n >= 1000 - line && n <= 8000 + line, `length ${n}`);
  assert.ok(Math.min(...lens) < 1500 && Math.max(...lens) > 6000, `lengths ${Math.min(...lens)}–${Math.max(...lens)}`);
  // log-uniform: about as many documents below the geometric middle (≈2828) as above
  const below = lens.filter((n) => n < Math.sqrt(1000 * 8000)).length / lens.length;
  assert.ok(below > 0.3 && below < 0.7, `share below the geometric middle ${below}`);
  const depths = ds.map((d) => {
    const lines = d.text.split('\n');
    return lines.findIndex((x) => x.startsWith('The pass key is')) / Math.max(1, lines.length - 2);
  });
  assert.ok(Math.min(...depths) < 0.1 && Math.max(...depths) > 0.9);
  assert.throws(() => makePasskeySource({ minChars: 10, maxChars: 5 }), /minChars/);
});

test('opt-in: a default build leaves it out; --sources or --require brings it in', async () => {
  assert.ok(!planSources({}).use.some((p) => p.source.name === 'passkey'));
  assert.deepEqual(planSources({ sources: ['passkey'] }).use.map((p) => p.source.name), ['passkey']);
  assert.ok(planSources({ require: ['passkey'] }).use.some((p) => p.source.name === 'passkey' && p.required));
  const build = async (tag: string): Promise<string> => {
    const dir = join(tempDir(tag), 'c');
    const r = await buildCorpus({ outDir: dir, seed: 5, maxBytes: 100_000, sources: ['arithmetic', 'passkey'], validationFraction: 0.1, shardBytes: 64 * 1024 });
    assert.deepEqual(r.manifest.sources.map((s) => s.name), ['arithmetic', 'passkey']);
    return readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => readFileSync(join(dir, f), 'utf8')).join('');
  };
  const one = await build('pk1');
  assert.equal(one, await build('pk2'));
  assert.match(one, /"source":"passkey"/);
});
