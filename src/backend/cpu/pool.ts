// The CPU backend's worker threads: one lazily started pool that runs both the TypeScript GEMM's
// rectangles of C (gemm.ts) and the row-parallel loops of the other ops (parallelRows below; the
// workers find each loop by name in row-kernels.ts). The ops are synchronous,
// so the calling thread cannot await workers: it posts the task (operands in SharedArrayBuffers) to every
// ready worker, wakes them through Atomics, then claims chunks itself from the same atomic counter and
// finally blocks until every chunk is done. Chunks are claimed dynamically, so a worker that is still
// starting up, or a core that is busy with something else, just takes fewer chunks; a task never waits
// for a worker to start.
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { DsvError } from '../../errors.js';
import { gemmRect, type GemmProblem, type GemmScratch } from './gemm-kernel.js';

/** DSV32_CPU_THREADS is not a usable thread count. */
export class CpuThreadsError extends DsvError {}

/**
 * One parallel job. counters: [next chunk to claim, chunks finished, 1 if any chunk threw] on its own
 * SharedArrayBuffer.
 *   gemm  chunks are rectangles [m0, m1, n0, n1] of C, four entries each
 *   rows  chunks are row ranges [r0, r1), two entries each, of ROW_KERNELS[kernel](args, r0, r1)
 */
export type PoolTask =
  | { kind: 'gemm'; problem: GemmProblem; chunks: Int32Array; counters: Int32Array }
  | { kind: 'rows'; kernel: string; args: unknown; chunks: Int32Array; counters: Int32Array };

/** A row-parallel loop: rows [r0, r1) of one call, writing nothing another range writes. */
export type RowKernel<A> = (args: A, r0: number, r1: number) => void;
/** How a thread finds a row kernel by name (the workers: row-kernels.ts; the caller: the one it passed). */
export type RowKernelLookup = (name: string) => RowKernel<never> | undefined;

const NEXT = 0;
const DONE = 1;
const FAILED = 2;

function chunkCount(task: PoolTask): number {
  return task.chunks.length / (task.kind === 'gemm' ? 4 : 2);
}

/** Claims and computes chunks until none are left; used by the workers and by the calling thread. */
export function runChunks(task: PoolTask, scratch: GemmScratch | null, lookup: RowKernelLookup): void {
  const { chunks, counters } = task;
  const n = chunkCount(task);
  for (;;) {
    const c = Atomics.add(counters, NEXT, 1);
    if (c >= n) return;
    try {
      if (task.kind === 'gemm') gemmRect(task.problem, chunks[4 * c]!, chunks[4 * c + 1]!, chunks[4 * c + 2]!, chunks[4 * c + 3]!, scratch!);
      else lookup(task.kernel)!(task.args as never, chunks[2 * c]!, chunks[2 * c + 1]!);
    } catch {
      Atomics.store(counters, FAILED, 1);
    }
    Atomics.add(counters, DONE, 1);
    Atomics.notify(counters, DONE);
  }
}

/** Threads the CPU backend uses (this one included): DSV32_CPU_THREADS if set, else the cores Node may use. */
export function cpuThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.DSV32_CPU_THREADS;
  if (v !== undefined && v !== '') {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 256) {
      throw new CpuThreadsError(`DSV32_CPU_THREADS=${v}: expected an integer from 1 to 256`);
    }
    return n;
  }
  return Math.max(1, availableParallelism());
}

interface Slot {
  worker: Worker;
  port: MessagePort;
}

export class CpuPool {
  private readonly slots: Slot[] = [];
  /** Words 0..n-1: each worker's mailbox sequence; words n..2n-1: 0 loading, 1 listening, 2 gone. */
  private readonly ctl: Int32Array;

