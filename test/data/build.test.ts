// The corpus build: determinism from the seed, the split, resume safety, and clear failures for
// missing sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCorpus, planSources } from '../../src/data/build.js';
import { CorpusError, DataOptionError, DataSourceMissingError } from '../../src/data/errors.js';
import { readDocuments, verifyCorpus } from '../../src/data/manifest.js';
import type { CorpusSource } from '../../src/data/source.js';
import { isValidation } from '../../src/data/split.js';
import { ALL_SOURCES } from '../../src/data/sources/index.js';
import { SMALL_SOURCES, smallCorpus, tempDir } from './helpers.js';

test('same seed → byte-identical shards, manifest and data card; another seed → another corpus', async () => {
  const a = await smallCorpus();
  const b = await smallCorpus();
  assert.equal(a.manifest.corpusSha256, b.manifest.corpusSha256);
  for (const f of readdirSync(a.dir).filter((f) => f !== 'build.log.jsonl')) {
    assert.ok(readFileSync(join(a.dir, f)).equals(readFileSync(join(b.dir, f))), f);
  }
  const c = await smallCorpus({ seed: 8 });
  assert.notEqual(c.manifest.corpusSha256, a.manifest.corpusSha256);
});

test('the split: disjoint, complete, about the requested fraction, and a function of (seed, id) alone', async () => {
  const { dir, manifest } = await smallCorpus();
  const train = [...readDocuments(dir, 'train')];
  const val = [...readDocuments(dir, 'validation')];
  const ids = new Set(train.map((d) => d.id));
  for (const d of val) assert.ok(!ids.has(d.id), `${d.id} in both splits`);
  assert.equal(train.length + val.length, manifest.sources.reduce((a, s) => a + s.documents, 0));
  for (const d of val) assert.ok(isValidation(7, d.id, 0.1));
  for (const d of train) assert.ok(!isValidation(7, d.id, 0.1));
  const share = val.length / (train.length + val.length);
  assert.ok(share > 0.05 && share < 0.15, `validation share ${share}`);
  // a bigger budget keeps every common document on the same side
  const bigger = await smallCorpus({ maxBytes: 600_000 });
  const bigVal = new Set([...readDocuments(bigger.dir, 'validation')].map((d) => d.id));
  const bigTrain = new Set([...readDocuments(bigger.dir, 'train')].map((d) => d.id));
  for (const d of val) assert.ok(!bigTrain.has(d.id), `${d.id} moved to train`);
  for (const d of train) assert.ok(!bigVal.has(d.id), `${d.id} moved to validation`);
});

test('manifest: per-source counts add up, licences and versions recorded, text bytes match the shards', async () => {
  const { dir, manifest } = await smallCorpus();
  assert.deepEqual(manifest.sources.map((s) => s.name), SMALL_SOURCES);
  for (const s of manifest.sources) {
    assert.ok(s.licence && s.version && s.package, s.name);
    assert.equal(s.train.documents + s.validation.documents, s.documents);
    assert.equal(s.train.textBytes + s.validation.textBytes, s.textBytes);
  }
  let bytes = 0;
  for (const d of readDocuments(dir, 'train')) bytes += Buffer.byteLength(d.text);
  assert.equal(bytes, manifest.splits.train.textBytes);
  const total = manifest.splits.train.textBytes + manifest.splits.validation.textBytes;
  assert.ok(total >= 400_000 && total < 520_000, `budget 400000, got ${total}`);
  const card = readFileSync(join(dir, 'DATA_CARD.md'), 'utf8');
  assert.match(card, new RegExp(manifest.corpusSha256));
  assert.match(card, /PDDL-1\.0 AND CC0-1\.0/);
  assert.match(card, /dsv32 data build --out DIR --seed 7 --max-bytes 400000/);
});

