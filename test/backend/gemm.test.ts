import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dgemm, gemmInfo, GemmArgumentError, sgemm } from '../../src/backend/cpu/gemm.js';
import { BlasLoadError, blasCandidates, loadBlas } from '../../src/backend/cpu/blas.js';
import { CpuThreadsError, cpuThreads, warmCpuPool } from '../../src/backend/cpu/pool.js';
import { parallelChunks, splitC, typescriptGemmPlan } from '../../src/backend/cpu/gemm.js';
import { instantiateWasmKernel } from '../../src/backend/cpu/gemm-wasm.js';

type F = Float32Array | Float64Array;
type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;

/** Deterministic values in [-1, 1) so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function filled(ctor: Ctor, n: number, r: () => number, shared = false): F {
  const bytes = n * ctor.BYTES_PER_ELEMENT;
  const buf = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  const x: F = ctor === Float32Array ? new Float32Array(buf) : new Float64Array(buf);
  for (let i = 0; i < n; i++) x[i] = r();
  return x;
}

interface Case {
  ta: boolean; tb: boolean; M: number; N: number; K: number; alpha: number; beta: number;
  /** Extra columns in each leading dimension and elements before each matrix. */
  pad: number; off: number; shared?: boolean; nanC?: boolean;
  /** Assert that the TypeScript path splits this product across this many threads. */
  parallelOn?: number;
}

/**
 * Runs one GEMM and compares it, element by element, with an f64 triple loop; also checks that nothing
 * outside C's window (the offset prefix, the ld padding, the tail) was written.
 */
function check(fn: 'sgemm' | 'dgemm', c: Case, seed: number): void {
  const ctor = fn === 'sgemm' ? Float32Array : Float64Array;
  const r = rng(seed);
  const aRows = c.ta ? c.K : c.M, aCols = c.ta ? c.M : c.K;
  const bRows = c.tb ? c.N : c.K, bCols = c.tb ? c.K : c.N;
  const lda = Math.max(1, aCols) + c.pad, ldb = Math.max(1, bCols) + c.pad, ldc = Math.max(1, c.N) + c.pad;
  const A = filled(ctor, c.off + aRows * lda + 3, r, c.shared);
  const B = filled(ctor, c.off + bRows * ldb + 3, r, c.shared);
  const C = filled(ctor, c.off + c.M * ldc + 3, r, c.shared);
  if (c.nanC) for (let i = 0; i < c.M; i++) C[c.off + i * ldc] = NaN;
  const C0 = Float64Array.from(C);
  const opA = (i: number, k: number): number => (c.ta ? A[c.off + k * lda + i]! : A[c.off + i * lda + k]!);
  const opB = (k: number, j: number): number => (c.tb ? B[c.off + j * ldb + k]! : B[c.off + k * ldb + j]!);
  if (c.parallelOn) {
    const p = { transA: c.ta, transB: c.tb, M: c.M, N: c.N, K: c.K, alpha: c.alpha, A, aOff: c.off, lda, B, bOff: c.off, ldb, beta: c.beta, C, cOff: c.off, ldc };
    assert.ok(parallelChunks(p, c.parallelOn), `${fn} ${JSON.stringify(c)} should run on ${c.parallelOn} threads`);
  }
  if (fn === 'sgemm') {
    sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A as Float32Array, c.off, lda, B as Float32Array, c.off, ldb, c.beta, C as Float32Array, c.off, ldc);
  } else {
    dgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A as Float64Array, c.off, lda, B as Float64Array, c.off, ldb, c.beta, C as Float64Array, c.off, ldc);
  }
  const eps = fn === 'sgemm' ? 2e-6 : 1e-14;
  const inWindow = new Uint8Array(C.length);
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      const idx = c.off + i * ldc + j;
      inWindow[idx] = 1;
      let s = 0, mag = 0;
      for (let k = 0; k < c.K; k++) {
        const t = opA(i, k) * opB(k, j);
        s += t;
        mag += Math.abs(t);
      }
      // beta = 0 means "overwrite": a NaN already in C must not leak into the result.
      const old = c.beta === 0 ? 0 : c.beta * C0[idx]!;
      const want = c.alpha * s + old;
      const tol = eps * (Math.abs(c.alpha) * mag * (c.K + 2) + Math.abs(old)) + 1e-30;
      const got = C[idx]!;
      if (!(Math.abs(got - want) <= tol)) {
        assert.fail(`${fn} ${JSON.stringify(c)}: C[${i},${j}] = ${got}, expected ${want} (tol ${tol})`);
      }
    }
  }
  for (let idx = 0; idx < C.length; idx++) {
    if (!inWindow[idx] && !Object.is(C[idx], C0[idx] as number) && !(Number.isNaN(C[idx]!) && Number.isNaN(C0[idx]!))) {
      assert.fail(`${fn} ${JSON.stringify(c)}: element ${idx} outside C's window changed from ${C0[idx]} to ${C[idx]}`);
    }
  }
}

