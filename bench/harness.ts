// Shared by the benchmarks: argument parsing and the device check, timing (median of several runs; CUDA
// events around bursts on the GPU), the machine description, the python reference scripts (numpy, torch)
// run in the same invocation, and table printing.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../src/tensor/index.js';
import { cudaBackend, cudaUnavailableReason } from '../src/backend/cuda/index.js';
import { Kernel } from '../src/backend/cuda/launch.js';
import { profileBackend, type BackendProfile, type OpTimer } from '../src/tensor/profile.js';
import type { CudaEvent } from '../src/backend/cuda/runtime.js';
import type { Backend } from '../src/tensor/backend.js';
import { rng as mulberry32 } from '../test/chat/rng.js';

export { mulberry32 };

/** The command line: `args` as given, `opt(name)` the value after a flag (undefined when absent). */
export const args = process.argv.slice(2);
export const opt = (n: string): string | undefined => (args.includes(n) ? args[args.indexOf(n) + 1] : undefined);

/** A bad argument: its message on one line (no stack trace) and exit status 2. */
export function argError(message: string): never {
  console.error(message);
  process.exit(2);
}

/**
 * The bench device from `--device` (default cuda). Without a CUDA driver a GPU run prints
 * `${name}: ${why}` (followed by `cpuHint` where the bench has CPU shapes) and exits with status 2.
 */
export function benchDevice(name: string, cpuHint?: string): { device: string; onCpu: boolean } {
  const device = cpuHint === undefined ? 'cuda' : (opt('--device') ?? 'cuda');
  const onCpu = device === 'cpu';
  if (!onCpu) {
    const why = cudaUnavailableReason();
    if (why) {
      console.error(`${name}: ${why}${cpuHint ? ` (${cpuHint})` : ''}`);
      process.exit(2);
    }
  }
  return { device, onCpu };
}

/** xs[⌊n/2⌋] of the sorted samples (sorts xs in place). */
export function median(xs: number[]): number {
  xs.sort((a, b) => a - b);
  return xs[xs.length >> 1]!;
}

let events: [ReturnType<ReturnType<typeof cudaBackend>['event']>, ReturnType<ReturnType<typeof cudaBackend>['event']>] | null = null;
/**
 * Median ms per call after `warm` warm-up calls: `reps` samples, each a burst of `burst` back-to-back calls
 * timed by two CUDA events (the host clock when `host`). A burst keeps the GPU queue ahead of the host, so
 * the figure is the kernels' time, not the host's dispatch gap between an event and a lone launch.
 */
export function burstMs(fn: () => void, reps: number, burst: number, warm = 1, host = false): number {
  for (let i = 0; i < warm; i++) fn();
  const ts: number[] = [];
  if (host) {
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      for (let j = 0; j < burst; j++) fn();
      ts.push((performance.now() - t) / burst);
    }
    return median(ts);
  }
  if (!events) {
    const b = cudaBackend();
    events = [b.event(), b.event()];
  }
  const [e0, e1] = events;
  for (let i = 0; i < reps; i++) {
    e0.record();
    for (let j = 0; j < burst; j++) fn();
    e1.record();
    e1.synchronize();
    ts.push(e1.since(e0) / burst);
  }
  return median(ts);
}

/**
 * The device time of fn alone (ms per call): each burst is enqueued behind a hold of `holdMs`
 * (kernels/spin.cu), so the events around it see the kernels run back to back, as a CUDA graph replays
 * them, without the host's per-call cost that burstMs includes when the host is the slower side. NaN
 * when a burst's enqueue outlasted the hold (then the host's gaps would be in the time).
 */
export function heldBurstMs(fn: () => void, reps: number, burst: number, warm = 1, holdMs = 5): number {
  for (let i = 0; i < warm; i++) fn();
  const b = cudaBackend();
  if (!events) events = [b.event(), b.event()];
  const [e0, e1] = events;
  const ts: number[] = [];
  const checks = b.eagerIndexChecks; // they read the device, which would wait for the hold
  b.eagerIndexChecks = false;
  try {
    for (let i = 0; i < reps; i++) {
      b.hold(holdMs);
      e0.record();
      for (let j = 0; j < burst; j++) fn();
      const held = !e0.done();
      e1.record();
      e1.synchronize();
      ts.push(held ? e1.since(e0) / burst : NaN);
    }
  } finally {
    b.eagerIndexChecks = checks;
  }
  return ts.some(Number.isNaN) ? NaN : median(ts);
}

