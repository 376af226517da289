// Arithmetic family: deterministic held-out problems in the training templates, `env validate`, the
// verifier (exact integer only), the task-count and bad-option errors, and the manifest's
// `finalAnswer: "last-integer"` (a plain final reply is the submission) through a policy attempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isHeldOut, QUESTIONS } from '../../src/data/synthetic/arithmetic.js';
import { ARITH_MAX_TASKS, generateArithmetic } from '../../src/envs/families/arithmetic/family.js';
import { getFamily } from '../../src/envs/families/registry.js';
import { registerBuiltinFamilies } from '../../src/envs/families/index.js';
import { loadEnvironment, type Environment } from '../../src/envs/load.js';
import { Episode, lastInteger } from '../../src/envs/episode.js';
import { dbFingerprint } from '../../src/envs/db-state.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { clientFor, runPolicyAttempt } from '../../src/envs/eval/attempt.js';
import { defaultRunId } from '../../src/envs/eval/run.js';
import { startFakeModelServer } from '../agent/fake-model-server.js';
import { EnvFormatError, FamilyError } from '../../src/envs/errors.js';
import type { ModelClient, ModelRequest, ModelResponse } from '../../src/agent/messages.js';
import { scratchDir, taskFiles, verifyAnswer } from './family-helpers.js';

const root = scratchDir('arith-test-');
const gen = (name: string, seed: number, tasks: number) => generateArithmetic({ seed, tasks, outDir: join(root, name) }).dir;

const envDir = gen('main', 3, 40);
const env: Environment = loadEnvironment(envDir);
const score = (taskId: string, answer: unknown) => verifyAnswer(env, taskId, answer);
type P = { a: number; op: string; b: number; answer: number };