  constructor(readonly workers: number) {
    this.ctl = new Int32Array(new SharedArrayBuffer(8 * Math.max(1, workers)));
    for (let i = 0; i < workers; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL('./pool-worker.js', import.meta.url), {
        workerData: { ctl: this.ctl, index: i, readyIndex: workers + i, port: port2 },
        transferList: [port2],
      });
      // A worker that fails to load or dies only stops taking chunks (the others and this thread take
      // them), so its error must not become an uncaught exception in the caller's process.
      const ready = workers + i;
      worker.on('error', () => Atomics.store(this.ctl, ready, 2));
      worker.on('exit', () => Atomics.store(this.ctl, ready, 2));
      // The pool must never keep the process alive, and an idle worker holds no event-loop work anyway.
      worker.unref();
      port1.unref();
      this.slots.push({ worker, port: port1 });
    }
  }

  /** Runs every chunk of `task` on the ready workers and this thread; returns when all are done. */
  run(task: PoolTask, scratch: GemmScratch | null, lookup: RowKernelLookup = () => undefined): void {
    const n = this.workers;
    for (let i = 0; i < n; i++) {
      if (Atomics.load(this.ctl, n + i) !== 1) continue; // still loading its module; others take its share
      this.slots[i]!.port.postMessage(task);
      Atomics.add(this.ctl, i, 1);
      Atomics.notify(this.ctl, i);
    }
    runChunks(task, scratch, lookup);
    const total = chunkCount(task);
    const { counters } = task;
    for (let done = Atomics.load(counters, DONE); done < total; done = Atomics.load(counters, DONE)) {
      Atomics.wait(counters, DONE, done);
    }
    if (Atomics.load(counters, FAILED) === 1) {
      throw new Error(`cpu pool: a thread failed while computing its part of a ${task.kind === 'gemm' ? 'GEMM' : `${task.kernel} call`}`);
    }
  }

  /** Blocks (up to timeoutMs) until every worker has loaded; benchmarks use it to keep start-up out of timings. */
  waitReady(timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < this.workers; i++) {
      while (Atomics.load(this.ctl, this.workers + i) === 0) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        Atomics.wait(this.ctl, this.workers + i, 0, left);
      }
      if (Atomics.load(this.ctl, this.workers + i) !== 1) return false;
    }
    return true;
  }
}

let pool: CpuPool | undefined;

/** The process's pool, started on first use with `threads − 1` workers (this thread is the last one). */
export function cpuPool(threads: number): CpuPool {
  pool ??= new CpuPool(threads - 1);
  return pool;
}

/** A fresh [next, done, failed] counter triple for one task. */
export function newCounters(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(12));
}

/** Starts the worker threads now and waits (up to timeoutMs) until they listen. */
export function warmCpuPool(timeoutMs = 10_000): boolean {
  const threads = cpuThreads();
  if (threads <= 1) return true;
  return cpuPool(threads).waitReady(timeoutMs);
}

// ---- row-parallel loops ----

/**
 * Staging for arrays that are not SharedArrayBuffer-backed, which the workers cannot see: one slab per
 * named slot (a GEMM operand's role, a row kernel's argument), grown to the largest request and reused.
 * A fresh SharedArrayBuffer costs far more than the copy into it (its pages are new to the process and
 * its memory returns only after a full collection: 6–8 ms for 2 MiB allocated and touched, against 0.3 ms
 * for a plain ArrayBuffer, on the 2-core EPYC VM). Reuse is safe: a task returns only after every chunk
 * is done, and a worker that wakes late finds no chunk left to claim. A request above STAGING_KEEP_BYTES
 * gets a slab that is not kept, so one huge product does not pin its memory for the life of the process
 * (parallelRows runs such a call serially instead).
 */
const slabs = new Map<string, SharedArrayBuffer>();
export const STAGING_KEEP_BYTES = 64 << 20;
export function stagingSlab(slot: string, bytes: number): SharedArrayBuffer {
  const have = slabs.get(slot);
  if (have && have.byteLength >= bytes) return have;
  const b = new SharedArrayBuffer(Math.max(bytes, 8));
  if (bytes <= STAGING_KEEP_BYTES) slabs.set(slot, b);
  return b;
}

/** Whether workers see x without a copy (it lies in a SharedArrayBuffer). */
export const isShared = (x: ArrayBufferView): boolean => typeof SharedArrayBuffer !== 'undefined' && x.buffer instanceof SharedArrayBuffer;

/**
 * minNs: below about this much serial work a call stays on this thread, whatever the estimate below;
 * force: split every call of two rows or more (tests: a split must give the serial bits).
 */
