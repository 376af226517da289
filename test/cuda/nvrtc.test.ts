// NVRTC: a kernel specialised at run time (constants passed as -D options) compiles for this GPU, loads,
// checks its parameter table, runs, and matches the CPU; the on-disk cache serves the second compile; a
// compile error carries NVRTC's log. Skips (with the reason) without a driver or without libnvrtc.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../../src/tensor/index.js';
import { loadNvrtc } from '../../src/backend/cuda/ffi.js';
import { NvrtcError, compileCubin } from '../../src/backend/cuda/nvrtc.js';
import { DsvError } from '../../src/errors.js';
import { cuda, reason, randn, to, assertRel } from './common.js';

let nvrtcReason: string | null = null;
try {
  loadNvrtc();
} catch (e) {
  nvrtcReason = (e as Error).message;
}
const skip = reason ? { skip: `no CUDA: ${reason}` } : nvrtcReason ? { skip: nvrtcReason } : {};

const SRC = `
extern "C" __global__ void affine(long long n, float* y, const float* x) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    y[i] = x[i] * SCALE + SHIFT;
}`;

describe('NVRTC run-time kernels', skip, () => {
  test('a -D specialised kernel compiles, is cached, runs and matches the cpu; errors carry the log', () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'dsv32-nvrtc-'));
    try {
      const b = cuda();
      const o = { options: ['-DSCALE=3.0f', '-DSHIFT=0.5f'], cacheDir };
      const k = b.compileKernel(SRC, 'affine', ['i64', 'p', 'p'], o);
      assert.equal(readdirSync(cacheDir).filter((f) => f.endsWith('.cubin')).length, 1, 'the cubin is cached on disk');
      assert.equal(compileCubin(SRC, 'sm_90a', o).cached, true, 'the same source and options come from the cache');
      const n = 10_000;
      const x = randn([n]);
      const xd = to(x, 'cuda');
      const yd = T.empty([n], { device: 'cuda' });
      k.launch(40, 256, 0, [n, b.address(yd), b.address(xd)]);
      assertRel(yd, T.adds(T.muls(x, 3), 0.5), 1e-6, 'affine via NVRTC');
      // another specialisation is another cubin
      const k2 = b.compileKernel(SRC, 'affine', ['i64', 'p', 'p'], { options: ['-DSCALE=-2.0f', '-DSHIFT=0.0f'], cacheDir });
      k2.launch(40, 256, 0, [n, b.address(yd), b.address(xd)]);
      assertRel(yd, T.muls(x, -2), 1e-6, 'second specialisation');
      // a wrong binding is caught against the cubin's parameter table, a compile error names the line
      assert.throws(() => b.compileKernel(SRC, 'affine', ['i64', 'p'], o), (e: unknown) => e instanceof DsvError && /declares 3 parameters, the binding expects 2/.test(e.message));
      assert.throws(() => b.compileKernel(SRC.replace('SHIFT;', 'SHIFT'), 'affine', ['i64', 'p', 'p'], { ...o, name: 'broken.cu', cacheDir: null }),
        (e: unknown) => e instanceof NvrtcError && /NVRTC could not compile broken\.cu/.test(e.message) && /broken\.cu\(\d+\): error/.test(e.log));
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
