// What the run-*.mjs emulation runners share: argument parsing, the host-C++ build of a kernel file
// (textual edits of its __shared__ declarations and PTX, then g++ against shim/common.cuh and a driver
// *-emu.cpp on shim/driver.h), seeded inputs, the emulator's files, error measures against the CPU
// references, and the ok/FAIL report with its exit code.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..', '..');

/**
 * Parses the runner's command line (`--quick` where the runner has a quick set, `--help`), loads the built
 * tensor library (dist/, from `npm run build`) and makes a scratch folder.
 * @returns {{ T: any, quick: boolean, dir: string }}
 */
export async function setup(name, { usage = '', quickMode = false } = {}) {
  const args = process.argv.slice(2);
  const known = quickMode ? ['--quick', '--help'] : ['--help'];
  const bad = args.filter((a) => !known.includes(a));
  if (bad.length || args.includes('--help')) {
    if (bad.length) console.error(`${name}-emu: unknown argument(s) ${bad.join(' ')}${quickMode ? '' : ' (this runner has no --quick set)'}`);
    console.log(`usage: npm run build && node scripts/kernel-emu/run-${name}.mjs${quickMode ? ' [--quick]' : ''}${usage ? `\n${usage}` : ''}`);
    process.exit(bad.length ? 2 : 0);
  }
  let T;
  try {
    T = await import(join(root, 'dist', 'src', 'tensor', 'index.js'));
  } catch (e) {
    throw new Error(`${name}-emu: the built library is missing or stale (run npm run build first): ${e.message}`);
  }
  return { T, quick: args.includes('--quick'), dir: mkdtempSync(join(tmpdir(), `${name}-emu-`)) };
}

/**
 * kernels/<cu> made host C++: each [from, to] edit must apply (the kernel changed otherwise), then with
 * `staticShared` every remaining `__shared__ ` becomes `static ` (CTAs never overlap); what is left of
 * __shared__ or asm is an error.
 */
export function hostKernel(cu, edits = [], { staticShared = false } = {}) {
  let src = readFileSync(join(root, 'kernels', cu), 'utf8');
  for (const [from, to] of edits) {
    if (!src.includes(from)) throw new Error(`kernel-emu: kernels/${cu} no longer contains '${from}'; update the edits`);
    src = src.split(from).join(to);
  }
  if (staticShared) src = src.replace(/__shared__ /g, 'static ');
  if (/__shared__|asm\(/.test(src)) throw new Error(`kernel-emu: kernels/${cu} has __shared__ or asm this emulation does not handle`);
  return src;
}

/**
 * The edit that inlines a kernel header (kernels/<name>) into the kernel source: a header's own
 * #include "common.cuh" would find the CUDA one beside it, while from kernel.cpp it finds the shim's.
 */
export function headerEdit(name) {
  return [`#include "${name}"`, readFileSync(join(root, 'kernels', name), 'utf8').replace('#pragma once', '')];
}

/**
 * The edit that inlines kernels/wgmma.cuh without its sm_90a section (the descriptors and the swizzle's
 * addressing stay; a driver defines the fences, barriers and MMAs as the emulation has them).
 */
export function wgmmaHeaderEdit() {
  const h = readFileSync(join(root, 'kernels', 'wgmma.cuh'), 'utf8');
  const a = h.indexOf('// ---- sm_90a instructions ----');
  if (a < 0 || h.indexOf('// ---- end of the sm_90a instructions ----') < 0) throw new Error('kernel-emu: kernels/wgmma.cuh lost its sm_90a section markers; update emu-runner.mjs');
  return ['#include "wgmma.cuh"', h.slice(0, a).replace('#pragma once', '').replace('#include <stdint.h>', '')];
}

/**
 * Builds one emulator: the host kernel source as kernel.cpp in its own folder of `dir`, compiled into the
 * driver `driver` (a *-emu.cpp of this folder) with g++ -std=c++20 against shim/. Returns the executable.
 */
export function build(dir, { cu, edits, staticShared, driver, sub = 'build', flags = ['-O2'], defines = [] }) {
  const d = join(dir, sub);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'kernel.cpp'), hostKernel(cu, edits, { staticShared }));
  const exe = join(d, 'emu');
  execFileSync('g++', ['-std=c++20', ...flags, '-pthread', '-Wno-unknown-pragmas', ...defines.map((x) => `-D${x}`),
    // kernels/ too: a kernel's own headers (indexer_train.cu includes indexer_kl.cuh)
    '-I', join(here, 'shim'), '-I', d, '-I', join(here, '..', '..', 'kernels'), '-o', exe, join(here, driver)], { stdio: 'inherit' });
  return exe;
}

/** Runs an emulator; returns its stdout. */
export const emulate = (exe, args, opts = {}) => execFileSync(exe, args.map(String), { encoding: 'utf8', ...opts });
/** The device error record "err <code> <index> <size>" an emulator printed. */
export function errRecord(stdout) {
  const m = /err (\d+) (-?\d+) (-?\d+)/.exec(stdout);
  if (!m) throw new Error(`kernel-emu: no error record in '${stdout}'`);
  return { code: +m[1], index: +m[2], size: +m[3] };
}

// ---- inputs -------------------------------------------------------------------------------------------
let Rng;
try {
  ({ Rng } = await import(join(root, 'dist', 'src', 'envs', 'rng.js')));
} catch (e) {
  throw new Error(`kernel-emu: the built library is missing (run npm run build first): ${e.message}`);
}
/** The project's seeded mulberry32 (src/envs/rng.ts) as a function: uniform in [0, 1). */
export function mulberry32(seed) {
  const rng = new Rng(seed);
  return () => rng.next();
}
/** n standard normals (Box–Muller on r) times s. */
export const normals = (n, r, s = 1) => Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r()) * s);

