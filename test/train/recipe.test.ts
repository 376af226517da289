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