test('generation is deterministic from the seed; the task count is honoured', () => {
  assert.deepEqual(taskFiles(gen('again', 3, 40)), taskFiles(envDir));
  assert.equal(dbFingerprint(join(gen('again2', 3, 40), 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  assert.notDeepEqual(taskFiles(gen('other', 4, 40)), taskFiles(envDir));
  assert.equal(env.tasks.length, 40);
  // a prefix: fewer tasks from one seed are the first ones of more
  assert.deepEqual(taskFiles(gen('few', 3, 7)), taskFiles(envDir).slice(0, 7));
  registerBuiltinFamilies();
  const big = getFamily('arithmetic').generate({ seed: 1, tasks: 300, outDir: join(root, 'big') }) as { tasks: number; dir: string };
  assert.equal(big.tasks, 300);
  assert.equal(loadEnvironment(big.dir).tasks.length, 300);
});

test('problems are held out, distinct, exact, in the stated ranges and phrased with the training templates', () => {
  const seen = new Set<string>();
  const diffs = new Set<string>();
  const ops = new Set<string>();
  for (const t of env.tasks) {
    const p = t.params as P;
    assert.ok(isHeldOut({ a: p.a, op: p.op as '+', b: p.b }), `${p.a}${p.op}${p.b} is held out`);
    assert.ok(!seen.has(`${p.a}${p.op}${p.b}`));
    seen.add(`${p.a}${p.op}${p.b}`);
    const want = p.op === '+' ? p.a + p.b : p.op === '-' ? p.a - p.b : p.op === '×' ? p.a * p.b : p.a / p.b;
    assert.ok(Number.isInteger(want) && want === p.answer, JSON.stringify(p));
    if (p.op === '+' || p.op === '-') assert.ok(p.a >= 10 && p.a <= 9999 && p.b >= 10 && p.b <= 9999);
    if (p.op === '×') assert.ok(p.a >= 10 && p.a <= 999 && p.b >= 2 && p.b <= 99);
    if (p.op === '÷') assert.ok(p.b >= 2 && p.b <= 99 && p.a % p.b === 0);
    const templates = QUESTIONS[p.op as '+'].map((q) => q(p.a, p.b));
    assert.ok(templates.includes(t.prompt), t.prompt);
    diffs.add(t.difficulty!);
    ops.add(p.op);
  }
  assert.deepEqual([...diffs].sort(), ['easy', 'hard', 'medium']);
  assert.deepEqual([...ops].sort(), ['+', '-', '×', '÷'].sort());
  assert.equal(env.manifest.finalAnswer, 'last-integer');
});

test('env validate passes (reference solutions accepted, perturbations rejected, deterministic)', async () => {
  const small = loadEnvironment(gen('validate', 5, 4));
  const rep = await validateEnvironment(small, { jobs: 4 });
  assert.equal(rep.ok, true, JSON.stringify(rep, null, 1).slice(0, 2000));
});

test('verifier: the exact integer scores 1; wrong, non-integer and malformed answers score 0', async () => {
  const t = env.tasks[0]!;
  const want = (t.params as P).answer;
  assert.equal((await score(t.id, { answer: want })).score, 1);
  const wrong = await score(t.id, { answer: want + 1 });
  assert.equal(wrong.score, 0);
  assert.match(wrong.reason, /expected/);
  for (const bad of [{ answer: String(want) }, { answer: want + 0.5 }, { answer: true }, { result: want }, null, want]) {
    const v = await score(t.id, bad);
    assert.equal(v.score, 0, JSON.stringify(bad));
    assert.equal(v.error, undefined);
  }
  // the submit tool's schema refuses a non-integer before the verifier sees it
  const ep = Episode.open(env, t.id);
  try {
    assert.equal((await ep.callTool('submit_answer', { answer: 1.5 })).ok, false);
    assert.equal(ep.submitted, false);
  } finally {
    ep.close();
  }
});

test('bad options give clear errors', () => {
  const bad = (o: { seed?: number; tasks?: number; outDir?: string }, re: RegExp) =>
    assert.throws(() => generateArithmetic({ seed: 1, tasks: 3, outDir: join(root, 'bad'), ...o }), (e: unknown) => e instanceof FamilyError && re.test(e.message));
  bad({ tasks: 0 }, /--tasks must be an integer in 1\.\.5000, got 0/);
  bad({ tasks: ARITH_MAX_TASKS + 1 }, /--tasks must be an integer/);
  bad({ tasks: 2.5 }, /--tasks must be an integer/);
  bad({ seed: -1 }, /--seed must be a non-negative integer, got -1/);
  bad({ outDir: envDir }, /exists and is not empty/);
});

test('lastInteger reads the answer formats the model was trained on', () => {
  assert.equal(lastInteger('38 + 46 = 84.'), 84);
  assert.equal(lastInteger('The answer is 84.'), 84);
  assert.equal(lastInteger('**84**'), 84);
  assert.equal(lastInteger('84'), 84);
  assert.equal(lastInteger('12 - 40 = -28.'), -28);
  assert.equal(lastInteger('12 − 40 = −28.'), -28);
  assert.equal(lastInteger('1234 + 6 = 1,240'), 1240);
  assert.equal(lastInteger('x is 3.0'), 3);
  assert.equal(lastInteger('about 2.5'), undefined);
  assert.equal(lastInteger('no number here'), undefined);
  assert.equal(lastInteger('9 - 4 is 5-3'), 3);
});

class ScriptedClient implements ModelClient {
  readonly description = 'scripted';
  constructor(private readonly replies: ModelResponse['message'][]) {}
  async complete(_req: ModelRequest): Promise<ModelResponse> {
    return { message: this.replies.shift() ?? { role: 'assistant', content: 'done' }, finishReason: 'stop' };
  }
  promptText(): string {
    return '';
  }
}

test('finalAnswer: a plain reply is the submission; a submit call still wins; other manifests are unaffected', async () => {
  const t = env.tasks[1]!;
  const want = (t.params as P).answer;
  const text = (s: string) => new ScriptedClient([{ role: 'assistant', reasoning_content: 'column by column 1 2 3', content: s }]);
  const ok = await runPolicyAttempt(env, t.id, text(`${(t.params as P).a} ${(t.params as P).op} ${(t.params as P).b} = ${want}.`));
  assert.deepEqual([ok.score, ok.submitted, ok.status], [1, true, 'final']);
  const wrong = await runPolicyAttempt(env, t.id, text(`The answer is ${want + 10}.`));
  assert.deepEqual([wrong.score, wrong.submitted], [0, true]);
  const none = await runPolicyAttempt(env, t.id, text('I do not know.'));
  assert.deepEqual([none.score, none.submitted, none.reason], [0, false, 'no answer was submitted']);
  const call = new ScriptedClient([
    { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'submit_answer', arguments: JSON.stringify({ answer: want }) } }] },
  ]);
  const viaTool = await runPolicyAttempt(env, t.id, call);
  assert.deepEqual([viaTool.score, viaTool.submitted, viaTool.toolCalls], [1, true, 1]);

  // the same environment without finalAnswer: a reply is not a submission
  const plainDir = join(root, 'plain');
  cpSync(envDir, plainDir, { recursive: true });
  const m = JSON.parse(readFileSync(join(plainDir, 'manifest.json'), 'utf8'));
  delete m.finalAnswer;
  writeFileSync(join(plainDir, 'manifest.json'), JSON.stringify(m));
  const plain = await runPolicyAttempt(loadEnvironment(plainDir), t.id, text(`${want}`));
  assert.deepEqual([plain.score, plain.submitted], [0, false]);

  // the loader refuses finalAnswer when the submit tool cannot take {answer: <integer>}
  const badDir = join(root, 'bad-final');
  cpSync(envDir, badDir, { recursive: true });
  const s = JSON.parse(readFileSync(join(badDir, 'tools/submit_answer.schema.json'), 'utf8'));
  s.parameters.properties.answer.type = 'string';
  writeFileSync(join(badDir, 'tools/submit_answer.schema.json'), JSON.stringify(s));
  assert.throws(() => loadEnvironment(badDir), (e: unknown) => e instanceof EnvFormatError && /finalAnswer "last-integer" submits/.test(e.message));
  m.finalAnswer = 'last-number';
  writeFileSync(join(plainDir, 'manifest.json'), JSON.stringify(m));
  assert.throws(() => loadEnvironment(plainDir), (e: unknown) => e instanceof EnvFormatError && /finalAnswer/.test(e.message));
});

test('eval --thinking: the client asks for thinking mode; the run id changes only when it is set', async () => {
  const t = env.tasks[2]!;
  const want = (t.params as P).answer;
  const server = await startFakeModelServer([{ reasoning_content: 'work it out', content: `The answer is ${want}.` }, { content: '1' }]);
  try {
    const on = await runPolicyAttempt(env, t.id, clientFor({ baseUrl: server.url, model: 'm', thinking: true }));
    assert.deepEqual([on.score, on.submitted], [1, true]);
    assert.deepEqual(server.requests[0]!.body.chat_template_kwargs, { thinking: true });
    await runPolicyAttempt(env, t.id, clientFor({ baseUrl: server.url, model: 'm' }));
    assert.equal(server.requests[1]!.body.chat_template_kwargs, undefined);
  } finally {
    await server.close();
  }
  const m = { baseUrl: 'http://x/v1', model: 'm' };
  assert.equal(defaultRunId('/e', m, 3), defaultRunId('/e', { ...m }, 3));
  assert.notEqual(defaultRunId('/e', { ...m, thinking: true }, 3), defaultRunId('/e', m, 3));
});
