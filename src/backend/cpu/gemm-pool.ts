// A lazily started pool of worker threads for the TypeScript GEMM. The public sgemm/dgemm are synchronous,
// so the calling thread cannot await workers: it posts the task (operands in SharedArrayBuffers) to every
// ready worker, wakes them through Atomics, then claims chunks of C itself from the same atomic counter and
// finally blocks until every chunk is done. Chunks are claimed dynamically, so a worker that is still
// starting up, or a core that is busy with something else, just takes fewer chunks.
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { DsvError } from '../../errors.js';
import { gemmRect, type GemmProblem, type GemmScratch } from './gemm-kernel.js';

/** DSV32_GEMM_THREADS is not a usable thread count. */
export class GemmConfigError extends DsvError {}

/** One parallel GEMM: the problem, the C rectangles to compute, and the shared claim/done counters. */
export interface GemmTask {
  problem: GemmProblem;
  /** Rectangles [m0, m1, n0, n1] of C, four entries each. */
  chunks: Int32Array;
  /** [next chunk to claim, chunks finished, 1 if any chunk threw] on its own SharedArrayBuffer. */
  counters: Int32Array;
}

const NEXT = 0;
const DONE = 1;
const FAILED = 2;

/** Claims and computes chunks until none are left; used by the workers and by the calling thread. */
export function runChunks(task: GemmTask, scratch: GemmScratch): void {
  const { chunks, counters, problem } = task;
  const n = chunks.length / 4;
  for (;;) {
    const c = Atomics.add(counters, NEXT, 1);
    if (c >= n) return;
    try {
      gemmRect(problem, chunks[4 * c]!, chunks[4 * c + 1]!, chunks[4 * c + 2]!, chunks[4 * c + 3]!, scratch);
    } catch {
      Atomics.store(counters, FAILED, 1);
    }
    Atomics.add(counters, DONE, 1);
    Atomics.notify(counters, DONE);
  }
}

/** Threads used by the TypeScript path: DSV32_GEMM_THREADS if set, else the cores Node may use. */
export function gemmThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.DSV32_GEMM_THREADS;
  if (v !== undefined && v !== '') {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 256) {
      throw new GemmConfigError(`DSV32_GEMM_THREADS=${v}: expected an integer from 1 to 256`);
    }
    return n;
  }
  return Math.max(1, availableParallelism());
}

interface Slot {
  worker: Worker;
  port: MessagePort;
}

export class GemmPool {
  private readonly slots: Slot[] = [];
  /** Words 0..n-1: each worker's mailbox sequence; words n..2n-1: 0 loading, 1 listening, 2 gone. */
  private readonly ctl: Int32Array;

  constructor(readonly workers: number) {
    this.ctl = new Int32Array(new SharedArrayBuffer(8 * Math.max(1, workers)));
    for (let i = 0; i < workers; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL('./gemm-worker.js', import.meta.url), {
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

  /** Runs every chunk of `problem` on the ready workers and this thread; returns when all are written. */
  run(problem: GemmProblem, chunks: Int32Array, scratch: GemmScratch): void {
    const counters = new Int32Array(new SharedArrayBuffer(12));
    const task: GemmTask = { problem, chunks, counters };
    const n = this.workers;
    for (let i = 0; i < n; i++) {
      if (Atomics.load(this.ctl, n + i) !== 1) continue; // still loading its module; others take its share
      this.slots[i]!.port.postMessage(task);
      Atomics.add(this.ctl, i, 1);
      Atomics.notify(this.ctl, i);
    }
    runChunks(task, scratch);
    const total = chunks.length / 4;
    for (let done = Atomics.load(counters, DONE); done < total; done = Atomics.load(counters, DONE)) {
      Atomics.wait(counters, DONE, done);
    }
    if (Atomics.load(counters, FAILED) === 1) {
      throw new Error('gemm: a worker thread failed while computing its part of C');
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
