// Tensor- and expert-parallel inference over N ranks, split as the official reference splits it when
// world_size > 1 (inference/model.py: ParallelEmbedding, Column/RowParallelLinear, MoE's local experts):
//
//   embedding      rows of the vocabulary: rank r holds ids [r·V/N, (r+1)·V/N); an id outside the range
//                  looks up a zero row, and the all-reduce (sum) leaves every rank the exact embedding
//   MLA            heads: q_b_proj and kv_b_proj keep the rows of heads [r·H/N, (r+1)·H/N) (column
//                  parallel), o_proj the matching columns (row parallel); wq_a, wkv_a, the norms and
//                  the whole indexer are replicated, so every rank selects the same keys; the latent
//                  cache is per token, not per head, and so held whole by every rank
//                  out = Σ_r o_proj_r(o_r)            one all-reduce per layer
//   dense MLP and  gate/up rows and down columns of the intermediate dim (column then row parallel)
//   shared expert
//   MoE            experts [r·E/N, (r+1)·E/N) on rank r (expert parallel); the gate is replicated, so
//                  every rank routes every token identically and computes the pairs that fall on its
//                  experts; a token's other pairs contribute 0; the routed part Σ_{local j} w_j·expert_j(x)
//                  and the shared expert's part are summed over the ranks in one all-reduce (moe.ts)
//   LM head        rows of the vocabulary; the [R, V/N] blocks are all-gathered into [R, V]
//
// Tokens are replicated, not dispatched: after each all-reduce every rank holds every token's hidden
// state, so a rank reaches its experts' tokens without moving them (an all-to-all dispatch pays where
// attention is data parallel, each rank holding different tokens; with heads split it would move
// tokens every rank already has). Per layer the traffic is two all-reduces: [T, dim] after attention,
// [T, dim] after a dense MLP or [T, 2·dim] after the MoE, all f32 (partialDtype).
//
// Numerics: every rank computes the replicated parts on the same bits, so routes and selections agree
// across ranks. A rank's part of a row-parallel product stays in f32 and the sum over ranks is rounded
// to the activation dtype once, as the single GPU's product is (the reference all-reduces bf16 parts,
// rounding twice). The sum is in another order than one rank's (N partial GEMMs over K/N columns, then
// the collective: the thread stand-in adds in f64 and rounds once, NCCL in f32), so logits agree to
// rounding, not bit for bit; a choice (route, selection) on a near tie may then flip, as it may between
// the reference on one GPU and on eight.
//
// FP8 weights: a 128×128 block scale must not straddle two ranks, so each rank's share of a split FP8
// dim must start on a multiple of 128 (the real model's shares do: 128 heads × 192 / 8 = 3072, ...).
import { DsvError } from '../errors.js';
import type { Collective } from '../dist/collective.js';
import { noGrad } from '../tensor/autograd.js';
import type { DType } from '../tensor/dtype.js';
import { Tensor, fromArray, zeros } from '../tensor/tensor.js';
import { cat } from '../tensor/ops/indexing.js';
import { cast, contiguous, permute, reshape } from '../tensor/ops/view.js';
import { wideDtype } from './numerics.js';
import type { ModelConfig } from './config.js';
import { embedIds } from './embedding.js';

export class ParallelError extends DsvError {}

/** This process's place among the ranks that share one model's weights. */
export interface ModelShard {
  rank: number;
  worldSize: number;
}

export const WHOLE: ModelShard = { rank: 0, worldSize: 1 };

/** A tensor's split: dim 0 (rows) or 1 (columns), this rank's [start, start + len) of it. */
export interface ShardRange {
  dim: 0 | 1;
  start: number;
  len: number;
}

/**
 * The config's dims that N ranks divide (the reference asserts each): heads, experts, the dense and
 * shared-expert intermediate dims, and the vocabulary. Throws naming every field that does not divide.
 */
export function checkShardable(cfg: ModelConfig, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ParallelError(`tensor parallel: the world size must be a positive integer, got ${worldSize}`);
  if (worldSize === 1) return;
  const dims: [string, number][] = [
    ['num_attention_heads', cfg.nHeads],
    ['n_routed_experts', cfg.nRoutedExperts],
    ['vocab_size', cfg.vocabSize],
  ];
  if (cfg.nDenseLayers > 0) dims.push(['intermediate_size', cfg.interDim]);
  if (cfg.nSharedExperts > 0) dims.push(['n_shared_experts × moe_intermediate_size', cfg.nSharedExperts * cfg.moeInterDim]);
  const bad = dims.filter(([, v]) => v % worldSize !== 0);
  if (bad.length) {
    throw new ParallelError(`tensor parallel over ${worldSize} ranks: ${bad.map(([n, v]) => `${n} (${v})`).join(', ')} ${bad.length > 1 ? 'are' : 'is'} not divisible by ${worldSize}; use a world size that divides ${bad.length > 1 ? 'them' : 'it'}`);
  }
}

/** Heads on each rank. */
export function localHeads(cfg: ModelConfig, shard: ModelShard): number {
  return cfg.nHeads / shard.worldSize;
}

/** The routed experts on this rank: [first, first + count). */
export function localExperts(cfg: ModelConfig, shard: ModelShard): { first: number; count: number } {
  const count = cfg.nRoutedExperts / shard.worldSize;
  return { first: shard.rank * count, count };
}

