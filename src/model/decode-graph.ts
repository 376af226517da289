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
// MTP speculative decoding (rowTokens = 1 + d, mtp): a verification step, each row the last token and its
// d drafts, is the same thing with s = 1 + d tokens per row (padded rows: s tokens at positions 0 .. s − 1
// of the scratch block), and its hidden states are copied to a static [B·s, dim] tensor. After the host
// has accepted drafts it knows each row's next tokens; `propose` uploads them into a static i32 [B·s] and
// replays a second graph, the first MTP module over the same rows and the same layout (mtpStep), whose
// logits and hidden states land in static tensors too. Further draft steps (d ≥ 2) run eagerly.
//
// Graphs hold the addresses of everything they touch: the pool's caches, the weights, and derived
// tensors (stacked experts, absorbed wkv_b) that are rebuilt when the weights change in place. So a
// bucket's graph is dropped and recaptured when ModelWeights.generation moves.
import { DsvError } from '../errors.js';
import { getBackend } from '../tensor/backend.js';
import { type Tensor, fromArray } from '../tensor/tensor.js';
import { narrow, reshape } from '../tensor/ops/view.js';
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
  /** dense attention (every causal key, no indexer: cache.ts LayoutOptions.dense); the selection is then L wide */
  dense?: boolean;
  /** default: the device's (deviceCapture); tests on the CPU pass a stand-in */
  capture?: GraphCapture;
  /** told once per graph (bucket B, context tier L) whose capture failed (it stays eager) */
  onFallback?: (bucket: number, context: number, reason: string) => void;
  /** tokens per row, s = 1 + drafts (default 1: plain decode) */
  rowTokens?: number;
  /** also capture the first MTP module's pass over the step's rows (propose) */
  mtp?: boolean;
}

export interface DecodeGraphStats {
  /** steps (and MTP passes) served by a replay */
  replays: number;
  /** graphs captured (a bucket's first use, and again after a weight update; an MTP runner's buckets hold two) */
  captures: number;
  /** steps (and MTP passes) of the static layout run eagerly (first use, or a graph whose capture failed) */
  eager: number;
  /** graphs whose capture failed (bucket B, context tier L), with the error */
  failures: { bucket: number; context: number; reason: string }[];
}

/** One decode step's results: rows i·s .. i·s + s − 1 are chunk i's tokens (s = rowTokens). */
export interface DecodeStepResult {
  /** f32 [n·s, vocab] */
  logits: Tensor;
  /** per layer, the routed experts i32 [n·s, k] (null for a dense layer), as model.step's routes */
  routes: (Tensor | null)[];
}

/** The first MTP module's pass over the last step's rows (propose). */
export interface ProposeResult {
  /** f32 [n·s, vocab]: every row's draft distribution (the caller picks its proposing rows) */
  logits: Tensor;
  /** [n·s, dim]: the module's hidden states, for chained drafts */
  hidden: Tensor;
}

/** What the engine holds (src/engine/engine.ts): one decode step of one-token chunks, or null (no bucket fits). */
export interface DecodeRunner {
  readonly buckets: readonly number[];
  readonly stats: DecodeGraphStats;
  /** the step's logits and routes, or null when n exceeds the largest bucket */
  step(batch: RaggedBatch): DecodeStepResult | null;
  /**
   * (mtp runners) the first MTP module over the rows of the step just run, with `nextIds` [n·s] (each
   * row's token one position ahead); only right after a step() that returned a result
   */
  propose?(nextIds: Int32Array): ProposeResult;
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
  /** per layer, i32 [B·s, k] routes written by the graph (null: a dense layer) */
  routes: (Tensor | null)[];
  /**
   * mtp runners: the MTP pass's static inputs (the step's hidden states [B·s, dim], written by the step's
   * graph, and the next ids [B·s]), its outputs, its graph, and whether its capture was tried
   */
  mtp: { stepHidden: Tensor; nextIds: Tensor; logits: Tensor; hidden: Tensor; graph: CapturedGraph | null; tried: boolean } | null;
  graph: CapturedGraph | null;
  /** the weights' generation the graph was captured at */
  generation: number;
}

