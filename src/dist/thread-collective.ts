// A Collective whose N ranks are threads of one process (worker_threads), for tests and CPU runs of the
// data-parallel code: the ranks exchange bytes through one SharedArrayBuffer and meet at Atomics-based
// barriers, with no socket and no file.
//
// Every op moves the ranks' contributions through per-rank slots of `slotBytes`, a chunk at a time:
//   write my chunk to my slot → barrier → read the slots I need → barrier (slots may be reused)
// The first chunk also carries a header (op, dtype, byte count, reduce kind or root) that every rank
// checks against every other, so ranks that disagree fail together with a message instead of reading
// garbage. Reductions run on every rank over the slots in rank order 0..N−1, accumulated in f64 (exact
// integer arithmetic for integer dtypes) and rounded to the dtype once, so every rank gets the same bits
// and the result does not depend on the chunk size.
//
// A barrier waits at most `timeoutMs`; it fails early, naming the op and the rank, when a peer has left:
// closed its collective, failed in a collective, or (flagged by runThreadRanks) its thread exited.
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { allocHost, fromFloatArray, hostBytes, hostFromBytes, ITEMSIZE, isFloat, toFloatArray, type DType, DTYPES, type HostArray } from '../tensor/dtype.js';
import { fromBits, type Tensor } from '../tensor/tensor.js';
import { CheckedCollective, type ReduceKind } from './collective.js';
import { CollectiveError } from './errors.js';

/** What every rank of a thread group shares (structured-cloneable: pass it in workerData). */
export interface ThreadGroup {
  worldSize: number;
  /** bytes of each rank's slot: the largest chunk one exchange step moves */
  slotBytes: number;
  /** the longest one barrier waits before it fails (ms) */
  timeoutMs: number;
  /** Int32: [bell, arrived epoch per rank ×N, gone code per rank ×N] */
  ctl: SharedArrayBuffer;
  /** Float64: each rank's header of the op in flight, 4 words per rank */
  meta: SharedArrayBuffer;
  /** N slots of slotBytes */
  data: SharedArrayBuffer;
}

const BELL = 0;
const HEADER = 4;
/** Why a rank left: 0 still there. */
const GONE_WHY = ['', 'closed its collective', 'failed in a collective', 'exited (its thread ended or threw)'] as const;
export const GONE_CLOSED = 1;
const GONE_FAILED = 2;
export const GONE_EXITED = 3;

const OPS = ['allReduce', 'allGather', 'reduceScatter', 'allToAll', 'broadcast'] as const;
type Op = (typeof OPS)[number];
const KINDS: ReduceKind[] = ['sum', 'avg', 'max'];

/** The shared state of a group of `worldSize` thread ranks. */
export function threadGroup(worldSize: number, opts: { slotBytes?: number; timeoutMs?: number } = {}): ThreadGroup {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new CollectiveError(`threadGroup: worldSize must be a positive integer, got ${worldSize}`);
  const slotBytes = opts.slotBytes ?? 4 << 20;
  // a multiple of 8 keeps every chunk a whole number of elements of any dtype, and every slot aligned
  if (!Number.isInteger(slotBytes) || slotBytes < 8 || slotBytes % 8) throw new CollectiveError(`threadGroup: slotBytes must be a positive multiple of 8, got ${slotBytes}`);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  if (!(timeoutMs > 0)) throw new CollectiveError(`threadGroup: timeoutMs must be positive, got ${timeoutMs}`);
  return {
    worldSize, slotBytes, timeoutMs,
    ctl: new SharedArrayBuffer(4 * (1 + 2 * worldSize)),
    meta: new SharedArrayBuffer(8 * HEADER * worldSize),
    data: new SharedArrayBuffer(slotBytes * worldSize),
  };
}

/** Record that `rank` has left the group (its thread exited, ...) and wake every waiting peer. */
export function markRankGone(g: ThreadGroup, rank: number, why: number): void {
  const ctl = new Int32Array(g.ctl);
  Atomics.compareExchange(ctl, 1 + g.worldSize + rank, 0, why);
  Atomics.add(ctl, BELL, 1);
  Atomics.notify(ctl, BELL);
}

export class ThreadCollective extends CheckedCollective {
  private readonly ctl: Int32Array;
  private readonly meta: Float64Array;
  private readonly slots: Uint8Array[];
  private epoch = 0;

