// Token batches of the RL loss: every per-token tensor is [S, T] (S sequences padded to T tokens)
// with a validity mask of the same shape (true/1 = a trained, model-generated token; false/0 =
// padding, prompt or tool output). These helpers check the shapes once, turn any 0/1 mask into a
// bool mask and a float mask in the loss dtype, and zero the padded entries of an input *before*
// any arithmetic: padding may hold −∞ or garbage logprobs, and exp(−∞)·0 or ∞·0 would otherwise
// put NaN into the loss and its gradient (where() gives exactly zero gradient to the dropped side).
import { DsvError } from '../errors.js';
import { type Tensor, fmtShape, fromArray, full, isFloat, cast, ne, sum, where } from '../tensor/index.js';
import { groupAdvantages } from './grpo.js';
import type { RecordedRoutes } from './keep-routing.js';
import type { RecordedSelections } from './indexer-replay.js';
import type { SamplingMask } from './keep-sampling-mask.js';

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Throws a DsvError naming `op`, the argument and the expected shape unless t has `shape`. */
export function requireShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (!sameShape(t.shape, shape)) {
    throw new DsvError(`${op}: ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
  }
}

export function requireFloatArg(op: string, name: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new DsvError(`${op}: ${name} must be a floating-point tensor, got ${t.dtype} of shape ${fmtShape(t.shape)}`);
}

/** Per-token log-probs must be [S, T] floats. */
export function requireTokens(op: string, name: string, t: Tensor): void {
  requireFloatArg(op, name, t);
  if (t.rank !== 2) throw new DsvError(`${op}: ${name} must be [sequences, T], got shape ${fmtShape(t.shape)}`);
}

export interface TokenMask {
  /** bool [S, T] */
  valid: Tensor;
  /** the same as 0/1 in `dtype` */
  validF: Tensor;
  /** valid tokens per sequence, [S] in `dtype` */
  lengths: Tensor;
}

/**
 * A validity mask [S, T] (bool, or any numeric dtype holding 0/1) for per-token tensors of `shape`;
 * when omitted every token is valid. Nonzero counts as valid.
 */
export function tokenMask(op: string, mask: Tensor | undefined, shape: readonly number[], dtype: Tensor['dtype'], device: string): TokenMask {
  let valid: Tensor;
  if (mask === undefined) {
    valid = full(shape, 1, { dtype: 'bool', device });
  } else {
    requireShape(op, 'mask', mask, shape);
    if (mask.device !== device) throw new DsvError(`${op}: mask is on ${mask.device}, the log-probs on ${device}`);
    valid = mask.dtype === 'bool' ? mask : ne(mask, 0);
  }
  const validF = cast(valid, dtype);
  return { valid, validF, lengths: sum(validF, 1) };
}

/** x with its invalid entries replaced by 0 (no value and no gradient flows from them). */
export function zeroInvalid(x: Tensor, valid: Tensor): Tensor {
  return where(valid, x, 0);
}

// ------------------------------------------------------------------------------------------ rollouts
// A rollout record is one training sequence as src/rl/rollout.ts records it, and collateRollouts turns a
// list of them into the [S, T] tensors above. Everything is aligned to token positions p of the sequence:
//   tokens[p]         the token at p (prompt, model-generated or tool output);
//   trained[p] = 1    tokens[p] was sampled by the policy (the loss trains it); prompt, tool results and
//                     re-encoded history are 0 (masked out: the policy did not choose them);
//   logprobs[p]       the engine's sampling-time log π_old(tokens[p] | tokens[<p]) over the full vocabulary
//                     at the sampling temperature (0 where not trained);
//   keptLogMass[p]    log Σ_{v∈K_p} π_old(v | ·), the log of the probability the sampling filters kept, so
//                     logprobs[p] − keptLogMass[p] is π_old renormalised over the kept set K_p (Keep Sampling
//                     Mask, rl.md §1.6: both policies on the same support, r ≡ 1 at θ = θ_old); 0 when
//                     nothing was filtered, NaN when it could not be derived (the engine's top logprobs did
//                     not cover K_p);
//   samplingMask      CSR with one row per position: row p = K_p for trained p, empty elsewhere;
//   routes, routed    Keep Routing (rl.md §1.5): routes.data[p] = the experts the forward that CONSUMED
//                     tokens[p] used (keep-routing.ts's layout), routed[p] = 1 where the engine reported
//                     them; the engine reports the routes of the forwards that produced sampled tokens,
//                     i.e. positions p − 1 for trained p, and of each turn's prompt rows, so every position
//                     but the last is routed (rollout.ts).
//   indexerTopk, selected  indexer replay (indexer-replay.ts): the same alignment for the indexer's key
//                     selection of the forward that consumed tokens[p], selected[p] = 1 where recorded.
// The training view shifts by one: the forward reads input = tokens[0 .. n−2] and the logits at j score
// target = tokens[j + 1], so a sequence of n tokens gives n − 1 loss positions.
export interface RolloutRecord {
  /** the GRPO group (one task instance's G episodes share it) */
  group: string;
  /** episode index within the group */
  episode: number;
  /** training sequence index within the episode (a new one starts when the context is re-rendered) */
  segment: number;
  tokens: Int32Array;
  trained: Uint8Array;
  logprobs: Float32Array;
  keptLogMass: Float32Array;
  samplingMask: SamplingMask;
  /** [n, layers, k] over input positions; absent when routes were not recorded */
  routes?: RecordedRoutes;
  routed?: Uint8Array;
  /** [n, layers, index_topk] over input positions (−1 holes); absent when selections were not recorded */
  indexerTopk?: RecordedSelections;
  selected?: Uint8Array;
  /** the episode's reward R_i (rewards.ts) */
  reward: number;
}

export class RolloutRecordError extends DsvError {}

/** Checks a record's arrays against each other (lengths, CSR, trained positions). */
export function checkRolloutRecord(r: RolloutRecord, name = 'record'): void {
  const n = r.tokens.length;
  if (!(r.tokens instanceof Int32Array) || n < 2) throw new RolloutRecordError(`${name}.tokens must be an Int32Array of at least 2 tokens, got ${n}`);
  for (const f of ['trained', 'logprobs', 'keptLogMass'] as const) {
    if (r[f].length !== n) throw new RolloutRecordError(`${name}.${f} has ${r[f].length} entries, expected one per token (${n})`);
  }
  if (r.trained[0] !== 0) throw new RolloutRecordError(`${name}.trained[0] must be 0: the first token has no context to be sampled from`);
  const { indptr, indices } = r.samplingMask;
  if (indptr.length !== n + 1 || indptr[0] !== 0 || indptr[n] !== indices.length) {
    throw new RolloutRecordError(`${name}.samplingMask must have n + 1 = ${n + 1} row pointers from 0 to ${indices.length}, got ${indptr.length}`);
  }
  for (let p = 0; p < n; p++) {
    const row = indices.subarray(indptr[p]!, indptr[p + 1]!);
    if (r.trained[p]) {
      if (!row.includes(r.tokens[p]!)) throw new RolloutRecordError(`${name}: trained token ${r.tokens[p]} at position ${p} is outside its sampling mask row (${row.length} ids)`);
      if (!Number.isFinite(r.logprobs[p]!) || r.logprobs[p]! > 0) throw new RolloutRecordError(`${name}.logprobs[${p}] = ${r.logprobs[p]}, expected a finite log-probability ≤ 0`);
    } else if (row.length) throw new RolloutRecordError(`${name}.samplingMask row ${p} is not empty but position ${p} is not trained`);
  }
  if (r.routes) {
    if (!r.routed || r.routed.length !== n) throw new RolloutRecordError(`${name}.routed must have one entry per token (${n}) when routes are given`);
    if (r.routes.tokens !== n) throw new RolloutRecordError(`${name}.routes covers ${r.routes.tokens} positions, expected ${n}`);
  }
  if (r.indexerTopk) {
    const t = r.indexerTopk;
    if (!r.selected || r.selected.length !== n) throw new RolloutRecordError(`${name}.selected must have one entry per token (${n}) when indexer selections are given`);
    if (t.tokens !== n || t.data.length !== n * t.layers * t.topk) throw new RolloutRecordError(`${name}.indexerTopk must be [${n}, layers, topk], got ${t.data.length} entries for ${t.tokens} positions`);
  }
}

export interface RlBatch {
  /** [S][T] token rows for the forward (right-padded with padId): tokens[0 .. n−2] */
  input: number[][];
  /** i32 [S, T]: tokens[1 .. n−1] */
  target: Tensor;
  /** bool [S, T]: the target is model-generated (trained) and not padding */
  valid: Tensor;
  /** f32 [S, T] log π_old of the targets: renormalised over the kept set ('masked', default) or full-vocabulary */
  logpOld: Tensor;
  /** CSR over S·T rows (row s·T + j = kept set of target j of sequence s; empty for invalid targets) */
  samplingMask: SamplingMask;
  /** [S] the episode rewards */
  rewards: Float64Array;
  /** f32 [S]: Â = R − mean(R over the group's episodes), each episode counted once (rl.md §1.2) */
  advantages: Tensor;
  /** per sequence, [T, layers, k] over input positions (unrecorded positions hold 0..k−1; see routed) */
  routes?: RecordedRoutes[];
  /** bool [S, T]: routes[s] at input position j came from the engine */
  routed?: Tensor;
  /** per sequence, [T, layers, index_topk] over input positions (−1 holes; unrecorded positions all −1) */
  indexerTopk?: RecordedSelections[];
  /** [S·T]: indexerTopk[s] at input position j came from the engine */
  selected?: Uint8Array;
  /** trained tokens whose kept mass could not be derived ('masked' only; their logpOld is the full one) */
  unmaskedTokens: number;
}

/**
 * Collate rollout records (any order; each group's episodes must all be present, since advantages are
 * centred over them) into the loss batch. T = the longest record's n − 1.
 */
export function collateRollouts(records: readonly RolloutRecord[], opts: { padId: number; logpOld?: 'masked' | 'full'; device?: string }): RlBatch {
  if (!records.length) throw new RolloutRecordError('collateRollouts: no records');
  records.forEach((r, i) => checkRolloutRecord(r, `records[${i}]`));
  const S = records.length;
  const T = Math.max(...records.map((r) => r.tokens.length - 1));
  const masked = (opts.logpOld ?? 'masked') === 'masked';
  const input: number[][] = [];
  const target = new Int32Array(S * T);
  const valid = new Uint8Array(S * T);
  const logp = new Float32Array(S * T);
  const indptr = new Int32Array(S * T + 1);
  const idx: number[] = [];
  let unmasked = 0;
  const withRoutes = records.every((r) => r.routes);
  if (!withRoutes && records.some((r) => r.routes)) throw new RolloutRecordError('collateRollouts: some records have routes and some do not');
  const routes: RecordedRoutes[] = [];
  const withTopk = records.every((r) => r.indexerTopk);
  if (!withTopk && records.some((r) => r.indexerTopk)) throw new RolloutRecordError('collateRollouts: some records have indexer selections and some do not');
  const sels: RecordedSelections[] = [];
  const selected = new Uint8Array(S * T);
  const routed = new Uint8Array(S * T);
  records.forEach((r, s) => {
    const n = r.tokens.length;
    const row = Array.from(r.tokens.subarray(0, n - 1));
    while (row.length < T) row.push(opts.padId);
    input.push(row);
    for (let j = 0; j < T; j++) {
      const o = s * T + j;
      if (j < n - 1) {
        const p = j + 1;
        target[o] = r.tokens[p]!;
        if (r.trained[p]) {
          valid[o] = 1;
          const km = r.keptLogMass[p]!;
          if (masked && Number.isNaN(km)) unmasked++;
          logp[o] = r.logprobs[p]! - (masked && !Number.isNaN(km) ? km : 0);
          for (let q = r.samplingMask.indptr[p]!; q < r.samplingMask.indptr[p + 1]!; q++) idx.push(r.samplingMask.indices[q]!);
        }
      }
      indptr[o + 1] = idx.length;
    }
    if (withRoutes) {
      const rr = r.routes!;
      const per = rr.layers * rr.k;
      const data = new Int16Array(T * per);
      for (let j = 0; j < T; j++) {
        if (j < n - 1 && r.routed![j]) {
          data.set(rr.data.subarray(j * per, (j + 1) * per), j * per);
          routed[s * T + j] = 1;
        } else for (let l = 0; l < rr.layers; l++) for (let q = 0; q < rr.k; q++) data[(j * rr.layers + l) * rr.k + q] = q;
      }
      routes.push({ data, tokens: T, layers: rr.layers, k: rr.k });
    }
    if (withTopk) {
      const rt = r.indexerTopk!;
      const per = rt.layers * rt.topk;
      const data = new Int32Array(T * per).fill(-1);
      for (let j = 0; j < Math.min(T, n - 1); j++) {
        if (!r.selected![j]) continue;
        data.set(rt.data.subarray(j * per, (j + 1) * per), j * per);
        selected[s * T + j] = 1;
      }
      sels.push({ data, tokens: T, layers: rt.layers, topk: rt.topk });
    }
  });
  // advantages per episode, centred within its group (grpo.ts groupAdvantages on each group's episodes)
  const episodes = new Map<string, Map<number, number>>();
  for (const r of records) {
    const g = episodes.get(r.group) ?? new Map<number, number>();
    const prev = g.get(r.episode);
    if (prev !== undefined && prev !== r.reward) throw new RolloutRecordError(`collateRollouts: episode ${r.episode} of group ${r.group} has segments with rewards ${prev} and ${r.reward}`);
    g.set(r.episode, r.reward);
    episodes.set(r.group, g);
  }
  const adv = new Map<string, number>();
  for (const [g, eps] of episodes) {
    const keys = [...eps.keys()];
    const a = groupAdvantages(fromArray(keys.map((k) => eps.get(k)!), [keys.length], { dtype: 'f64' }), keys.length).toFloat64();
    keys.forEach((k, i) => adv.set(`${g}\u0000${k}`, a[i]!));
  }
  const device = opts.device;
  return {
    input,
    target: fromArray(target, [S, T], { dtype: 'i32', device }),
    valid: fromArray(valid, [S, T], { dtype: 'bool', device }),
    logpOld: fromArray(logp, [S, T], { dtype: 'f32', device }),
    samplingMask: { indptr, indices: Int32Array.from(idx) },
    rewards: Float64Array.from(records.map((r) => r.reward)),
    advantages: fromArray(records.map((r) => adv.get(`${r.group}\u0000${r.episode}`)!), [S], { dtype: 'f32', device }),
    ...(withRoutes ? { routes, routed: fromArray(routed, [S, T], { dtype: 'bool', device }) } : {}),
    ...(withTopk ? { indexerTopk: sels, selected } : {}),
    unmaskedTokens: unmasked,
  };
}

/**
 * The batch's routes with every position the engine did not record taken from `own` (the trainer's own
 * routes at those positions, e.g. recordRoutes of an unforced forward of the same input: R2-style replay
 * where no rollout route exists), ready for forcedRoutesFromRecorded.
 */
export function overlayRoutes(batch: RlBatch, own: readonly RecordedRoutes[]): RecordedRoutes[] {
  if (!batch.routes || !batch.routed) throw new RolloutRecordError('overlayRoutes: the batch has no recorded routes');
  const T = batch.valid.shape[1]!;
  const routed = batch.routed.toFloat64();
  if (own.length !== batch.routes.length) throw new RolloutRecordError(`overlayRoutes: ${own.length} own recordings for ${batch.routes.length} sequences`);
  return batch.routes.map((r, s) => {
    const o = own[s]!;
    if (o.tokens < T || o.layers !== r.layers || o.k !== r.k) {
      throw new RolloutRecordError(`overlayRoutes: own[${s}] is [${o.tokens}, ${o.layers}, ${o.k}], expected at least [${T}, ${r.layers}, ${r.k}]`);
    }
    const per = r.layers * r.k;
    const data = Int16Array.from(r.data);
    for (let j = 0; j < T; j++) if (!routed[s * T + j]) for (let q = 0; q < per; q++) data[j * per + q] = o.data[j * per + q]!;
    return { ...r, data };
  });
}
