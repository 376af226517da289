// GRPO pieces of DeepSeek-V3.2's objective (arXiv 2512.02556, Eq. 5–6; ../shared/docs/rl.md §1.2):
//
//   J(θ) = E[ (1/G) Σ_i (1/|o_i|) Σ_t ( min(r_{i,t} Â_{i,t}, clip(r_{i,t}, 1−ε, 1+ε) Â_{i,t}) − β D_KL,t ) ]
//   r_{i,t} = π_θ(o_{i,t}|q,o_{i,<t}) / π_old(o_{i,t}|q,o_{i,<t}),    Â_{i,t} = R_i − mean(R_1..R_G)
//
// - Advantages are mean-centred within each group of G samples of one prompt, with NO division by
//   the std (Dr.GRPO-style): dividing by std re-weights prompts by how unanimous their group was.
//   Σ_i Â_i = 0 per group, and an all-equal group has Â ≡ 0 (only the KL term trains on it).
// - The clipped surrogate is maximised; the loss is its negative. Where the clip is active
//   (r > 1+ε with Â > 0, or r < 1−ε with Â < 0) the min picks the constant clip(r)·Â and no gradient
//   flows; r > 1+ε with Â < 0 is NOT clipped (only a dual clip would bound it). At r = 1 the
//   gradient is Â·∇log π_θ: the on-policy policy gradient.
// - Aggregation "seq-mean-token-mean" (TRL loss_type="grpo", verl seq-mean-token-mean): a token mean
//   per sequence, then a mean over sequences. The sequence count is the *global* one (the whole
//   optimiser step), so splitting a step into micro-batches and summing their losses (gradient
//   accumulation) gives exactly the full-batch loss and gradient. token-mean (dapo/bnpo) and dr_grpo
//   (÷ sequences·L_max) are provided for comparison (../shared/docs/rl.md §6 item 7).
import { DsvError } from '../errors.js';
import { type Tensor, adds, clamp, detach, div, exp, expand, fmtShape, mean, minimum, mul, muls, noGrad, reshape, sqrt, square, sub, sum } from '../tensor/index.js';
import { requireFloatArg, requireShape, requireTokens, tokenMask, zeroInvalid } from './batch.js';

export interface AdvantageOptions {
  /**
   * 'none' (default, the paper): Â = R − mean. 'group': (R − mean) / (std + 1e-6) with the unbiased
   * std (verl's default norm_adv_by_std_in_grpo=True; a group of 1 gets 0), for comparison only.
   */
  scale?: 'none' | 'group';
}

/**
 * Group-relative advantages. rewards [S] with S = groups·groupSize, the G samples of a prompt
 * contiguous (rows g·G … g·G+G−1). Returns [S] in rewards' dtype, no gradient.
 */
export function groupAdvantages(rewards: Tensor, groupSize: number, opts: AdvantageOptions = {}): Tensor {
  const op = 'groupAdvantages';
  requireFloatArg(op, 'rewards', rewards);
  if (rewards.rank !== 1) throw new DsvError(`${op}: rewards must be [sequences], got shape ${fmtShape(rewards.shape)}`);
  const S = rewards.shape[0]!;
  if (!Number.isInteger(groupSize) || groupSize < 1) throw new DsvError(`${op}: groupSize must be a positive integer, got ${String(groupSize)}`);
  if (S % groupSize !== 0) throw new DsvError(`${op}: rewards has ${S} entries, not a multiple of groupSize ${groupSize}`);
  const scale = opts.scale ?? 'none';
  if (scale !== 'none' && scale !== 'group') throw new DsvError(`${op}: scale must be 'none' or 'group', got '${String(scale)}'`);
  const vals = rewards.toFloat64();
  for (let i = 0; i < S; i++) if (!Number.isFinite(vals[i]!)) throw new DsvError(`${op}: rewards[${i}] is ${vals[i]}, expected a finite number`);
  return noGrad(() => {
    const G = groupSize;
    const r = reshape(detach(rewards), [S / G, G]);
    const centred = sub(r, expand(mean(r, 1, true), [S / G, G]));
    if (scale === 'none') return reshape(centred, [S]);
    if (G === 1) return reshape(muls(centred, 0), [S]);
    const std = sqrt(muls(sum(square(centred), 1, true), 1 / (G - 1)));
    return reshape(div(centred, expand(adds(std, 1e-6), [S / G, G])), [S]);
  });
}

/**
 * Per-token clipped surrogate min(r·Â, clip(r, 1−ε, 1+ε)·Â) with r = exp(logp − logpOld) (to be
 * maximised). logp [S, T] differentiable; logpOld [S, T] detached; advantages [S] (broadcast over
 * tokens) or [S, T]; eps ∈ (0, 1). epsHigh (DAPO clip-higher) defaults to eps. Returns [S, T];
 * entries at invalid tokens are 0 with no gradient when `mask` is given.
 */