  constructor(readonly group: ThreadGroup, rank: number) {
    if (!Number.isInteger(rank) || rank < 0 || rank >= group.worldSize) throw new CollectiveError(`ThreadCollective: rank must be in [0, ${group.worldSize}), got ${rank}`);
    super(rank, group.worldSize);
    this.ctl = new Int32Array(group.ctl);
    this.meta = new Float64Array(group.meta);
    this.slots = Array.from({ length: group.worldSize }, (_, r) => new Uint8Array(group.data, r * group.slotBytes, group.slotBytes));
  }

  private arrived(r: number): number {
    return Atomics.load(this.ctl, 1 + r);
  }
  private gone(r: number): number {
    return Atomics.load(this.ctl, 1 + this.worldSize + r);
  }

  /** Every rank has reached this point of `op` (the epoch-th barrier of each). */
  private barrier(op: Op): void {
    const ctl = this.ctl;
    const epoch = (this.epoch = (this.epoch + 1) | 0);
    Atomics.store(ctl, 1 + this.rank, epoch);
    Atomics.add(ctl, BELL, 1);
    Atomics.notify(ctl, BELL);
    const deadline = Date.now() + this.group.timeoutMs;
    for (;;) {
      const bell = Atomics.load(ctl, BELL);
      const missing: number[] = [];
      // epochs wrap at 2³¹: compare by difference
      for (let r = 0; r < this.worldSize; r++) if (((this.arrived(r) - epoch) | 0) < 0) missing.push(r);
      if (!missing.length) return;
      const left = missing.find((r) => this.gone(r) !== 0);
      if (left !== undefined) this.fail(`${op}: rank ${left} ${GONE_WHY[this.gone(left)]} while rank ${this.rank} waited for it`);
      const wait = deadline - Date.now();
      if (wait <= 0) {
        this.fail(`${op}: timed out after ${this.group.timeoutMs} ms at rank ${this.rank} waiting for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${this.worldSize} (stuck, or not calling ${op})`);
      }
      Atomics.wait(ctl, BELL, bell, wait);
    }
  }

  /** The group is out of step once a barrier failed: leave it, so that the peers fail now too. */
  private fail(msg: string): never {
    markRankGone(this.group, this.rank, GONE_FAILED);
    this.closed = true;
    throw new CollectiveError(msg);
  }

  /**
   * The exchange loop every op shares: `mine` (the same byte count on every rank) goes through the slots
   * a chunk at a time, and `take(off, len)` reads the peers' chunk [off, off + len) of their `mine`
   * from this.slots. `arg` is the reduce kind's index or the root.
   */
  private exchange(op: Op, dtype: DType, mine: Uint8Array | null, total: number, arg: number, take: (off: number, len: number) => void): void {
    const h = this.rank * HEADER;
    this.meta[h] = OPS.indexOf(op);
    this.meta[h + 1] = DTYPES.indexOf(dtype);
    this.meta[h + 2] = total;
    this.meta[h + 3] = arg;
    const step = this.group.slotBytes;
    for (let off = 0, first = true; first || off < total; off += step, first = false) {
      const len = Math.min(step, total - off);
      if (mine) this.slots[this.rank]!.set(mine.subarray(off, off + len));
      this.barrier(op);
      if (first) this.sameCall(op);
      take(off, len);
      this.barrier(op);
    }
  }

  /** Every rank's header equals this rank's (read after the first barrier, before anyone rewrites it). */
  private sameCall(op: Op): void {
    const m = this.meta;
    const desc = (r: number): string => {
      const o = OPS[m[r * HEADER]!]!;
      const dt = DTYPES[m[r * HEADER + 1]!]!;
      const n = m[r * HEADER + 2]! / ITEMSIZE[dt];
      const a = m[r * HEADER + 3]!;
      const extra = o === 'broadcast' ? `, root ${a}` : o === 'allReduce' || o === 'reduceScatter' ? `, ${KINDS[a]}` : '';
      return `${o} of ${n} ${dt}${extra}`;
    };
    const own = desc(this.rank);
    for (let r = 0; r < this.worldSize; r++) {
      const other = desc(r);
      if (other !== own) {
        // every rank sees the same headers, so all of them throw here and none waits on the others
        this.closed = true;
        throw new CollectiveError(`${op}: rank ${this.rank} called ${own} but rank ${r} called ${other}; every rank must make the same call with the same element count and dtype`);
      }
    }
  }

