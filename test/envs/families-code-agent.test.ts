// Code-agent family: the full candidate set is large, distinct, deterministic per seed and varies
// between seeds (structural check, no test runs); a sample of it is measured for real against the
// fail-to-pass > 0 / pass-to-fail = 0 rule; the verifier runs the tests (gold patch 1, unfixed or
// test-editing submissions 0), generation is deterministic, and `env validate` passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { CODE_AGENT_MAX_TASKS, generateCodeAgent } from '../../src/envs/families/code-agent/family.js';
import { buildRepos, codeAgentCandidates, REPO_SPECS, type Candidate } from '../../src/envs/families/code-agent/catalog.js';
import { RUNNER } from '../../src/envs/families/code-agent/programs.js';
import { Rng } from '../../src/envs/rng.js';
import { loadEnvironment, type Environment, type LoadedTask } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { scratchDir, taskFiles } from './family-helpers.js';

const root = scratchDir('code-agent-test-');
const env: Environment = loadEnvironment((await generateCodeAgent({ seed: 5, tasks: 6, outDir: join(root, "main") })).dir);

writeFileSync(join(root, 'runner.cjs'), RUNNER);
type RunOut = { results: Record<string, 'pass' | 'fail'>; timedOut: boolean; output: string };
const runner = createRequire(import.meta.url)(join(root, 'runner.cjs')) as {
  runTestsAsync(lang: string, files: Record<string, string>, tests: string[]): Promise<RunOut>;
};

type Params = { repo: string; lang: string; gold: Array<{ path: string; buggy: string; fixed: string }>; fail_to_pass: string[]; pass_to_pass: string[] };

async function withEp<T>(task: LoadedTask, f: (ep: Episode) => Promise<T>): Promise<T> {
  const ep = Episode.open(env, task.id);
  try {
    return await f(ep);
  } finally {
    ep.close();
  }
}

test('every task has fail-to-pass tests and both languages appear', () => {
  for (const t of env.tasks) {
    const p = t.params as Params;
    assert.ok(p.fail_to_pass.length > 0, t.id);
    assert.equal(new Set([...p.fail_to_pass, ...p.pass_to_pass]).size, p.fail_to_pass.length + p.pass_to_pass.length);
  }
  assert.deepEqual(new Set(env.tasks.map((t) => (t.params as Params).lang)), new Set(['python', 'node']));
});

test('verifier: gold patch 1; unfixed code, edited tests and bad shapes 0', async () => {
  for (const lang of ['python', 'node']) {
    const task = env.tasks.find((t) => (t.params as Params).lang === lang)!;
    const p = task.params as Params;
    await withEp(task, async (ep) => {
      const listing = (await ep.callTool('list_files', { repo: p.repo })).result as { files: Array<{ path: string; test: boolean }> };
      const path = p.gold[0]!.path;
      const src = ((await ep.callTool('read_file', { repo: p.repo, path })).result as { content: string }).content;
      let fixed = src;
      for (const g of p.gold) fixed = fixed.replace(g.buggy, g.fixed);
      const run = (await ep.callTool('run_tests', { repo: p.repo })).result as { failed: string[] };
      assert.deepEqual([...run.failed].sort(), [...p.fail_to_pass].sort(), `${lang}: the buggy repo fails exactly the fail-to-pass tests`);
      const good = await ep.verify({ answer: { files: { [path]: fixed } } });
      assert.equal(good.score, 1, `${lang}: ${good.reason}`);
      const unfixed = await ep.verify({ answer: { files: { [path]: src } } });
      assert.equal(unfixed.score, 0);
      assert.match(unfixed.reason, /failing tests: /);
      // Rewriting a test to pass trivially is ignored: the repository's own tests are run.
      const testFile = listing.files.find((f) => f.test)!.path;
      const cheat = await ep.verify({ answer: { files: { [testFile]: '' } } });
      assert.equal(cheat.score, 0);
      assert.equal((await ep.verify({ answer: { files: { 'new.py': 'x' } } })).score, 0);
      assert.equal((await ep.verify({ answer: 'patch' })).score, 0);
      const refused = await ep.callTool('run_tests', { repo: p.repo, files: { [testFile]: '' } });
      assert.equal(refused.ok, false);
      assert.match(refused.error!, /cannot be replaced/);
    });
  }
});

test('env validate accepts a generated code-agent environment', async () => {
  const ids = ['python', 'node'].map((l) => env.tasks.find((t) => (t.params as Params).lang === l)!.id);
  const report = await validateEnvironment(env, { jobs: 2, taskIds: ids });
  assert.equal(report.ok, true, JSON.stringify(report.tasks.filter((t) => !t.ok), null, 1));
  assert.deepEqual(report.unexercisedTools, []);
});


