// Rewards (src/rl/rewards.ts): each term on hand-made turns with known values, the composed reward, the
// zod config's defaults and errors, and the GenRM over a local OpenAI-compatible judge (rubric sent, grade
// read) and against an unreachable endpoint (a clear error within seconds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EOS, THINK_END } from '../../src/chat/tokens.js';
import {
  GenRmError,
  GenerativeRewardModel,
  RewardConfigError,
  type RewardTurn,
  computeReward,
  dominantScript,
  formatScore,
  languageConsistency,
  lengthPenalty,
  parseRewardConfig,
  turnProse,
  turnWellFormed,
} from '../../src/rl/rewards.js';

const dsml = (name: string, params: string) => `\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="${name}">\n${params}\n</｜DSML｜invoke>\n</｜DSML｜function_calls>`;
const param = (k: string, v: string, isString: boolean) => `<｜DSML｜parameter name="${k}" string="${isString}">${v}</｜DSML｜parameter>`;
const turn = (text: string, finishReason: RewardTurn['finishReason'] = 'stop'): RewardTurn => ({ text, finishReason, tokens: 10 });

test('format: a turn is well formed iff it ended on its own, parses strictly, has JSON non-string params and (thinking) reasoning', () => {
  const good = turn(`Let me run it.${THINK_END}${dsml('run_python', param('code', 'print(1)', true))}${EOS}`);
  assert.equal(turnWellFormed(good, 'thinking'), true);
  assert.equal(turnWellFormed(turn(`thought${THINK_END}The answer is 4.${EOS}`), 'thinking'), true);
  assert.equal(turnWellFormed(turn(`thought${THINK_END}The answer is 4.${EOS}`, 'length'), 'thinking'), false, 'cut off at max tokens');
  assert.equal(turnWellFormed(turn(`no closing think, answer 4${EOS}`), 'thinking'), false, 'missing </think>');
  assert.equal(turnWellFormed(turn(`${THINK_END}The answer is 4.${EOS}`), 'thinking'), false, 'empty reasoning');
  assert.equal(turnWellFormed(turn(`The answer is 4.${EOS}`), 'chat'), true, 'chat mode has no reasoning');
  assert.equal(turnWellFormed(turn(`r${THINK_END}${dsml('submit_answer', param('answer', 'four', false))}${EOS}`), 'thinking'), false, 'string="false" value is not JSON');
  assert.equal(turnWellFormed(turn(`r${THINK_END}${dsml('submit_answer', param('answer', '4', false))}${EOS}`), 'thinking'), true);
  assert.equal(turnWellFormed(turn(`r${THINK_END}<invoke name="x"></invoke>${EOS}tail`), 'thinking'), false, 'text after EOS');
  assert.equal(formatScore([good, turn('broken'), turn(`r${THINK_END}ok${EOS}`), turn('x', 'abort')], 'thinking'), 0.5);
  assert.equal(formatScore([], 'thinking'), 0);
});

test('language: the share of word-like units in the prompt\'s dominant script; code in tool calls does not count', () => {
  assert.equal(dominantScript('Compute the sum of 2 and 3.'), 'latin');
  assert.equal(dominantScript('计算 2 和 3 的和 (use Python)'), 'cjk', '5 Han characters against 2 Latin words');
  assert.equal(dominantScript('1 + 2 = ?'), null);
  assert.equal(languageConsistency('What is 2 + 3?', 'We add them: five.'), 1);
  // Chinese prompt; reasoning "我们需要计算 the total" = 6 Han units + 2 Latin words → 6/8
  assert.equal(languageConsistency('计算总和', '我们需要计算 the total'), 0.75);
  // English prompt, fully Chinese answer → 0
  assert.equal(languageConsistency('Compute the total.', '总和是五'), 0);
  // Cyrillic: 2 Russian words + 1 Latin word
  assert.ok(Math.abs(languageConsistency('Сколько будет два плюс три?', 'Ответ пять, okay') - 2 / 3) < 1e-12);
  assert.equal(languageConsistency('2 + 3 = ?', '五'), 1, 'a prompt without letters has no language to follow');
  assert.equal(languageConsistency('Compute it.', '12345'), 1, 'a response without letters is not inconsistent');
  // combining marks stay in their run: "café" (e + U+0301) is one Latin word
  assert.equal(languageConsistency('Order a coffee.', 'cafe\u0301 au lait'), 1);
  const prose = turnProse(`思考${THINK_END}答案${dsml('run_python', param('code', 'print("hello world")', true))}${EOS}`);
  assert.equal(prose.includes('hello'), false);
  assert.equal(languageConsistency('请计算', prose), 1);
});

test('length penalty: DAPO soft overlong ramp, 0 below L_max − B, linear inside the buffer, 1 past L_max', () => {
  assert.equal(lengthPenalty(0, 100, 20), 0);
  assert.equal(lengthPenalty(80, 100, 20), 0);
  assert.equal(lengthPenalty(90, 100, 20), 0.5);
  assert.equal(lengthPenalty(100, 100, 20), 1);
  assert.equal(lengthPenalty(101, 100, 20), 1);
  assert.throws(() => lengthPenalty(5, 100, 200), (e: unknown) => e instanceof RewardConfigError && /buffer must be in \(0, maxTokens = 100\]/.test(e.message));
  assert.throws(() => lengthPenalty(-1, 100, 20), /tokens must be a non-negative integer/);
});

