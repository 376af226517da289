// Environment format: loading, rejection of broken environments, episodes, verification, validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { loadEnvironment, listTools } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { EnvFormatError } from '../../src/envs/errors.js';
import { runSolution } from '../../src/envs/solution.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { perturbAnswer } from '../../src/envs/perturb.js';
import { counterFiles, writeEnv, type Files } from './counter-env.js';

function withEnv<T>(files: Files, fn: (dir: string) => Promise<T> | T, opts: { db?: boolean | string } = {}): Promise<T> {
  const dir = writeEnv(files, opts);
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function loadError(dir: string): EnvFormatError {
  try {
    loadEnvironment(dir);
  } catch (e) {
    if (e instanceof EnvFormatError) return e;
    throw e;
  }
  assert.fail('expected the environment to be rejected');
}

test('a valid environment loads; tools are listed with descriptions and schemas, submit last', () =>
  withEnv(counterFiles(), (dir) => {
    const env = loadEnvironment(dir);
    assert.equal(env.manifest.id, 'counter-test');
    assert.deepEqual(env.tasks.map((t) => t.id).sort(), ['add-js', 'add-py', 'fixed']);
    const tools = listTools(env);
    assert.deepEqual(tools.map((t) => t.name), ['add_to_counter', 'get_counter', 'submit_answer']);
    assert.equal(tools[1]!.description, 'Current value of a counter');
    assert.deepEqual((tools[1]!.parameters as { required: string[] }).required, ['name']);
  }));

test('episodes call tools against their own copy of the state', () =>
  withEnv(counterFiles(), async (dir) => {
    const env = loadEnvironment(dir);
    const ep = Episode.open(env, 'add-py');
    const other = Episode.open(env);
    try {
      assert.deepEqual((await ep.callTool('add_to_counter', { name: 'a', delta: 2 })).result, { name: 'a', value: 3 });
      assert.deepEqual((await ep.callTool('get_counter', { name: 'a' })).result, { name: 'a', value: 3 });
      assert.deepEqual((await other.callTool('get_counter', { name: 'a' })).result, { name: 'a', value: 1 });
      const missing = await ep.callTool('get_counter', { name: 'zzz' });
      assert.equal(missing.ok, false);
      assert.match(missing.error!, /no counter named 'zzz'/);
      const bad = await ep.callTool('get_counter', { name: 7 });
      assert.equal(bad.ok, false);
      assert.match(bad.error!, /invalid arguments for get_counter: \/name must be string/);
      assert.match((await ep.callTool('drop_tables', {})).error!, /unknown tool "drop_tables"/);
      assert.equal(ep.trace.length, 5);
      // the original environment database is untouched
      const fresh = Episode.open(env);
      assert.deepEqual((await fresh.callTool('get_counter', { name: 'a' })).result, { name: 'a', value: 1 });
      fresh.close();
    } finally {
      ep.close();
      other.close();
    }
  }));

test('submit then verify: the verifier sees the answer and the final state', () =>
  withEnv(counterFiles(), async (dir) => {
    const env = loadEnvironment(dir);
    const ep = Episode.open(env, 'add-py');
    try {
      assert.deepEqual(await ep.verify(), { score: 0, reason: 'no answer was submitted' });
      await ep.callTool('add_to_counter', { name: 'a', delta: 3 });
      assert.equal((await ep.callTool('submit_answer', { total: 9 })).ok, true);
      assert.equal((await ep.submit({ total: 1 })).ok, false, 'a second submission is refused');
      assert.deepEqual(await ep.verify(), { score: 1, reason: 'ok' });
      assert.equal((await ep.verify({ answer: { total: 10 } })).score, 0);
    } finally {
      ep.close();
    }
    const lazy = Episode.open(env, 'add-py');
    try {
      await lazy.submit({ total: 6 }); // right sum for the untouched state, but the task needed a change
      const v = await lazy.verify();
      assert.equal(v.score, 0);
      assert.match(v.reason, /counter a is 1, expected 4/);
    } finally {
      lazy.close();
    }
  }));

test('reference solutions (python and node helpers) run through the tools and score 1', () =>
  withEnv(counterFiles(), async (dir) => {
    const env = loadEnvironment(dir);
    for (const [id, total] of [
      ['add-py', 9],
      ['add-js', 16],
    ] as const) {
      const ep = Episode.open(env, id);
      try {
        const run = await runSolution(ep);
        assert.equal(run.error, undefined, run.run?.stderr);
        assert.deepEqual(run.answer, { total });
        assert.deepEqual(ep.trace.map((c) => c.tool), ['add_to_counter', 'get_counter', 'get_counter', 'submit_answer']);
        assert.equal((await ep.verify()).score, 1);
      } finally {
        ep.close();
      }
    }
  }));

test('a solution cannot reach the database directly', () => {
  const files = counterFiles();
  files['solutions/solve.py'] = `import os, sqlite3
from dsv32_env import submit
print(sorted(os.listdir('/env')))
db = sqlite3.connect('file:/env/state/db.sqlite?mode=ro', uri=True)
a, = db.execute("SELECT value FROM counters WHERE name='a'").fetchone()
submit({'total': a})
`;
  return withEnv(files, async (dir) => {
    const env = loadEnvironment(dir);
    const ep = Episode.open(env, 'add-py');
    try {
      const run = await runSolution(ep);
      assert.equal(run.submitted, false);
      assert.equal(run.run!.stdout.split('\n')[0], "['solutions', 'tools']");
      assert.match(run.error!, /unable to open database file|OperationalError/);
    } finally {
      ep.close();
    }
  });
});

test('env validate passes on a sound environment and reports each check', () =>
  withEnv(counterFiles(), async (dir) => {
    const report = await validateEnvironment(loadEnvironment(dir), { jobs: 2 });
    assert.equal(report.ok, true, JSON.stringify(report, null, 1));
    for (const t of report.tasks) {
      assert.equal(t.reference.verdict?.score, 1);
      assert.ok(t.perturbations.rejected >= 2, `${t.taskId}: ${t.perturbations.rejected}`);
      assert.ok(t.determinism.ok);
    }
    assert.equal(report.tasks.find((t) => t.taskId === 'add-py')!.toolCalls, 4);
    assert.deepEqual(report.toolExamples.map((e) => e.ok), [true, true, true]);
    assert.deepEqual(report.unexercisedTools, []);
  }));

test('env validate catches a non-deterministic tool, a lenient verifier and a failing solution', async () => {
  const nondet = counterFiles();
  nondet['tools/get_counter.py'] = `import json, os, sys
args = json.load(sys.stdin)
print(json.dumps({'name': args['name'], 'value': int.from_bytes(os.urandom(2), 'big')}))
`;
  await withEnv(nondet, async (dir) => {
    const r = await validateEnvironment(loadEnvironment(dir), { taskIds: ['fixed'] });
    assert.equal(r.ok, false);
    assert.match(r.tasks[0]!.determinism.detail, /get_counter .* returned different results on two fresh copies/);
    assert.ok(r.toolExamples.some((e) => !e.ok && e.tool === 'get_counter'));
  });

  const lenient = counterFiles();
  lenient['verifiers/check.py'] = `print('{"score": 1, "reason": "anything goes"}')\n`;
  await withEnv(lenient, async (dir) => {
    const r = await validateEnvironment(loadEnvironment(dir), { taskIds: ['add-py'] });
    assert.equal(r.tasks[0]!.reference.ok, true);
    assert.equal(r.tasks[0]!.perturbations.ok, false);
    assert.equal(r.tasks[0]!.perturbations.rejected, 0);
    assert.equal(r.ok, false);
  });

  const crashing = counterFiles();
  crashing['solutions/solve.py'] = `from dsv32_env import call\ncall('get_counter', name='nope')\n`;
  await withEnv(crashing, async (dir) => {
    const r = await validateEnvironment(loadEnvironment(dir), { taskIds: ['add-py'] });
    assert.equal(r.tasks[0]!.reference.ok, false);
    assert.match(r.tasks[0]!.reference.error!, /ToolError: tool get_counter exited with status 2: no counter named 'nope'/);
  });
});

test('broken environments are rejected with every problem naming its file', async () => {
  const f = counterFiles();
  f['manifest.json'] = JSON.stringify({ ...JSON.parse(f['manifest.json']!), version: 'one', difficulty: 'insane' });
  f['tools/get_counter.schema.json'] = '{ not json';
  f['tools/orphan.py'] = 'print(1)\n';
  f['tools/nocode.schema.json'] = JSON.stringify({ name: 'nocode', description: 'x', parameters: { type: 'object' } });
  f['tools/badschema.schema.json'] = JSON.stringify({ name: 'badschema', description: 'x', parameters: { type: 'object', properties: { a: { type: 'strng' } } } });
  f['tools/badschema.py'] = 'print(1)\n';
  f['tools/add_to_counter.js'] = 'const x = ;\n';
  f['verifiers/check.py'] = 'def broken(:\n';
  f['tasks/add-js.json'] = JSON.stringify({ ...JSON.parse(f['tasks/add-js.json']!), solution: { program: 'solutions/missing.py' } });
  f['tasks/fixed.json'] = JSON.stringify({ ...JSON.parse(f['tasks/fixed.json']!), id: 'other' });
  f['tasks/escape.json'] = JSON.stringify({ id: 'escape', prompt: 'p', solution: { program: '../../etc/passwd' }, verifier: { exact: 1 } });
  await withEnv(f, (dir) => {
    const e = loadError(dir);
    const byFile = new Map<string, string[]>();
    for (const p of e.problems) byFile.set(p.file, [...(byFile.get(p.file) ?? []), p.problem]);
    const has = (file: string, re: RegExp) => assert.ok(byFile.get(file)?.some((p) => re.test(p)), `${file} ~ ${re}: ${JSON.stringify([...byFile])}`);
    has('manifest.json', /version: a semantic version/);
    has('manifest.json', /difficulty/);
    has('tools/get_counter.schema.json', /not valid JSON/);
    has('tools/orphan.py', /no schema file tools\/orphan.schema.json/);
    has('tools/nocode.schema.json', /no code file tools\/nocode\.py/);
    has('tools/badschema.schema.json', /parameters is not a valid JSON Schema/);
    has('tools/add_to_counter.js', /JavaScript syntax error/);
    has('verifiers/check.py', /Python syntax error at line 1/);
    has('tasks/add-js.json', /solution: program "solutions\/missing.py" does not exist/);
    has('tasks/fixed.json', /id "other" must match the file name/);
    has('tasks/escape.json', /relative path inside the environment/);
    assert.match(e.message, /^environment .* is invalid:\n {2}/);
  });
  await withEnv(counterFiles(), (dir) => {
    const e = loadError(dir);
    assert.deepEqual(e.problems[0], { file: 'db.sqlite', problem: 'not a readable SQLite database: file is not a database' });
  }, { db: 'this is not sqlite' });
  await withEnv({ ...counterFiles(), 'manifest.json': null, 'tasks/add-py.json': '{"id": "add-py"}' }, (dir) => {
    const e = loadError(dir);
    assert.ok(e.problems.some((p) => p.file === 'manifest.json' && /cannot read: ENOENT/.test(p.problem)));
    assert.ok(e.problems.some((p) => p.file === 'tasks/add-py.json' && /prompt/.test(p.problem)));
  });
});

test('perturbations are distinct, deterministic and differ from the answer', () => {
  const ans = { days: [{ city: 'A', hotel: 'H1', cost: 10 }, { city: 'B', hotel: 'H2', cost: 20 }] };
  const p1 = perturbAnswer(ans, 8, 7);
  const p2 = perturbAnswer(ans, 8, 7);
  assert.equal(p1.length, 8);
  assert.deepEqual(p1, p2);
  const keys = new Set(p1.map((p) => JSON.stringify(p.answer)));
  assert.equal(keys.size, 8);
  assert.ok(!keys.has(JSON.stringify(ans)));
  assert.ok(p1.some((p) => p.description.startsWith('swap days.0.')), p1.map((p) => p.description).join(', '));
});