function withEnv(vars: Record<string, string | undefined>, f: () => void): void {
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k];
    if (vars[k] === undefined) delete process.env[k];
    else process.env[k] = vars[k];
  }
  try {
    f();
  } finally {
    for (const k of Object.keys(saved)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

const hasBlas = loadBlas() !== null;
const PATHS = [
  { name: 'openblas', env: { DSV32_BLAS: undefined }, skip: hasBlas ? false : 'OpenBLAS is not installed' },
  { name: 'typescript', env: { DSV32_BLAS: 'off' }, skip: false },
] as const;

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1], [7, 33, 130], [33, 7, 1], [130, 33, 7], [1, 130, 33], [130, 1, 33], [33, 130, 7], [7, 7, 7],
];

for (const path of PATHS) {
  for (const fn of ['sgemm', 'dgemm'] as const) {
    test(`${fn} on the ${path.name} path: all transposes, odd sizes, padded ld, offsets, alpha/beta`, { skip: path.skip }, () => {
      withEnv(path.env, () => {
        assert.equal(gemmInfo().path, path.name);
        let seed = 1;
        for (const [M, N, K] of SIZES) {
          for (const ta of [false, true]) {
            for (const tb of [false, true]) {
              check(fn, { ta, tb, M, N, K, alpha: 1, beta: 0, pad: 0, off: 0 }, seed++);
              check(fn, { ta, tb, M, N, K, alpha: -0.75, beta: 1.5, pad: 5, off: 3 }, seed++);
            }
          }
        }
      });
    });

    test(`${fn} on the ${path.name} path: beta = 0 overwrites NaN, beta = 1 accumulates, K = 0 and empty M/N`, { skip: path.skip }, () => {
      withEnv(path.env, () => {
        check(fn, { ta: false, tb: true, M: 9, N: 10, K: 11, alpha: 2, beta: 0, pad: 1, off: 2, nanC: true }, 7);
        check(fn, { ta: true, tb: false, M: 9, N: 10, K: 11, alpha: 1, beta: 1, pad: 0, off: 0 }, 8);
        // One row or one column (matrix-vector shapes, which the BLAS path routes to ?gemv).
        let seed = 20;
        for (const ta of [false, true]) {
          for (const tb of [false, true]) {
            check(fn, { ta, tb, M: 1, N: 40, K: 9, alpha: 1.5, beta: 0, pad: 2, off: 1, nanC: true }, seed++);
            check(fn, { ta, tb, M: 40, N: 1, K: 9, alpha: -1, beta: 0, pad: 2, off: 1, nanC: true }, seed++);
            check(fn, { ta, tb, M: 1, N: 40, K: 9, alpha: 1, beta: 0.5, pad: 0, off: 0 }, seed++);
            check(fn, { ta, tb, M: 40, N: 1, K: 9, alpha: 1, beta: -2, pad: 3, off: 2 }, seed++);
          }
        }
        check(fn, { ta: false, tb: false, M: 5, N: 6, K: 0, alpha: 1, beta: 0.5, pad: 2, off: 1 }, 9);
        check(fn, { ta: false, tb: false, M: 5, N: 6, K: 0, alpha: 1, beta: 0, pad: 0, off: 0, nanC: true }, 10);
        check(fn, { ta: false, tb: false, M: 5, N: 6, K: 4, alpha: 0, beta: 2, pad: 0, off: 0 }, 11);
        check(fn, { ta: false, tb: false, M: 0, N: 6, K: 4, alpha: 1, beta: 2, pad: 0, off: 0 }, 12);
        check(fn, { ta: true, tb: true, M: 6, N: 0, K: 4, alpha: 1, beta: 2, pad: 0, off: 0 }, 13);
        // Fully empty operands: zero-length arrays are valid when there is nothing to touch.
        const E = fn === 'sgemm' ? new Float32Array(0) : new Float64Array(0);
        if (fn === 'sgemm') sgemm(false, false, 0, 0, 0, 1, E as Float32Array, 0, 1, E as Float32Array, 0, 1, 0, E as Float32Array, 0, 1);
        else dgemm(false, false, 0, 0, 0, 1, E as Float64Array, 0, 1, E as Float64Array, 0, 1, 0, E as Float64Array, 0, 1);
      });
    });
  }
}

