// The unbiased KL estimate of DeepSeek-V3.2 (arXiv 2512.02556, Eq. 7; ../shared/docs/rl.md §1.3):
//
//   D_KL,t = (π_θ / π_old) · ( π_ref/π_θ − log(π_ref/π_θ) − 1 )  =  r_t · k3_t
//
// Why: the tokens come from π_old, not π_θ. Plain k3 averaged under π_old estimates neither
// KL(π_θ‖π_ref) nor its gradient: d k3/d log π_θ = 1 − π_ref/π_θ is linear in π_ref/π_θ and
// unbounded when π_θ ≪ π_ref ("disproportionately large, unbounded weights"), and even on-policy
// ∇E[k3] is the gradient of the *reverse* KL(π_ref‖π_θ). Weighting by the importance ratio
// r = π_θ/π_old makes E_{π_old}[r·k3] = KL(π_θ‖π_ref) exactly, and its gradient
//   d(r·k3)/d log π_θ = r · (log π_θ − log π_ref)
// is bounded and log-scale. This only holds when r is differentiated too, so r is NOT detached.
//
// The arithmetic is src/tensor/ops/loss.ts klPerToken (k3 with the logpOld weight); this file fixes
// the RL contract around it: [S, T] shapes, a validity mask, padded entries zeroed before any
// arithmetic (so −∞ padding cannot put NaN into the gradient), π_old and π_ref treated as data.
import { detach, klPerToken, type Tensor } from '../tensor/index.js';
import { requireShape, requireTokens, tokenMask, zeroInvalid } from './batch.js';

/**
 * Per-token unbiased KL estimate r·k3 of KL(π_θ‖π_ref), Eq. 7.
 * - logp     [S, T] log π_θ of the sampled tokens (differentiable; the gradient flows through r and k3)
 * - logpOld  [S, T] log π_old (the sampling policy's logprobs; detached here: it is data)
 * - logpRef  [S, T] log π_ref (detached here)
 * - mask     [S, T] validity (bool or 0/1); optional, default all valid
 * Returns [S, T] in logp's dtype, exactly 0 at invalid tokens (and no gradient there).
 */
export function unbiasedKl(logp: Tensor, logpOld: Tensor, logpRef: Tensor, mask?: Tensor): Tensor {
  const op = 'unbiasedKl';
  requireTokens(op, 'logp', logp);
  requireTokens(op, 'logpOld', logpOld);
  requireTokens(op, 'logpRef', logpRef);
  requireShape(op, 'logpOld', logpOld, logp.shape);
  requireShape(op, 'logpRef', logpRef, logp.shape);
  const { valid } = tokenMask(op, mask, logp.shape, logp.dtype, logp.device);
  const kl = klPerToken(zeroInvalid(logp, valid), zeroInvalid(detach(logpRef), valid), { logpOld: zeroInvalid(detach(logpOld), valid) });
  return zeroInvalid(kl, valid);
}

/**
 * Plain k3 = π_ref/π_θ − log(π_ref/π_θ) − 1 per token (no importance weight), [S, T]: the biased
 * estimator Eq. 7 replaces, kept for comparison and ablation (use_unbiased_kl = false).
 */
export function k3Kl(logp: Tensor, logpRef: Tensor, mask?: Tensor): Tensor {
  const op = 'k3Kl';
  requireTokens(op, 'logp', logp);
  requireTokens(op, 'logpRef', logpRef);
  requireShape(op, 'logpRef', logpRef, logp.shape);
  const { valid } = tokenMask(op, mask, logp.shape, logp.dtype, logp.device);
  return zeroInvalid(klPerToken(zeroInvalid(logp, valid), zeroInvalid(detach(logpRef), valid)), valid);
}
