// scripts/size-recipe.mjs: a stage's step count from a measured speed and a time budget,
// steps = round(seconds · tokens/s · 0.92 / (batch · seqLen)) clamped to [--min, --max], with the cosine
// schedule, evaluation and checkpoint intervals scaled along; every other stage copied unchanged; bad
// arguments are one-line errors naming the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SCRIPT = resolve('scripts/size-recipe.mjs');
const FROM = resolve('models/dsv32-mini/recipe');
const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });
const read = (dir: string, stage: string) => JSON.parse(readFileSync(join(dir, `${stage}.json`), 'utf8'));

test('size-recipe: the stage gets the steps its budget buys; schedule, eval and checkpoints follow; the rest is copied', () => {
  const out = mkdtempSync(join(tmpdir(), 'size-recipe-'));
  const before = read(FROM, 'pretrain');
  const perStep = before.data.batchSize * before.data.seqLen;
  // a budget of exactly 800 steps' worth of tokens at 0.92 efficiency
  const tps = 20_000;
  const seconds = (800 * perStep) / (tps * 0.92);
  const r = run('--from', FROM, '--out', out, '--stage', 'pretrain', '--tokens-per-s', String(tps), '--seconds', String(seconds));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^pretrain: 800 steps of /);
  const after = read(out, 'pretrain');
  assert.equal(after.steps, 800);
  assert.equal(after.schedule.totalSteps, 800);
  const scale = 800 / before.steps;
  assert.equal(after.eval.every, Math.max(1, Math.round(before.eval.every * scale)));
  assert.equal(after.saveEvery, Math.max(1, Math.round(before.saveEvery * scale)));
  assert.deepEqual({ ...after, steps: before.steps, schedule: before.schedule, eval: before.eval, saveEvery: before.saveEvery }, before);
  for (const s of ['dense', 'dsa', 'sft']) assert.deepEqual(read(out, s), read(FROM, s), `${s} copied unchanged`);
  // clamped to --max and --min
  assert.match(run('--from', FROM, '--out', out, '--stage', 'pretrain', '--tokens-per-s', String(tps), '--seconds', String(seconds), '--max', '500').stdout, /^pretrain: 500 steps/);
  assert.match(run('--from', FROM, '--out', out, '--stage', 'pretrain', '--tokens-per-s', '1', '--seconds', '1', '--min', '300').stdout, /^pretrain: 300 steps/);
});

test('size-recipe: bad arguments are one-line errors naming the flag', () => {
  const out = mkdtempSync(join(tmpdir(), 'size-recipe-'));
  for (const [args, re] of [
    [['--from', FROM, '--out', out, '--stage', 'pretrain', '--tokens-per-s', 'fast', '--seconds', '10'], /--tokens-per-s must be a positive number, got "fast"/],
    [['--from', FROM, '--out', out, '--stage', 'pretrain', '--tokens-per-s', '100'], /--seconds is required/],
    [['--from', FROM, '--out', out, '--stage', 'rl', '--tokens-per-s', '100', '--seconds', '10'], /--stage rl: no rl\.json in /],
    [['--from', join(out, 'nope'), '--out', out, '--stage', 'pretrain', '--tokens-per-s', '100', '--seconds', '10'], /--from .*nope: not a directory/],
  ] as const) {
    const r = run(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
});
