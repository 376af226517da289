// `dsv32 data build` and `dsv32 data tokenizer` run as a user would (the built CLI in a child process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadTokenizer } from '../../src/chat/tokenizer.js';
import { REPO_ROOT } from '../chat/fixtures.js';
import { tempDir } from './helpers.js';

const CLI = resolve(REPO_ROOT, 'dist/src/cli/main.js');
const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('data build, data tokenizer, data pack: shards, manifest, card, JSONL logs, a loadable tokenizer.json, token files', () => {
  const root = tempDir('cli');
  const corpus = join(root, 'corpus');
  const b = cli(['data', 'build', '--out', corpus, '--seed', '2', '--max-bytes', '300000', '--sources', 'sotu,moby-dick,arithmetic,tool-chat', '--validation-fraction', '0.1']);
  assert.equal(b.code, 0, b.err);
  assert.match(b.out, /^built .*: \d+ train \+ \d+ validation documents, \d+ bytes of text/);
  assert.match(b.err, /found {3}sotu \(@stdlib\/datasets-sotu 0\.2\.3\)/);
  for (const f of ['manifest.json', 'DATA_CARD.md', 'train-00000.jsonl', 'validation-00000.jsonl']) assert.ok(existsSync(join(corpus, f)), f);
  const events = readFileSync(join(corpus, 'build.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string });
  assert.deepEqual([...new Set(events.map((e) => e.event))], ['source-found', 'source-read', 'shard-written', 'built']);

  const again = cli(['data', 'build', '--out', corpus, '--seed', '2', '--max-bytes', '300000', '--sources', 'sotu,moby-dick,arithmetic,tool-chat', '--validation-fraction', '0.1']);
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /^kept /);

  const out = join(root, 'tok', 'tokenizer.json');
  const t = cli(['data', 'tokenizer', '--corpus', corpus, '--vocab', '600', '--out', out]);
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /vocabulary 600 .* bytes\/token, exact round trip/s);
  assert.equal(loadTokenizer(out).vocabSize, 600);
  assert.ok(readdirSync(join(root, 'tok')).includes('tokenizer.log.jsonl'));
  assert.ok(!readdirSync(join(root, 'tok')).some((f) => f.includes('.tmp-')));

  const packed = join(root, 'packed');
  const p = cli(['data', 'pack', '--corpus', corpus, '--tokenizer', out, '--out', packed]);
  assert.equal(p.code, 0, p.err);
  assert.match(p.out, /^train: \d+ documents, \d+ tokens \(uint16\), [\d.]+ bytes\/token\nvalidation: /);
  for (const f of ['pack.json', 'train.tokens', 'train.docs', 'validation.tokens', 'validation.docs', 'pack.log.jsonl']) assert.ok(existsSync(join(packed, f)), f);
  // the tokenizer travels with the pack (training copies it into its checkpoints), byte for byte
  assert.ok(readFileSync(join(packed, 'tokenizer.json')).equals(readFileSync(out)), 'tokenizer.json beside the pack');
});

test('user errors exit 2 with a message naming the problem', () => {
  const root = tempDir('cli-err');
  const missing = cli(['data', 'tokenizer', '--corpus', join(root, 'nothing'), '--out', join(root, 't.json')]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /nothing\/manifest\.json: no manifest; expected a corpus directory built by `dsv32 data build`/);
  const unknown = cli(['data', 'build', '--out', join(root, 'c'), '--sources', 'sotu,wikipedia']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown corpus source "wikipedia"/);
});
