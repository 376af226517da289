// Runs everywhere (no GPU needed): the op/dtype codes the TypeScript side sends must match the #defines
// the kernels switch on, and without a driver the backend must fail with a clear, typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BINARY_OPS, DT_CODES, REDUCE_OPS, UNARY_OPS } from '../../src/backend/cuda/codes.js';
import { driverCandidates } from '../../src/backend/cuda/ffi.js';
import { gemmPathOn, gemmSwitchError } from '../../src/backend/cuda/gemm-switch.js';

const root = process.cwd();
function defines(file: string, prefix: string): Map<string, number> {
  const src = readFileSync(join(root, 'kernels', file), 'utf8');
  const m = new Map<string, number>();
  for (const x of src.matchAll(new RegExp(`#define ${prefix}([A-Z0-9_]+) (\\d+)`, 'g'))) m.set(x[1]!.toLowerCase(), Number(x[2]));
  return m;
}

test('dtype codes match kernels/common.cuh', () => {
  const d = defines('common.cuh', 'DT_');
  assert.equal(d.size, DT_CODES.length);
  DT_CODES.forEach((name, i) => assert.equal(d.get(name), i, `DT_${name.toUpperCase()}`));
});

test('unary, binary and reduce op codes match the kernels', () => {
  const u = defines('elementwise.cu', 'U_');
  const b = defines('elementwise.cu', 'B_');
  const r = defines('reduce.cu', 'R_');
  assert.equal(u.size, UNARY_OPS.length);
  assert.equal(b.size, BINARY_OPS.length);
  UNARY_OPS.forEach((op, i) => assert.equal(u.get(op), i, `U_${op}`));
  BINARY_OPS.forEach((op, i) => assert.equal(b.get(op), i, `B_${op}`));
  REDUCE_OPS.forEach((op, i) => assert.equal(r.get(op), i, `R_${op}`));
});

test('DSV32_CUDA_GEMM switches the named GEMM paths, keeps the defaults when unset, and names a bad word', () => {
  assert.equal(gemmPathOn('indexer', false, {}), false);
  assert.equal(gemmPathOn('mla', true, {}), true);
  assert.equal(gemmPathOn('indexer', false, { DSV32_CUDA_GEMM: 'all' }), true);
  assert.equal(gemmPathOn('mla', true, { DSV32_CUDA_GEMM: 'none' }), false);
  assert.equal(gemmPathOn('mla-bwd', false, { DSV32_CUDA_GEMM: 'indexer, mla-bwd' }), true);
  assert.equal(gemmPathOn('mla', true, { DSV32_CUDA_GEMM: 'indexer,mla-bwd' }), false);
  assert.equal(gemmPathOn('mla-fused', true, { DSV32_CUDA_GEMM: 'indexer,mla' }), false);
  // a bad value keeps the defaults at module load and is reported when the CUDA backend is created
  assert.equal(gemmPathOn('mla', true, { DSV32_CUDA_GEMM: 'indexer,mla_bwd' }), true);
  assert.match(gemmSwitchError({ DSV32_CUDA_GEMM: 'indexer,mla_bwd' }) ?? '', /DSV32_CUDA_GEMM: unknown path 'mla_bwd'.*indexer, indexer-mma, mla, mla-fused, mla-flash, mla-split, mla-wg, mla-bwd, mla-bwd-flash, indexer-train, indexer-kl-flash, indexer-scores-flash, moe, moe-gemv, moe-dw/);
  assert.equal(gemmSwitchError({ DSV32_CUDA_GEMM: 'all' }), null);
  assert.equal(gemmSwitchError({}), null);
});

test('driver lookup honours DSV32_CUDA_DRIVER_LIB and otherwise lists ldconfig and the usual paths', () => {
  const forced = driverCandidates({ DSV32_CUDA_DRIVER_LIB: '/x/libcuda.so.1' });
  assert.deepEqual(forced.paths, ['/x/libcuda.so.1']);
  const dflt = driverCandidates({});
  assert.ok(dflt.tried.some((t) => t.startsWith('ldconfig')));
  assert.ok(dflt.tried.includes('/usr/lib/x86_64-linux-gnu/libcuda.so.1'));
});

test('a missing driver gives CudaUnavailableError naming what was tried (child process, fresh module state)', async () => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import('${join(root, 'dist/src/tensor/index.js')}').then(async (T) => {
      await import('${join(root, 'dist/src/backend/cuda/index.js')}');
      try { T.getBackend('cuda'); console.log('NO-ERROR'); }
      catch (e) { console.log(e.constructor.name + ': ' + e.message); }
    });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, DSV32_CUDA_DRIVER_LIB: '/nonexistent/libcuda.so.1' }, encoding: 'utf8',
  });
  assert.match(r.stdout, /CudaUnavailableError: CUDA driver not found: tried \$DSV32_CUDA_DRIVER_LIB \(\/nonexistent\/libcuda.so.1\)/);
});
