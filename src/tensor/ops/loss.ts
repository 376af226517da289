// Losses: cross-entropy with an ignore index, KL divergence between distributions given as log-probs,
// and the per-token KL estimators used by GRPO-style RL (docs/rl.md §1.3). All are compositions of
// differentiable ops, so their backward passes come from autograd. Math runs in f32 (f64 for f64 input).
import { DsvError } from '../../errors.js';
import { computeDtype, isInt } from '../dtype.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { adds, div, exp, gt, mul, muls, ne, neg, square, sub, where } from './elementwise.js';
import { gather } from './indexing.js';
import { mean, sum } from './reduce.js';
import { logSoftmax } from './softmax.js';
import { requireFloat, sameDevice } from './util.js';
import { cast, reshape, unsqueeze } from './view.js';

export type Reduction = 'mean' | 'sum' | 'none';

function checkReduction(op: string, r: string): void {
  if (r !== 'mean' && r !== 'sum' && r !== 'none') throw new DsvError(`${op}: reduction must be 'mean', 'sum' or 'none', got '${r}'`);
}

export interface CrossEntropyOptions {
  /** targets equal to this contribute nothing and are not counted by 'mean' (default −100, as torch) */
  ignoreIndex?: number;
  /** 'mean' (default) averages over non-ignored targets (NaN when all are ignored, as torch) */
  reduction?: Reduction;
}

/**
 * −log softmax(logits)[target] per row. logits [..., V] (usually [N, V]), targets integer [...].
 * 'none' returns the per-row losses (0 at ignored rows).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  checkReduction('crossEntropy', reduction);
  requireFloat('crossEntropy', logits);
  sameDevice('crossEntropy', logits, targets);
  if (!isInt(targets.dtype) || targets.dtype === 'bool') throw new DsvError(`crossEntropy: targets must be i64 or i32, got ${targets.dtype}`);
  if (logits.rank < 1 || targets.rank !== logits.rank - 1 || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new ShapeError(`crossEntropy: logits ${fmtShape(logits.shape)} and targets ${fmtShape(targets.shape)} do not match (targets must be logits' shape without the last dim)`);
  }
  const V = logits.shape[logits.rank - 1]!;
  const lp = reshape(logSoftmax(cast(logits, computeDtype(logits.dtype)), -1), [-1, V]);
  const t = reshape(targets, [-1]);
  const valid = ne(t, ignoreIndex);
  const safe = where(valid, t, 0); // ignored rows read class 0 and are zeroed below
  let picked: Tensor;
  try {
    picked = reshape(gather(lp, 1, unsqueeze(safe, 1)), [-1]);
  } catch (e) {
    if (e instanceof RangeError) throw new DsvError(`crossEntropy: a target is outside [0, ${V}) and is not the ignore index ${ignoreIndex} (${e.message})`);
    throw e;
  }
  const nll = where(valid, neg(picked), 0);
  if (reduction === 'none') return reshape(nll, targets.shape);
  const total = sum(nll);
  if (reduction === 'sum') return total;
  return div(total, sum(cast(valid, lp.dtype)));
}

export interface KlOptions {
  /** the distribution's dim (default −1) */
  axis?: number;
  /** over the remaining dims: 'mean' (default; torch's 'batchmean' for 2-D input), 'sum' or 'none' */
  reduction?: Reduction;
}

/**
 * KL(P ‖ Q) = Σ_v P_v · (log P_v − log Q_v) along `axis`, from log-probabilities logP and logQ.
 * Direction: P is the target/reference distribution, Q the model's (torch F.kl_div(logQ, logP,
 * log_target=True)); e.g. the DSA indexer loss is klDiv(log attention target, log softmax(index scores)).
 * Entries with P_v = 0 (logP = −∞) contribute exactly 0 and no gradient, even where logQ = −∞.
 * Gradients flow to both arguments; detach the target yourself when it is fixed.
 */
export function klDiv(logP: Tensor, logQ: Tensor, opts: KlOptions = {}): Tensor {
  const reduction = opts.reduction ?? 'mean';
  checkReduction('klDiv', reduction);
  requireFloat('klDiv', logP);
  requireFloat('klDiv', logQ);
  sameDevice('klDiv', logP, logQ);
  if (logP.rank === 0 || logP.rank !== logQ.rank || logP.shape.some((d, i) => d !== logQ.shape[i])) {
    throw new ShapeError(`klDiv: logP ${fmtShape(logP.shape)} and logQ ${fmtShape(logQ.shape)} must have the same shape (rank ≥ 1)`);
  }
  const ct = computeDtype(logP.dtype === 'f64' || logQ.dtype === 'f64' ? 'f64' : 'f32');
  const lp0 = cast(logP, ct);
  const lq0 = cast(logQ, ct);
  // Replace masked entries by 0 before any arithmetic so no ∞·0 = NaN reaches the gradients.
  const support = gt(lp0, -Infinity);
  const lp = where(support, lp0, 0);
  const lq = where(support, lq0, 0);
  const terms = where(support, mul(exp(lp), sub(lp, lq)), 0);
  const kl = sum(terms, opts.axis ?? -1);
  if (reduction === 'none') return kl;
  return reduction === 'sum' ? sum(kl) : mean(kl);
}

export type KlEstimator = 'k1' | 'k2' | 'k3';

export interface TokenKlOptions {
  /** k1 = log π − log π_ref; k2 = ½(log π − log π_ref)²; k3 (default) = e^(log π_ref − log π) − (log π_ref − log π) − 1 */
  estimator?: KlEstimator;
  /**
   * log π_old of the sampled tokens: when given, the estimate is weighted by the importance ratio
   * r = exp(log π − log π_old), NOT detached (DeepSeek-V3.2's unbiased KL, rl.md Eq. 7).
   */
  logpOld?: Tensor;
}

/**
 * Per-token estimate of KL(π ‖ π_ref) from the log-probs of the sampled tokens (same shapes, e.g.
 * [B, T]); returns the elementwise estimate (no reduction; the RL loss masks and averages it).
 * Gradients flow to logp (and logpOld if it requires grad); logpRef is usually detached.
 */
export function klPerToken(logp: Tensor, logpRef: Tensor, opts: TokenKlOptions = {}): Tensor {
  const est = opts.estimator ?? 'k3';
  requireFloat('klPerToken', logp);
  requireFloat('klPerToken', logpRef);
  if (logp.rank !== logpRef.rank || logp.shape.some((d, i) => d !== logpRef.shape[i])) {
    throw new ShapeError(`klPerToken: logp ${fmtShape(logp.shape)} and logpRef ${fmtShape(logpRef.shape)} must have the same shape`);
  }
  const d = sub(logpRef, logp); // log(π_ref/π)
  let k: Tensor;
  if (est === 'k1') k = neg(d);
  else if (est === 'k2') k = muls(square(d), 0.5);
  else if (est === 'k3') k = adds(sub(exp(d), d), -1);
  else throw new DsvError(`klPerToken: estimator must be 'k1', 'k2' or 'k3', got '${String(est)}'`);
  if (!opts.logpOld) return k;
  const old = opts.logpOld;
  if (old.rank !== logp.rank || old.shape.some((s, i) => s !== logp.shape[i])) {
    throw new ShapeError(`klPerToken: logpOld ${fmtShape(old.shape)} and logp ${fmtShape(logp.shape)} must have the same shape`);
  }
  return mul(exp(sub(logp, old)), k);
}