export function clippedSurrogate(logp: Tensor, logpOld: Tensor, advantages: Tensor, eps: number, opts: { epsHigh?: number; mask?: Tensor } = {}): Tensor {
  const op = 'clippedSurrogate';
  requireTokens(op, 'logp', logp);
  requireTokens(op, 'logpOld', logpOld);
  requireShape(op, 'logpOld', logpOld, logp.shape);
  const epsHigh = opts.epsHigh ?? eps;
  for (const [name, v] of [['eps', eps], ['epsHigh', epsHigh]] as const) {
    if (typeof v !== 'number' || !(v > 0) || !(v < 1)) throw new DsvError(`${op}: ${name} must be in (0, 1), got ${String(v)}`);
  }
  const [S, T] = logp.shape as [number, number];
  const adv = tokenAdvantages(op, advantages, S, T);
  const { valid } = tokenMask(op, opts.mask, logp.shape, logp.dtype, logp.device);
  const r = exp(sub(zeroInvalid(logp, valid), zeroInvalid(detach(logpOld), valid)));
  const surr = minimum(mul(r, adv), mul(clamp(r, 1 - eps, 1 + epsHigh), adv));
  return zeroInvalid(surr, valid);
}

/** advantages [S] → [S, T] (broadcast, detached), or [S, T] as is (detached). */
export function tokenAdvantages(op: string, advantages: Tensor, S: number, T: number): Tensor {
  requireFloatArg(op, 'advantages', advantages);
  if (advantages.rank === 1) {
    requireShape(op, 'advantages', advantages, [S]);
    return expand(reshape(detach(advantages), [S, 1]), [S, T]);
  }
  if (advantages.rank === 2) {
    requireShape(op, 'advantages', advantages, [S, T]);
    return detach(advantages);
  }
  throw new DsvError(`${op}: advantages must be [${S}] or [${S}, ${T}], got shape ${fmtShape(advantages.shape)}`);
}

/** Loss aggregation over tokens and sequences. 'seq-mean-token-mean' is the paper's Eq. 5. */
export type Aggregation = 'seq-mean-token-mean' | 'token-mean' | 'dr_grpo';

export interface AggregateOptions {
  /** default 'seq-mean-token-mean' */
  mode?: Aggregation;
  /**
   * The global normaliser of the whole optimiser step, so that micro-batches sum to the full batch:
   * sequences for 'seq-mean-token-mean' and 'dr_grpo' (default: this batch's S), valid tokens for
   * 'token-mean' (default: this batch's count).
   */
  numSequences?: number;
  numTokens?: number;
  /** L_max of 'dr_grpo' (max completion length; default T) */
  maxLen?: number;
}

/**
 * Reduce per-token values x [S, T] over the valid tokens (mask [S, T], default all valid) to a scalar:
 * - 'seq-mean-token-mean': Σ_i ( Σ_t m·x / |o_i| ) / numSequences. A sequence with no valid token adds 0.
 * - 'token-mean':          Σ_{i,t} m·x / numTokens.
 * - 'dr_grpo':             Σ_{i,t} m·x / (numSequences · maxLen).
 * Differentiable in x.
 */
export function aggregateTokens(x: Tensor, mask: Tensor | undefined, opts: AggregateOptions = {}): Tensor {
  const op = 'aggregateTokens';
  requireTokens(op, 'x', x);
  const [S, T] = x.shape as [number, number];
  const mode = opts.mode ?? 'seq-mean-token-mean';
  const { valid, lengths } = tokenMask(op, mask, x.shape, x.dtype, x.device);
  const positive = (name: string, v: number): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new DsvError(`${op}: ${name} must be a positive number, got ${String(v)}`);
    return v;
  };
  const xm = zeroInvalid(x, valid);
  switch (mode) {
    case 'seq-mean-token-mean': {
      const n = positive('numSequences', opts.numSequences ?? S);
      const perSeq = div(sum(xm, 1), noGrad(() => clamp(lengths, 1, null)));
      return muls(sum(perSeq), 1 / n);
    }
    case 'token-mean': {
      const n = positive('numTokens', opts.numTokens ?? noGrad(() => sum(lengths).item()));
      return muls(sum(xm), 1 / n);
    }
    case 'dr_grpo': {
      const n = positive('numSequences', opts.numSequences ?? S);
      const L = positive('maxLen', opts.maxLen ?? T);
      return muls(sum(xm), 1 / (n * L));
    }
    default:
      throw new DsvError(`${op}: mode must be 'seq-mean-token-mean', 'token-mean' or 'dr_grpo', got '${String(mode)}'`);
  }
}
