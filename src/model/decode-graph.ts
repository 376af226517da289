// CUDA-graph decode per batch-size bucket (issue 13).
//
// Why: a decode step of a small model is launch-bound. dsv32-mini (45 M parameters) on an H100 spends
// ~25 ms per engine step at any batch size 1..64: ~1,770 backend calls (≈ 900 allocations, ≈ 860 kernel
// launches, the layout's uploads, one logits readback), each a JS → FFI → driver round trip. A CUDA
// graph replays the same kernels with one launch.
//
// What a graph needs: the same kernels with the same arguments on every replay. So a decode step of n
// sequences (one query token each) runs as a step of B ≥ n rows, B the bucket (1, 2, 4, …, maxSeqs):
//   - sizes the host would take from the step's contexts come from a bound L instead (stepLayout's
//     `maxLen`: table width ⌈L/64⌉ blocks, indexer logits over L keys, selection width
//     min(index_topk, L), RoPE table up to L − 1); the results are the tight layout's
//     (test/model/static-layout.test.ts). The indexer's work grows with L, not with the contexts (its
//     GEMM path gathers and scores L keys per row), so L is a tier too: the power of two ≥ the longest
//     context, at least MIN_TIER, at most the engine's maxLen. A graph is (B, L): at most
//     log2(maxLen / MIN_TIER) + 1 tiers per bucket, each captured on first use;
//   - rows n .. B − 1 are padding: token 0 at position 0 of a scratch block that no sequence ever owns
//     (the engine reserves it), context length 1. Each reads only the key it wrote itself this step, so
//     every kernel sees a well-formed row (no empty softmax, no unwritten cache memory); padded rows all
//     write the same values to the same slot. Nothing of theirs reaches a live row: every op on the
//     decode path is row-wise or per-sequence (attention reads only a row's own table and context). The
//     one trace is rounding: a GEMM may round differently for B rows than for n (kernel choice, tiling,
//     the row counts the MoE's experts see), as two eager batches of different sizes already do;
//     test/model/static-layout.test.ts shows the rest bit for bit on the CPU;
//   - the per-step data (ids, slots, positions, block table, context lengths, row ends) is one i32
//     arena per graph, allocated once; each step overwrites it (one upload, one device copy) before the
//     replay, outside the capture: a captured host copy would replay the bytes of the capture's step;
//   - the logits land in a static f32 [B, vocab] tensor (the captured function's last copy), read back
//     once per step; so do each MoE layer's routed experts, i32 [B, k] (a few hundred bytes a layer), so
//     that steps recording routes for Keep Routing (RL rollouts) replay too and are read only when asked.
// The first use of a bucket runs the static step eagerly (loading lazy weights, compiling kernels,
// building the RoPE table up to the bound and the absorbed wkv_b: none of these host uploads may happen
// inside a capture), then captures it; later steps replay. A capture that fails (some op reads the
// host) leaves that bucket eager and says why (stats.failures, onFallback).
//
// Graphs hold the addresses of everything they touch: the pool's caches, the weights, and derived
// tensors (stacked experts, absorbed wkv_b) that are rebuilt when the weights change in place. So a
// bucket's graph is dropped and recaptured when ModelWeights.generation moves.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import { type Tensor, fromArray } from '../tensor/tensor.js';
import { narrow } from '../tensor/ops/view.js';
import type { RaggedBatch, SequenceChunk } from './batch.js';
import { type CachePool, type StepLayout, stepLayout } from './cache.js';
import type { AttentionMode } from './mla.js';
import type { DeepseekV32 } from './model.js';
import type { Numerics } from './numerics.js';

/** A replayable recording of the device work a function enqueues (CudaGraph). */
export interface CapturedGraph {
  replay(): void;
  destroy(): void;
}

/** Record what `fn` enqueues without running it (the CUDA backend's captureGraph). */
export type GraphCapture = (fn: () => void) => CapturedGraph;

/** The device's graph capture, or null where its backend has none (the CPU). */
export function deviceCapture(device: string): GraphCapture | null {
  const b = getBackend(device) as unknown as { captureGraph?: (fn: () => void) => CapturedGraph };
  return typeof b.captureGraph === 'function' ? (fn) => b.captureGraph!(fn) : null;
}

/** The smallest context tier: shorter contexts share it (each tier is another graph per bucket, holding its own activations). */
export const MIN_TIER = 256;

