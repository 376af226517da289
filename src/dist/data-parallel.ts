// Data parallelism as PyTorch's DistributedDataParallel does it: every rank holds the whole model, runs
// its share of the global batch, and before the optimizer the gradients are averaged over the ranks,
//   g ← (1/N)·Σ_r g_r
// so every rank applies the same update and the weights stay identical. With each rank's loss the mean
// over its own rows and equal row counts per rank, (1/N)·Σ_r ∇(mean over rows of r) = ∇(mean over all
// rows): N ranks of b rows equal one rank of N·b rows up to the order of float sums.
//
// The averaging runs in buckets (DDP's bucket_cap_mb): the parameters, in reverse registration order
// (the backward reaches the last layers first), are grouped into flat buffers of at most `bucketMb`
// MB of one dtype; each bucket is flattened, all-reduced with 'avg' and its parameters' .grad become
// views of it. A bucket is launched as soon as its gradients are final (backward's onLeafGrad), but
// strictly in bucket order, so every rank issues the same collectives in the same order even when the
// ranks' graphs announce parameters in different orders. With NcclCollective the all-reduce is enqueued
// on the compute stream: launched during the backward, but its kernels run between the backward's, not
// beside them; running them beside the backward needs a second (communication) stream with events
// in the CUDA backend, which the bucket order already allows.
//
// A parameter no gradient reached on this rank (an expert no token of its rows chose) is a zero in its
// bucket; one that no rank's gradient reached keeps .grad = null, as on one rank (AdamW skips it), which
// a small max all-reduce of per-parameter flags decides after the buckets. Parameters that the backward
// never announces hold up the buckets behind them until finish() (DDP's find_unused_parameters would
// find them before the backward; here the tiny cost is a later launch, not a wrong result).
//
// `op` 'sum' instead of 'avg' (GRPO, src/rl/trainer.ts): each rank's loss is already its share of the
// global loss, normalised by the global counts, so the gradient of the global loss is the ranks' sum.
//
// World size 1 runs the same calls and moves nothing: no bucket is built, every gradient stays as the
// backward left it (bit for bit the single-process run).
import { DsvError } from '../errors.js';
import { noGrad } from '../tensor/autograd.js';
import { ITEMSIZE, type DType } from '../tensor/dtype.js';
import { contiguousStrides, fromArray, Tensor } from '../tensor/tensor.js';
import type { Collective, ReduceKind } from './collective.js';

export class DataParallelError extends DsvError {}

/** DDP's default bucket_cap_mb. */
export const DEFAULT_BUCKET_MB = 25;

interface Bucket {
  dtype: DType;
  /** indices into the parameter list, in bucket order */
  params: number[];
  /** element offset of each parameter in the flat buffer */
  offsets: number[];
  numel: number;
  /** parameters not yet final */
  waiting: number;
  flat: Tensor | null;
}

/**
 * One backward's gradient averaging over `collective`'s ranks for `params` (registration order; the
 * caller passes those that require a gradient this step, the same list on every rank).
 */
export class GradAverager {
  private readonly buckets: Bucket[] = [];
  private readonly bucketOf = new Map<Tensor, number>();
  private readonly local: Uint8Array;
  private next = 0;
  private finished = false;

  constructor(private readonly collective: Collective, private readonly params: readonly Tensor[], bucketMb = DEFAULT_BUCKET_MB, private readonly op: 'avg' | 'sum' = 'avg') {
    if (!(bucketMb > 0 && Number.isFinite(bucketMb))) throw new DataParallelError(`bucketMb must be a positive number, got ${bucketMb}`);
    if (op !== 'avg' && op !== 'sum') throw new DataParallelError(`op must be 'avg' or 'sum', got '${String(op)}'`);
    this.local = new Uint8Array(params.length);
    if (collective.worldSize === 1) return;
    const cap = bucketMb * 2 ** 20;
    let b: Bucket | null = null;
    for (let i = params.length - 1; i >= 0; i--) {
      const p = params[i]!;
      // a parameter larger than the cap gets a bucket of its own
      if (!b || b.dtype !== p.dtype || ((b.numel + p.numel) * ITEMSIZE[p.dtype] > cap && b.params.length > 0)) {
        b = { dtype: p.dtype, params: [], offsets: [], numel: 0, waiting: 0, flat: null };
        this.buckets.push(b);
      }
      b.params.push(i);
      b.offsets.push(b.numel);
      b.numel += p.numel;
      b.waiting++;
      this.bucketOf.set(p, this.buckets.length - 1);
    }
  }

