// Passkey retrieval (needle in a haystack) against context length and needle depth, the long-context
// evaluation of the DSA reproduction (docs/dsa-reproduction.md): each model run with dense attention
// (every causal key) and with sparse attention (DSA: the lightning indexer's top-k).
//   node dist/bench/passkey.js --model DIR [--model2 DIR2 ...] [--lengths 256,512,1024,2048]
//        [--depths 0,0.25,0.5,0.75,1] [--trials 4] [--device cpu|cuda|auto] [--attention dense|sparse|both]
//        [--seed 1] [--digits 5] [--json out.json]
// DIR: a checkpoint directory (config.json + safetensors + tokenizer.json), or a training run's output
// directory (its latest checkpoint). The prompts (src/data/synthetic/passkey.ts) are filled to each
// length in tokens (BOS + prompt + answer ≤ length); the key of a trial depends only on --seed, the
// length, the depth and the trial, so every model and mode sees the same documents. Scoring is teacher
// forcing (src/train/passkey-eval.ts): one forward over the prompt and the true answer, right when the
// argmax at every answer position is the answer's token.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveDevice } from '../src/backend/cuda/index.js';
import { loadTokenizer, type DeepSeekTokenizer } from '../src/chat/tokenizer.js';
import { DeepseekV32 } from '../src/model/model.js';
import { loadConfig } from '../src/model/config.js';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import { buildPasskeyCase, modelLogits, runPasskeyEval, type PasskeyTable } from '../src/train/passkey-eval.js';
import { args, opt } from './harness.js';

const fail = (msg: string): never => {
  console.error(`passkey: ${msg}`);
  process.exit(2);
};

/** A comma-separated list of numbers, each passing `ok`. */
function list(flag: string, dflt: string, ok: (x: number) => boolean, what: string): number[] {
  const raw = opt(flag) ?? dflt;
  const xs = raw.split(',').map((s) => s.trim());
  if (!xs.length || xs.some((s) => s === '' || !Number.isFinite(Number(s)) || !ok(Number(s)))) fail(`${flag} must be a comma-separated list of ${what}, got ${JSON.stringify(raw)}`);
  return xs.map(Number);
}
function int(flag: string, dflt: number, lo: number, hi: number): number {
  const raw = opt(flag);
  const x = raw === undefined ? dflt : Number(raw);
  if (!(Number.isInteger(x) && x >= lo && x <= hi)) fail(`${flag} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(raw)}`);
  return x;
}

for (const f of ['--model', '--lengths', '--depths', '--trials', '--device', '--attention', '--seed', '--digits', '--json']) {
  if (args.includes(f) && (opt(f) === undefined || opt(f)!.startsWith('--'))) fail(`${f} needs a value`);
}
// --model DIR (repeatable) and --model2 DIR2, --model3 DIR3, …
const models: { flag: string; dir: string }[] = [];
args.forEach((a, i) => {
  if (/^--model\d*$/.test(a)) {
    const v = args[i + 1];
    if (v === undefined || v.startsWith('--')) fail(`${a} needs a directory`);
    models.push({ flag: a, dir: v! });
  }
});
if (!models.length) fail('--model DIR is required (a checkpoint directory with config.json, safetensors and tokenizer.json)');
const lengths = list('--lengths', '256,512,1024,2048', (x) => Number.isInteger(x) && x >= 1, 'positive integers (tokens)');
const depths = list('--depths', '0,0.25,0.5,0.75,1', (x) => x >= 0 && x <= 1, 'numbers in [0, 1]');
const trials = int('--trials', 4, 1, 10_000);
const seed = int('--seed', 1, 0, 2 ** 32 - 1);
const digits = int('--digits', 5, 1, 15);
const attention = opt('--attention') ?? 'both';
if (!['dense', 'sparse', 'both'].includes(attention)) fail(`--attention must be dense, sparse or both, got ${JSON.stringify(attention)}`);
const modes = attention === 'both' ? (['dense', 'sparse'] as const) : ([attention] as ('dense' | 'sparse')[]);
const deviceArg = opt('--device') ?? 'auto';
if (!['auto', 'cpu', 'cuda'].includes(deviceArg)) fail(`--device must be auto, cpu or cuda, got ${JSON.stringify(deviceArg)}`);
let device = 'cpu';
try {
  device = resolveDevice(deviceArg);
} catch (e) {
  fail(`--device ${deviceArg}: ${(e as Error).message}`);
}

