// Code-interpreter family: deterministic generation, run_python in the sandbox, verifiers (reference
// answer 1, wrong answers < 1) and `env validate` on a generated environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generateCodeInterpreter } from '../../src/envs/families/code-interpreter/family.js';
import { TEMPLATE_COUNT } from '../../src/envs/families/code-interpreter/templates.js';
import { registerBuiltinFamilies } from '../../src/envs/families/index.js';
import { getFamily } from '../../src/envs/families/registry.js';
import { loadEnvironment, type Environment } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { dbFingerprint } from '../../src/envs/db-state.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { scratchDir, taskFiles, verifyAnswer } from './family-helpers.js';
import { FamilyError } from '../../src/envs/errors.js';

const root = scratchDir('ci-test-');

function gen(name: string, seed: number, tasks: number): string {
  const out = join(root, name);
  generateCodeInterpreter({ seed, tasks, outDir: out });
  return out;
}

const envDir = gen('main', 5, TEMPLATE_COUNT);
const env: Environment = loadEnvironment(envDir);
const byKind = (k: string) => env.tasks.find((t) => t.params.kind === k)!;

const score = (taskId: string, answer: unknown) => verifyAnswer(env, taskId, answer);

test('generation is deterministic, covers every template, and makes a few hundred tasks', () => {
  const again = gen('again', 5, TEMPLATE_COUNT);
  assert.deepEqual(taskFiles(again), taskFiles(envDir));
  assert.equal(dbFingerprint(join(again, 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  assert.notEqual(dbFingerprint(join(gen('other', 6, 1), 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  assert.equal(new Set(env.tasks.map((t) => t.params.kind)).size, TEMPLATE_COUNT);
  registerBuiltinFamilies();
  const t0 = performance.now();
  const r = getFamily('code-interpreter').generate({ seed: 2, tasks: 300, outDir: join(root, 'big') });
  assert.ok(performance.now() - t0 < 20_000);
  assert.equal((r as { tasks: number }).tasks, 300);
  const prompts = taskFiles(join(root, 'big')).map((s) => (JSON.parse(s) as { prompt: string }).prompt);
  assert.equal(new Set(prompts).size, 300);
  assert.throws(() => generateCodeInterpreter({ seed: 1, tasks: 0, outDir: join(root, 'zero') }), (e: unknown) => e instanceof FamilyError && /--tasks/.test(e.message));
});

test('run_python runs code on a scratch copy of the data', async () => {
  const ep = Episode.open(env);
  try {
    const before = dbFingerprint(ep.dbPath);
    const r = (await ep.callTool('run_python', { code: 'import sqlite3\ndb = sqlite3.connect("data.sqlite")\nprint(db.execute("SELECT count(*) FROM sales").fetchone()[0])\ndb.execute("DELETE FROM sales")\ndb.commit()' })).result as { stdout: string; exit_code: number };
    assert.deepEqual([r.stdout.trim(), r.exit_code], ['480', 0]);
    assert.equal(dbFingerprint(ep.dbPath), before, 'the deletion must not reach the environment state');
    const err = (await ep.callTool('run_python', { code: 'raise ValueError("boom")' })).result as { stderr: string; exit_code: number };
    assert.equal(err.exit_code, 1);
    assert.match(err.stderr, /ValueError: boom/);
    const tables = (await ep.callTool('list_tables', {})).result as Array<{ table: string; rows: number }>;
    assert.deepEqual(tables.map((t) => [t.table, t.rows]), [['employees', 240], ['sales', 480], ['sensors', 360]]);
  } finally {
    ep.close();
  }
});

test('verifiers: exact integers, tolerant floats, exact names; wrong answers score 0', async () => {
  const int = byKind('prime_sum');
  const truth = (int.verifier as { numeric: number }).numeric;
  assert.equal((await score(int.id, { answer: truth })).score, 1);
  assert.equal((await score(int.id, { answer: String(truth) })).score, 1);
  assert.equal((await score(int.id, { answer: truth + 1 })).score, 0);
  const flt = byKind('pearson');
  const r = (flt.verifier as { numeric: number }).numeric;
  assert.ok(r > -1 && r < 1);
  assert.equal((await score(flt.id, { answer: Number(r.toFixed(9)) })).score, 1);
  assert.equal((await score(flt.id, { answer: r + 1e-3 })).score, 0);
  assert.equal((await score(flt.id, { answer: 'n/a' })).score, 0);
  const name = byKind('sales_top_region');
  const region = (name.verifier as { exact: { answer: string } }).exact.answer;
  assert.equal((await score(name.id, { answer: region })).score, 1);
  assert.equal((await score(name.id, { answer: region === 'North' ? 'South' : 'North' })).score, 0);
});

test('env validate: the Python reference programs reproduce the TypeScript ground truth', async () => {
  const ids = ['prime_sum', 'sales_top_region', 'pearson', 'median_salary'].map((k) => byKind(k).id);
  const report = await validateEnvironment(env, { jobs: 2, taskIds: ids });
  assert.equal(report.ok, true, JSON.stringify(report.tasks.filter((t) => !t.ok), null, 1));
  for (const t of report.tasks) {
    assert.equal(t.reference.verdict!.score, 1);
    assert.ok(t.perturbations.rejected >= 2);
  }
  assert.deepEqual(report.unexercisedTools, []);
});
