// CPU speed of a model build at the cpu-mid shape (../shared/reference/configs/cpu-mid.json: dim 1024,
// 4 layers — 1 dense + 3 MoE with 16 experts top-4 + 1 shared —, indexer 8 × 128, index_topk 256, vocab
// 8192), random weights, f32, batch 1: prefill of L tokens with a fresh cache (the median of --repeat 3
// after --warmup 2, as the official harness times it), then 16 decode steps (mean and median), with the
// decode time split by module. `--root DIR` loads the build in DIR/dist instead of
// this one, so two builds (e.g. a worktree of an older commit) are compared by running both alternately.
// `--model DIR` loads a Hugging Face checkpoint instead of the random cpu-mid weights: the official
// reference's dump of the same config (bench_ref.py --config configs/cpu-mid.json --dump DIR), so both are
// timed on the same weights (the top-k selections and the routes, and so the work, follow the weights):
//   node dist/bench/model-compare.js [--root DIR] [--model DIR] [--tokens 512,2048] [--warmup 2] [--repeat 3]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argError, median, opt } from './harness.js';
import { cpuMidModel } from './shapes.js';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const root = path.resolve(opt('--root') ?? here);
const lengths = (opt('--tokens') ?? '512').split(',').map(Number);
const warmup = Number(opt('--warmup') ?? 2);
const repeat = Number(opt('--repeat') ?? 3);
if (!Number.isInteger(warmup) || warmup < 0) argError(`model-compare: --warmup wants an integer ≥ 0, got ${opt('--warmup')}`);
if (!Number.isInteger(repeat) || repeat < 1) argError(`model-compare: --repeat wants an integer ≥ 1, got ${opt('--repeat')}`);
const M = (await import(path.join(root, 'dist', 'src', 'model', 'index.js'))) as typeof import('../src/model/index.js');
const modelDir = opt('--model');
const model = cpuMidModel(M, modelDir, 'model-compare');
const vocab = model.cfg.vocabSize;
for (const L of lengths) {
  // each length is prefilled, then decoded 16 steps further
  if (!Number.isInteger(L) || L < 1 || L + 16 > model.cfg.maxPositions) argError(`model-compare: --tokens wants integers from 1 to ${model.cfg.maxPositions - 16} (the model's positions less 16 decode steps), got ${opt('--tokens')}`);
}

// time inside each module's forward (MLA includes its indexer)
const times: Record<string, number> = {};
for (const name of ['MLA', 'Indexer', 'MoE', 'Mlp'] as const) {
  const proto = (M[name] as unknown as { prototype: { forward: (...a: unknown[]) => unknown } }).prototype;
  const orig = proto.forward;
  proto.forward = function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      times[name] = (times[name] ?? 0) + performance.now() - t;
    }
  };
}

model.forward([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]); // loads every weight
for (const L of lengths) {
  const toks = Array.from({ length: L + 16 }, (_, i) => (i * 7919 + 13) % vocab);
  // the official harness's method (bench_ref.py): `warmup` untimed prefills, then the median of `repeat`
  // (the first prefill of a length also pays V8's compilation of its loops: ~1.6 s against ~0.9 s at 512)
  const prefills: number[] = [];
  let cache = model.newCache(1);
  let t = 0;
  for (let i = 0; i < warmup + repeat; i++) {
    if (i > 0) cache = model.newCache(1); // a fresh cache for each prefill; the last one serves the decode
    t = performance.now();
    model.forward([toks.slice(0, L)], { cache, logits: 'last' });
    if (i >= warmup) prefills.push(performance.now() - t);
  }
  const prefill = median(prefills);
  for (const k of Object.keys(times)) times[k] = 0;
  const steps: number[] = [];
  for (let i = 0; i < 16; i++) {
    t = performance.now();
    model.forward([[toks[L + i]!]], { cache });
    steps.push(performance.now() - t);
  }
  const per = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, +(v / 16).toFixed(2)]));
  console.log(JSON.stringify({ root, model: modelDir ?? 'random cpu-mid', tokens: L, prefill_ms: Math.round(prefill), prefill_runs_ms: prefills.map(Math.round), decode_ms_mean: +(steps.reduce((a, b) => a + b, 0) / 16).toFixed(1), decode_ms_median: +median(steps).toFixed(1), decode_ms_per_module: per }));
}
