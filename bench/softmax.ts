// Softmax benchmark: the tensor runtime's softmax op (CPU backend) over the last dim of an f32 [rows, cols] tensor, for LLM-like shapes
// (decode-step logits over the vocabulary, attention score rows), beside numpy in the same run.
// GB/s counts the bytes a single streaming implementation must move: read x once, write y once.
// Run: `node dist/bench/softmax.js [--reps N] [--min-time S] [--rounds R]`.
import { parseArgs } from 'node:util';
import { geomean, machine, medianSeconds, numpyReference, printTable } from './harness.js';
import { fromArray, softmax } from '../src/tensor/index.js';

/** A softmax row must sum to 1 and match exp(x - max)/sum computed in f64; guards the timed code. */
function selfCheck(): void {
  const cols = 1001;
  const x = new Float32Array(2 * cols);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i) * 30 + (i % 7 === 0 ? 80 : 0);
  const y = softmax(fromArray(x, [2, cols])).toFloat32();
  for (let r = 0; r < 2; r++) {
    let m = -Infinity, s = 0;
    for (let j = 0; j < cols; j++) m = Math.max(m, x[r * cols + j]!);
    for (let j = 0; j < cols; j++) s += Math.exp(x[r * cols + j]! - m);
    for (let j = 0; j < cols; j++) {
      const want = Math.exp(x[r * cols + j]! - m) / s;
      if (Math.abs(y[r * cols + j]! - want) > 1e-6 * want + 1e-12) throw new Error(`softmax self-check failed at row ${r}, col ${j}`);
    }
  }
}

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    'min-time': { type: 'string', default: '0.3' },
    rounds: { type: 'string', default: '1' },
  },
});
// --rounds R: as in bench/gemm.ts, each shape R times back to back, keeping each side's fastest median.
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
const reps = Number(values.reps);
const minTime = Number(values['min-time']);
if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
if (!(minTime >= 0)) throw new Error(`--min-time must be a non-negative number of seconds, got ${values['min-time']}`);

// [1, 129280]: one decode step's logits over DeepSeek-V3's vocabulary; [16, 129280]: a small batch;
// [512, 1024], [2048, 2048], [64, 8192]: attention-score rows of a prefill.
const shapes: Array<[number, number]> = [[1, 129280], [16, 129280], [512, 1024], [2048, 2048], [64, 8192]];

selfCheck();
console.log(`# softmax benchmark (f32, last dim): ${machine()}`);
const np0 = numpyReference('softmax', [[1, 1]], 1, 0);
if (typeof np0 === 'string') console.log(`numpy: unavailable: ${np0}`);
else console.log(`numpy ${np0.numpy} (max, subtract, exp, sum, divide with preallocated outputs)`);
// numpy is timed shape by shape next to ours, so both see the same machine load.
const numpySeconds = (shape: number[]): number => {
  if (typeof np0 === 'string') return NaN;
  const r = numpyReference('softmax', [shape], reps, minTime);
  return typeof r === 'string' ? NaN : r.results[0]!.seconds;
};

const rows: string[][] = [];
const ratios: number[] = [];
for (let i = 0; i < shapes.length; i++) {
  const [r, c] = shapes[i]!;
  const x = new Float32Array(r * c);
  for (let j = 0; j < x.length; j++) x[j] = Math.sin(j * 0.37) * 8;
  const xt = fromArray(x, [r, c]);
  const gb = (2 * 4 * r * c) / 1e9;
  let ts = 0, npGb = 0;
  for (let k = 0; k < rounds; k++) {
    npGb = Math.max(npGb, gb / numpySeconds([r, c]));
    ts = Math.max(ts, gb / medianSeconds(() => softmax(xt), reps, minTime));
  }
  ratios.push(ts / npGb);
  rows.push([`${r}`, `${c}`, npGb.toFixed(2), ts.toFixed(2), `${((100 * ts) / npGb).toFixed(0)}%`]);
}
printTable(['rows', 'cols', 'numpy GB/s', 'dsv32 cpu GB/s', 'vs numpy'], rows);
console.log(`geometric mean vs numpy: dsv32 cpu ${(100 * geomean(ratios)).toFixed(0)}%`);
