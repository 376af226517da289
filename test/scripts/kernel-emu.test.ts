// The kernel labs' CPU emulations (scripts/kernel-emu/run-*.mjs): each builds kernels/*.cu as host C++ (one
// thread per CUDA thread; ldmatrix, mma.sync, wgmma and cp.async emulated as shim/ says) and compares the
// kernels' outputs with the CPU reference ops at awkward shapes. Here they run on every CI machine, which
// has no GPU, so a kernel's indexing, tiles, fragment walks and roundings are checked before any GPU run.
// The two slow runners (run-dsa-train.mjs ~2 min, run-sparse-mla.mjs ~4 min on 2 cores) are left to be run
// by hand. Needs g++ with C++20 (<barrier>, std::atomic_ref); skipped, saying so, without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const cxx20 = spawnSync('g++', ['-std=c++20', '-x', 'c++', '-fsyntax-only', '-'], { input: '#include <barrier>\n#include <atomic>\nint main() {}\n', encoding: 'utf8' });
const skip = cxx20.status === 0 ? false : `no g++ with C++20 here (${cxx20.error?.message ?? cxx20.stderr.trim().split('\n')[0]})`;

// [runner, its arguments]: the one-pass few-head DSA kernels (sparse MLA forward and backward, indexer
// scores, KL), the fused FP8 indexer, its GEMM path, the FP8 block-scaled linear, AdamW (its quick set), the
// wgmma sparse MLA, the MoE kernels
const RUNNERS: Array<[string, string[]]> = [
  ['dsa-flash', []], ['indexer-mma', []], ['indexer-gemm', []], ['fp8-linear', []], ['adamw', ['--quick']], ['sparse-mla-wg', []], ['moe', []],
];

for (const [name, args] of RUNNERS) {
  test(`kernel-emu ${name}: every case agrees with the CPU reference`, { skip, timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, [`scripts/kernel-emu/run-${name}.mjs`, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const fails = r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
    assert.equal(r.status, 0, `run-${name}.mjs exited ${r.status}: ${fails.join('; ') || r.stderr.slice(-2000)}`);
    assert.match(r.stdout, new RegExp(`${name}-emu: all \\d+ cases agree with the CPU reference`));
  });
}