/** The context bound L of a step whose longest context is `longest` (see the header). */
export function contextTier(longest: number, maxLen: number): number {
  return Math.min(maxLen, Math.max(MIN_TIER, 2 ** Math.ceil(Math.log2(Math.max(1, longest)))));
}

/** Bucket sizes for up to maxSeqs sequences: the powers of two below maxSeqs, then maxSeqs itself. */
export function decodeBuckets(maxSeqs: number): number[] {
  if (!Number.isInteger(maxSeqs) || maxSeqs < 1) throw new DsvError(`decode graphs: maxSeqs must be a positive integer, got ${maxSeqs}`);
  const out: number[] = [];
  for (let b = 1; b < maxSeqs; b *= 2) out.push(b);
  out.push(maxSeqs);
  return out;
}

export interface DecodeGraphOptions {
  /** bound on every sequence's length (positions < maxLen): the engine's capacity */
  maxLen: number;
  /** a pool block no sequence will own: the padded rows write their keys there */
  scratchBlock: number;
  /** the largest bucket (the engine's maxNumSeqs) */
  maxSeqs: number;
  numerics?: Numerics;
  mode?: AttentionMode;
  /** default: the device's (deviceCapture); tests on the CPU pass a stand-in */
  capture?: GraphCapture;
  /** told once per graph (bucket B, context tier L) whose capture failed (it stays eager) */
  onFallback?: (bucket: number, context: number, reason: string) => void;
}

export interface DecodeGraphStats {
  /** steps served by a replay */
  replays: number;
  /** graphs captured (a bucket's first use, and again after a weight update) */
  captures: number;
  /** steps of the static layout run eagerly (first use of a bucket, or a bucket whose capture failed) */
  eager: number;
  /** graphs whose capture failed (bucket B, context tier L), with the error */
  failures: { bucket: number; context: number; reason: string }[];
}

/** One decode step's results: row i is chunk i. */
export interface DecodeStepResult {
  /** f32 [n, vocab] */
  logits: Tensor;
  /** per layer, the routed experts i32 [n, k] (null for a dense layer), as model.step's routes */
  routes: (Tensor | null)[];
}

/** What the engine holds (src/engine/engine.ts): one decode step of one-token chunks, or null (no bucket fits). */
export interface DecodeRunner {
  readonly buckets: readonly number[];
  readonly stats: DecodeGraphStats;
  /** the step's logits and routes, or null when n exceeds the largest bucket */
  step(batch: RaggedBatch): DecodeStepResult | null;
  /** release the graphs and their memory */
  destroy(): void;
}

interface Bucket {
  B: number;
  /** the context tier */
  L: number;
  /** the static layout: its tensors are views of layout.arena, rewritten before each replay */
  layout: StepLayout;
  /** f32 [B, vocab], written by the graph */
  out: Tensor;
  /** per layer, i32 [B, k] routes written by the graph (null: a dense layer) */
  routes: (Tensor | null)[];
  graph: CapturedGraph | null;
  /** the weights' generation the graph was captured at */
  generation: number;
}

/** The first n rows of a padded step's logits and routes. */
function rowsOf(logits: Tensor, routes: readonly (Tensor | null)[], n: number): DecodeStepResult {
  return { logits: narrow(logits, 0, 0, n), routes: routes.map((r) => (r ? narrow(r, 0, 0, n) : null)) };
}

export class DecodeGraphs implements DecodeRunner {
  readonly buckets: number[];
  readonly stats: DecodeGraphStats = { replays: 0, captures: 0, eager: 0, failures: [] };
  /** by `${B}x${L}` */
  private readonly live = new Map<string, Bucket>();
  private readonly capture: GraphCapture;
  private readonly stepOpts: { numerics?: Numerics; mode?: AttentionMode };
  private destroyed = false;

  constructor(private readonly model: DeepseekV32, private readonly pool: CachePool, private readonly opts: DecodeGraphOptions) {
    const cfg = model.cfg;
    if (!Number.isInteger(opts.maxLen) || opts.maxLen < 1 || opts.maxLen > cfg.maxPositions) {
      throw new DsvError(`decode graphs: maxLen must be an integer in [1, ${cfg.maxPositions}] (max_position_embeddings), got ${opts.maxLen}`);
    }
    if (!Number.isInteger(opts.scratchBlock) || opts.scratchBlock < 0 || opts.scratchBlock >= pool.blocks) {
      throw new DsvError(`decode graphs: scratchBlock ${opts.scratchBlock} is not a block of the pool [0, ${pool.blocks})`);
    }
    const capture = opts.capture ?? deviceCapture(pool.device);
    if (!capture) throw new DsvError(`decode graphs: the '${pool.device}' backend cannot capture graphs`);
    this.capture = capture;
    this.buckets = decodeBuckets(opts.maxSeqs);
    this.stepOpts = { numerics: opts.numerics, mode: opts.mode };
  }

