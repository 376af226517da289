// Evaluation against a scripted policy on loopback: exact pass@1 / pass@k per family from the
// unbiased estimator, resume without re-running recorded attempts, and the estimator itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { passAtK } from '../../src/envs/eval/passk.js';
import { formatReportTable, runEval } from '../../src/envs/eval/run.js';
import { EvalStore } from '../../src/envs/eval/store.js';
import { makeRunner } from '../../src/envs/queue/runner.js';
import { startFakeModelServer } from '../agent/fake-model-server.js';
import { counterFiles, writeEnv } from './counter-env.js';
import { counterPolicy } from './eval-llm-double.js';

function choose(n: number, k: number): number {
  let r = 1;
  for (let i = 0; i < k; i++) r = (r * (n - i)) / (i + 1);
  return r;
}

test('pass@k: matches the combinatorial definition and rejects bad input', () => {
  for (let n = 1; n <= 8; n++) {
    for (let c = 0; c <= n; c++) {
      for (let k = 1; k <= n; k++) {
        const exact = n - c < k ? 1 : 1 - choose(n - c, k) / choose(n, k);
        assert.ok(Math.abs(passAtK(n, c, k) - exact) < 1e-12, `n=${n} c=${c} k=${k}`);
      }
    }
  }
  assert.equal(passAtK(4, 1, 1), 0.25);
  assert.throws(() => passAtK(2, 1, 3), /at least 3 attempts/);
  assert.throws(() => passAtK(2, 3, 1), /0 <= c <= n/);
});

/** Two environments in different families, under one directory. */
function envsDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'dsv32-eval-'));
  for (const fam of ['alpha', 'beta']) {
    const files = counterFiles();
    const m = JSON.parse(files['manifest.json']!);
    files['manifest.json'] = JSON.stringify({ ...m, id: `counter-${fam}`, family: fam });
    const dir = writeEnv(files);
    cpSync(dir, join(root, fam), { recursive: true });
    rmSync(dir, { recursive: true, force: true });
  }
  return root;
}

test('eval: pass@1 / pass@k per family with the unbiased estimator; resumes without re-running', { timeout: 120_000 }, async (t) => {
  const root = envsDir();
  // Prompts mention the delta; family is not in the prompt, so correctness is by conversation order:
  // each prompt is asked 3 times per family (6 in all, alpha first with --jobs 1). Alpha: right on
  // its 1st and 2nd try (c=2); beta: right only on its 1st (c=1).
  const server = await startFakeModelServer(counterPolicy((_p, n) => (n < 3 ? n !== 2 : n === 3)));
  t.after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });
  const dbPath = join(root, 'eval.sqlite');
  const runner = await makeRunner({ jobs: 1 });
  const report = await runEval({ envsDir: root, model: { baseUrl: server.url, model: 'policy' }, k: 2, attempts: 3, dbPath, runner, maxSteps: 4 });
  await runner.close();
  assert.deepEqual(report.failedJobs, []);
  const fam = Object.fromEntries(report.families.map((f) => [f.family, f]));
  assert.equal(fam.alpha!.tasks, 3);
  assert.ok(Math.abs(fam.alpha!.passAt1 - 2 / 3) < 1e-12);
  assert.equal(fam.alpha!.passAtK, 1); // n=3, c=2: any 2 of 3 include a pass
  assert.ok(Math.abs(fam.beta!.passAt1 - 1 / 3) < 1e-12);
  assert.ok(Math.abs(fam.beta!.passAtK - 2 / 3) < 1e-12); // 1 - C(2,2)/C(3,2)
  assert.ok(Math.abs(report.overall.passAt1 - 0.5) < 1e-12);
  const table = formatReportTable(report);
  assert.match(table, /alpha\s+3\s+3\s+66\.7%\s+100\.0%/);
  assert.match(table, /beta\s+3\s+3\s+33\.3%\s+66\.7%/);

  // A second run with the same run id finds every attempt recorded and calls the model no more.
  const calls = server.requests.length;
  const runner2 = await makeRunner({ jobs: 2 });
  const again = await runEval({ envsDir: root, model: { baseUrl: server.url, model: 'policy' }, k: 2, attempts: 3, dbPath, runner: runner2, maxSteps: 4 });
  await runner2.close();
  assert.equal(server.requests.length, calls);
  assert.deepEqual(again.families, report.families);
  const store = new EvalStore(dbPath);
  assert.equal(store.rows(report.runId).length, 18);
  assert.equal(store.starts(report.runId).length, 18);
  store.close();
});