  /** Elements [e0, e0 + n) of every rank's slot (at byte `at` of the slot), reduced in rank order into out[o0...]. */
  private reduceSlots(dtype: DType, kind: ReduceKind, at: number, n: number, out: HostArray, o0: number): void {
    const size = ITEMSIZE[dtype];
    const part = (r: number): HostArray => hostFromBytes(dtype, this.slots[r]!.subarray(at, at + n * size));
    const N = this.worldSize;
    if (dtype === 'i64') {
      const o = out as BigInt64Array;
      for (let i = 0; i < n; i++) o[o0 + i] = 0n;
      for (let r = 0; r < N; r++) {
        const p = part(r) as BigInt64Array;
        for (let i = 0; i < n; i++) {
          const a = r === 0 ? p[i]! : o[o0 + i]!;
          o[o0 + i] = r === 0 ? a : kind === 'max' ? (p[i]! > a ? p[i]! : a) : BigInt.asIntN(64, a + p[i]!);
        }
      }
      return;
    }
    // f64 holds any float element exactly, and the sum of N i32 or u8 values exactly
    const acc = new Float64Array(n);
    for (let r = 0; r < N; r++) {
      const v = toFloatArray(part(r), dtype, new Float64Array(n));
      for (let i = 0; i < n; i++) acc[i] = r === 0 ? v[i]! : kind === 'max' ? Math.max(acc[i]!, v[i]!) : acc[i]! + v[i]!;
    }
    if (kind === 'avg') for (let i = 0; i < n; i++) acc[i] = acc[i]! / N;
    if (isFloat(dtype)) {
      (out as Uint8Array).set(fromFloatArray(acc, dtype) as Uint8Array, o0);
    } else {
      // integer sums wrap as NCCL's do (two's complement for i32, mod 256 for u8)
      for (let i = 0; i < n; i++) (out as Int32Array)[o0 + i] = dtype === 'i32' ? acc[i]! | 0 : acc[i]! & 0xff;
    }
  }

  private static put(x: Tensor, host: HostArray): void {
    x.backend.copy(x, fromBits(host, x.dtype, x.shape, { device: x.device }));
  }
  private static bytes(x: Tensor): Uint8Array {
    return hostBytes(x.toHost());
  }

  allReduce(x: Tensor, op: ReduceKind = 'sum'): void {
    this.flat(x, 'allReduce');
    this.reducible(x, 'allReduce', op);
    const size = ITEMSIZE[x.dtype];
    const out = allocHost(x.dtype, x.numel);
    this.exchange('allReduce', x.dtype, ThreadCollective.bytes(x), x.numel * size, KINDS.indexOf(op), (off, len) => this.reduceSlots(x.dtype, op, 0, len / size, out, off / size));
    ThreadCollective.put(x, out);
  }

  allGather(x: Tensor): Tensor {
    this.flat(x, 'allGather');
    this.gatherable(x, 'allGather');
    const total = x.numel * ITEMSIZE[x.dtype];
    const out = allocHost(x.dtype, x.numel * this.worldSize);
    const ob = hostBytes(out);
    this.exchange('allGather', x.dtype, ThreadCollective.bytes(x), total, 0, (off, len) => {
      for (let r = 0; r < this.worldSize; r++) ob.set(this.slots[r]!.subarray(0, len), r * total + off);
    });
    return fromBits(out, x.dtype, [x.shape[0]! * this.worldSize, ...x.shape.slice(1)], { device: x.device });
  }

  reduceScatter(x: Tensor, op: ReduceKind = 'sum'): Tensor {
    this.flat(x, 'reduceScatter');
    this.reducible(x, 'reduceScatter', op);
    const rows = this.rowsSplit(x, 'reduceScatter');
    const size = ITEMSIZE[x.dtype];
    const seg = (x.numel / this.worldSize) * size;
    const out = allocHost(x.dtype, x.numel / this.worldSize);
    const lo = this.rank * seg;
    this.exchange('reduceScatter', x.dtype, ThreadCollective.bytes(x), x.numel * size, KINDS.indexOf(op), (off, len) => {
      // the part of this chunk that falls in my segment [lo, lo + seg)
      const a = Math.max(off, lo);
      const b = Math.min(off + len, lo + seg);
      if (a < b) this.reduceSlots(x.dtype, op, a - off, (b - a) / size, out, (a - lo) / size);
    });
    return fromBits(out, x.dtype, [rows, ...x.shape.slice(1)], { device: x.device });
  }

