// GEMM benchmark for LLM-like shapes: C[M, N] = A[M, K] * B[N, K]^T in f32 (a linear layer y = x W^T),
// through the OpenBLAS path and the TypeScript fallback of src/backend/cpu/gemm.ts, beside numpy's matmul
// timed in the same run. Run: `node dist/bench/gemm.js [--quick] [--reps N] [--min-time S] [--threads N] [--rounds R]`.
import { parseArgs } from 'node:util';
import { gemmInfo, sgemm } from '../src/backend/cpu/gemm.js';
import { warmCpuPool } from '../src/backend/cpu/pool.js';
import { geomean, machine, medianSeconds, numpyReference, printTable } from './harness.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string', default: '5' },
    'min-time': { type: 'string', default: '0.3' },
    threads: { type: 'string' },
    rounds: { type: 'string', default: '1' },
  },
});
// --rounds R measures every shape R times (numpy, OpenBLAS, TypeScript back to back each round) and keeps
// each one's fastest median: on a machine shared with other jobs, a slow round is someone else's load.
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
// --threads N pins all three to N threads: OpenBLAS (ours and numpy's) reads OPENBLAS_NUM_THREADS when it
// is loaded, which happens after this line for ours and in the child for numpy's.
if (values.threads !== undefined) {
  const t = Number(values.threads);
  if (!Number.isInteger(t) || t < 1) throw new Error(`--threads must be a positive integer, got ${values.threads}`);
  process.env.OPENBLAS_NUM_THREADS = String(t);
  process.env.DSV32_CPU_THREADS = String(t);
}
const reps = Number(values.reps);
const minTime = Number(values['min-time']);
if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
if (!(minTime >= 0)) throw new Error(`--min-time must be a non-negative number of seconds, got ${values['min-time']}`);

const Ms = values.quick ? [1, 128] : [1, 16, 128, 512];
const NKs: Array<[number, number]> = values.quick ? [[1024, 1024]] : [[1024, 1024], [4096, 1024], [1024, 4096], [2048, 2048]];
const shapes: Array<[number, number, number]> = [];
for (const [N, K] of NKs) for (const M of Ms) shapes.push([M, N, K]);

function fill(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 31 - 1;
  }
  return x;
}

function timePath(path: 'openblas' | 'typescript', M: number, N: number, K: number): number {
  const prev = process.env.DSV32_BLAS;
  if (path === 'typescript') process.env.DSV32_BLAS = 'off';
  else delete process.env.DSV32_BLAS;
  try {
    if (gemmInfo().path !== path) return NaN;
    const A = fill(M * K, 1), B = fill(N * K, 2), C = new Float32Array(M * N);
    return medianSeconds(() => sgemm(false, true, M, N, K, 1, A, 0, K, B, 0, K, 0, C, 0, N), reps, minTime);
  } finally {
    if (prev === undefined) delete process.env.DSV32_BLAS;
    else process.env.DSV32_BLAS = prev;
  }
}

console.log(`# GEMM benchmark (f32, C = A * B^T): ${machine()}`);
const blasInfo = gemmInfo();
process.env.DSV32_BLAS = 'off';
const tsInfo = gemmInfo();
delete process.env.DSV32_BLAS;
console.log(`openblas path: ${blasInfo.path === 'openblas' ? `${blasInfo.library} (${blasInfo.config ?? '?'}), ${blasInfo.threads} threads` : 'not installed'}`);
console.log(`typescript path: ${tsInfo.kernel} kernels, ${tsInfo.threads} threads; OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}`);
if (tsInfo.threads > 1 && !warmCpuPool(30_000)) console.log('warning: GEMM worker threads not ready after 30 s');

// numpy is timed shape by shape between our two paths, so all three see the same machine load.
const np0 = numpyReference('gemm', [[1, 1, 1]], 1, 0);
if (typeof np0 === 'string') console.log(`numpy: unavailable: ${np0}`);
else console.log(`numpy ${np0.numpy}: ${JSON.stringify(np0.blas)} (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for numpy)`);
const numpySeconds = (shape: number[]): number => {
  if (typeof np0 === 'string') return NaN;
  const r = numpyReference('gemm', [shape], reps, minTime);
  return typeof r === 'string' ? NaN : r.results[0]!.seconds;
};

const gf = (M: number, N: number, K: number, s: number): number => (2 * M * N * K) / s / 1e9;
const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');
const rows: string[][] = [];
const blasRatios: number[] = [];
const tsRatios: number[] = [];
for (let i = 0; i < shapes.length; i++) {
  const [M, N, K] = shapes[i]!;
  let npG = 0, blasG = 0, tsG = 0;
  for (let r = 0; r < rounds; r++) {
    npG = Math.max(npG, gf(M, N, K, numpySeconds([M, N, K])));
    blasG = Math.max(blasG, gf(M, N, K, timePath('openblas', M, N, K)));
    tsG = Math.max(tsG, gf(M, N, K, timePath('typescript', M, N, K)));
  }
  blasRatios.push(blasG / npG);
  tsRatios.push(tsG / npG);
  rows.push([`${M}`, `${N}`, `${K}`, fmt(npG, 1), fmt(blasG, 1), `${fmt((100 * blasG) / npG, 0)}%`, fmt(tsG), `${fmt((100 * tsG) / npG, 1)}%`]);
}
printTable(['M', 'N', 'K', 'numpy GFLOP/s', 'openblas GFLOP/s', 'vs numpy', 'typescript GFLOP/s', 'vs numpy'], rows);
console.log(`geometric mean vs numpy: openblas ${fmt(100 * geomean(blasRatios), 0)}%, typescript ${fmt(100 * geomean(tsRatios), 1)}%`);
