// The per-token objective of DeepSeek-V3.2 RL, Eq. 5 with OPSM (Eq. 8) and the unbiased KL (Eq. 7),
// written as a loss to minimise (../shared/docs/rl.md §1.2–1.4):
//
//   ℓ_{i,t} = −( M_{i,t} · min(r Â, clip(r, 1−ε, 1+ε) Â) − β · r · k3 )
//   L       = (1/numSequences) Σ_i (1/|o_i|) Σ_{valid t} ℓ_{i,t}          ("seq-mean-token-mean")
//
// M (OPSM) multiplies the policy term only: the KL term is never masked, so a masked sequence still
// pulls π_θ towards π_ref. The same π_old (the engine's sampling-time logprobs) feeds the ratio r of
// the surrogate, the ratio r of the KL and the OPSM statistic [interp: "bypass" mode, rl.md §1.4].
// β = 0 drops the KL term (and π_ref may be omitted).
import { DsvError } from '../errors.js';
import { type Tensor, full, cast, detach, div, gt, logicalAnd, logicalOr, lt, muls, mul, noGrad, sub, sum, exp } from '../tensor/index.js';
import { requireShape, requireTokens, tokenMask } from './batch.js';
import { type Aggregation, aggregateTokens, clippedSurrogate, tokenAdvantages } from './grpo.js';
import { k3Kl, unbiasedKl } from './kl.js';
import { opsmMask } from './opsm.js';

export interface PolicyLossInput {
  /** [S, T] log π_θ of the sampled tokens (differentiable) */
  logp: Tensor;
  /** [S, T] log π_old: the sampling-time logprobs */
  logpOld: Tensor;
  /** [S, T] log π_ref; required when beta > 0 */
  logpRef?: Tensor;
  /** [S] per-sequence Â (groupAdvantages) or [S, T] */
  advantages: Tensor;
  /** [S, T] validity (bool or 0/1): model-generated, non-padding tokens; default all valid */
  mask?: Tensor;
}

export interface PolicyLossOptions {
  /** clip ε (e.g. 0.2) */
  eps: number;
  epsHigh?: number;
  /** KL coefficient β ≥ 0 (0: no KL term) */
  beta: number;
  /** OPSM threshold δ; undefined turns OPSM off (M ≡ 1) */
  opsmDelta?: number;
  /** true (default): Eq. 7's r·k3; false: plain k3 (ablation) */
  unbiasedKl?: boolean;
  aggregation?: Aggregation;
  numSequences?: number;
  numTokens?: number;
  maxLen?: number;
}

export interface PolicyLossOutput {
  /** scalar loss to minimise */
  loss: Tensor;
  /** [S, T] per-token ℓ (0 at invalid tokens) */
  perToken: Tensor;
  /** [S, T] OPSM keep mask M (all ones when OPSM is off) */
  keep: Tensor;
  /** [S] OPSM statistic (computed even when OPSM is off, for metrics) */
  opsmStatistic: Tensor;
  /** metrics over valid tokens (plain numbers) */
  stats: { clipFraction: number; maskedSequenceFraction: number; klMean: number };
}

export function policyLoss(input: PolicyLossInput, opts: PolicyLossOptions): PolicyLossOutput {
  const op = 'policyLoss';
  const { logp, logpOld, logpRef, advantages, mask } = input;
  requireTokens(op, 'logp', logp);
  requireTokens(op, 'logpOld', logpOld);
  requireShape(op, 'logpOld', logpOld, logp.shape);
  if (typeof opts.beta !== 'number' || !Number.isFinite(opts.beta) || opts.beta < 0) throw new DsvError(`${op}: beta must be a finite number ≥ 0, got ${String(opts.beta)}`);
  if (opts.beta > 0 && !logpRef) throw new DsvError(`${op}: logpRef is required when beta > 0 (beta = ${opts.beta})`);
  const [S, T] = logp.shape as [number, number];
  const { valid, validF } = tokenMask(op, mask, logp.shape, logp.dtype, logp.device);

  const surr = clippedSurrogate(logp, logpOld, advantages, opts.eps, { epsHigh: opts.epsHigh, mask: valid });
  const om = opsmMask(logpOld, logp, advantages, opts.opsmDelta ?? 0, valid);
  const keep = opts.opsmDelta === undefined ? full([S, T], 1, { dtype: logp.dtype, device: logp.device }) : om.keep;
  let objective = mul(keep, surr);
  let kl: Tensor | null = null;
  if (opts.beta > 0) {
    kl = opts.unbiasedKl === false ? k3Kl(logp, logpRef!, valid) : unbiasedKl(logp, logpOld, logpRef!, valid);
    objective = sub(objective, muls(kl, opts.beta)); // not multiplied by M
  }
  const perToken = muls(objective, -1);
  const loss = aggregateTokens(perToken, valid, { mode: opts.aggregation, numSequences: opts.numSequences, numTokens: opts.numTokens, maxLen: opts.maxLen });

  const stats = noGrad(() => {
    const nTok = Math.max(1, sum(validF).item());
    const adv = tokenAdvantages(op, advantages, S, T);
    const r = exp(sub(detach(logp), detach(logpOld)));
    const eh = opts.epsHigh ?? opts.eps;
    const clipped = logicalAnd(valid, logicalOr(logicalAnd(gt(r, 1 + eh), gt(adv, 0)), logicalAnd(lt(r, 1 - opts.eps), lt(adv, 0))));
    const maskedSeq = opts.opsmDelta === undefined ? 0 : sum(cast(gt(sum(cast(logicalAnd(om.masked, valid), logp.dtype), 1), 0), logp.dtype)).item() / S;
    return {
      clipFraction: sum(cast(clipped, logp.dtype)).item() / nTok,
      maskedSequenceFraction: maskedSeq,
      klMean: kl ? div(sum(detach(kl)), nTok).item() : 0,
    };
  });
  return { loss, perToken, keep, opsmStatistic: om.statistic, stats };
}
