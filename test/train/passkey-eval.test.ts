// The passkey evaluation (src/train/passkey-eval.ts, bench/passkey.ts): prompts filled to a length in
// tokens with the needle at the asked depth, the teacher-forced exact-match rule on stub logits (always
// right → 1, one wrong digit → 0), a tiny random model in both attention modes, and the command line's
// one-line errors (exit 2) and JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';
import { PASSKEY_FILLER, passkeyNeedle } from '../../src/data/synthetic/passkey.js';
import { buildPasskeyCase, modelLogits, runPasskeyEval, scoreAnswer, trialKey, type LogitsFn, type Tokenize } from '../../src/train/passkey-eval.js';
import { buildMiniDeepSeekTokenizer } from '../chat/mini-tokenizer.js';
import { fixtureDir } from '../model/golden-data.js';
import { tinyModel } from './tiny.js';

const here = dirname(fileURLToPath(import.meta.url));
const BENCH = resolve(here, '../../bench/passkey.js');
const mini = buildMiniDeepSeekTokenizer();
const miniTok = new DeepSeekTokenizer(mini.tokenizerJson, mini.tokenizerConfig, 'mini tokenizer.json');
const bpe: Tokenize = (s) => miniTok.encode(s);
/** One token per character, ids 3..63 (a tiny model's vocabulary of 64; 0 is BOS). */
const chars: Tokenize = (s) => [...s].map((c) => 3 + (c.codePointAt(0)! % 61));

const made: string[] = [];
process.on('exit', () => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dsv32-passkey-'));
  made.push(d);
  return d;
};

test('a case fills the length and puts the needle within one line of depth × the haystack', () => {
  for (const [name, tok] of [['bpe', bpe], ['chars', chars]] as const) {
    const line = tok(PASSKEY_FILLER + '\n').length;
    for (const length of [200, 700, 2000]) {
      for (const depth of [0, 0.1, 0.25, 0.5, 0.75, 1]) {
        const c = buildPasskeyCase(tok, { length, depth, key: '48213', bos: 0 });
        const where = `${name} length ${length} depth ${depth}`;
        assert.ok(c.ids.length <= length && c.ids.length > length - line - 2, `${where}: ${c.ids.length} tokens`);
        assert.equal(c.ids[0], 0);
        assert.deepEqual(c.ids.slice(c.answerStart), c.answerIds);
        assert.equal(c.answerStart + c.answerIds.length, c.ids.length);
        const needle = tok(passkeyNeedle('48213') + '\n').length;
        const haystack = c.questionToken - c.start - needle; // filler tokens
        assert.ok(Math.abs(c.needleToken - c.start - depth * haystack) <= line, `${where}: needle at ${c.needleToken}, haystack ${haystack}`);
        // and so within one line (plus the fixed tail) of depth × length
        assert.ok(Math.abs(c.needleToken - depth * length) <= line + (length - haystack), where);
      }
    }
  }
  assert.equal(miniTok.decode(buildPasskeyCase(bpe, { length: 300, depth: 0.5, key: '48213' }).answerIds), ' 48213');
  assert.throws(() => buildPasskeyCase(bpe, { length: 20, depth: 0.5, key: '48213' }), /needs at least \d+ tokens; length 20 is too short/);
  assert.equal(trialKey(1, 256, 0.5, 0), trialKey(1, 256, 0.5, 0));
  assert.notEqual(trialKey(1, 256, 0.5, 0), trialKey(1, 256, 0.5, 1));
});

const oneHot = (V: number, i: number): Float32Array => {
  const r = new Float32Array(V).fill(-1);
  r[i] = 5;
  return r;
};

