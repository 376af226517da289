// The CPU backend's GEMM entry points, with the semantics of row-major cblas_?gemm:
//   C[m, n] = alpha * sum_k op(A)[m, k] * op(B)[k, n] + beta * C[m, n]
// where op(X) is X or X^T and each matrix is addressed as X[off + row * ld + col].
// Calls go to OpenBLAS when it is installed (blas.ts) and to the TypeScript kernel (gemm-kernel.ts)
// otherwise, split across the CPU pool's worker threads (pool.ts) when the problem is large enough to pay for it.
// Environment: DSV32_BLAS=off forces the TypeScript path; DSV32_BLAS_LIB names the BLAS library to load;
// DSV32_CPU_THREADS sets the TypeScript path's threads (default: all cores); DSV32_GEMM_WASM=off makes
// its f32 kernels scalar. Operands in SharedArrayBuffers reach the worker threads without being copied.
import { DsvError } from '../../errors.js';
import { loadBlas, type Blas } from './blas.js';
import { GemmScratch, MR, gemmRect, usesDotKernel, wasmEnabled, type FloatArray, type GemmProblem } from './gemm-kernel.js';
import { cpuPool, cpuThreads, isShared, newCounters, stagingSlab, type CpuPool } from './pool.js';
import { wasmSimdAvailable } from './gemm-wasm.js';

/** A GEMM argument is out of range: a negative size, a leading dimension too small, or an array too short. */
export class GemmArgumentError extends DsvError {}

export interface GemmInfo {
  path: 'openblas' | 'typescript';
  /** The shared library in use, on the OpenBLAS path. */
  library?: string;
  /** OpenBLAS's build/kernel description, on the OpenBLAS path. */
  config?: string;
  threads: number;
  /** On the TypeScript path: whether f32 runs the WebAssembly SIMD kernels or the scalar ones. */
  kernel?: 'wasm-simd' | 'scalar';
}

let blasState: { blas: Blas | null } | undefined;

function blas(): Blas | null {
  if (process.env.DSV32_BLAS === 'off') return null;
  blasState ??= { blas: loadBlas() };
  return blasState.blas;
}

/** Which implementation sgemm/dgemm use right now, and with how many threads. */
export function gemmInfo(): GemmInfo {
  const b = blas();
  if (b) return { path: 'openblas', library: b.library, config: b.config, threads: b.threads };
  return { path: 'typescript', threads: cpuThreads(), kernel: wasmEnabled() && wasmSimdAvailable() ? 'wasm-simd' : 'scalar' };
}