test('reward config: defaults, and invalid fields named', () => {
  const d = parseRewardConfig({});
  assert.deepEqual([d.outcome, d.format, d.language, d.length.weight, d.length.maxTokens, d.length.buffer, d.genrm], [1, 0.1, 0.1, 0.1, 16384, 4096, undefined]);
  assert.throws(() => parseRewardConfig({ format: -1 }), (e: unknown) => e instanceof RewardConfigError && /^reward config: format: /.test(e.message));
  assert.throws(() => parseRewardConfig({ length: { maxTokens: 10, buffer: 20 } }), /length: length\.buffer must be ≤ length\.maxTokens/);
  assert.throws(() => parseRewardConfig({ lenght: {} }), /reward config: \(root\): Unrecognized key/);
  assert.throws(() => parseRewardConfig({ genrm: { baseUrl: 'not a url', model: 'j', rubric: 'r' } }), /reward config: genrm\.baseUrl: /);
});

test('computeReward: the weighted sum of outcome, format, language and length; a failed verifier scores outcome 0', async () => {
  const cfg = parseRewardConfig({ outcome: 1, format: 0.2, language: 0.5, length: { weight: 0.3, maxTokens: 20, buffer: 10 } });
  const turns = [
    { text: `I compute.${THINK_END}${dsml('run_python', param('code', 'print(5)', true))}${EOS}`, finishReason: 'stop' as const, tokens: 8 },
    { text: `结果是五, done${THINK_END}5${EOS}`, finishReason: 'stop' as const, tokens: 7 },
  ];
  const r = await computeReward({ prompt: 'Compute 2 + 3.', mode: 'thinking', turns, verdict: { score: 1 } }, cfg);
  // format 1; language: "I compute" (2 Latin) + "结果是五" (4 Han) + "done" (1 Latin) → 3/7; L = 15 → (15 − 10)/10
  assert.equal(r.format, 1);
  assert.ok(Math.abs(r.language - 3 / 7) < 1e-12);
  assert.equal(r.lengthPenalty, 0.5);
  assert.equal(r.generatedTokens, 15);
  assert.ok(Math.abs(r.reward - (1 + 0.2 + 0.5 * (3 / 7) - 0.3 * 0.5)) < 1e-12);
  const failed = await computeReward({ prompt: 'Compute 2 + 3.', mode: 'thinking', turns, verdict: { score: 0, reason: 'verifier failed', error: 'verifier crashed' } }, cfg);
  assert.equal(failed.outcome, 0);
  assert.equal(failed.verifierError, 'verifier crashed');
  await assert.rejects(computeReward({ prompt: 'x', mode: 'thinking', turns, verdict: { score: 2 } }, cfg), /verdict\.score must be in \[0, 1\], got 2/);
  const withGen = parseRewardConfig({ genrm: { baseUrl: 'http://127.0.0.1:9/v1', model: 'judge', rubric: 'r' } });
  await assert.rejects(computeReward({ prompt: 'x', mode: 'thinking', turns, verdict: { score: 1 } }, withGen), /genrm is configured but no GenerativeRewardModel was given/);
});

test('GenRM: the rubric, task and response go to the judge; its SCORE line is the grade; bad replies are errors', async () => {
  const seen: { messages: { role: string; content: string }[]; model: string; temperature: number }[] = [];
  let reply = 'The response computes the sum correctly.\nSCORE: 0.75';
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      seen.push(JSON.parse(raw));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: reply }, finish_reason: 'stop' }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const cfg = parseRewardConfig({ genrm: { baseUrl: `http://127.0.0.1:${port}/v1`, model: 'judge', rubric: 'Default rubric: be correct.', weight: 2 } });
    const g = new GenerativeRewardModel(cfg.genrm!);
    const turns = [turn(`Adding.${THINK_END}The sum is 5.${EOS}`)];
    const r = await computeReward({ prompt: 'Add 2 and 3.', mode: 'thinking', turns, verdict: { score: 1 }, rubric: 'Task rubric: the answer must be 5.' }, cfg, g);
    assert.equal(r.genrm, 0.75);
    assert.ok(Math.abs(r.reward - (1 + 0.1 + 0.1 + 2 * 0.75)) < 1e-12);
    const body = seen[0]!;
    assert.equal(body.model, 'judge');
    assert.equal(body.temperature, 0);
    const user = body.messages.find((m) => m.role === 'user')!.content;
    assert.match(user, /Task rubric: the answer must be 5\.[\s\S]*Add 2 and 3\.[\s\S]*Adding\.[\s\S]*The sum is 5\./);
    assert.doesNotMatch(user, /Default rubric|<\/think>|end▁of▁sentence/);
    assert.equal(await g.grade('q', 'a'), 0.75);
    assert.match(seen[1]!.messages[1]!.content, /Default rubric: be correct\./);
    reply = 'I cannot decide.';
    await assert.rejects(g.grade('q', 'a'), (e: unknown) => e instanceof GenRmError && /has no "SCORE: x" line/.test(e.message));
    reply = 'SCORE: 0.2 at first, but on reflection SCORE: 1.5';
    await assert.rejects(g.grade('q', 'a'), /SCORE 1\.5 is outside \[0, 1\]/);
  } finally {
    server.close();
  }
});

test('GenRM: an unreachable endpoint is a GenRmError naming it, within seconds', async () => {
  const cfg = parseRewardConfig({ genrm: { baseUrl: 'http://127.0.0.1:9/v1', model: 'judge', rubric: 'r' } });
  const g = new GenerativeRewardModel(cfg.genrm!);
  const t0 = Date.now();
  await assert.rejects(g.grade('q', 'a'), (e: unknown) => {
    assert.ok(e instanceof GenRmError);
    assert.match(e.message, /GenRM \(genrm\.baseUrl http:\/\/127\.0\.0\.1:9\/v1, model judge\) failed: POST http:\/\/127\.0\.0\.1:9\/v1\/chat\/completions: connection failed: .*ECONNREFUSED.*\(2 attempts\)/);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
});