test('typescript path splits large products across worker threads, with plain and shared arrays', () => {
  withEnv({ DSV32_BLAS: 'off', DSV32_CPU_THREADS: '2' }, () => {
    assert.equal(gemmInfo().threads, 2);
    assert.equal(typescriptGemmPlan(130, 130, 130, 3 * 130 * 130, 2), 'parallel');
    assert.equal(typescriptGemmPlan(130, 130, 130, 3 * 130 * 130, 1), 'serial');
    assert.equal(typescriptGemmPlan(4, 4, 4, 0, 2), 'serial');
    // M = 1 with a copied 1M-element B: the copy costs as much as the product, so it stays serial.
    assert.equal(typescriptGemmPlan(1, 1024, 1024, 1024 * 1024 + 1024, 2), 'serial');
    assert.equal(typescriptGemmPlan(1, 4096, 4096, 0, 2), 'parallel');
    assert.equal(splitC(100, 100, 2, 64, false), null, 'C too small to split');
    assert.deepEqual(Array.from(splitC(600, 40, 2, 256, false)!), [0, 256, 0, 40, 256, 512, 0, 40, 512, 600, 0, 40]);
    assert.deepEqual(Array.from(splitC(40, 2000, 2, 64, false)!), [0, 40, 0, 504, 0, 40, 504, 1008, 0, 40, 1008, 1512, 0, 40, 1512, 2000]);
    assert.equal(splitC(600, 40, 2, 256, true), null, 'a dot-kernel product never splits M');
    assert.deepEqual(Array.from(splitC(3, 1000, 2, 64, true)!), [0, 3, 0, 256, 0, 3, 256, 512, 0, 3, 512, 768, 0, 3, 768, 1000]);
    assert.ok(warmCpuPool(20_000), 'gemm worker threads did not start within 20 s');
    let seed = 100;
    for (const fn of ['sgemm', 'dgemm'] as const) {
      for (const shared of [false, true]) {
        // f32: the SIMD dot kernel (op(B) = B^T, few rows) split along N, and the blocked SIMD kernel
        // split along M and along N; f64: the scalar blocked kernel, both splits.
        const base = { alpha: 1, beta: 0, pad: 3, off: 5, shared, parallelOn: 2 };
        check(fn, { ...base, ta: false, tb: true, M: 130, N: 600, K: 129 }, seed++);
        check(fn, { ...base, ta: true, tb: false, M: 520, N: 40, K: 800, alpha: 0.5, beta: -1 }, seed++);
        check(fn, { ...base, ta: false, tb: false, M: 200, N: 530, K: 150, beta: 1, pad: 0, off: 0 }, seed++);
        check(fn, { ...base, ta: true, tb: true, M: 260, N: 600, K: 100, nanC: true }, seed++);
      }
    }
  });
});