test('the scoring rule: the argmax at every answer position must be the answer token', async () => {
  const ans = [7, 8, 9];
  const right = scoreAnswer(ans.map((t) => oneHot(16, t)), ans);
  assert.deepEqual([right.correct, right.tokensRight], [true, 3]);
  const two = scoreAnswer([oneHot(16, 7), oneHot(16, 8), oneHot(16, 10)], ans);
  assert.deepEqual([two.correct, two.tokensRight], [false, 2]);
  const wrong = scoreAnswer(ans.map((t) => oneHot(16, t + 1)), ans);
  assert.deepEqual([wrong.correct, wrong.tokensRight], [false, 0]);
  // nll: one-hot rows of 5 against 15 of −1: −log(e^5 / (e^5 + 15 e^−1)) when right, 6 more when not
  const nRight = Math.log(Math.exp(5) + 15 * Math.exp(-1)) - 5;
  assert.ok(Math.abs(right.nll - nRight) < 1e-9 && Math.abs(wrong.nll - (nRight + 6)) < 1e-9 && Math.abs(two.nll - (nRight + 2)) < 1e-9);
  // near-uniform logits: −log(1/16)
  assert.ok(Math.abs(scoreAnswer([new Float32Array(16)], [3]).nll - Math.log(16)) < 1e-9);
  assert.throws(() => scoreAnswer([oneHot(16, 7)], ans), /1 logit rows for 3 answer tokens/);

  // on the grid, with stubs that see the teacher-forced sequence: row r predicts ids[r + 1]
  const V = 64;
  const oracle: LogitsFn = (ids, rows) => rows.map((r) => oneHot(V, ids[r + 1]!));
  const wrongDigit: LogitsFn = (ids, rows) => rows.map((r) => oneHot(V, (ids[r + 1]! + 1) % V));
  const lastWrong: LogitsFn = (ids, rows) => rows.map((r, i) => oneHot(V, i === rows.length - 1 ? (ids[r + 1]! + 1) % V : ids[r + 1]!));
  const o = { lengths: [128, 256], depths: [0, 0.5, 1], trials: 3, seed: 1, bos: 0 };
  const all = await runPasskeyEval(chars, oracle, o);
  assert.deepEqual(all.accuracy, [[1, 1, 1], [1, 1, 1]]);
  assert.deepEqual(all.perLength, [1, 1]);
  assert.equal(all.mean, 1);
  assert.equal(all.rows.length, 2 * 3 * 3);
  const none = await runPasskeyEval(chars, wrongDigit, o);
  assert.deepEqual(none.accuracy, [[0, 0, 0], [0, 0, 0]]);
  assert.equal(none.mean, 0);
  const almost = await runPasskeyEval(chars, lastWrong, o);
  assert.equal(almost.mean, 0);
  // " 48213" is 6 character tokens: 5 of 6 right
  for (const row of almost.tokenAccuracy) for (const x of row) assert.ok(Math.abs(x - 5 / 6) < 1e-12);
  // a stub that copies the key from a needle within its last W tokens before the question (never from
  // the teacher-forced answer): right at depth 1, wrong at depth 0 of a long prompt — cells are per depth
  const W = 120;
  const needleHead = chars('The pass key is ');
  const question = chars('\nWhat is the pass key? The pass key is');
  const windowed: LogitsFn = (ids, rows) => {
    const answerStart = rows[0]! + 1;
    const lo = Math.max(0, answerStart - question.length - W);
    let at = -1;
    for (let j = answerStart - question.length - needleHead.length; j >= lo && at < 0; j--) if (needleHead.every((t, k) => ids[j + k] === t)) at = j + needleHead.length;
    const guess = at < 0 ? [] : [chars(' ')[0]!, ...ids.slice(at, at + rows.length - 1)];
    return rows.map((_, i) => oneHot(V, guess[i] ?? 0));
  };
  const w = await runPasskeyEval(chars, windowed, { lengths: [160, 600], depths: [0, 1], trials: 2, seed: 4, bos: 0 });
  assert.deepEqual(w.accuracy, [[1, 1], [0, 1]]);
  assert.deepEqual(w.perLength, [1, 0.5]);
});