export const rowTune = { minNs: 250_000, force: false };
/**
 * Waking the workers, posting the task and collecting them (~0.1–0.3 ms measured around row calls on the
 * 2-core EPYC VM), and copying into the staging slabs (TypedArray.set between a plain and a shared array:
 * 18–25 GB/s for 4 MB warm, taken as 10 to allow for cold pages).
 */
const PARALLEL_OVERHEAD_NS = 200_000;
const STAGE_BYTES_PER_NS = 10;
/**
 * fn(args, 0, rows), split into row ranges across the pool when that is estimated to be faster: `rows ·
 * nsPerRow` (the caller's measure of one row's serial cost) over the threads, plus the fixed overhead and
 * the staging copies, against the serial time. Each range computes exactly what the serial call computes
 * for those rows, so results are bit-identical whatever the split (test/backend/parallel-rows.test.ts).
 * Typed arrays of args that are not SharedArrayBuffer-backed (tensor storage is plain: a fresh
 * SharedArrayBuffer costs 20× a plain one) are copied into reused shared slabs for the workers, those named
 * in `outs` copied back after, so a staged output never aliases a staged input; a call whose output is an
 * input must still read each of its rows before writing it, as the serial loop does. `name` must be fn's
 * key in row-kernels.ts, where the workers look it up.
 */
export function parallelRows<A extends object>(name: string, fn: RowKernel<A>, args: A, rows: number, nsPerRow: number, outs: readonly (keyof A)[] = []): void {
  const serialNs = rows * nsPerRow;
  // read on every call, small ones included, so a bad DSV32_CPU_THREADS is reported by the first op that
  // could split (a one-line error inside the command), not only once some op is large enough to
  const cores = cpuThreads();
  const threads = rows >= 2 && (rowTune.force || serialNs >= rowTune.minNs) ? cores : 1;
  // the arguments the workers cannot see as they are: plain typed arrays, staged (outs copied back too)
  const toStage = threads > 1
    ? (Object.keys(args) as Array<keyof A>).filter((key) => {
      const x = args[key];
      return ArrayBuffer.isView(x) && !(x instanceof DataView) && !isShared(x);
    })
    : [];
  const bytesOf = (key: keyof A): number => (args[key] as ArrayBufferView).byteLength;
  const stageBytes = toStage.reduce((b, key) => b + bytesOf(key) * (outs.includes(key) ? 2 : 1), 0);
  // an array beyond the kept slabs' size would take a fresh slab each call: never worth it
  const huge = toStage.some((key) => bytesOf(key) > STAGING_KEEP_BYTES);
  if (threads <= 1 || huge || (!rowTune.force && serialNs / threads + stageBytes / STAGE_BYTES_PER_NS + PARALLEL_OVERHEAD_NS >= serialNs)) {
    fn(args, 0, rows);
    return;
  }
  const staged: A = { ...args };
  const back: Array<[keyof A, ArrayBufferView]> = [];
  for (const key of toStage) {
    const x = args[key] as ArrayBufferView & { BYTES_PER_ELEMENT: number };
    const T = x.constructor as new (b: SharedArrayBuffer, off: number, len: number) => ArrayBufferView & { set(a: ArrayLike<number>): void };
    const y = new T(stagingSlab(`${name}.${String(key)}`, x.byteLength), 0, x.byteLength / x.BYTES_PER_ELEMENT);
    y.set(x as unknown as ArrayLike<number>);
    (staged as Record<keyof A, unknown>)[key] = y;
    if (outs.includes(key)) back.push([key, y]);
  }
  // about four ranges per thread: dynamic claiming evens out rows of unequal cost (causal spans)
  const n = Math.min(rows, 4 * threads);
  const chunks = new Int32Array(2 * n);
  for (let c = 0; c < n; c++) {
    chunks[2 * c] = Math.floor((c * rows) / n);
    chunks[2 * c + 1] = Math.floor(((c + 1) * rows) / n);
  }
  cpuPool(threads).run({ kind: 'rows', kernel: name, args: staged, chunks, counters: newCounters() }, null, (k) => (k === name ? (fn as RowKernel<never>) : undefined));
  for (const [key, y] of back) (args[key] as unknown as { set(a: ArrayBufferView): void }).set(y);
}