  /** backward's onLeafGrad: `leaf`'s gradient is final; launch every complete bucket next in order. */
  readonly ready = (leaf: Tensor): void => {
    const k = this.bucketOf.get(leaf);
    if (k === undefined) return; // world size 1, or a leaf that is not one of the parameters
    this.buckets[k]!.waiting--;
    this.launchReady();
  };

  private launchReady(all = false): void {
    while (this.next < this.buckets.length && (all || this.buckets[this.next]!.waiting === 0)) this.launch(this.buckets[this.next++]!);
  }

  private launch(b: Bucket): void {
    const first = this.params[b.params[0]!]!;
    const flat = new Tensor(first.backend.alloc(b.dtype, b.numel), [b.numel]);
    noGrad(() => {
      b.params.forEach((i, j) => {
        const p = this.params[i]!;
        const dst = flat._view(p.shape, contiguousStrides(p.shape), b.offsets[j]!);
        if (p.grad) {
          this.local[i] = 1;
          p.backend.copy(dst, p.grad);
        } else p.backend.fill(dst, 0);
      });
    });
    this.collective.allReduce(flat, this.op);
    b.flat = flat;
  }

  /**
   * After the backward: launch the buckets still waiting, then give each parameter that some rank had a
   * gradient for the averaged one (a view of its bucket). Every rank holds the same gradients after it.
   */
  finish(): void {
    if (this.finished) throw new DataParallelError('GradAverager.finish: already called for this backward');
    this.finished = true;
    if (!this.buckets.length) return;
    this.launchReady(true);
    const any = fromArray(Int32Array.from(this.local), [this.local.length], { dtype: 'i32', device: this.params[0]!.device });
    this.collective.allReduce(any, 'max');
    const some = any.toHost() as Int32Array;
    for (const b of this.buckets) {
      b.params.forEach((i, j) => {
        const p = this.params[i]!;
        p.grad = some[i] ? b.flat!._view(p.shape, contiguousStrides(p.shape), b.offsets[j]!) : null;
      });
    }
  }

  /** Bucket sizes in elements, in launch order (tests, logs). */
  get bucketNumels(): number[] {
    return this.buckets.map((b) => b.numel);
  }
}

/** Each number reduced over the ranks with `op` (log scalars: sums, counts, maxima); world size 1 returns them as they are. */
export function reduceScalars(collective: Collective, xs: readonly number[], device: string, op: ReduceKind): number[] {
  if (collective.worldSize === 1 || !xs.length) return [...xs];
  const t = fromArray(Float64Array.from(xs), [xs.length], { dtype: 'f64', device });
  collective.allReduce(t, op);
  return Array.from(t.toFloat64());
}

/** The mean over ranks of each number (log scalars: losses, norms). */
export function averageScalars(collective: Collective, xs: readonly number[], device: string): number[] {
  return reduceScalars(collective, xs, device, 'avg');
}

/** Every rank's `xs` (the same length on every rank), indexed by rank. */
export function gatherScalars(collective: Collective, xs: readonly number[], device: string): number[][] {
  if (collective.worldSize === 1) return [[...xs]];
  if (!xs.length) return Array.from({ length: collective.worldSize }, () => []);
  const all = collective.allGather(fromArray(Float64Array.from(xs), [xs.length], { dtype: 'f64', device })).toFloat64();
  return Array.from({ length: collective.worldSize }, (_, r) => Array.from(all.subarray(r * xs.length, (r + 1) * xs.length)));
}

/**
 * The ranks' lists of `counts[r]` numbers each (counts: every rank's length, known to all), concatenated in
 * rank order: the lists are padded to the longest and gathered.
 */
export function concatScalars(collective: Collective, xs: readonly number[], counts: readonly number[], device: string): number[] {
  if (collective.worldSize === 1) return [...xs];
  if (xs.length !== counts[collective.rank]) throw new DataParallelError(`concatScalars: xs holds ${xs.length} numbers, counts[${collective.rank}] says ${counts[collective.rank]}`);
  const w = Math.max(...counts);
  const rows = gatherScalars(collective, [...xs, ...new Array<number>(w - xs.length).fill(0)], device);
  return rows.flatMap((row, r) => row.slice(0, counts[r]));
}

/** Whether `flag` holds on some rank (the ranks' clocks differ: they must agree on when to stop). */
export function anyRank(collective: Collective, flag: boolean, device: string): boolean {
  return reduceScalars(collective, [flag ? 1 : 0], device, 'max')[0]! > 0;
}
