// Off-Policy Sequence Masking, OPSM (DeepSeek-V3.2, arXiv 2512.02556, Eq. 8–9; ../shared/docs/rl.md §1.4):
//
//   M_{i,t} = 0  if  Â_{i,t} < 0  and  (1/|o_i|) Σ_t log( π_old(o_{i,t}|·) / π_θ(o_{i,t}|·) ) > δ
//   M_{i,t} = 1  otherwise
//
// The statistic is a length-normalised k1 estimate of KL(π_old‖π_θ) over the sequence's valid
// tokens. It is one-sided: only tokens whose probability *dropped* under π_θ push it up, so a
// sequence whose π_θ rose (negative statistic) is never masked. Both inequalities are strict.
// Why: "the model benefits the most by learning from its own mistakes, whereas highly off-policy
// negative samples can be detrimental" — positive-advantage sequences are always kept.
// π_old is the inference engine's sampling-time logprob, so the mask covers both mini-batch
// staleness and train/inference mismatch. [interp] π_θ changes every mini-batch, so the mask is
// recomputed at each step with log π_θ detached: M is a constant factor, not a gradient path.
// M multiplies the policy (surrogate) term only; the KL term of Eq. 5 is never masked
// (see policy-loss.ts). M is constant across a sequence's tokens.
import { DsvError } from '../errors.js';
import { type Tensor, cast, clamp, detach, div, expand, fmtShape, gt, logicalAnd, logicalNot, lt, mul, noGrad, reshape, sub, sum } from '../tensor/index.js';
import { requireFloatArg, requireShape, requireTokens, tokenMask, zeroInvalid } from './batch.js';

/**
 * The per-sequence statistic (1/|o_i|) Σ_{valid t} (log π_old − log π_θ), [S] in logp's dtype.
 * The mean divides by the valid length |o_i|, not by T; padding contributes nothing. A sequence with
 * no valid token gets 0. Computed without gradient (log π_θ detached).
 * - logpOld [S, T] sampling-time log π_old; logp [S, T] current log π_θ; mask [S, T] validity.
 */
export function opsmStatistic(logpOld: Tensor, logp: Tensor, mask?: Tensor): Tensor {
  const op = 'opsmStatistic';
  requireTokens(op, 'logpOld', logpOld);
  requireTokens(op, 'logp', logp);
  requireShape(op, 'logp', logp, logpOld.shape);
  return noGrad(() => {
    const { valid, lengths } = tokenMask(op, mask, logp.shape, logp.dtype, logp.device);
    const diff = zeroInvalid(sub(detach(logpOld), detach(logp)), valid);
    return div(sum(diff, 1), clamp(lengths, 1, null)); // empty sequence: 0 / 1 = 0
  });
}

/**
 * OPSM keep-mask M, [S, T] in logp's dtype: 1 keep, 0 masked (Eq. 9), constant along each row when
 * the advantage is per sequence. Padded positions carry their row's value too (the loss's validity
 * mask removes them; M only says which sequences the policy term may learn from).
 * - advantages [S] (per sequence, the GRPO case) or [S, T] (per token Â_{i,t})
 * - delta ≥ 0 finite: the threshold δ (slime default 1e-4; TRL example 0.5)
 * Returns { keep [S, T], statistic [S], masked bool [S, T] }. No gradient.
 */
export function opsmMask(logpOld: Tensor, logp: Tensor, advantages: Tensor, delta: number, mask?: Tensor): { keep: Tensor; statistic: Tensor; masked: Tensor } {
  const op = 'opsmMask';
  if (typeof delta !== 'number' || !Number.isFinite(delta) || delta < 0) {
    throw new DsvError(`${op}: delta must be a finite number ≥ 0, got ${String(delta)}`);
  }
  const statistic = opsmStatistic(logpOld, logp, mask);
  const [S, T] = logp.shape as [number, number];
  requireFloatArg(op, 'advantages', advantages);
  if (advantages.rank === 1) requireShape(op, 'advantages', advantages, [S]);
  else if (advantages.rank === 2) requireShape(op, 'advantages', advantages, [S, T]);
  else throw new DsvError(`${op}: advantages must be [${S}] or [${S}, ${T}], got shape ${fmtShape(advantages.shape)}`);
  return noGrad(() => {
    const adv = advantages.rank === 1 ? expand(reshape(detach(advantages), [S, 1]), [S, T]) : detach(advantages);
    const offPolicy = expand(reshape(gt(statistic, delta), [S, 1]), [S, T]); // strict >
    const masked = logicalAnd(lt(adv, 0), offPolicy); // strict <
    const keep = cast(logicalNot(masked), logp.dtype);
    return { keep, statistic, masked };
  });
}

/** The policy term with OPSM applied: M ⊙ policyTerm ([S, T] both); a helper for callers composing their own loss. */
export function applyOpsm(policyTerm: Tensor, keep: Tensor): Tensor {
  requireShape('applyOpsm', 'keep', keep, policyTerm.shape);
  return mul(policyTerm, keep);
}