test('resume safety: an intact corpus is kept, a corrupt shard is detected and rebuilt, stale shards removed', async () => {
  const { dir, manifest } = await smallCorpus({ shardBytes: 64 * 1024 });
  assert.ok(manifest.splits.train.shards.length > 2);
  const again = await buildCorpus({ outDir: dir, seed: 7, maxBytes: 400_000, sources: SMALL_SOURCES, validationFraction: 0.1, shardBytes: 64 * 1024 });
  assert.equal(again.built, false);

  const shard = join(dir, manifest.splits.train.shards[1]!.file);
  writeFileSync(shard, readFileSync(shard, 'utf8').slice(0, 100)); // a torn write, as after a kill
  assert.throws(() => verifyCorpus(dir), (e: unknown) => e instanceof CorpusError && e.message.includes(shard));
  const rebuilt = await buildCorpus({ outDir: dir, seed: 7, maxBytes: 400_000, sources: SMALL_SOURCES, validationFraction: 0.1, shardBytes: 64 * 1024 });
  assert.equal(rebuilt.built, true);
  assert.equal(rebuilt.manifest.corpusSha256, manifest.corpusSha256);
  verifyCorpus(dir);

  // larger shards now: the old numbered shards beyond the new count must go
  const fewer = await buildCorpus({ outDir: dir, seed: 7, maxBytes: 400_000, sources: SMALL_SOURCES, validationFraction: 0.1, shardBytes: 1024 * 1024 });
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl') && f !== 'build.log.jsonl');
  assert.deepEqual(files.sort(), [...fewer.manifest.splits.train.shards, ...fewer.manifest.splits.validation.shards].map((s) => s.file).sort());
  assert.ok(!readdirSync(dir).some((f) => f.includes('.tmp-')), 'temporary files left behind');
});

function fakeSource(name: string, found: boolean, requiredByDefault: boolean): CorpusSource {
  return {
    name,
    kind: 'debian',
    package: `pkg-${name}`,
    install: `apt-get install pkg-${name}`,
    licence: 'test',
    description: 'test source',
    requiredByDefault,
    defaultBudgetBytes: Infinity,
    weight: 1,
    probe: () => (found ? { found: true, version: '1', location: '/nowhere' } : { found: false, reason: `Debian package pkg-${name} is not installed` }),
    async *documents() {
      yield { id: `${name}/one`, source: name, text: `text of ${name}\n` };
    },
  };
}

test('a missing required source fails the build naming its package and install command', async () => {
  const registry = [fakeSource('here', true, true), fakeSource('gone', false, true), fakeSource('extra', false, false)];
  await assert.rejects(
    buildCorpus({ outDir: join(tempDir('missing'), 'c'), registry }),
    (e: unknown) => e instanceof DataSourceMissingError && /gone: Debian package pkg-gone is not installed; install it with apt-get install pkg-gone/.test((e as Error).message) && !/extra/.test((e as Error).message),
  );
  // an optional one is skipped and listed; asking for it with --require makes it fatal
  const dir = join(tempDir('optional'), 'c');
  const r = await buildCorpus({ outDir: dir, registry: [registry[0]!, registry[2]!] });
  assert.deepEqual(r.manifest.missing.map((m) => m.name), ['extra']);
  assert.match(readFileSync(join(dir, 'DATA_CARD.md'), 'utf8'), /extra \(pkg-extra\).*apt-get install pkg-extra/);
  await assert.rejects(buildCorpus({ outDir: dir, registry: [registry[0]!, registry[2]!], require: ['extra'] }), DataSourceMissingError);
  assert.throws(() => planSources({ sources: ['nope'] }), (e: unknown) => e instanceof DataOptionError && /unknown corpus source "nope"; known: sotu/.test((e as Error).message));
});

test('the default plan: npm sources and generators required, Debian sources optional; every probe answers', () => {
  for (const s of ALL_SOURCES) {
    assert.equal(s.requiredByDefault, s.kind === 'npm' || s.package === 'dsv32', s.name);
    const p = s.probe();
    if (p.found) assert.ok(p.version.length > 0 && p.location.length > 0, s.name);
    else assert.match(p.reason, /not installed|missing/, s.name);
  }
});

test('option errors are typed and name the option', async () => {
  await assert.rejects(buildCorpus({ outDir: tempDir('x'), seed: -1 }), /--seed must be an integer/);
  await assert.rejects(buildCorpus({ outDir: tempDir('x'), maxBytes: 0 }), /--max-bytes must be a positive integer/);
  await assert.rejects(buildCorpus({ outDir: tempDir('x'), validationFraction: 0.7 }), DataOptionError);
});
