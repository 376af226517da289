// Verification of MTP draft tokens (speculative decoding).
//
// A sequence whose last token x sits at position L−1 proposed drafts d_1..d_k; the step fed
// [x, d_1, .., d_k] at positions L−1 .. L−1+k, and row i's logits are the target distribution p_i of the
// token at position L+i. The drafts are accepted left to right:
//   greedy (τ = 0): d_{i+1} is accepted iff it is the argmax of row i (ties → lowest id); at the first
//     mismatch the argmax itself is emitted instead. Outputs are exactly those of plain greedy decoding.
//   sampling: d_{i+1} was drawn from q_i (the MTP's distribution under the same filters); it is accepted
//     with probability min(1, p_i(d)/q_i(d)); on rejection the token is drawn from the residual
//     norm(max(0, p_i − q_i)) and verification stops. This is the standard speculative-sampling rule
//     (Leviathan et al. 2023; Chen et al. 2023): each emitted token is distributed exactly as p_i, so the
//     output distribution is that of non-speculative sampling with the same filters.
// If all k are accepted, row k's distribution gives one more ("bonus") token. Either way a step emits
// between 1 and k + 1 tokens, and the cache holds valid keys for x and the accepted drafts only.
import type { Rng } from '../tensor/random.js';
import { Distribution, type FilterParams, distribution, drawFrom } from './sampler.js';

export interface Verified {
  /** emitted tokens, in order: the accepted drafts, then the correction or bonus token */
  tokens: number[];
  /** the target distribution (kept set K) of each emitted token's row: its sampling mask */
  dists: Distribution[];
  accepted: number;
}

/** q as dense probabilities over the vocabulary */
function dense(d: Distribution): Float64Array {
  const out = new Float64Array(d.vocab);
  for (let j = 0; j < d.size; j++) out[d.idAt(j)] = d.weights[j]! / d.total;
  return out;
}

/**
 * rows(i): the f32 logits of verification row i (0..k); drafts with their proposal distributions
 * (null under greedy).
 */
export function verifyDrafts(rows: (i: number) => ArrayLike<number>, drafts: readonly number[], draftDists: readonly (Distribution | null)[], params: FilterParams, rng: Rng | null): Verified {
  const out: number[] = [];
  const dists: Distribution[] = [];
  for (let i = 0; i < drafts.length; i++) {
    const p = distribution(rows(i), params);
    dists.push(p);
    const d = drafts[i]!;
    if (params.temperature === 0) {
      out.push(p.ids[0]!);
      if (p.ids[0] !== d) return { tokens: out, dists, accepted: i };
      continue;
    }
    const q = dense(draftDists[i]!);
    const pd = p.prob(d);
    const qd = q[d]!;
    if (rng!.uniform() * qd < pd) {
      out.push(d);
      continue;
    }
    // residual max(0, p − q) over p's support (outside it p = 0, so the residual is 0 there too)
    const w = new Float64Array(p.size);
    let s = 0;
    for (let j = 0; j < p.size; j++) s += w[j] = Math.max(0, p.weights[j]! / p.total - q[p.idAt(j)]!);
    // s = 0 only when p ≤ q everywhere, i.e. p = q, where rejection has probability 0; fall back to p
    const residual = s > 0 ? new Distribution(p.vocab, p.full ? null : p.ids, w, s, p.logZ, p.tau) : p;
    out.push(drawFrom(residual, rng!.uniform()));
    return { tokens: out, dists, accepted: i };
  }
  const last = distribution(rows(drafts.length), params);
  dists.push(last);
  out.push(params.temperature === 0 ? last.ids[0]! : drawFrom(last, rng!.uniform()));
  return { tokens: out, dists, accepted: drafts.length };
}