  allToAll(x: Tensor): Tensor {
    this.flat(x, 'allToAll');
    this.rowsSplit(x, 'allToAll');
    const seg = (x.numel / this.worldSize) * ITEMSIZE[x.dtype];
    const out = allocHost(x.dtype, x.numel);
    const ob = hostBytes(out);
    const lo = this.rank * seg;
    this.exchange('allToAll', x.dtype, ThreadCollective.bytes(x), x.numel * ITEMSIZE[x.dtype], 0, (off, len) => {
      // rank r's segment `rank` becomes my segment r
      const a = Math.max(off, lo);
      const b = Math.min(off + len, lo + seg);
      if (a >= b) return;
      for (let r = 0; r < this.worldSize; r++) ob.set(this.slots[r]!.subarray(a - off, b - off), r * seg + (a - lo));
    });
    return fromBits(out, x.dtype, [...x.shape], { device: x.device });
  }

  broadcast(x: Tensor, root = 0): void {
    this.flat(x, 'broadcast');
    this.rootOk(root, 'broadcast');
    const total = x.numel * ITEMSIZE[x.dtype];
    const out = allocHost(x.dtype, x.numel);
    const ob = hostBytes(out);
    this.exchange('broadcast', x.dtype, this.rank === root ? ThreadCollective.bytes(x) : null, total, root, (off, len) => ob.set(this.slots[root]!.subarray(0, len), off));
    if (this.rank !== root) ThreadCollective.put(x, out);
  }

  /** Leaves the group: a peer still waiting on this rank fails at once instead of timing out. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    markRankGone(this.group, this.rank, GONE_CLOSED);
  }
}

/** A rank of runThreadRanks failed: the message is the first failure's; `results` holds what the ranks posted. */
export class ThreadRanksError extends CollectiveError {
  constructor(message: string, readonly results: unknown[], options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** workerData of a rank started by runThreadRanks. */
interface RankData {
  dsv32ThreadRank: { group: ThreadGroup; rank: number; data: unknown };
}

/** Inside a worker started by runThreadRanks: this rank's collective and the data given to every rank. */
export function joinThreadRank<T>(): { collective: ThreadCollective; data: T } {
  const w = workerData as RankData | undefined;
  if (isMainThread || !w?.dsv32ThreadRank) throw new CollectiveError('joinThreadRank: not in a worker started by runThreadRanks');
  const { group, rank, data } = w.dsv32ThreadRank;
  return { collective: new ThreadCollective(group, rank), data: data as T };
}

/**
 * Run `script` (an ES module that calls joinThreadRank and posts its result with
 * parentPort.postMessage) as ranks 0..N−1 of a fresh thread group. Resolves with every rank's first
 * message; rejects with a ThreadRanksError naming the first rank that threw or exited without one. A rank that ends is
 * marked gone, so peers blocked on it fail at once rather than after the timeout.
 */
export async function runThreadRanks<T>(worldSize: number, script: URL, data: unknown, opts: { slotBytes?: number; timeoutMs?: number } = {}): Promise<T[]> {
  const group = threadGroup(worldSize, opts);
  // the first rank to fail is the cause; the peers' failures that follow only report that it left
  const failures: CollectiveError[] = [];
  const runs = Array.from({ length: worldSize }, (_, rank) => new Promise<T>((resolve, reject) => {
    const w = new Worker(script, { workerData: { dsv32ThreadRank: { group, rank, data } } satisfies RankData });
    let result: { value: T } | null = null;
    let error: Error | null = null;
    w.on('message', (m: T) => (result ??= { value: m }));
    w.on('error', (e) => (error ??= e));
    w.on('exit', (code) => {
      markRankGone(group, rank, GONE_EXITED);
      if (result && !error) return resolve(result.value);
      const e = new CollectiveError(`rank ${rank} of ${worldSize} ${error ? `failed: ${error.message}` : `exited with code ${code} before posting a result`}`, { cause: error ?? undefined });
      failures.push(e);
      reject(e);
    });
  }));
  const settled = await Promise.allSettled(runs);
  const results = settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
  if (failures.length) throw new ThreadRanksError(failures[0]!.message, results, { cause: failures[0] });
  return results as T[];
}