export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number, beta: number,
  C: Float32Array, cOff: number, ldc: number,
): void {
  const p = checked('sgemm', Float32Array, transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
  if (!p) return;
  const b = blas();
  if (b) b.sgemm(transA, transB, M, N, K, alpha, at(A, aOff), lda, at(B, bOff), ldb, beta, at(C, cOff), ldc);
  else gemmTypeScript(p, Float32Array);
}

export function dgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float64Array, aOff: number, lda: number, B: Float64Array, bOff: number, ldb: number, beta: number,
  C: Float64Array, cOff: number, ldc: number,
): void {
  const p = checked('dgemm', Float64Array, transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
  if (!p) return;
  const b = blas();
  if (b) b.dgemm(transA, transB, M, N, K, alpha, at(A, aOff), lda, at(B, bOff), ldb, beta, at(C, cOff), ldc);
  else gemmTypeScript(p, Float64Array);
}

/** A view starting at `off`; koffi passes a typed array as a pointer to its first element. */
function at<T extends FloatArray>(x: T, off: number): T {
  return (off === 0 ? x : x.subarray(off)) as T;
}

type FloatCtor<T extends FloatArray> = { new (buf: ArrayBufferLike, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number };

/**
 * Validates every argument (a bad one would make BLAS touch memory outside the arrays), and settles the
 * cases with no product to compute. Returns the problem when a product remains, else null.
 */
function checked<T extends FloatArray>(
  fn: string, ctor: FloatCtor<T>,
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: T, aOff: number, lda: number, B: T, bOff: number, ldb: number, beta: number,
  C: T, cOff: number, ldc: number,
): GemmProblem<T> | null {
  for (const [name, v] of [['M', M], ['N', N], ['K', K]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new GemmArgumentError(`${fn}: ${name} must be a non-negative integer, got ${v}`);
  }
  if (typeof alpha !== 'number') throw new GemmArgumentError(`${fn}: alpha must be a number, got ${typeof alpha}`);
  if (typeof beta !== 'number') throw new GemmArgumentError(`${fn}: beta must be a number, got ${typeof beta}`);
  // op(A) is M x K, op(B) is K x N; stored rows/cols are swapped when transposed.
  checkMatrix(fn, ctor, 'A', A, aOff, lda, transA ? K : M, transA ? M : K);
  checkMatrix(fn, ctor, 'B', B, bOff, ldb, transB ? N : K, transB ? K : N);
  checkMatrix(fn, ctor, 'C', C, cOff, ldc, M, N);
  if (M === 0 || N === 0) return null;
  const p: GemmProblem<T> = { transA: !!transA, transB: !!transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc };
  if (K === 0 || alpha === 0) {
    // Nothing to multiply: C = beta * C (BLAS skips reading A and B here too).
    for (let i = 0; i < M; i++) {
      const row = cOff + i * ldc;
      if (beta === 0) C.fill(0, row, row + N);
      else if (beta !== 1) for (let j = row; j < row + N; j++) C[j] *= beta;
    }
    return null;
  }
  return p;
}

function checkMatrix(
  fn: string, ctor: FloatCtor<FloatArray>, name: string, X: FloatArray, off: number, ld: number, rows: number, cols: number,
): void {
  if (!(X instanceof ctor)) {
    const got = X === null || typeof X !== 'object' ? String(X) : (X as object).constructor.name;
    throw new GemmArgumentError(`${fn}: ${name} must be a ${(ctor as unknown as { name: string }).name}, got ${got}`);
  }
  if (!Number.isSafeInteger(off) || off < 0 || off > X.length) {
    throw new GemmArgumentError(`${fn}: offset of ${name} must be an integer in [0, ${X.length}], got ${off}`);
  }
  if (!Number.isSafeInteger(ld) || ld < Math.max(1, cols)) {
    throw new GemmArgumentError(`${fn}: ld${name.toLowerCase()} must be an integer >= max(1, ${cols}) (the stored row width of ${name}), got ${ld}`);
  }
  if (rows > 0 && cols > 0) {
    const end = off + (rows - 1) * ld + cols;
    if (end > X.length) {
      throw new GemmArgumentError(
        `${fn}: ${name} is ${rows}x${cols} with ld=${ld} at offset ${off}, so it needs ${end} elements, but the array has ${X.length}`,
      );
    }
  }
}

// ---- TypeScript path: serial or split across the worker pool ----

/** Below this many flops (about a millisecond on one core) threads cost more than they save. */
const PARALLEL_MIN_FLOPS = 4e6;
/**
 * Single-thread rates of gemm-kernel.ts measured on a 2.6 GHz x86-64 core (flop/s), used only to weigh
 * copies against compute: the f32 WebAssembly SIMD kernels (30-37 GFLOP/s from 16 rows up), and the
 * scalar kernel (f64, or SIMD off).
 */
const SIMD_FLOPS_PER_S = 35e9;
const SCALAR_FLOPS_PER_S = 4e9;
/** Copying into SharedArrayBuffers runs at memcpy speed, several elements per nanosecond. */
const COPY_ELEMS_PER_S = 1.5e9;
/** Waking workers and collecting them costs tens of microseconds. */
const PARALLEL_OVERHEAD_S = 50e-6;

const mainScratch = new GemmScratch();

/**
 * Serial or parallel, for an M x N x K product on `threads` threads when `copyElems` elements must first be
 * copied into shared memory (operands not already SharedArrayBuffer-backed, and C both ways).
 */
export function typescriptGemmPlan(
  M: number, N: number, K: number, copyElems: number, threads: number, flopsPerS = SCALAR_FLOPS_PER_S,
): 'serial' | 'parallel' {
  const flops = 2 * M * N * K;
  if (threads <= 1 || flops < PARALLEL_MIN_FLOPS) return 'serial';
  const serialS = flops / flopsPerS;
  const parallelS = serialS / threads + copyElems / COPY_ELEMS_PER_S + PARALLEL_OVERHEAD_S;
  return parallelS < serialS ? 'parallel' : 'serial';
}

/**
 * The chunks of C to compute in parallel on `threads` threads, or null when one thread is faster (too few
 * flops, copies into shared memory that cost more than they save, or a C too narrow to split).
 */
export function parallelChunks(p: GemmProblem, threads: number): Int32Array | null {
  if (threads <= 1 || 2 * p.M * p.N * p.K < PARALLEL_MIN_FLOPS) return null;
  // f32 runs SIMD kernels except for fewer than MR rows with op(B) = B (a scalar streaming kernel).
  const simd = p.C instanceof Float32Array && wasmEnabled() && (p.M >= MR || p.transB);
  // Each chunk re-packs the whole other operand (about 1 ns per element); keep that near 10% of the
  // chunk's compute: 256 wide for the blocked SIMD kernel, 64 for the scalar kernel (10x slower
  // compute) and for the dot kernel, which splits only N since a split of M would copy all of B again.
  const dot = simd && usesDotKernel(p, p.M);
  const chunks = splitC(p.M, p.N, threads, simd && !dot ? 256 : 64, dot);
  if (!chunks) return null;
  // Operands that are not already in shared memory must be copied (and C copied back) for workers to see them.
  const copy = (isShared(p.A) ? 0 : spanA(p)) + (isShared(p.B) ? 0 : spanB(p)) + (isShared(p.C) ? 0 : 2 * spanC(p));
  const plan = typescriptGemmPlan(p.M, p.N, p.K, copy, threads, simd ? SIMD_FLOPS_PER_S : SCALAR_FLOPS_PER_S);
  return plan === 'parallel' ? chunks : null;
}

function gemmTypeScript<T extends FloatArray>(p: GemmProblem<T>, ctor: FloatCtor<T>): void {
  const threads = cpuThreads();
  const chunks = parallelChunks(p, threads);
  if (chunks) {
    gemmParallel(p, ctor, chunks, cpuPool(threads));
  } else {
    gemmSerial(p);
  }
}

function gemmSerial(p: GemmProblem): void {
  gemmRect(p, 0, p.M, 0, p.N, mainScratch);
}

function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}
/** Elements from the first to one past the last element each matrix touches. */
const spanA = (p: GemmProblem): number => span(p.transA ? p.K : p.M, p.transA ? p.M : p.K, p.lda);
const spanB = (p: GemmProblem): number => span(p.transB ? p.N : p.K, p.transB ? p.K : p.N, p.ldb);
const spanC = (p: GemmProblem): number => span(p.M, p.N, p.ldc);

function gemmParallel<T extends FloatArray>(p: GemmProblem<T>, ctor: FloatCtor<T>, chunks: Int32Array, workers: CpuPool): void {
  const aSpan = spanA(p), bSpan = spanB(p), cSpan = spanC(p);
  const q: GemmProblem<T> = { ...p };
  // into the pool's reused staging slabs (pool.ts stagingSlab), one per operand
  const toShared = (role: 'A' | 'B' | 'C', x: T, off: number, len: number, copyIn: boolean): T => {
    const y = new ctor(stagingSlab(`gemm.${role}`, len * ctor.BYTES_PER_ELEMENT), 0, len);
    if (copyIn) y.set(x.subarray(off, off + len));
    return y;
  };
  if (!isShared(p.A)) { q.A = toShared('A', p.A, p.aOff, aSpan, true); q.aOff = 0; }
  if (!isShared(p.B)) { q.B = toShared('B', p.B, p.bOff, bSpan, true); q.bOff = 0; }
  const copyC = !isShared(p.C);
  // With beta = 0 the old C is never read (the kernel overwrites each chunk), so it is not copied in.
  if (copyC) { q.C = toShared('C', p.C, p.cOff, cSpan, p.beta !== 0); q.cOff = 0; }
  workers.run({ kind: 'gemm', problem: q, chunks, counters: newCounters() }, mainScratch);
  if (copyC) {
    // Row by row: the shared copy's ld padding was never copied in (beta = 0) and must not be copied out.
    for (let i = 0; i < p.M; i++) p.C.set(q.C.subarray(i * p.ldc, i * p.ldc + p.N), p.cOff + i * p.ldc);
  }
}

/**
 * Cuts C into about 2 chunks per thread (so dynamic claiming balances uneven or busy cores, while each
 * chunk's re-packing of the other operand stays rare), each at least
 * `minWidth` wide, widths a multiple of 8 (both register tiles divide it). Splits the longer side that
 * yields two or more chunks, or only N when `onlyN`; null when neither does (then threads cannot help).
 */
export function splitC(M: number, N: number, threads: number, minWidth: number, onlyN: boolean): Int32Array | null {
  const canN = N >= 2 * minWidth;
  const canM = !onlyN && M >= 2 * minWidth;
  if (!canN && !canM) return null;
  const alongN = canN && (!canM || N >= M);
  const len = alongN ? N : M;
  let width = Math.max(minWidth, Math.ceil(len / (2 * threads)));
  width = Math.ceil(width / 8) * 8;
  const n = Math.ceil(len / width);
  const out = new Int32Array(4 * n);
  for (let c = 0; c < n; c++) {
    const a = c * width;
    const b = Math.min(len, a + width);
    if (alongN) out.set([0, M, a, b], 4 * c);
    else out.set([a, b, 0, N], 4 * c);
  }
  return out;
}