const fingerprint = (c: Candidate) => JSON.stringify([c.tpl.name, c.buggy, c.edits.map((e) => e.issue)]);

test('candidate set: a few hundred distinct tasks, same count for every seed, deterministic, seed-varied', () => {
  assert.ok(CODE_AGENT_MAX_TASKS >= 300, `only ${CODE_AGENT_MAX_TASKS} candidates`);
  const base = codeAgentCandidates(0);
  for (const seed of [1, 7, 123, 40_000]) assert.equal(codeAgentCandidates(seed).length, CODE_AGENT_MAX_TASKS, `seed ${seed}`);
  for (const seed of [0, 7]) {
    const cs = seed === 0 ? base : codeAgentCandidates(seed);
    assert.equal(new Set(cs.map(fingerprint)).size, cs.length, `seed ${seed}: duplicate tasks`);
    for (const c of cs) {
      for (const e of c.edits) {
        assert.notEqual(c.buggy[e.path], c.tpl.files[e.path], `${c.tpl.name}: bug changes nothing`);
        assert.ok(!c.tpl.tests.includes(e.path), `${c.tpl.name}: bug in a test file`);
        // A bug report describes the symptom; it must not spell out the corrected code.
        assert.ok(!e.issue.includes(e.fixed), `${c.tpl.name}: issue text contains the fix ${JSON.stringify(e.fixed)}`);
        assert.ok(e.issue.length > 20, `${c.tpl.name}: issue text too short`);
      }
    }
  }
  // Same seed, same tasks.
  assert.deepEqual(codeAgentCandidates(0).map(fingerprint), base.map(fingerprint));
  // Different seeds give different code and data for the seeded repositories.
  const a = buildRepos(0), b = buildRepos(1);
  const differing = a.filter((t, i) => JSON.stringify(t.files) !== JSON.stringify(b[i]!.files)).length;
  assert.ok(differing >= 14, `only ${differing} repositories vary with the seed`);
  const langs = new Set(REPO_SPECS.map((s) => s.lang));
  assert.deepEqual(langs, new Set(['python', 'node']));
  assert.ok(REPO_SPECS.length >= 18);
});

test('measured for real on a sample: gold passes everything, each sampled bug fails some test and breaks none', async () => {
  const seed = 11;
  const repos = buildRepos(seed);
  const rng = new Rng(seed).fork('sample');
  const byRepo = new Map<string, Candidate[]>();
  for (const c of codeAgentCandidates(seed)) byRepo.set(c.tpl.name, [...(byRepo.get(c.tpl.name) ?? []), c]);
  // One candidate per repository (single or paired), plus every repository's gold run.
  const sample = [...byRepo.values()].map((cs) => rng.pick(cs));
  const jobs: Array<() => Promise<void>> = [];
  const gold = new Map<string, RunOut>();
  for (const t of repos) {
    jobs.push(async () => {
      const g = await runner.runTestsAsync(t.lang, t.files, t.tests);
      const names = Object.keys(g.results);
      assert.ok(names.length >= 4, `${t.name}: only ${names.length} tests found\n${g.output}`);
      assert.deepEqual(names.filter((n) => g.results[n] !== 'pass'), [], `${t.name} gold\n${g.output}`);
      gold.set(t.name, g);
    });
  }
  const before = new Map<Candidate, RunOut>();
  for (const c of sample) jobs.push(async () => void before.set(c, await runner.runTestsAsync(c.tpl.lang, c.buggy, c.tpl.tests)));
  for (let i = 0; i < jobs.length; i += 4) await Promise.all(jobs.slice(i, i + 4).map((j) => j()));
  for (const c of sample) {
    const g = gold.get(c.tpl.name)!.results;
    const b = before.get(c)!.results;
    const f2p = Object.keys(g).filter((n) => b[n] !== 'pass');
    const p2f = Object.keys(b).filter((n) => b[n] === 'pass' && g[n] !== 'pass');
    assert.ok(f2p.length > 0, `${c.tpl.name} ${c.edits.map((e) => e.buggy).join(' + ')}: no failing test`);
    assert.deepEqual(p2f, []);
  }
});

test('generation is deterministic and rejects bad arguments', async () => {
  const again = await generateCodeAgent({ seed: 5, tasks: 6, outDir: join(root, "again") });
  assert.deepEqual(taskFiles(again.dir), taskFiles(env.dir));
  await assert.rejects(generateCodeAgent({ seed: 3, tasks: CODE_AGENT_MAX_TASKS + 1, outDir: join(root, 'x') }), /--tasks must be an integer in 1\.\.\d+/);
  await assert.rejects(generateCodeAgent({ seed: -1, tasks: 1, outDir: join(root, 'y') }), /--seed/);
});
