// Size one stage of the dsv32-mini recipe to the GPU time a session has, from a measured speed: the stage
// gets steps = seconds · tokens/s / (batch · seqLen) · 0.92 (held-out evaluations and checkpoints take the
// rest), clamped to [--min, --max]; its cosine schedule, evaluation and checkpoint intervals follow the
// new length. The step count is fixed before the stage starts (the schedule depends on it, and a resumed
// run must be the same run), so it is measured first, on the same machine:
//   node dist/bench/train-step.js --config CONFIG --device cuda --batch 32 --seq 512 --steps 3 --phases pretrain
//   node scripts/size-recipe.mjs --from models/dsv32-mini/recipe --out /tmp/recipe --stage pretrain \
//     --tokens-per-s 21000 --seconds 600 [--min 300] [--max 1500]
// Every other stage's config is copied unchanged, so --out is a whole recipe (RECIPE= for
// scripts/device-train-mini.sh). Prints the stage's new step count.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) {
    if (dflt === undefined) fail(`${name} is required`);
    return dflt;
  }
  return args[i + 1];
};
function fail(msg) {
  console.error(`size-recipe: ${msg}`);
  process.exit(2);
}
const num = (name, dflt) => {
  const v = Number(opt(name, dflt));
  if (!Number.isFinite(v) || v <= 0) fail(`${name} must be a positive number, got "${opt(name, dflt)}"`);
  return v;
};
const from = opt('--from');
const out = opt('--out');
const stage = opt('--stage');
const tps = num('--tokens-per-s');
const seconds = num('--seconds');
const min = num('--min', '1');
const max = num('--max', '100000');

if (!existsSync(from) || !statSync(from).isDirectory()) fail(`--from ${from}: not a directory (expected a recipe folder of <stage>.json files)`);
mkdirSync(out, { recursive: true });
const files = readdirSync(from).filter((f) => f.endsWith('.json'));
if (!files.includes(`${stage}.json`)) fail(`--stage ${stage}: no ${stage}.json in ${from} (there: ${files.join(', ')})`);
for (const f of files) {
  const c = JSON.parse(readFileSync(join(from, f), 'utf8'));
  if (f === `${stage}.json`) {
    const perStep = c.data.batchSize * c.data.seqLen;
    const steps = Math.max(min, Math.min(max, Math.round((seconds * tps * 0.92) / perStep)));
    const scale = steps / c.steps;
    c.steps = steps;
    if (c.schedule?.totalSteps !== undefined) c.schedule.totalSteps = steps;
    if (c.eval?.every) c.eval.every = Math.max(1, Math.round(c.eval.every * scale));
    if (c.saveEvery) c.saveEvery = Math.max(1, Math.round(c.saveEvery * scale));
    console.log(`${stage}: ${steps} steps of ${perStep} tokens (${((steps * perStep) / 1e6).toFixed(2)} M) at ${Math.round(tps)} tokens/s ≈ ${Math.round((steps * perStep) / tps)} s`);
  }
  writeFileSync(join(out, f), `${JSON.stringify(c, null, 2)}\n`);
}