/** An MTP runner's step keeps its hidden states for the MTP pass (a device copy: capturable). */
function keepHidden(bk: Bucket, hidden: Tensor): void {
  if (bk.mtp) bk.mtp.stepHidden.backend.copy(bk.mtp.stepHidden, reshape(hidden, bk.mtp.stepHidden.shape));
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
  private readonly rowTokens: number;
  /** the bucket and padded batch of the step just run (propose() continues it) */
  private last: { bk: Bucket; padded: RaggedBatch; n: number } | null = null;
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
    this.rowTokens = opts.rowTokens ?? 1;
    if (!Number.isInteger(this.rowTokens) || this.rowTokens < 1 || this.rowTokens > 4) throw new DsvError(`decode graphs: rowTokens must be 1 to 4 (1 + up to 3 drafts), got ${opts.rowTokens}`);
    // 'auto' attends chunks of several tokens with MHA over each sequence's gathered context, whose shapes
    // follow the contexts (and are read from the host batch): not replayable. MQA over the pool is the
    // same attention (the reference's two paths; they differ by rounding), with the layout's static shapes
    if (this.rowTokens > 1 && opts.mode === 'mha') throw new DsvError('decode graphs: chunks of several tokens replay with MQA attention only; mode mha cannot be captured');
    this.stepOpts = { numerics: opts.numerics, mode: this.rowTokens > 1 ? 'mqa' : opts.mode };
    if (opts.mtp && model.cfg.nMtpLayers < 1) throw new DsvError('decode graphs: mtp: true needs a model with MTP layers');
  }

  /** The smallest bucket holding n sequences, or undefined. */
  bucketFor(n: number): number | undefined {
    return this.buckets.find((b) => b >= n);
  }

  step(batch: RaggedBatch): DecodeStepResult | null {
    if (this.destroyed) throw new DsvError('decode graphs: used after destroy()');
    this.last = null;
    const n = batch.seqs.length;
    const sT = this.rowTokens;
    if (batch.ids.length !== n * sT || batch.seqs.some((c, i) => c.len !== sT || c.offset !== i * sT)) {
      throw new DsvError(`decode graphs: a graph step takes chunks of ${sT} token${sT > 1 ? 's' : ''} each, in order; this batch has ${batch.ids.length} tokens in ${n} chunks`);
    }
    if (batch.logitRows && !(batch.logitRows.length === n * sT && batch.logitRows.every((r, i) => r === i))) {
      throw new DsvError('decode graphs: a graph step returns the logits of every row in order; batch.logitRows asks for others');
    }
    const B = this.bucketFor(n);
    if (B === undefined) return null;
    const L = contextTier(Math.max(...batch.seqs.map((c) => c.start + c.len)), this.opts.maxLen);
    const key = `${B}x${L}`;
    const padded = this.pad(batch, B);
    const gen = this.model.weights.generation;
    let bk = this.live.get(key);
    if (bk && bk.generation !== gen) {
      bk.graph?.destroy();
      bk.mtp?.graph?.destroy();
      this.live.delete(key);
      bk = undefined;
    }
    const cfg = this.model.cfg;
    const rows = n * sT;
    if (!bk) {
      // first use (or new weights): the eager step does every host upload the step needs once, then capture
      const layout = stepLayout(padded, this.pool, cfg.indexTopk, { maxLen: L, dense: this.opts.dense });
      const first = this.model.step(padded, this.pool, { ...this.stepOpts, layout });
      const device = this.pool.device;
      const BT = B * sT;
      const out = fromArray(new Float32Array(BT * cfg.vocabSize), [BT, cfg.vocabSize], { device });
      const routes = first.routes.map((r) => (r ? fromArray(new Int32Array(r.numel), r.shape, { dtype: 'i32', device }) : null));
      const hiddenLike = (): Tensor => fromArray(new Float32Array(BT * cfg.dim), [BT, cfg.dim], { dtype: first.hidden.dtype, device });
      const mtp = this.opts.mtp
        ? {
          stepHidden: hiddenLike(),
          nextIds: fromArray(new Int32Array(BT), [BT], { dtype: 'i32', device }),
          logits: fromArray(new Float32Array(BT * cfg.vocabSize), [BT, cfg.vocabSize], { device }),
          hidden: hiddenLike(),
          graph: null, tried: false,
        }
        : null;
      bk = { B, L, layout, out, routes, mtp, graph: null, generation: gen };
      keepHidden(bk, first.hidden);
      this.live.set(key, bk);
      this.stats.eager++;
      this.record(bk, padded);
      this.last = { bk, padded, n };
      return rowsOf(first.logits!, first.routes, rows);
    }
    stepLayout(padded, this.pool, cfg.indexTopk, { maxLen: L, dense: this.opts.dense, into: bk.layout });
    this.last = { bk, padded, n };
    if (!bk.graph) {
      this.stats.eager++;
      const o = this.model.step(padded, this.pool, { ...this.stepOpts, layout: bk.layout });
      keepHidden(bk, o.hidden);
      return rowsOf(o.logits!, o.routes, rows);
    }
    bk.graph.replay();
    this.stats.replays++;
    return rowsOf(bk.out, bk.routes, rows);
  }

  propose(nextIds: Int32Array): ProposeResult {
    const last = this.last;
    if (!this.opts.mtp) throw new DsvError('decode graphs: propose() needs a runner made with mtp: true');
    if (!last) throw new DsvError('decode graphs: propose() follows a step() that returned a result');
    this.last = null;
    const { bk, padded, n } = last;
    const m = bk.mtp!;
    const sT = this.rowTokens;
    if (nextIds.length !== n * sT) throw new DsvError(`decode graphs: propose() takes ${n * sT} next tokens (one per row of the step), got ${nextIds.length}`);
    // padded rows: token 0 (their MTP cache slots are in the scratch block)
    const ids = new Int32Array(bk.B * sT);
    ids.set(nextIds);
    m.nextIds.backend.copy(m.nextIds, fromArray(ids, [ids.length], { dtype: 'i32', device: m.nextIds.device }));
    const rows = n * sT;
    const pass = (): ProposeResult => this.model.mtpStep(padded, m.stepHidden, m.nextIds, this.pool, { ...this.stepOpts, layout: bk.layout });
    if (m.graph) {
      m.graph.replay();
      this.stats.replays++;
      return { logits: narrow(m.logits, 0, 0, rows), hidden: narrow(m.hidden, 0, 0, rows) };
    }
    // first use: eager (the MTP module's lazy uploads happen here), then capture once
    this.stats.eager++;
    const o = pass();
    if (bk.graph && !m.tried) {
      m.tried = true;
      this.tryCapture(bk, () => {
        const r = pass();
        m.logits.backend.copy(m.logits, r.logits);
        m.hidden.backend.copy(m.hidden, r.hidden);
      }, (g) => {
        m.graph = g;
      });
    }
    return { logits: narrow(o.logits, 0, 0, rows), hidden: narrow(o.hidden, 0, 0, rows) };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const bk of this.live.values()) {
      bk.graph?.destroy();
      bk.mtp?.graph?.destroy();
    }
    this.live.clear();
    this.last = null;
  }

  /** The batch padded to B rows (see the header): s tokens 0 at positions 0 .. s − 1 of the scratch block. */
  private pad(batch: RaggedBatch, B: number): RaggedBatch {
    const n = batch.seqs.length;
    const sT = this.rowTokens;
    const ids = new Int32Array(B * sT);
    ids.set(batch.ids);
    const scratch = [this.opts.scratchBlock];
    const seqs: SequenceChunk[] = [...batch.seqs];
    for (let i = n; i < B; i++) seqs.push({ offset: i * sT, len: sT, start: 0, blocks: scratch });
    // every row's logits, in order: logitsAt then uses the hidden rows as they are (no index upload)
    return { ids, seqs, logitRows: Int32Array.from({ length: B * sT }, (_, i) => i) };
  }

  /** Capture the bucket's step; on failure the bucket stays eager and the reason is reported. */
  private record(bk: Bucket, padded: RaggedBatch): void {
    this.tryCapture(bk, () => {
      const o = this.model.step(padded, this.pool, { ...this.stepOpts, layout: bk.layout });
      bk.out.backend.copy(bk.out, o.logits!);
      o.routes.forEach((r, l) => {
        if (r) bk.out.backend.copy(bk.routes[l]!, r);
      });
      keepHidden(bk, o.hidden);
    }, (g) => {
      bk.graph = g;
    });
  }

  private tryCapture(bk: Bucket, fn: () => void, done: (g: CapturedGraph) => void): void {
    try {
      done(this.capture(fn));
      this.stats.captures++;
    } catch (e) {
      const reason = (e as Error).message ?? String(e);
      this.stats.failures.push({ bucket: bk.B, context: bk.L, reason });
      this.opts.onFallback?.(bk.B, bk.L, reason);
    }
  }
}