/**
 * rows × k sparse-attention entries of [0, Tk) drawn from r: distinct, ~20% holes (−1), ~2% past Tk (holes
 * too), row 1 all −1, and −1 from entry `tail` on (a row padded at its end, as the top-k pads short rows).
 */
export function makeIdx(rows, k, Tk, r, tail = k) {
  const idx = new Int32Array(rows * k);
  for (let i = 0; i < rows; i++) {
    const perm = Int32Array.from({ length: Tk }, (_, j) => j);
    for (let j = 0; j < Math.min(k, Tk); j++) {
      const p = j + Math.floor(r() * (Tk - j));
      [perm[j], perm[p]] = [perm[p], perm[j]];
    }
    for (let j = 0; j < k; j++) {
      const u = r();
      idx[i * k + j] = i === 1 || j >= Tk || j >= tail || u < 0.2 ? -1 : u < 0.22 ? Tk + 3 : perm[j];
    }
  }
  return idx;
}

/**
 * A sparse MLA prefill case {Tq, H, Tk, k, dv, dr} in `dtype`, drawn from r in this order: q [Tq, H, D] and
 * kv [Tk, D] normals (D = dv + dr), idx [Tq, k] = makeIdx(Tq, k, Tk, r); scale 1.5 / √D.
 */
export function mlaPrefillCase(T, c, dtype, r, makeIdx) {
  const D = c.dv + c.dr;
  const q = T.fromArray(normals(c.Tq * c.H * D, r), [c.Tq, c.H, D], { dtype });
  const kv = T.fromArray(normals(c.Tk * D, r), [c.Tk, D], { dtype });
  const idx = T.fromArray(makeIdx(c.Tq, c.k, c.Tk, r), [c.Tq, c.k], { dtype: 'i32' });
  return { D, scale: 1.5 / Math.sqrt(D), q, kv, idx };
}

/**
 * A paged indexer-key cache for the indexer runners: B = ctx.length sequences with ctx[b] random e4m3 keys
 * (D 128, values nrm()·30) and scales, pages scattered by a block table of maxBlocks = ⌈maxCtx/64⌉ + 1 pages a
 * sequence over a pool of 3B + 2, whose entry maxBlocks − 1 of sequence 0 points past the cache (outside
 * every context: it must read as zeros). maxCtx = max ctx + 3.
 */
export function pagedIndexerCache(T, ctx, nrm) {
  const D = 128;
  const B = ctx.length;
  const maxCtx = Math.max(...ctx) + 3;
  const maxBlocks = Math.ceil(maxCtx / 64) + 1;
  const pool = 3 * B + 2;
  const table = Array.from({ length: B * maxBlocks }, (_, i) => (i * 5 + 3) % pool);
  table[maxBlocks - 1] = pool + 7;
  const cache = T.indexerCache(pool, D, T.getBackend('cpu'));
  const i32 = (a) => T.fromArray(Int32Array.from(a), [a.length], { dtype: 'i32' });
  for (let b = 0; b < B; b++) {
    const k = T.cast(T.fromArray(Float32Array.from({ length: ctx[b] * D }, () => nrm() * 30), [ctx[b], D]), 'f8e4m3');
    const ks = T.fromArray(Float32Array.from({ length: ctx[b] }, () => Math.abs(nrm()) + 0.01), [ctx[b]]);
    T.indexerCacheWrite(cache, k, ks, i32(Array.from({ length: ctx[b] }, (_, p) => table[b * maxBlocks + (p >> 6)] * 64 + (p & 63))));
  }
  return { B, maxCtx, maxBlocks, pool, table, cache };
}

// ---- files --------------------------------------------------------------------------------------------
/** A tensor's bytes as the device holds them. */
export const tensorBytes = (T, t) => T.hostBytes(t.toHost());
/** Writes a tensor or a typed array to a file. */
export function writeData(T, path, data) {
  writeFileSync(path, ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : tensorBytes(T, data));
  return path;
}
/** A file of `dtype` elements as f64 values (f32, bf16, f8e4m3, i32, …). */
export function readValues(T, path, dtype, shape) {
  const b = readFileSync(path);
  return T.fromBits(T.hostFromBytes(dtype, new Uint8Array(b)), dtype, shape).toFloat64();
}
export function readI32(path) {
  const b = readFileSync(path);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

// ---- comparisons ----------------------------------------------------------------------------------------
/** ‖a − e‖ / ‖e‖; with `minusInf`, −∞ entries count as 0 on both sides. */
export function relErr(a, e, { minusInf = false } = {}) {
  let n = 0;
  let d = 0;
  for (let i = 0; i < e.length; i++) {
    const x = minusInf && e[i] === -Infinity ? 0 : e[i];
    const y = minusInf && a[i] === -Infinity ? 0 : a[i];
    n += (y - x) ** 2;
    d += x ** 2;
  }
  return Math.sqrt(n / (d || 1));
}
/** max |a − e| / max |e| (accumulation order differs from the CPU GEMMs: the error against the output's scale). */
export function worstRel(a, e) {
  let scale = 1e-30;
  let worst = 0;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]));
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i] - e[i]) / scale);
  return worst;
}
export const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

// ---- report ---------------------------------------------------------------------------------------------
/** Prints each case as ok/FAIL; finish() prints the verdict and exits 1 when a case failed. */
export function reporter(name) {
  let failed = 0;
  let total = 0;
  return {
    check(ok, what) {
      total++;
      if (!ok) failed++;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    },
    finish() {
      console.log(failed ? `${name}-emu: ${failed} of ${total} case(s) differ` : `${name}-emu: all ${total} cases agree with the CPU reference`);
      process.exit(failed ? 1 : 0);
    },
  };
}
