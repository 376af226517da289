// CPU backend ops, this build against another, on the calls a real prefill makes. One prefill of the model
// (cpu-mid's random weights, or --model DIR) runs through this build with the named CpuBackend methods
// recorded (their argument views); then each op's recorded calls are re-run with the other build's
// implementation and with this one, alternately, --repeat times, and the medians (and minima) of the
// per-prefill sums are printed. Alternating in one process is what makes a 10–20 % change visible on a
// noisy host, where whole-model runs of one build spread ±20 % (docs/benchmarks.md, CPU 2026-12-07 05:10–06:40).
// With --decode N the calls recorded are those of N decode steps after the prefill (batch 1, context
// --tokens), and the figures are ms a step.
// Every op named must write only its outputs (re-running a call is idempotent), as the backend's ops do.
//   node dist/bench/cpu-op-compare.js --root DIR --ops swiglu,sparseMhaPrefill [--model DIR] [--tokens 512] [--decode N] [--repeat 15]
// DIR holds the other build (a worktree of an older commit with `npx tsc` run in it: DIR/dist).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argError, median, opt, printTable } from './harness.js';
import { cpuMidModel } from './shapes.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import * as M from '../src/model/index.js';

const other = opt('--root');
if (!other) argError('cpu-op-compare: --root DIR is required (the other build: DIR/dist/src/backend/cpu/cpu-backend.js)');
const ops = (opt('--ops') ?? '').split(',').filter(Boolean);
if (ops.length === 0) argError('cpu-op-compare: --ops wants a comma-separated list of CpuBackend methods, e.g. swiglu,sparseMhaPrefill');
const tokens = Number(opt('--tokens') ?? 512);
const repeat = Number(opt('--repeat') ?? 15);
const decode = Number(opt('--decode') ?? 0);
if (!Number.isInteger(decode) || decode < 0) argError(`cpu-op-compare: --decode wants an integer ≥ 0, got ${opt('--decode')}`);
if (!Number.isInteger(tokens) || tokens < 1) argError(`cpu-op-compare: --tokens wants an integer ≥ 1, got ${opt('--tokens')}`);
if (!Number.isInteger(repeat) || repeat < 1) argError(`cpu-op-compare: --repeat wants an integer ≥ 1, got ${opt('--repeat')}`);

type Method = (...a: unknown[]) => unknown;
const proto = CpuBackend.prototype as unknown as Record<string, Method>;
for (const op of ops) if (op === 'constructor' || typeof proto[op] !== 'function') argError(`cpu-op-compare: --ops: '${op}' is not a CpuBackend method`);
const otherFile = path.join(path.resolve(other), 'dist', 'src', 'backend', 'cpu', 'cpu-backend.js');
let OtherBackend: typeof CpuBackend;
try {
  OtherBackend = ((await import(otherFile)) as { CpuBackend: typeof CpuBackend }).CpuBackend;
} catch (e) {
  argError(`cpu-op-compare: --root ${other}: cannot load ${otherFile} (${(e as Error).message.split('\n')[0]})`);
}
const otherProto = OtherBackend.prototype as unknown as Record<string, Method>;

// record the calls of one prefill (after one untimed prefill, so lazily made weights exist)
const calls: Record<string, unknown[][]> = Object.fromEntries(ops.map((op) => [op, []]));
const mine: Record<string, Method> = {};
let recording = false;
for (const op of ops) {
  const f = (mine[op] = proto[op]!);
  proto[op] = function (this: unknown, ...a: unknown[]) {
    if (recording) calls[op]!.push(a);
    return f.apply(this, a);
  };
}
const modelDir = opt('--model');
const model = cpuMidModel(M, modelDir, 'cpu-op-compare');
if (tokens + 2 * decode > model.cfg.maxPositions) argError(`cpu-op-compare: --tokens ${tokens} plus 2 × --decode ${decode} exceed the model's ${model.cfg.maxPositions} positions`);
const toks = Array.from({ length: tokens + 2 * decode }, (_, i) => (i * 7919 + 13) % model.cfg.vocabSize);
const prompt = toks.slice(0, tokens);
if (decode === 0) {
  model.forward([prompt], { cache: model.newCache(1), logits: 'last' });
  recording = true;
  model.forward([prompt], { cache: model.newCache(1), logits: 'last' });
  recording = false;
} else {
  const cache = model.newCache(1);
  model.forward([prompt], { cache, logits: 'last' });
  for (let i = 0; i < decode; i++) model.forward([[toks[tokens + i]!]], { cache }); // untimed: lazily made weights
  recording = true;
  for (let i = 0; i < decode; i++) model.forward([[toks[tokens + decode + i]!]], { cache });
  recording = false;
}
const per = decode === 0 ? 1 : decode; // figures per prefill, or per decode step

const be = new CpuBackend();
const ob = new OtherBackend();
const rows: string[][] = [];
for (const op of ops) {
  const list = calls[op]!;
  if (list.length === 0) {
    console.log(`cpu-op-compare: ${op} made no calls in this run; nothing to time`);
    continue;
  }
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < repeat; r++) {
    let t = performance.now();
    for (const args of list) otherProto[op]!.apply(ob, args);
    a.push(performance.now() - t);
    t = performance.now();
    for (const args of list) mine[op]!.apply(be, args);
    b.push(performance.now() - t);
  }
  const ma = median(a) / per;
  const mb = median(b) / per;
  rows.push([op, String(list.length / per), ma.toFixed(3), (a[0]! / per).toFixed(3), mb.toFixed(3), (b[0]! / per).toFixed(3), (ma / mb).toFixed(2)]);
}
const what = decode === 0 ? `${tokens}-token prefill` : `${decode} decode steps at context ${tokens}`;
console.log(`cpu-op-compare: ${what} of ${modelDir ?? 'random cpu-mid'}; other build ${path.resolve(other)}, this build ${path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')}; ms a ${decode === 0 ? 'prefill' : 'step'}, ${repeat} alternating runs`);
printTable(['op', decode === 0 ? 'calls' : 'calls a step', 'other median', 'other min', 'this median', 'this min', 'other / this'], rows);
