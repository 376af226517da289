// End to end: `dsv32 synth` as a child process against a scripted OpenAI-compatible server on
// 127.0.0.1 (everything else real: sandbox, SQLite, env validation). The run is SIGKILLed in the
// middle of the level-2 stage and restarted; the second run must skip finished steps, restore the
// draft, finish, and publish only the tasks the policy solved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEnvironment } from '../../src/envs/load.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { SynthStore } from '../../src/envs/synth/store.js';
import { normalisePrompt, promptHash } from '../../src/envs/synth/dedup.js';
import { startFakeModelServer } from '../agent/fake-model-server.js';
import { OUT_PROMPT, PRICE_PROMPT, VALUE_PROMPT, conversationRole, inventoryDouble, type DoubleState } from './synth-llm-double.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function exited(c: ChildProcess): Promise<number | null> {
  return new Promise((r) => (c.exitCode !== null || c.signalCode ? r(c.exitCode) : c.once('exit', (code) => r(code))));
}

test('prompt normalisation: case, spacing and punctuation collide; numbers do not', () => {
  assert.equal(normalisePrompt('  What is   the PRICE of "widget"?'), 'what is the price of widget');
  assert.equal(promptHash('Price of widget?'), promptHash('price  of WIDGET'));
  assert.notEqual(promptHash('Add 3 to a'), promptHash('Add 4 to a'));
});

test('synth: builds, repairs, raises difficulty, filters by pass@k, resumes after SIGKILL', { timeout: 180_000 }, async (t) => {
  const state: DoubleState = { counts: new Map() };
  const inner = inventoryDouble(state);
  let armed = true;
  let reached!: () => void;
  const reachedLevel2 = new Promise<void>((r) => (reached = r));
  const server = await startFakeModelServer(async (req) => {
    const reply = await inner(req);
    const step = (req.body.messages as Array<{ role: string }>).filter((m) => m.role === 'assistant').length;
    // Hold the second reply of the level-2 stage (after list_products was written) until the kill.
    if (armed && conversationRole(req) === 'synth:task level 2' && step === 1) {
      armed = false;
      reached();
      return { ...reply, delayMs: 60_000 };
    }
    return reply;
  });
  const out = mkdtempSync(join(tmpdir(), 'dsv32-synth-'));
  t.after(async () => {
    await server.close();
    rmSync(out, { recursive: true, force: true });
  });
  const args = [MAIN, 'synth', '--category', 'inventory', '--base-url', server.url, '--model', 'synth-double', '--policy-model', 'policy-double', '--out', out, '--k', '2', '--levels', '3', '--max-steps', '6', '--policy-max-steps', '4', '--price-in', '1', '--price-out', '2'];
  const env = { ...process.env, DSV32_API_KEY: '' };

  const first = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let firstErr = '';
  first.stderr!.on('data', (d) => (firstErr += d));
  const early = exited(first).then((code) => {
    throw new Error(`first run exited (${code}) before reaching level 2: ${firstErr}`);
  });
  await Promise.race([reachedLevel2, early]);
  early.catch(() => {});
  const before = new Map(state.counts);
  first.kill('SIGKILL');
  await exited(first);

  const mid = new SynthStore(join(out, 'synth.sqlite'));
  assert.equal(mid.step('inventory-0/build')?.status, 'done');
  assert.equal(mid.step('inventory-0/task-1')?.status, 'done');
  assert.equal(mid.step('inventory-0/task-2')?.status, 'running');
  mid.close();
  assert.ok(existsSync(join(out, 'drafts/inventory-0/tools/list_products.py')), 'the killed stage had written list_products');

  const second = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  second.stdout!.on('data', (d) => (stdout += d));
  second.stderr!.on('data', (d) => (stderr += d));
  assert.equal(await exited(second), 0, stderr);

  // Finished stages were not redone: no new model calls for them.
  assert.equal(state.counts.get('synth:build'), before.get('synth:build'));
  assert.equal(state.counts.get('synth:task level 1'), before.get('synth:task level 1'));
  assert.equal(state.counts.get('synth:task level 1'), 2, 'level 1: a rejected submission, then the repaired one');

  const store = new SynthStore(join(out, 'synth.sqlite'));
  t.after(() => store.close());
  assert.equal(store.step('inventory-0/build')!.starts, 1);
  assert.equal(store.step('inventory-0/task-1')!.starts, 1);
  assert.equal(store.step('inventory-0/task-2')!.starts, 2);
  assert.equal(store.step('inventory-0/task-3')!.starts, 1);
  const tasks = Object.fromEntries(store.tasks().map((x) => [x.taskId, x]));
  assert.deepEqual(Object.keys(tasks).sort(), ['t1', 't2', 't3']);
  assert.deepEqual([tasks.t1!.status, tasks.t1!.passes, tasks.t1!.attempts], ['kept', 2, 2]);
  assert.deepEqual([tasks.t2!.status, tasks.t2!.passes, tasks.t2!.difficulty], ['kept', 2, 'medium']);
  assert.deepEqual([tasks.t3!.status, tasks.t3!.passes, tasks.t3!.prompt], ['dropped', 0, OUT_PROMPT]);
  const tot = store.totals();
  assert.ok(tot.promptTokens > 0 && tot.cost > 0, 'tokens and cost are accounted');

  const log = readFileSync(join(out, 'synth.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(log.some((e) => e.event === 'step_resume' && e.key === 'inventory-0/task-2'));
  assert.ok(log.some((e) => e.event === 'step_skip' && e.key === 'inventory-0/build'));
  assert.ok(log.some((e) => e.event === 'task_rejected' && e.key === 'inventory-0/task-1' && /did not pass validation/.test(e.detail)));
  assert.ok(log.some((e) => e.event === 'task_rejected' && e.key === 'inventory-0/task-3' && /duplicate/.test(e.detail)));

  // Published: only the kept tasks, and they validate.
  const pub = loadEnvironment(join(out, 'envs/inventory-0'));
  assert.deepEqual(pub.tasks.map((x) => x.id), ['t1', 't2']);
  assert.deepEqual([...pub.tools.keys()].sort(), ['get_product', 'list_products', 'submit_result']);
  assert.equal(pub.manifest.family, 'inventory');
  const report = await validateEnvironment(pub);
  assert.ok(report.ok, JSON.stringify(report.tasks.map((x) => [x.taskId, x.ok])));

  const prompts = readFileSync(join(out, 'prompts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(prompts.map((p) => p.prompt), [PRICE_PROMPT, VALUE_PROMPT]);
  assert.match(stdout, /inventory-0: 2\/3 tasks kept/);
});
