// OpenBLAS through koffi: finds the shared library, binds cblas_sgemm/cblas_dgemm once, and reports what
// it loaded. gemm.ts validates every argument before calling in here, because a wrong leading dimension or
// offset would make the C code read or write outside the typed array instead of throwing.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import type Koffi from 'koffi';
import { DsvError } from '../../errors.js';

/**
 * koffi is loaded on first use rather than imported: its native addon exists only for the platforms it
 * ships prebuilt, and a machine without one must still get the TypeScript GEMM instead of failing to
 * import the CPU backend.
 */
function koffiModule(): typeof Koffi {
  return createRequire(import.meta.url)('koffi') as typeof Koffi;
}

/** DSV32_BLAS_LIB names a library that cannot be loaded or lacks the CBLAS GEMM symbols. */
export class BlasLoadError extends DsvError {}

/** Debian/Ubuntu and RHEL-family locations, pthread variant first (the one scripts/setup-system.sh installs). */
const KNOWN_PATHS = [
  '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0',
  '/usr/lib/x86_64-linux-gnu/libopenblas.so.0',
  '/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0',
  '/usr/lib/aarch64-linux-gnu/libopenblas.so.0',
  '/usr/lib64/libopenblas.so.0',
  '/usr/lib/libopenblas.so.0',
  '/usr/local/lib/libopenblas.so.0',
];

// CBLAS enum values from cblas.h
const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

type GemvFn<T> = (
  order: number, trans: number, M: number, N: number, alpha: number, A: T, lda: number,
  x: T, incx: number, beta: number, y: T, incy: number,
) => void;

type GemmFn<T> = (
  order: number, transA: number, transB: number, M: number, N: number, K: number, alpha: number,
  A: T, lda: number, B: T, ldb: number, beta: number, C: T, ldc: number,
) => void;

export interface Blas {
  /** Absolute path (or soname) that was loaded. */
  library: string;
  /** OpenBLAS's configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... SkylakeX", when exported. */
  config?: string;
  /** Threads OpenBLAS will use for one call. */
  threads: number;
  /** Row-major cblas_sgemm; arrays are passed as views already positioned at their offsets. */
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void;
  dgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: Float64Array, lda: number, B: Float64Array, ldb: number, beta: number, C: Float64Array, ldc: number): void;
}

/** Candidate library paths in lookup order: DSV32_BLAS_LIB, then ldconfig's cache, then known paths. */
export function blasCandidates(env: NodeJS.ProcessEnv = process.env): { explicit: boolean; paths: string[] } {
  const forced = env.DSV32_BLAS_LIB;
  if (forced) return { explicit: true, paths: [forced] };
  const paths: string[] = [];
  for (const p of ldconfigLookup('libopenblas.so.0')) if (!paths.includes(p)) paths.push(p);
  for (const p of KNOWN_PATHS) if (!paths.includes(p) && existsSync(p)) paths.push(p);
  return { explicit: false, paths };
}

function ldconfigLookup(soname: string): string[] {
  for (const bin of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      const out = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
      const found: string[] = [];
      for (const line of out.split('\n')) {
        // "\tlibopenblas.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopenblas.so.0"
        const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
        if (m && m[1] === soname && (process.arch !== 'x64' || m[2]!.includes('x86-64'))) found.push(m[3]!);
      }
      return found;
    } catch {
      // not on PATH or not Linux: try the next spelling, then fall back to known paths
    }
  }
  return [];
}

/**
 * Loads OpenBLAS, or returns null when none is installed. A library named by DSV32_BLAS_LIB that fails to
 * load is an error rather than a silent fallback, since the user asked for that file.
 */
export function loadBlas(env: NodeJS.ProcessEnv = process.env): Blas | null {
  const { explicit, paths } = blasCandidates(env);
  let koffi: typeof Koffi;
  try {
    koffi = koffiModule();
  } catch (e) {
    if (explicit) throw new BlasLoadError(`DSV32_BLAS_LIB=${paths[0]}: the koffi FFI module cannot be loaded (${(e as Error).message})`, { cause: e });
    return null;
  }
  for (const path of paths) {
    try {
      return bind(koffi, path);
    } catch (e) {
      if (explicit) {
        throw new BlasLoadError(
          `DSV32_BLAS_LIB=${path}: cannot load a CBLAS library with cblas_sgemm, cblas_dgemm, cblas_sgemv and cblas_dgemv (${(e as Error).message})`,
          { cause: e },
        );
      }
    }
  }
  return null;
}