test('a tiny random model runs in both attention modes; accuracies lie in [0, 1] with the grid shape', async () => {
  const model = tinyModel({ seed: 2 });
  const o = { lengths: [120, 200], depths: [0, 0.5, 1], trials: 2, seed: 3, bos: 0 };
  for (const mode of ['dense', 'sparse'] as const) {
    const t = await runPasskeyEval(chars, modelLogits(model, mode), o);
    assert.equal(t.accuracy.length, 2);
    for (const row of t.answerNll) assert.ok(row.length === 3 && row.every((x) => x > 0 && Number.isFinite(x)));
    for (const row of [...t.accuracy, ...t.tokenAccuracy]) {
      assert.equal(row.length, 3);
      for (const x of row) assert.ok(x >= 0 && x <= 1, `${mode}: ${x}`);
    }
    assert.equal(t.perLength.length, 2);
    assert.ok(t.mean >= 0 && t.mean <= 1);
    assert.equal(t.rows.length, 12);
  }
  // the mode takes effect: past index_topk (4) keys, sparse attention gives other logits than dense
  const c = buildPasskeyCase(chars, { length: 120, depth: 0.5, key: '48213', bos: 0 });
  const rows = [c.answerStart - 1];
  const d = (await modelLogits(model, 'dense')(Int32Array.from(c.ids), rows))[0]!;
  const s = (await modelLogits(model, 'sparse')(Int32Array.from(c.ids), rows))[0]!;
  assert.equal(d.length, 64);
  assert.ok(Array.from(d).some((x, i) => Math.abs(x - s[i]!) > 1e-6));
});

function bench(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BENCH, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The tiny-f32 fixture model in a temp directory, with the mini tokenizer when asked. */
function fixtureModel(withTokenizer: boolean): string {
  const d = tmp();
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(fixtureDir('tiny-f32'), f), join(d, f));
  if (withTokenizer) writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(mini.tokenizerJson));
  return d;
}

test('the command line: bad input is one line naming the flag, exit 2', () => {
  const noTok = fixtureModel(false);
  const cases: [string[], RegExp][] = [
    [[], /--model DIR is required/],
    [['--model', '/nonexistent/passkey-model'], /--model \/nonexistent\/passkey-model: no such directory/],
    [['--model', noTok], /--model .*: no tokenizer\.json/],
    [['--model', noTok, '--lengths', '256,,512'], /--lengths must be a comma-separated list/],
    [['--model', noTok, '--lengths', '256,abc'], /--lengths must be a comma-separated list/],
    [['--model', noTok, '--depths', '0,1.5'], /--depths must be a comma-separated list of numbers in \[0, 1\]/],
    [['--model', noTok, '--trials', '0'], /--trials must be an integer/],
    [['--model', noTok, '--attention', 'mixed'], /--attention must be dense, sparse or both/],
    [['--model', noTok, '--lengths', '256,20000'], /--lengths 20000: above --model .* max_position_embeddings \(16384\)/],
    [['--model', fixtureModel(true), '--model2', '/nonexistent/two'], /--model2 \/nonexistent\/two: no such directory/],
  ];
  for (const [args, re] of cases) {
    const r = bench(...args, '--device', 'cpu');
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^passkey: /);
  }
  const withTok = fixtureModel(true);
  const short = bench('--model', withTok, '--lengths', '16', '--device', 'cpu');
  assert.equal(short.status, 2);
  assert.match(short.stderr, /^passkey: --lengths 16: a passkey prompt needs at least \d+ tokens/);
});

test('the command line runs a checkpoint in both modes and writes the table as JSON', () => {
  const dir = fixtureModel(true);
  const out = join(tmp(), 'pk.json');
  const r = bench('--model', dir, '--lengths', '96,160', '--depths', '0,1', '--trials', '1', '--device', 'cpu', '--json', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /dense attention/);
  assert.match(r.stdout, /sparse attention \(top-16\)/);
  const j = JSON.parse(readFileSync(out, 'utf8')) as { lengths: number[]; results: { attention: string; table: { accuracy: number[][]; perLength: number[]; mean: number } }[] };
  assert.deepEqual(j.lengths, [96, 160]);
  assert.deepEqual(j.results.map((x) => x.attention), ['dense', 'sparse']);
  for (const x of j.results) {
    assert.equal(x.table.accuracy.length, 2);
    assert.ok(x.table.accuracy.every((row) => row.length === 2 && row.every((a) => a >= 0 && a <= 1)));
    assert.equal(x.table.perLength.length, 2);
  }
});
