// Sampling the rows of one engine step on several threads. At a 129 280-token vocabulary each row costs
// the host two passes over V logits (max, exp) plus any filter: 2–3 ms on a 2-core CI machine, so a
// decode step of 64 sequences spent ~100 ms sampling on the H100 host, 2.5× the model's step (2026-12-06,
// docs/benchmarks.md: server TPOT 154 ms at 64 streams against the engine's 60 ms).
//
// Every row is sampled by the same function as before (sampleOne below: sampler.ts's distribution, draw
// and logprobs), from the same logits, parameters and uniform u, so a row's token, logprob, top logprobs
// and mask are bit for bit the inline sampler's, whichever thread computed them. The engine draws each
// sequence's u on the main thread, in the order it always did (one per token, none when greedy).
//
// Protocol (synchronous for the engine, which samples inside its step): the logits and the jobs go into
// shared memory; a generation counter wakes the workers (Atomics.waitAsync, so they still receive new
// buffers as messages); every thread, the main one included, claims jobs with an atomic counter, writes
// the results into shared arrays and counts itself done. The main thread then waits for the count. A
// worker that has not yet received grown buffers skips the generation: the main thread, claiming too,
// finishes every job by itself if need be, so a step never waits on a worker to start. A step that does
// not finish within TIMEOUT_MS (a worker died inside a job) is completed on the main thread and the pool
// is shut down for good: the engine samples inline from then on.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type Distribution, SamplerError, distribution, drawFrom, logprobs, type FilterParams } from './sampler.js';

/** A row to sample: its offset in the step's logits, the filters, u (null when greedy), what to return. */
export interface SampleJob {
  row: number;
  params: FilterParams;
  u: number | null;
  logprobs: number;
  mask: boolean;
}

export interface SampleResult {
  token: number;
  logprob: number;
  topLogprobs?: [number, number][];
  mask?: Int32Array;
}

/** The inline sampler: what every thread runs for one row. */
export function sampleOne(row: Float32Array, job: SampleJob): SampleResult {
  const d = distribution(row, job.params);
  return resultOf(row, d, job.u === null ? d.idAt(0) : drawFrom(d, job.u), job);
}

/** What a sampled token reports: its logprob, the top logprobs and the mask where asked (from row's distribution d). */
export function resultOf(row: Float32Array, d: Distribution, token: number, want: { logprobs: number; mask: boolean }): SampleResult {
  const lp = logprobs(row, d, token, want.logprobs);
  return { token, logprob: lp.logprob, ...(want.logprobs > 0 ? { topLogprobs: lp.topLogprobs } : {}), ...(want.mask ? { mask: d.ids } : {}) };
}

const MAX_TOP = 20;
/** Per job in `jobs` (f64): row, temperature, topP, topK, minP, u (NaN: greedy), logprobs, mask. */
const JOB_F = 8;
/**
 * ctl (i32): generation, job count, claim counter, jobs done, buffer generation. The claim counter holds the
 * generation's tag (15 bits) above the next job index (16 bits) and is advanced by compare-exchange only
 * while the tag is the claimer's: a thread still finishing a previous step can never take (and lose) an
 * index of the next one, so the done count only ever counts this step's jobs.
 */
export const GEN = 0;
const NJOBS = 1;
const NEXT = 2;
const DONE = 3;
export const BUFGEN = 4;
const TIMEOUT_MS = 10_000;

/** The shared arrays of one size; replaced (and sent to the workers) when a step needs more. */
export interface PoolBuffers {
  gen: number;
  V: number;
  logits: Float32Array;
  jobs: Float64Array;
  token: Int32Array;
  logprob: Float64Array;
  nTop: Int32Array;
  topIds: Int32Array;
  topLps: Float64Array;
  maskLen: Int32Array;
  /** the generation that completed each job */
  fin: Int32Array;
  /** room for V ids per job (only when a job asks for its mask) */
  masks: Int32Array;
}

function sharedBuffers(gen: number, V: number, rows: number, jobs: number, masks: boolean): PoolBuffers {
  const f32 = (n: number): Float32Array => new Float32Array(new SharedArrayBuffer(4 * n));
  const f64 = (n: number): Float64Array => new Float64Array(new SharedArrayBuffer(8 * n));
  const i32 = (n: number): Int32Array => new Int32Array(new SharedArrayBuffer(4 * n));
  return {
    gen, V, logits: f32(rows * V), jobs: f64(jobs * JOB_F), token: i32(jobs), logprob: f64(jobs), nTop: i32(jobs),
    topIds: i32(jobs * MAX_TOP), topLps: f64(jobs * MAX_TOP), maskLen: i32(jobs), fin: i32(jobs), masks: i32(masks ? jobs * V : 0),
  };
}

