// Keep Sampling Mask's cost in an RL minibatch: maskedTokenLogProbs (log π over each token's recorded kept
// set, src/rl/keep-sampling-mask.ts) against the full-vocabulary log-probs of the same logits
// (log-softmax + gather), the work the mask adds to in the same run. Shape of recipe/grpo.json's
// minibatches: S sequences × T tokens × V, a share of the rows padding or prompt (no mask row), the rest
// with kept sets of 1–20 ids (top-k 20), so maskedTokenLogProbs takes its gathered path (kept logits
// only; the dense [N, V] mask is for kept sets longer than V/8). CPU backend; wall-clock medians.
// Run: `node dist/bench/keep-sampling-mask.js [--S 16] [--T 1000] [--V 8192] [--padding 0.6] [--reps 3]`.
import { machine, medianSeconds, opt, printTable } from './harness.js';
import { fromArray, gather, logSoftmax, reshape, unsqueeze } from '../src/tensor/index.js';
import { maskedTokenLogProbs } from '../src/rl/keep-sampling-mask.js';

const S = Number(opt('--S') ?? 16);
const T = Number(opt('--T') ?? 1000);
const V = Number(opt('--V') ?? 8192);
const padding = Number(opt('--padding') ?? 0.6);
const reps = Number(opt('--reps') ?? 3);
for (const [k, v] of [['--S', S], ['--T', T], ['--V', V], ['--reps', reps]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`keep-sampling-mask bench: ${k} must be a positive integer, got ${v}`);
    process.exit(2);
  }
}
if (!(padding >= 0 && padding < 1)) {
  console.error(`keep-sampling-mask bench: --padding must be in [0, 1), got ${padding}`);
  process.exit(2);
}

const N = S * T;
const valid = new Uint8Array(N);
const tok = new Int32Array(N);
const indptr = new Int32Array(N + 1);
const idx: number[] = [];
for (let i = 0; i < N; i++) {
  if (i % T >= padding * T) {
    valid[i] = 1;
    const k = 1 + (i % 20);
    for (let j = 0; j < k; j++) idx.push((i * 7 + j * 13) % V);
    tok[i] = idx[idx.length - 1]!;
  }
  indptr[i + 1] = idx.length;
}
const mask = { indptr, indices: Int32Array.from(idx) };
const logits = fromArray(Float32Array.from({ length: N * V }, (_, i) => Math.sin(i) * 3), [S, T, V]);
const tokens = fromArray(tok, [S, T], { dtype: 'i32' });
const validT = fromArray(valid, [S, T], { dtype: 'bool' });

const masked = medianSeconds(() => void maskedTokenLogProbs(logits, tokens, mask, 1, validT).toFloat64(), reps, 0);
const full = medianSeconds(() => void reshape(gather(logSoftmax(reshape(logits, [N, V]), -1), 1, unsqueeze(reshape(tokens, [N]), 1)), [S, T]).toFloat64(), reps, 0);

console.log(`${machine()} · S ${S} × T ${T} × V ${V}, ${(100 * padding).toFixed(0)}% padding rows`);
printTable(['log-probs of the sampled tokens', 'median s', 'vs full vocabulary'], [
  ['over the kept set (maskedTokenLogProbs)', masked.toFixed(2), `${(masked / full).toFixed(2)}×`],
  ['over the full vocabulary (log-softmax + gather)', full.toFixed(2), '1.00×'],
]);