/** This rank's rows of the vocabulary (embedding and head). */
export function vocabRange(cfg: ModelConfig, shard: ModelShard): { start: number; len: number } {
  const len = cfg.vocabSize / shard.worldSize;
  return { start: shard.rank * len, len };
}

/**
 * The dtype of a rank's partial sum (a row-parallel product, the MoE's part): the f32 accumulator, not
 * its bf16 rounding, so that the sum over ranks is rounded once, as the single GPU's product is. (The
 * reference reduces bf16 parts, rounding twice: measured on tiny-bf16, 2 ranks summing bf16 parts move
 * the logits by up to 0.115, beyond the golden's forced bound of 0.086; f32 parts stay within it.) The
 * cost is twice the bytes per all-reduce. The whole model (one rank) keeps dt.
 */
export function partialDtype(dt: DType, shard: ModelShard): DType {
  return shard.worldSize > 1 ? wideDtype(dt) : dt;
}

const EXPERT = /\.mlp\.experts\.(\d+)\./;

/**
 * How checkpoint tensor `name` (global shape `shape`) is split on this rank: a range, null (held whole),
 * or 'absent' (a routed expert of another rank, never read here).
 */
export function shardRangeOf(name: string, shape: readonly number[], cfg: ModelConfig, shard: ModelShard): ShardRange | null | 'absent' {
  const N = shard.worldSize;
  if (N === 1) return null;
  const part = (dim: 0 | 1): ShardRange => {
    const len = shape[dim]! / N;
    return { dim, start: shard.rank * len, len };
  };
  const ex = EXPERT.exec(name);
  if (ex) {
    const { first, count } = localExperts(cfg, shard);
    const e = Number(ex[1]);
    return e >= first && e < first + count ? null : 'absent';
  }
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight' || name.endsWith('.shared_head.head.weight') || /^model\.layers\.\d+\.embed_tokens\.weight$/.test(name)) return part(0);
  if (/\.self_attn\.(q_b_proj|kv_b_proj)\.weight$/.test(name)) return part(0);
  if (name.endsWith('.self_attn.o_proj.weight')) return part(1);
  // the dense layers' MLP and the MoE's shared expert (routed experts were handled above)
  if (/\.mlp(\.shared_experts)?\.(gate_proj|up_proj)\.weight$/.test(name)) return part(0);
  if (/\.mlp(\.shared_experts)?\.down_proj\.weight$/.test(name)) return part(1);
  return null;
}

/**
 * The collective steps of a sharded forward. World size 1 (no collective) makes each the identity, so
 * the model's code is one path for one rank and for many.
 */
export class TensorParallel {
  readonly shard: ModelShard;
  /** per embedding table: this rank's rows plus one zero row that out-of-range ids look up */
  private readonly padded = new Map<Tensor, Tensor>();

  constructor(readonly collective: Collective | null) {
    this.shard = collective ? { rank: collective.rank, worldSize: collective.worldSize } : WHOLE;
  }

  get sharded(): boolean {
    return this.shard.worldSize > 1;
  }

  /**
   * Σ over ranks of each rank's partial x (a row-parallel product, in partialDtype), rounded once to
   * the activation dtype dt.
   */
  reduce(x: Tensor, dt: DType): Tensor {
    if (!this.sharded) return x;
    const c = contiguous(x);
    this.collective!.allReduce(c, 'sum');
    return cast(c, dt);
  }

  /**
   * The embedding of ids (the step's global ids, host or an i32 tensor) in dtype dt, from table (this
   * rank's [V/N, dim] rows when sharded). Sharded, the ids are mapped on the host, an id of this rank to
   * its local row and any other to an appended zero row, and the all-reduce completes every row.
   */
  embed(table: Tensor, ids: Int32Array | Tensor, dt: DType, cfg: ModelConfig): Tensor {
    if (!this.sharded) return embedIds(table, ids instanceof Tensor ? ids : fromArray(ids, [ids.length], { dtype: 'i32', device: table.device }), dt);
    if (ids instanceof Tensor) ids = ids.toHost() as Int32Array;
    const { start, len } = vocabRange(cfg, this.shard);
    let t = this.padded.get(table);
    if (!t) {
      t = noGrad(() => cat([table, zeros([1, table.shape[1]!], { dtype: table.dtype, device: table.device })], 0));
      this.padded.set(table, t);
    }
    const local = Int32Array.from(ids, (id) => (id >= start && id < start + len ? id - start : len));
    return this.reduce(embedIds(t, fromArray(local, [local.length], { dtype: 'i32', device: table.device }), dt), dt);
  }

  /** logits [R, V/N] of this rank's vocabulary rows → [R, V] in vocabulary order, on every rank. */
  gatherVocab(logits: Tensor): Tensor {
    if (!this.sharded) return logits;
    const [R, Vl] = logits.shape as [number, number];
    const N = this.shard.worldSize;
    // all-gather stacks the ranks along the first dim: [N·R, V/N] = [N, R, V/N] → [R, N, V/N] = [R, V]
    const g = this.collective!.allGather(contiguous(logits));
    return reshape(contiguous(permute(reshape(g, [N, R, Vl]), [1, 0, 2])), [R, N * Vl]);
  }
}