/** The checkpoint directory of DIR: itself when it holds config.json, else a run directory's latest checkpoint. */
function checkpointDir(flag: string, dir: string): string {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) fail(`${flag} ${dir}: no such directory`);
  if (existsSync(join(dir, 'config.json'))) return dir;
  let latest: ReturnType<typeof latestCheckpoint> = null;
  try {
    latest = latestCheckpoint(dir);
  } catch (e) {
    fail(`${flag} ${dir}: ${(e as Error).message}`);
  }
  if (!latest) fail(`${flag} ${dir}: no config.json (not a checkpoint directory, nor a training run's output)`);
  return latest!.dir;
}

// check every model before running any: paths, tokenizer, lengths against max_position_embeddings
const plans = models.map(({ flag, dir }) => {
  const ckpt = checkpointDir(flag, dir);
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(join(ckpt, 'config.json'));
  } catch (e) {
    return fail(`${flag} ${ckpt}: ${(e as Error).message}`);
  }
  const over = lengths.filter((L) => L > cfg.maxPositions);
  if (over.length) fail(`--lengths ${over.join(',')}: above ${flag} ${ckpt}'s max_position_embeddings (${cfg.maxPositions})`);
  if (!existsSync(join(ckpt, 'tokenizer.json'))) fail(`${flag} ${ckpt}: no tokenizer.json (the passkey prompts are text; the model's own tokenizer is needed)`);
  let tok: DeepSeekTokenizer;
  try {
    tok = loadTokenizer(ckpt);
  } catch (e) {
    return fail(`${flag} ${ckpt}: ${(e as Error).message}`);
  }
  if (tok.vocabSize > cfg.vocabSize) fail(`${flag} ${ckpt}: the tokenizer has ${tok.vocabSize} tokens, the model's vocab_size is ${cfg.vocabSize}`);
  for (const L of lengths) {
    try {
      buildPasskeyCase((s) => tok.encode(s), { length: L, depth: 0.5, key: '9'.repeat(digits), bos: tok.special.bos });
    } catch (e) {
      fail(`--lengths ${L}: ${(e as Error).message} (${flag}'s tokenizer)`);
    }
  }
  return { flag, dir: ckpt, cfg, tok };
});

const results: { model: string; attention: 'dense' | 'sparse'; index_topk: number; seconds: number; table: PasskeyTable }[] = [];
const pct = (x: number): string => `${(100 * x).toFixed(0)}%`.padStart(5);
for (const p of plans) {
  const tok = p.tok;
  let model: DeepseekV32;
  try {
    model = DeepseekV32.load(p.dir, { device });
  } catch (e) {
    fail(`${p.flag} ${p.dir}: ${(e as Error).message}`);
  }
  for (const mode of modes) {
    const t0 = performance.now();
    let table: PasskeyTable;
    try {
      table = await runPasskeyEval((s) => tok.encode(s), modelLogits(model!, mode), { lengths, depths, trials, seed, digits, bos: tok.special.bos });
    } catch (e) {
      fail(`${p.flag} ${p.dir} (${mode}): ${(e as Error).message}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    results.push({ model: p.dir, attention: mode, index_topk: p.cfg.indexTopk, seconds, table: table! });
    const t = table!;
    process.stdout.write(`\n${p.dir} — ${mode} attention${mode === 'sparse' ? ` (top-${p.cfg.indexTopk})` : ''}; ${trials} trial${trials > 1 ? 's' : ''} per cell, ${seconds.toFixed(1)} s on ${device}\n`);
    process.stdout.write(`${'length'.padEnd(8)}${depths.map((d) => `d=${d}`.padStart(8)).join('')}${'mean'.padStart(8)}${'tok-acc'.padStart(9)}${'key-nll'.padStart(9)}\n`);
    t.lengths.forEach((L, i) => {
      const tokAcc = t.tokenAccuracy[i]!.reduce((a, b) => a + b, 0) / depths.length;
      const nll = t.answerNll[i]!.reduce((a, b) => a + b, 0) / depths.length;
      process.stdout.write(`${String(L).padEnd(8)}${t.accuracy[i]!.map((a) => pct(a).padStart(8)).join('')}${pct(t.perLength[i]!).padStart(8)}${pct(tokAcc).padStart(9)}${nll.toFixed(2).padStart(9)}\n`);
    });
    process.stdout.write(`overall ${pct(t.mean)}\n`);
  }
}
const out = opt('--json');
if (out) {
  writeFileSync(out, JSON.stringify({ lengths, depths, trials, seed, digits, device, results }, null, 1) + '\n');
  process.stdout.write(`\nwrote ${out}\n`);
}