test('typescript path with one thread gives the same results', () => {
  withEnv({ DSV32_BLAS: 'off', DSV32_CPU_THREADS: '1' }, () => {
    assert.equal(gemmInfo().threads, 1);
    check('sgemm', { ta: true, tb: true, M: 130, N: 129, K: 131, alpha: 1, beta: 0.25, pad: 2, off: 4 }, 200);
  });
});

test('f32 typescript path: the WebAssembly SIMD kernel and the scalar kernel agree with the reference', () => {
  assert.ok(instantiateWasmKernel(), 'WebAssembly SIMD should be available in Node >= 20');
  let seed = 300;
  for (const wasm of [undefined, 'off']) {
    withEnv({ DSV32_BLAS: 'off', DSV32_CPU_THREADS: '1', DSV32_GEMM_WASM: wasm }, () => {
      // K > KC (256) and N > NC (2048) cross block boundaries; 9 x 13 leaves partial 4 x 8 tiles.
      check('sgemm', { ta: false, tb: true, M: 9, N: 13, K: 300, alpha: 1, beta: 0, pad: 1, off: 2 }, seed++);
      check('sgemm', { ta: true, tb: false, M: 6, N: 2050, K: 5, alpha: 2, beta: 1, pad: 0, off: 0 }, seed++);
      check('sgemm', { ta: false, tb: false, M: 133, N: 17, K: 513, alpha: -1, beta: 0.5, pad: 2, off: 1 }, seed++);
      // Fewer than 4 rows with op(B) = B^T: the SIMD dot path, over several 32-row blocks of B (K = 2001
      // pads to 2004, so 32 rows fill its 256 KiB block) and a partial last group of four.
      check('sgemm', { ta: true, tb: true, M: 3, N: 70, K: 2001, alpha: 0.5, beta: 1, pad: 1, off: 3 }, seed++);
      check('sgemm', { ta: false, tb: true, M: 1, N: 66, K: 2004, alpha: 1, beta: 0, pad: 0, off: 0, nanC: true }, seed++);
      // More than DOT_MAX_ROWS rows with op(B) = B^T: the blocked kernel packs B^T.
      check('sgemm', { ta: false, tb: true, M: 1030, N: 19, K: 5, alpha: 1, beta: 0.5, pad: 1, off: 0 }, seed++);
      check('sgemm', { ta: true, tb: true, M: 1027, N: 9, K: 6, alpha: -1, beta: 0, pad: 0, off: 2 }, seed++);
    });
  }
});

test('the SIMD microkernel computes a 4 x 8 tile of packed panels exactly as f32 dot products', () => {
  const w = instantiateWasmKernel()!;
  w.memory.grow(1);
  const f = new Float32Array(w.memory.buffer);
  const kc = 37, bAt = 4 * kc, tAt = bAt + 8 * kc;
  for (let i = 0; i < tAt; i++) f[i] = ((i * 7919) % 23) - 11; // small integers: every sum is exact in f32
  f.fill(NaN, tAt, tAt + 32);
  w.k(kc, 0, 4 * bAt, 4 * tAt);
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 8; c++) {
      let s = 0;
      for (let q = 0; q < kc; q++) s += f[q * 4 + r]! * f[bAt + q * 8 + c]!;
      assert.equal(f[tAt + r * 8 + c], s, `tile[${r}][${c}]`);
    }
  }
  w.k(0, 0, 4 * bAt, 4 * tAt); // kc = 0 writes zeros
  assert.deepEqual(Array.from(f.subarray(tAt, tAt + 32)), new Array(32).fill(0));
});