/** rows × k distinct random values of [0, n) per row (mulberry32 from `seed`), mapped through f(row, value). */
export function distinctRows(rows: number, k: number, n: number, seed: number, f: (row: number, v: number) => number = (_r, v) => v): Int32Array {
  const rnd = mulberry32(seed);
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const swaps = new Int32Array(k);
  const out = new Int32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < k; j++) {
      const p = j + Math.floor(rnd() * (n - j));
      swaps[j] = p;
      [perm[j], perm[p]] = [perm[p]!, perm[j]!];
      out[r * k + j] = f(r, perm[j]!);
    }
    for (let j = k - 1; j >= 0; j--) [perm[j], perm[swaps[j]!]] = [perm[swaps[j]!]!, perm[j]!]; // undo: identity again
  }
  return out;
}

/** Frees the device memory of tensors a bench no longer needs (a no-op on the CPU). */
export const dispose = (...ts: T.Tensor[]): void => {
  for (const t of ts) (t.storage as { dispose?: () => void }).dispose?.();
};

/** Runs bench/<script> with `input` as JSON on stdin; the caller reads r.stdout (JSON) or reports the failure. */
export function runReference(script: string, input: unknown, python = 'python3', env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', script);
  return spawnSync(python, [path], { input: JSON.stringify(input), encoding: 'utf8', env, maxBuffer: 1 << 24 });
}

/** Median seconds of `fn` after one warm-up call: at least `reps` calls and at least `minTime` seconds. */
export function medianSeconds(fn: () => void, reps: number, minTime: number): number {
  fn();
  const times: number[] = [];
  const start = performance.now();
  while ((times.length < reps || performance.now() - start < minTime * 1000) && times.length < 1000) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  return times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
}

export function machine(): string {
  let model = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1]!;
  } catch {
    // not Linux: os.cpus() is good enough
  }
  // The 1-minute load average shows whether other processes shared the cores during the run.
  return `${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (nproc), ${model}, Node ${process.version}, load average ${loadavg()[0]!.toFixed(2)}`;
}

export interface NumpyResult {
  numpy: string;
  blas: Record<string, unknown>;
  results: Array<{ shape: number[]; seconds: number }>;
}

/**
 * Times the same shapes in numpy. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which some machines set to keep old
 * OpenBLAS builds safe, are removed for this child only: they would pin numpy's current OpenBLAS to a
 * slower kernel than it picks itself. Returns null (with the reason) when python3 or numpy is missing.
 */
export function numpyReference(kind: 'gemm' | 'softmax', shapes: number[][], reps: number, minTime: number): NumpyResult | string {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = runReference('numpy_ref.py', { kind, shapes, reps, min_time: minTime }, 'python3', env);
  if (r.error) return `python3 could not be run (${r.error.message})`;
  if (r.status !== 0) return `numpy_ref.py failed: ${r.stderr.trim().split('\n').pop()}`;
  return JSON.parse(r.stdout) as NumpyResult;
}