/** Claims and samples jobs until none is left (every thread runs this); returns how many it did. */
export function work(ctl: Int32Array, b: PoolBuffers): number {
  const gen = Atomics.load(ctl, GEN);
  const tag = gen & 0x7fff;
  const n = Atomics.load(ctl, NJOBS);
  let did = 0;
  for (;;) {
    const v = Atomics.load(ctl, NEXT);
    if (v >>> 16 !== tag || (v & 0xffff) >= n) return did;
    if (Atomics.compareExchange(ctl, NEXT, v, v + 1) !== v) continue;
    const j = v & 0xffff;
    const f = b.jobs.subarray(j * JOB_F, (j + 1) * JOB_F);
    const job: SampleJob = {
      row: f[0]!, params: { temperature: f[1]!, topP: f[2]!, topK: f[3]!, minP: f[4]! }, u: Number.isNaN(f[5]!) ? null : f[5]!, logprobs: f[6]!, mask: f[7] === 1,
    };
    const r = sampleOne(b.logits.subarray(job.row * b.V, (job.row + 1) * b.V), job);
    b.token[j] = r.token;
    b.logprob[j] = r.logprob;
    b.nTop[j] = r.topLogprobs?.length ?? 0;
    r.topLogprobs?.forEach(([id, lp], i) => {
      b.topIds[j * MAX_TOP + i] = id;
      b.topLps[j * MAX_TOP + i] = lp;
    });
    if (r.mask) {
      b.maskLen[j] = r.mask.length;
      b.masks.set(r.mask, j * b.V);
    }
    did++;
    Atomics.store(b.fin, j, gen);
    Atomics.add(ctl, DONE, 1);
    Atomics.notify(ctl, DONE);
  }
}

/**
 * The number of worker threads for a vocabulary: none below 8 192 tokens, else up to 7 (one fewer than the
 * cores). A greedy row costs its log-partition, V exponentials: measured on this repository's 2-core
 * machine, 90 µs at V = 8 192, 346 µs at 32 000 (22 ms for a 64-row step on one thread: an H100 engine
 * step of the mid config at batch 64 spent more time sampling than in the model), 1.4 ms at 129 280;
 * top-p rows ten times that (the sort).
 */
export function defaultSamplerThreads(vocab: number): number {
  return vocab < 8192 ? 0 : Math.max(0, Math.min(7, availableParallelism() - 1));
}

export class SamplerPool {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(4 * 8));
  private readonly workers: Worker[] = [];
  private buf: PoolBuffers | null = null;
  private broken = false;

  constructor(readonly threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL('./sampler-worker.js', import.meta.url), { workerData: { ctl: this.ctl } });
      w.unref(); // an idle pool never keeps the process alive
      w.on('error', () => (this.broken = true));
      this.workers.push(w);
    }
  }

  /** False once shut down (closed, or a step timed out): the caller samples inline. */
  get usable(): boolean {
    return !this.broken && this.workers.length > 0;
  }

  /**
   * Samples `jobs` from `logits` (rows of V) and returns their results in order. Blocks the calling
   * thread until every job is done; the calling thread samples too.
   */
  sample(logits: Float32Array, V: number, jobs: readonly SampleJob[]): SampleResult[] {
    if (jobs.length > 0xffff) throw new SamplerError(`sampler pool: ${jobs.length} rows in one step; at most 65535`);
    const rows = logits.length / V;
    const masks = jobs.some((j) => j.mask);
    let b = this.buf;
    if (!b || b.V !== V || b.logits.length < rows * V || b.token.length < jobs.length || (masks && b.masks.length < jobs.length * V)) {
      const gen = (b?.gen ?? 0) + 1;
      b = this.buf = sharedBuffers(gen, V, Math.max(rows, b?.V === V ? b.logits.length / V : 0), Math.max(jobs.length, b?.token.length ?? 0), masks || (b?.masks.length ?? 0) > 0);
      Atomics.store(this.ctl, BUFGEN, gen);
      for (const w of this.workers) w.postMessage(b);
    }
    b.logits.set(logits);
    jobs.forEach((j, i) => b!.jobs.set([j.row, j.params.temperature, j.params.topP, j.params.topK, j.params.minP, j.u ?? NaN, j.logprobs, j.mask ? 1 : 0], i * JOB_F));
    const gen = (Atomics.load(this.ctl, GEN) + 1) | 0;
    Atomics.store(this.ctl, NJOBS, jobs.length);
    Atomics.store(this.ctl, NEXT, (gen & 0x7fff) << 16);
    Atomics.store(this.ctl, DONE, 0);
    Atomics.store(this.ctl, GEN, gen);
    Atomics.notify(this.ctl, GEN);
    work(this.ctl, b);
    const t0 = performance.now();
    for (let done = Atomics.load(this.ctl, DONE); done < jobs.length; done = Atomics.load(this.ctl, DONE)) {
      if (performance.now() - t0 > TIMEOUT_MS) {
        // a worker died holding a job: finish the missing ones here, and stop using the pool
        this.close();
        return jobs.map((j, i) => (Atomics.load(b!.fin, i) === gen ? this.read(b!, i) : sampleOne(logits.subarray(j.row * V, (j.row + 1) * V), j)));
      }
      Atomics.wait(this.ctl, DONE, done, 100);
    }
    return jobs.map((_, i) => this.read(b!, i));
  }

  private read(b: PoolBuffers, i: number): SampleResult {
    const r: SampleResult = { token: b.token[i]!, logprob: b.logprob[i]! };
    const nt = b.nTop[i]!;
    const f = b.jobs.subarray(i * JOB_F, (i + 1) * JOB_F);
    if (f[6]! > 0) r.topLogprobs = Array.from({ length: nt }, (_, k) => [b.topIds[i * MAX_TOP + k]!, b.topLps[i * MAX_TOP + k]!] as [number, number]);
    if (f[7] === 1) r.mask = b.masks.slice(i * b.V, i * b.V + b.maskLen[i]!);
    return r;
  }

  close(): void {
    this.broken = true;
    for (const w of this.workers.splice(0)) void w.terminate();
  }
}