test('bad arguments throw GemmArgumentError naming the argument', () => {
  const A = new Float32Array(12), B = new Float32Array(12), C = new Float32Array(9);
  const call = (over: Partial<{ M: number; N: number; K: number; lda: number; ldb: number; ldc: number; aOff: number; C: unknown }>): void => {
    const a = { M: 3, N: 3, K: 4, lda: 4, ldb: 3, ldc: 3, aOff: 0, C: C as unknown, ...over };
    sgemm(false, false, a.M, a.N, a.K, 1, A, a.aOff, a.lda, B, 0, a.ldb, 0, a.C as Float32Array, 0, a.ldc);
  };
  call({}); // the baseline is valid
  assert.throws(() => call({ M: -1 }), (e: unknown) => e instanceof GemmArgumentError && /M must be a non-negative integer, got -1/.test(e.message));
  assert.throws(() => call({ K: 2.5 }), (e: unknown) => e instanceof GemmArgumentError && /K must be/.test(e.message));
  assert.throws(() => call({ lda: 3 }), (e: unknown) => e instanceof GemmArgumentError && /lda must be an integer >= max\(1, 4\)/.test(e.message));
  assert.throws(() => call({ ldc: 4 }), (e: unknown) => e instanceof GemmArgumentError && /C is 3x3 with ld=4 at offset 0, so it needs 11 elements, but the array has 9/.test(e.message));
  assert.throws(() => call({ aOff: 1 }), (e: unknown) => e instanceof GemmArgumentError && /A is 3x4 with ld=4 at offset 1/.test(e.message));
  assert.throws(() => call({ aOff: 13 }), (e: unknown) => e instanceof GemmArgumentError && /offset of A must be an integer in \[0, 12\]/.test(e.message));
  assert.throws(() => call({ C: new Float64Array(9) }), (e: unknown) => e instanceof GemmArgumentError && /C must be a Float32Array, got Float64Array/.test(e.message));
  assert.throws(
    () => dgemm(false, false, 1, 1, 1, 1, new Float32Array(1) as unknown as Float64Array, 0, 1, new Float64Array(1), 0, 1, 0, new Float64Array(1), 0, 1),
    (e: unknown) => e instanceof GemmArgumentError && /dgemm: A must be a Float64Array, got Float32Array/.test(e.message),
  );
});

test('library lookup: DSV32_BLAS_LIB wins, and a bad one is an error, not a silent fallback', () => {
  assert.deepEqual(blasCandidates({ DSV32_BLAS_LIB: '/opt/x/libblas.so' }), { explicit: true, paths: ['/opt/x/libblas.so'] });
  assert.throws(
    () => loadBlas({ DSV32_BLAS_LIB: '/nonexistent/libopenblas.so.0' }),
    (e: unknown) => e instanceof BlasLoadError && /DSV32_BLAS_LIB=\/nonexistent\/libopenblas\.so\.0: cannot load/.test(e.message),
  );
  // libc exists everywhere and has no cblas_sgemm.
  assert.throws(() => loadBlas({ DSV32_BLAS_LIB: 'libc.so.6' }), BlasLoadError);
  if (hasBlas) {
    const found = blasCandidates({});
    assert.equal(found.explicit, false);
    assert.ok(found.paths.length > 0 && found.paths.every((p) => p.includes('libopenblas')), JSON.stringify(found));
    const info = withInfo({ DSV32_BLAS: undefined });
    assert.equal(info.path, 'openblas');
    assert.ok(info.library && info.threads >= 1);
  }
  assert.deepEqual(withInfo({ DSV32_BLAS: 'off', DSV32_CPU_THREADS: '3' }), { path: 'typescript', threads: 3, kernel: 'wasm-simd' });
  assert.deepEqual(withInfo({ DSV32_BLAS: 'off', DSV32_CPU_THREADS: '1', DSV32_GEMM_WASM: 'off' }), { path: 'typescript', threads: 1, kernel: 'scalar' });
});

test('DSV32_CPU_THREADS must be a positive integer', () => {
  assert.equal(cpuThreads({ DSV32_CPU_THREADS: '5' }), 5);
  assert.throws(() => cpuThreads({ DSV32_CPU_THREADS: 'two' }), (e: unknown) => e instanceof CpuThreadsError && /DSV32_CPU_THREADS=two/.test(e.message));
  assert.throws(() => cpuThreads({ DSV32_CPU_THREADS: '0' }), CpuThreadsError);
});

function withInfo(env: Record<string, string | undefined>): ReturnType<typeof gemmInfo> {
  let info: ReturnType<typeof gemmInfo> | undefined;
  withEnv(env, () => {
    info = gemmInfo();
  });
  return info!;
}