function bind(koffi: typeof Koffi, path: string): Blas {
  const lib = koffi.load(path);
  const sig = (name: string, t: string): string =>
    `void ${name}(int order, int transA, int transB, int M, int N, int K, ${t} alpha, const ${t} *A, int lda, ` +
    `const ${t} *B, int ldb, ${t} beta, ${t} *C, int ldc)`;
  const s = lib.func(sig('cblas_sgemm', 'float')) as GemmFn<Float32Array>;
  const d = lib.func(sig('cblas_dgemm', 'double')) as GemmFn<Float64Array>;
  let config: string | undefined;
  let threads = 1;
  try {
    config = (lib.func('const char *openblas_get_config(void)') as () => string)();
    // OpenBLAS's pthread server hangs, spinning, when several threads of one process call into it at
    // once (0.3.21: two data-parallel ranks as worker threads, src/dist/thread-collective.ts, hung in
    // about one run of three; with this, 20 runs in a row passed). Called from a worker thread it
    // therefore computes in the caller's thread alone; the setting is the process's, and such a
    // process already runs one rank per core.
    if (!isMainThread) (lib.func('void openblas_set_num_threads(int)') as (n: number) => void)(1);
    threads = (lib.func('int openblas_get_num_threads(void)') as () => number)();
  } catch {
    // a reference CBLAS has neither; it is single-threaded
  }
  const sv = lib.func(gemvSig('cblas_sgemv', 'float')) as GemvFn<Float32Array>;
  const dv = lib.func(gemvSig('cblas_dgemv', 'double')) as GemvFn<Float64Array>;
  return {
    library: path,
    config,
    threads,
    sgemm: (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) =>
      gemm(s, sv, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
    dgemm: (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) =>
      gemm(d, dv, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
  };
}

function gemvSig(name: string, t: string): string {
  return `void ${name}(int order, int trans, int M, int N, ${t} alpha, const ${t} *A, int lda, ` +
    `const ${t} *x, int incx, ${t} beta, ${t} *y, int incy)`;
}

const tr = (x: boolean): number => (x ? CBLAS_TRANS : CBLAS_NO_TRANS);

/**
 * A product with one row (M = 1, a decode step) or one column (N = 1) is a matrix-vector product. OpenBLAS
 * 0.3.21's ?gemm runs those several times slower than ?gemv (newer releases forward them itself), so they
 * are sent to ?gemv here. C's window is zeroed first when beta = 0 so that NaN already in C cannot
 * survive as 0 * NaN in builds whose ?gemv scales y by beta instead of overwriting it.
 */
function gemm<T extends Float32Array | Float64Array>(
  mm: GemmFn<T>, mv: GemvFn<T>, ta: boolean, tb: boolean, M: number, N: number, K: number, alpha: number,
  A: T, lda: number, B: T, ldb: number, beta: number, C: T, ldc: number,
): void {
  if (M === 1) {
    // C[0, :] = alpha * op(B)^T x + beta * C[0, :] with x = row 0 of op(A), i.e. A[0, :] or A[:, 0].
    if (beta === 0) C.fill(0, 0, N);
    // op(B) = B^T: B is N x K, y = B x.   op(B) = B: B is K x N, y = B^T x.
    if (tb) mv(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, N, K, alpha, B, ldb, A, ta ? lda : 1, beta, C, 1);
    else mv(CBLAS_ROW_MAJOR, CBLAS_TRANS, K, N, alpha, B, ldb, A, ta ? lda : 1, beta, C, 1);
  } else if (N === 1) {
    // C[:, 0] = alpha * op(A) x + beta * C[:, 0] with x = column 0 of op(B), i.e. B[:, 0] or B[0, :].
    if (beta === 0) for (let i = 0; i < M; i++) C[i * ldc] = 0;
    if (ta) mv(CBLAS_ROW_MAJOR, CBLAS_TRANS, K, M, alpha, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
    else mv(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, M, K, alpha, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
  } else {
    mm(CBLAS_ROW_MAJOR, tr(ta), tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}
