// The dsv32-mini recipe (models/dsv32-mini/recipe, run by scripts/train-mini.sh): every stage's config
// parses, and the stages chain — DSA starts from the pretraining run, SFT from the DSA run — on the packs
// the script builds. A typo here would otherwise surface only on the GPU machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTrainConfig } from '../../src/train/config.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const RECIPE = join(ROOT, 'models/dsv32-mini/recipe');

test('dsv32-mini recipe: pretrain → dsa → sft parse and chain on the packs scripts/train-mini.sh builds', () => {
  const cfg = Object.fromEntries(['pretrain', 'dsa', 'sft'].map((s) => [s, parseTrainConfig(JSON.parse(readFileSync(join(RECIPE, `${s}.json`), 'utf8')))]));
  const script = readFileSync(join(ROOT, 'scripts/train-mini.sh'), 'utf8');
  const init = (s: string): string | undefined => ('init' in cfg[s]!.model ? cfg[s]!.model.init : undefined);
  assert.equal(init('dsa'), cfg.pretrain!.out);
  assert.equal(init('sft'), cfg.dsa!.out);
  for (const s of ['pretrain', 'dsa', 'sft']) {
    const pack = cfg[s]!.data.path;
    assert.ok(script.includes(`$W/${pack.replace(/^tmp\/mini\//, '')}`), `${s}: data.path ${pack} is not a pack the script builds`);
    assert.ok(cfg[s]!.schedule.kind !== 'cosine' || cfg[s]!.schedule.totalSteps === cfg[s]!.steps, `${s}: the cosine schedule's totalSteps must equal steps`);
  }
  assert.ok(cfg.dsa!.dsa.warmupSteps < cfg.dsa!.steps, 'the DSA stage has sparse steps after its warm-up');
});

test('dsv32-mini recipe: the dense control (dense.json) continues the pretraining run like the DSA stage, for as many steps as its sparse stage', () => {
  const load = (s: string) => parseTrainConfig(JSON.parse(readFileSync(join(RECIPE, `${s}.json`), 'utf8')));
  const [pre, dense, dsa] = [load('pretrain'), load('dense'), load('dsa')];
  assert.equal('init' in dense.model ? dense.model.init : undefined, pre.out, 'dense.json starts from the pretraining run');
  assert.deepEqual(dense.data, dsa.data, 'the same pack, sequence length, batch and data seed as the DSA stage');
  assert.equal(dense.steps, dsa.steps - dsa.dsa.warmupSteps, 'as many main-model steps as the DSA stage has sparse steps');
  assert.notEqual(dense.out, dsa.out);
  const script = readFileSync(join(ROOT, 'scripts/device-train-mini.sh'), 'utf8');
  assert.match(script, /dense\) kind=pretrain|\[ \$st = dense \] && kind=pretrain/, 'the GPU runner trains the dense control as a pretrain stage');
});