/** Prints rows as an aligned Markdown table, so the output can be pasted into docs/benchmarks.md. */
export function printTable(header: string[], rows: string[][]): void {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(w[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${w.map((n) => '-'.repeat(n + 1) + ':').join('|')}|`);
  for (const r of rows) console.log(line(r));
}

export function geomean(xs: number[]): number {
  const ok = xs.filter((x) => x > 0 && Number.isFinite(x));
  return ok.length ? Math.exp(ok.reduce((s, x) => s + Math.log(x), 0) / ok.length) : NaN;
}

/**
 * A random tensor on `device` without generating every value on the host: a 4M-value randn chunk is made
 * once, uploaded, and tiled, each tile scaled by scale·(1 + i·10⁻³) so no two tiles are equal. (A 671B
 * expert stack is 3.7G values: drawing them in JS would take minutes.)
 */
export function randDevice(shape: number[], dtype: T.DType, seed: number, device: string, scale = 1): T.Tensor {
  const n = T.numelOf(shape);
  const chunk = Math.max(1, Math.min(n, 1 << 22));
  const src = T.randn([chunk], new T.Rng(seed), { dtype, device });
  const t = T.empty(shape, { dtype, device });
  for (let off = 0, i = 0; off < n; off += chunk, i++) {
    const len = Math.min(chunk, n - off);
    t.backend.unary('muls', { storage: t.storage, dtype, shape: [len], strides: [1], offset: off }, { ...src, shape: [len], strides: [1], offset: 0 }, scale * (1 + i * 1e-3));
  }
  return t;
}

/**
 * Fill every slot of a paged MLA cache through its writer (T.mlaCacheWrite), in chunks of `chunk` tokens
 * of random latent [chunk, dv] and RoPE [chunk, D − dv] rows (seeds `seed`, `seed + 1`): the caches the
 * decode benches read are written as the engine writes them, FP8 scales included.
 */
export function fillMlaCache(cache: T.Tensor, slots: number, dv: number, D: number, seed: number, device: string, chunk: number): void {
  const lat = randDevice([chunk, dv], 'bf16', seed, device);
  const rope = randDevice([chunk, D - dv], 'bf16', seed + 1, device);
  for (let s0 = 0; s0 < slots; s0 += chunk) {
    const n = Math.min(chunk, slots - s0);
    const at = T.arange(s0, s0 + n, 1, { dtype: 'i32', device });
    T.mlaCacheWrite(cache, n === chunk ? lat : T.narrow(lat, 0, 0, n), n === chunk ? rope : T.narrow(rope, 0, 0, n), at);
    dispose(at);
  }
  dispose(lat, rope);
}

/** Each CUDA kernel a profiled op launches, noted under that op while fn runs. */
async function withKernelNotes<R>(prof: BackendProfile, fn: () => R | Promise<R>): Promise<R> {
  const launch = Kernel.prototype.launch;
  Kernel.prototype.launch = function (this: Kernel, ...a: Parameters<Kernel['launch']>) {
    prof.note(this.name);
    return launch.apply(this, a);
  };
  try {
    return await fn();
  } finally {
    prof.stop();
    Kernel.prototype.launch = launch;
  }
}

/**
 * fn() once with every backend op synchronised and timed (src/tensor/profile.ts), each op's CUDA kernels
 * named by the launches it made (so a table shows which path ran: cuBLASLt, a GEMM path or matmul_naive);
 * returns fn's wall time in ms and the table.
 */
export async function profiledOnce(be: Backend, fn: () => unknown): Promise<{ ms: number; table: string }> {
  const prof = profileBackend(be);
  return withKernelNotes(prof, async () => {
    const t = performance.now();
    await fn();
    return { ms: performance.now() - t, table: prof.table() };
  });
}

/**
 * fn() once on the GPU with each backend op timed by CUDA events and nothing synchronised, behind a hold of
 * `holdMs` (kernels/spin.cu): the host enqueues the whole of fn while the stream waits, then its kernels run
 * back to back, as a CUDA graph replays them, so an op's time is its kernels' device time without the host's
 * enqueue cost. fn must not read the device (a read waits for the hold). Returns the host's enqueue time,
 * the device span from the first op to the last, the table, whether the hold outlasted the enqueue (if not,
 * the host's gaps are in the times), the cuMemAlloc calls fn made (one waits for the device), and the op
 * whose single call took the host longest (where the host waited, when it did). The eager index checks,
 * which read the device, are off meanwhile.
 */
export async function gpuTimedOnce(fn: () => unknown, holdMs = 500): Promise<{
  hostMs: number; spanMs: number; heldThrough: boolean; driverAllocs: number; hostWait: { op: string; ms: number } | null; table: string;
}> {
  const be = cudaBackend();
  const pool: CudaEvent[] = [];
  const timer: OpTimer<CudaEvent> = { mark: () => (pool.pop() ?? be.event()).record(), ms: (a, b) => b.since(a), release: (e) => pool.push(e) };
  const start = be.event();
  const end = be.event();
  const checks = be.eagerIndexChecks;
  be.eagerIndexChecks = false;
  be.synchronize();
  const prof = profileBackend(be, timer);
  try {
    return await withKernelNotes(prof, async () => {
      const allocs0 = be.memoryStats().driverAllocs;
      be.hold(holdMs);
      start.record();
      const t = performance.now();
      await fn();
      const hostMs = performance.now() - t;
      end.record();
      const heldThrough = !start.done();
      end.synchronize();
      // the op whose one call held the host longest: where it waited on the device, if it did
      let hostWait: { op: string; ms: number } | null = null;
      for (const [op, o] of prof.ops) if (!hostWait || o.hostMaxMs > hostWait.ms) hostWait = { op, ms: o.hostMaxMs };
      return { hostMs, spanMs: end.since(start), heldThrough, driverAllocs: be.memoryStats().driverAllocs - allocs0, hostWait, table: prof.table() };
    });
  } finally {
    be.eagerIndexChecks = checks;
    for (const e of [start, end, ...pool]) e.destroy();
  }
}
