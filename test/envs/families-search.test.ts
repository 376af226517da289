// Search family: the generated corpus and world, BM25 search/open tools, unique multi-hop answers,
// verifier (reference answer 1, wrong answers < 1) and `env validate`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generateSearch } from '../../src/envs/families/search/family.js';
import { generateSearchWorld } from '../../src/envs/families/search/world.js';
import { QUESTION_KINDS } from '../../src/envs/families/search/questions.js';
import { loadEnvironment, type Environment } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { dbFingerprint } from '../../src/envs/db-state.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { scratchDir, taskFiles, verifyAnswer } from './family-helpers.js';

const SEED = 4;
const root = scratchDir('search-test-');
const gen = (name: string, seed: number, tasks: number) => generateSearch({ seed, tasks, outDir: join(root, name) }).dir;

const envDir = gen('main', SEED, 2 * QUESTION_KINDS);
const env: Environment = loadEnvironment(envDir);
const world = generateSearchWorld(SEED);

const score = (taskId: string, answer: unknown) => verifyAnswer(env, taskId, answer);

test('a deterministic world of a few thousand documents with unique names', () => {
  assert.ok(world.docs.length >= 2000, `${world.docs.length} documents`);
  const titles = world.docs.filter((d) => d.kind !== 'news').map((d) => d.title);
  assert.equal(new Set(titles).size, titles.length);
  assert.deepEqual(taskFiles(gen('again', SEED, 2 * QUESTION_KINDS)), taskFiles(envDir));
  assert.notEqual(dbFingerprint(join(gen('other', SEED + 1, 1), 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  const t0 = performance.now();
  assert.equal(generateSearch({ seed: 9, tasks: 300, outDir: join(root, 'big') }).tasks, 300);
  assert.ok(performance.now() - t0 < 20_000);
});

test('answers are unique in the world and the questions take 2-3 hops', () => {
  for (const t of env.tasks) {
    const p = t.params as { kind: string; hops: number; answer: string; steps: Array<Record<string, unknown>> };
    assert.ok(p.hops === 2 || p.hops === 3);
    if (p.kind === 'ceo_by_industry_city') {
      const where = (p.steps[0]!.find as { where: Record<string, string> }).where;
      const matches = world.companies.filter((c) => c.industry === where.Industry && c.hq === where.Headquarters);
      assert.deepEqual(matches.map((c) => c.ceo), [p.answer]);
    }
    if (p.kind === 'founder_company_year') {
      const founder = p.steps[0]!.lookup as string;
      assert.equal(String(world.companyByFounder.get(founder)!.founded), p.answer);
    }
  }
  assert.equal(new Set(env.tasks.map((t) => t.params.kind)).size, QUESTION_KINDS);
});

test('search ranks the named page first by BM25; open returns it; bad ids are errors', async () => {
  const ep = Episode.open(env);
  try {
    const c = world.companies[7]!;
    const hits = (await ep.callTool('search', { query: c.name, k: 5 })).result as Array<{ id: number; title: string }>;
    assert.ok(hits.length > 0 && hits.length <= 5);
    assert.equal(hits[0]!.title, c.name);
    const doc = (await ep.callTool('open', { id: hits[0]!.id })).result as { text: string };
    assert.match(doc.text, new RegExp(`Founder: ${c.founder}\\nChief executive: ${c.ceo}\\nHeadquarters: ${c.hq}`));
    // FTS operators in the query are treated as words, not syntax.
    assert.equal((await ep.callTool('search', { query: 'NEAR( OR "' })).ok, true);
    const bad = await ep.callTool('open', { id: 999999 });
    assert.equal(bad.ok, false);
    assert.match(bad.error!, /no document with id 999999/);
  } finally {
    ep.close();
  }
});

test('verifier: the expected answer (any case/spacing) scores 1, others 0', async () => {
  const t = env.tasks.find((x) => x.params.kind === 'founder_birth_country')!;
  const want = t.params.answer as string;
  assert.equal((await score(t.id, { answer: want })).score, 1);
  assert.equal((await score(t.id, { answer: `  ${want.toUpperCase()}. ` })).score, 1);
  const other = world.countries.find((c) => c.name !== want)!.name;
  const v = await score(t.id, { answer: other });
  assert.equal(v.score, 0);
  assert.match(v.reason, /expected/);
  assert.equal((await score(t.id, { answer: true })).score, 0);
  const y = env.tasks.find((x) => x.params.kind === 'founder_company_year')!;
  assert.equal((await score(y.id, { answer: Number(y.params.answer) })).score, 1);
  assert.equal((await score(y.id, { answer: Number(y.params.answer) + 1 })).score, 0);
});

test('env validate: the reference solution walks the hops through the tools', async () => {
  const ids = ['ceo_by_industry_city', 'founder_birth_country'].map((k) => env.tasks.find((t) => t.params.kind === k)!.id);
  const report = await validateEnvironment(env, { jobs: 2, taskIds: ids });
  assert.equal(report.ok, true, JSON.stringify(report.tasks.filter((t) => !t.ok), null, 1));
  for (const t of report.tasks) assert.ok(t.toolCalls >= 5 && t.perturbations.rejected >= 2);
});
