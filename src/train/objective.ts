// The training objective over one batch of token rows (B rows of S tokens, row-major ids):
//   L = L_LM + (λ/D)·Σ_{k=1..D} L_MTP^k + L_I
//   L_LM     = mean over targeted positions of −log p(t_{s+1} | t_≤s)            (cross-entropy)
//   L_MTP^k  = the same for MTP depth k predicting t_{s+k+1} (DeepSeek-V3 §2.2, λ = mtp_weight)
//   L_I      = the indexer's KL loss, Σ over layers, mean over the B·S rows (paper §2.1: Σ_t KL; the mean
//              only rescales the learning rate and keeps it independent of the batch size)
// A position is a target when it exists (s + k < S) and, if a loss mask is given (SFT: the assistant's
// tokens), when the mask marks the target token. In the dense warm-up only L_I is formed (lm: false):
// the main model is frozen there, so its losses would only cost time (the MTP layers still run: their
// own indexers warm up too).
// The indexer's inputs are detached (src/model/indexer.ts) and its KL target is detached
// (indexerKlLoss), so L_LM + L_MTP reach only the main model and L_I only the indexer, as the paper
// trains them, even though they are summed into one scalar for one backward.
import { DsvError } from '../errors.js';
import type { DeepseekV32, TrainForwardOptions, TrainForwardResult } from '../model/model.js';
import { add, div, muls } from '../tensor/ops/elementwise.js';
import { crossEntropy } from '../tensor/ops/loss.js';
import { type Tensor, fromArray } from '../tensor/tensor.js';

export class ObjectiveError extends DsvError {}

export interface ObjectiveOptions extends TrainForwardOptions {
  /** λ of the MTP loss (DeepSeek-V3: 0.3 early in pretraining, 0.1 later); default 0.3 */
  mtpWeight?: number;
  /** form the language-model (and MTP) losses; default true (false: indexer warm-up) */
  lm?: boolean;
  /** [B·S] 1 where the token is a training target (SFT); default every token */
  lossMask?: Uint8Array;
}

export interface ObjectiveResult {
  loss: Tensor;
  /** the parts as numbers (for logs): lm, per-depth mtp, indexer (null when not formed) */
  lm: number | null;
  mtp: number[];
  indexer: number | null;
  /** targeted positions of the LM loss */
  targets: number;
  forward: TrainForwardResult;
}

/** Targets [B·S] for predicting the token `ahead` positions on (−100: not a target). */
export function shiftedTargets(ids: Int32Array, B: number, S: number, ahead: number, mask?: Uint8Array): { targets: Int32Array; count: number } {
  const t = new Int32Array(B * S).fill(-100);
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let s = 0; s + ahead < S; s++) {
      const j = b * S + s + ahead;
      if (mask && !mask[j]) continue;
      t[b * S + s] = ids[j]!;
      count++;
    }
  }
  return { targets: t, count };
}

export function objective(model: DeepseekV32, ids: Int32Array, B: number, S: number, opts: ObjectiveOptions = {}): ObjectiveResult {
  const lmOn = opts.lm ?? true;
  const lambda = opts.mtpWeight ?? 0.3;
  if (!(lambda >= 0 && Number.isFinite(lambda))) throw new ObjectiveError(`objective: mtpWeight must be a finite number ≥ 0, got ${lambda}`);
  if (opts.lossMask && opts.lossMask.length !== B * S) throw new ObjectiveError(`objective: lossMask holds ${opts.lossMask.length} entries, the batch ${B * S}`);
  if (!lmOn && !opts.indexerLoss) throw new ObjectiveError('objective: with lm off the indexer loss must be on (nothing would be trained)');
  const fwd = model.trainForward(ids, B, S, opts); // MTP layers run in the warm-up too: their indexers train
  const dev = fwd.logits.device;
  const ce = (logits: Tensor, ahead: number): { loss: Tensor | null; count: number } => {
    const { targets, count } = shiftedTargets(ids, B, S, ahead, opts.lossMask);
    if (count === 0) return { loss: null, count };
    return { loss: crossEntropy(logits, fromArray(targets, [B * S], { dtype: 'i32', device: dev })), count };
  };
  const parts: Tensor[] = [];
  let lm: number | null = null;
  let targets = 0;
  const mtp: number[] = [];
  if (lmOn) {
    const l = ce(fwd.logits, 1);
    targets = l.count;
    if (l.loss) {
      parts.push(l.loss);
      lm = l.loss.item();
    }
    const D = fwd.mtpLogits.length;
    fwd.mtpLogits.forEach((lg, k) => {
      const m = ce(lg, k + 2);
      if (!m.loss) return;
      mtp.push(m.loss.item());
      if (lambda > 0) parts.push(muls(m.loss, lambda / D));
    });
  }
  let indexer: number | null = null;
  if (fwd.indexerLoss) {
    const li = div(fwd.indexerLoss, B * S);
    indexer = li.item();
    parts.push(li);
  }
  if (!parts.length) throw new ObjectiveError('objective: the batch has no target (every position masked or rows of one token)');
  const loss = parts.slice(1).reduce((a, b) => add(a, b), parts[0]!);
  return { loss, lm, mtp, indexer, targets, forward: fwd };
}
