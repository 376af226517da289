// Train/inference importance-sampling correction, TIS and MIS (../shared/docs/rl.md §3 "train/infer IS
// correction" and §6 invariant 8). Only for a setup that corrects the rollout/trainer mismatch
// separately from the GRPO ratio: the paper itself folds the mismatch into π_old (its π_old IS the
// engine's sampling logprob, rl.md §1.4), so with OPSM and bypass-mode π_old these stay off.
//
//   ρ_t = π_old_train(o_t) / π_rollout(o_t)      (same weights θ_old, two numerics: trainer vs engine)
//   TIS (Yao, Liu et al., "Your efficient RL framework secretly brings you off-policy RL training"):
//       w_t = min(ρ_t, C)            (optionally max(·, C_low)), C ≈ 2
//   MIS / IcePop (arXiv 2510.18855):  w_t = ρ_t if ρ_t ∈ [lo, hi] else 0 (the token is dropped)
//
// The weights multiply the per-token policy term and are DETACHED: they correct which distribution
// the sample came from, they are not something to optimise. A sequence-level ratio uses the mean of
// log ρ (geometric mean), as OPSM does: summing log-ratios makes 100 tokens of a tiny 0.012 mismatch
// a ratio of e^1.2 = 3.32 (huggingface/trl#4772), which a cap then truncates for no real reason.
import { DsvError } from '../errors.js';
import { type Tensor, clamp, detach, div, exp, expand, ge, le, logicalAnd, mul, noGrad, reshape, sub, sum, where } from '../tensor/index.js';
import { requireShape, requireTokens, tokenMask, zeroInvalid } from './batch.js';

function logRatio(op: string, logpOldTrain: Tensor, logpRollout: Tensor, mask: Tensor | undefined): { d: Tensor; valid: Tensor; lengths: Tensor } {
  requireTokens(op, 'logpOldTrain', logpOldTrain);
  requireTokens(op, 'logpRollout', logpRollout);
  requireShape(op, 'logpRollout', logpRollout, logpOldTrain.shape);
  const { valid, lengths } = tokenMask(op, mask, logpOldTrain.shape, logpOldTrain.dtype, logpOldTrain.device);
  return { d: zeroInvalid(sub(detach(logpOldTrain), detach(logpRollout)), valid), valid, lengths };
}

function positive(op: string, name: string, v: number): void {
  if (typeof v !== 'number' || !(v > 0) || Number.isNaN(v)) throw new DsvError(`${op}: ${name} must be a positive number, got ${String(v)}`);
}

/**
 * Truncated IS weights min(max(ρ, clipLow), clip), [S, T], detached; invalid tokens get 0.
 * logpOldTrain, logpRollout [S, T]; clip C (default 2); clipLow (default 0: no lower bound).
 */
export function tisWeights(logpOldTrain: Tensor, logpRollout: Tensor, opts: { clip?: number; clipLow?: number; mask?: Tensor } = {}): Tensor {
  const op = 'tisWeights';
  const C = opts.clip ?? 2;
  const lo = opts.clipLow ?? 0;
  positive(op, 'clip', C);
  if (typeof lo !== 'number' || !(lo >= 0) || !(lo <= C)) throw new DsvError(`${op}: clipLow must be in [0, clip = ${C}], got ${String(lo)}`);
  return noGrad(() => {
    const { d, valid } = logRatio(op, logpOldTrain, logpRollout, opts.mask);
    return zeroInvalid(clamp(exp(d), lo, C), valid);
  });
}

/**
 * Masked IS weights: ρ where lo ≤ ρ ≤ hi, else 0, [S, T], detached (defaults [0.5, 2]).
 */
export function misWeights(logpOldTrain: Tensor, logpRollout: Tensor, opts: { low?: number; high?: number; mask?: Tensor } = {}): Tensor {
  const op = 'misWeights';
  const lo = opts.low ?? 0.5;
  const hi = opts.high ?? 2;
  positive(op, 'low', lo);
  positive(op, 'high', hi);
  if (!(lo <= hi)) throw new DsvError(`${op}: low (${lo}) must be ≤ high (${hi})`);
  return noGrad(() => {
    const { d, valid } = logRatio(op, logpOldTrain, logpRollout, opts.mask);
    const rho = exp(d);
    const inside = logicalAnd(valid, logicalAnd(ge(rho, lo), le(rho, hi)));
    return where(inside, rho, 0);
  });
}

/**
 * Per-sequence IS ratio [S], detached: 'geometric' (default) exp(mean_t log ρ_t) over the valid
 * tokens, or 'product' exp(Σ_t log ρ_t) (shown for comparison; it explodes with length).
 */
export function sequenceIsRatio(logpOldTrain: Tensor, logpRollout: Tensor, opts: { mode?: 'geometric' | 'product'; mask?: Tensor } = {}): Tensor {
  const op = 'sequenceIsRatio';
  const mode = opts.mode ?? 'geometric';
  if (mode !== 'geometric' && mode !== 'product') throw new DsvError(`${op}: mode must be 'geometric' or 'product', got '${String(mode)}'`);
  return noGrad(() => {
    const { d, lengths } = logRatio(op, logpOldTrain, logpRollout, opts.mask);
    const s = sum(d, 1);
    return exp(mode === 'product' ? s : div(s, clamp(lengths, 1, null)));
  });
}

/** policyTerm [S, T] ⊙ weights [S, T] (TIS/MIS) or [S] (sequence-level, broadcast). */
export function applyIsWeights(policyTerm: Tensor, weights: Tensor): Tensor {
  requireTokens('applyIsWeights', 'policyTerm', policyTerm);
  const [S, T] = policyTerm.shape as [number, number];
  if (weights.rank === 1) {
    requireShape('applyIsWeights', 'weights', weights, [S]);
    return mul(policyTerm, expand(reshape(detach(weights), [S, 1]), [S, T]));
  }
  requireShape('applyIsWeights', 'weights', weights, [S, T]);
  return mul(policyTerm, detach(weights));
}