  /** The smallest bucket holding n sequences, or undefined. */
  bucketFor(n: number): number | undefined {
    return this.buckets.find((b) => b >= n);
  }

  step(batch: RaggedBatch): DecodeStepResult | null {
    if (this.destroyed) throw new DsvError('decode graphs: used after destroy()');
    const n = batch.seqs.length;
    if (batch.ids.length !== n || batch.seqs.some((s) => s.len !== 1)) {
      throw new DsvError(`decode graphs: a graph step takes one-token chunks only; this batch has ${batch.ids.length} tokens in ${n} chunks`);
    }
    if (batch.logitRows && !(batch.logitRows.length === n && batch.logitRows.every((r, i) => r === i))) {
      throw new DsvError('decode graphs: a graph step returns the logits of every chunk in order; batch.logitRows asks for others');
    }
    const B = this.bucketFor(n);
    if (B === undefined) return null;
    const L = contextTier(Math.max(...batch.seqs.map((s) => s.start + 1)), this.opts.maxLen);
    const key = `${B}x${L}`;
    const padded = this.pad(batch, B);
    const gen = this.model.weights.generation;
    let bk = this.live.get(key);
    if (bk && bk.generation !== gen) {
      bk.graph?.destroy();
      this.live.delete(key);
      bk = undefined;
    }
    const cfg = this.model.cfg;
    if (!bk) {
      // first use (or new weights): the eager step does every host upload the step needs once, then capture
      const layout = stepLayout(padded, this.pool, cfg.indexTopk, { maxLen: L });
      const first = this.model.step(padded, this.pool, { ...this.stepOpts, layout });
      const device = this.pool.device;
      const out = fromArray(new Float32Array(B * cfg.vocabSize), [B, cfg.vocabSize], { device });
      const routes = first.routes.map((r) => (r ? fromArray(new Int32Array(r.numel), r.shape, { dtype: 'i32', device }) : null));
      bk = { B, L, layout, out, routes, graph: null, generation: gen };
      this.live.set(key, bk);
      this.stats.eager++;
      this.record(bk, padded);
      return rowsOf(first.logits!, first.routes, n);
    }
    stepLayout(padded, this.pool, cfg.indexTopk, { maxLen: L, into: bk.layout });
    if (!bk.graph) {
      this.stats.eager++;
      const o = this.model.step(padded, this.pool, { ...this.stepOpts, layout: bk.layout });
      return rowsOf(o.logits!, o.routes, n);
    }
    bk.graph.replay();
    this.stats.replays++;
    return rowsOf(bk.out, bk.routes, n);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const bk of this.live.values()) bk.graph?.destroy();
    this.live.clear();
  }

  /** The batch padded to B rows (see the header): token 0 at position 0 of the scratch block. */
  private pad(batch: RaggedBatch, B: number): RaggedBatch {
    const n = batch.seqs.length;
    const ids = new Int32Array(B);
    ids.set(batch.ids);
    const scratch = [this.opts.scratchBlock];
    const seqs: SequenceChunk[] = [...batch.seqs];
    for (let i = n; i < B; i++) seqs.push({ offset: i, len: 1, start: 0, blocks: scratch });
    // every row's logits, in order: logitsAt then uses the hidden rows as they are (no index upload)
    return { ids, seqs, logitRows: Int32Array.from({ length: B }, (_, i) => i) };
  }

  /** Capture the bucket's step; on failure the bucket stays eager and the reason is reported. */
  private record(bk: Bucket, padded: RaggedBatch): void {
    try {
      bk.graph = this.capture(() => {
        const o = this.model.step(padded, this.pool, { ...this.stepOpts, layout: bk.layout });
        bk.out.backend.copy(bk.out, o.logits!);
        o.routes.forEach((r, l) => {
          if (r) bk.out.backend.copy(bk.routes[l]!, r);
        });
      });
      this.stats.captures++;
    } catch (e) {
      const reason = (e as Error).message ?? String(e);
      this.stats.failures.push({ bucket: bk.B, context: bk.L, reason });
      this.opts.onFallback?.(bk.B, bk.L, reason);
    }
  }
}
