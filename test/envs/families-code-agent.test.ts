// Code-agent family: injected bugs pass the fail-to-pass > 0 / pass-to-fail = 0 rule, the verifier
// runs the tests (gold patch 1, unfixed or test-editing submissions 0), and `env validate` passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCodeAgent } from '../../src/envs/families/code-agent/family.js';
import { loadEnvironment, type Environment, type LoadedTask } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { validateEnvironment } from '../../src/envs/validate.js';

const root = mkdtempSync(join(tmpdir(), 'code-agent-test-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const env: Environment = loadEnvironment(generateCodeAgent({ seed: 3, tasks: 6, outDir: join(root, 'main') }).dir);

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
