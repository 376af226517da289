// Greedy decoding's pick from rows of logits: per row the token with the largest logit (ties → the lowest
// id) and its log-probability under the model's own distribution (τ = 1):
//   token = argmin { v : z_v = max z },   logprob = z_token − logZ,   logZ = max z + log Σ_v exp(z_v − max z)
// in f64 from f32 logits. This is the engine sampler's greedy rule (src/engine/sampler.ts runs the same
// rowArgmax and logPartition: src/backend/cpu/greedy.ts, the CPU reference), moved where the logits are: a
// decode step of 64 rows at a 32 000-token vocabulary otherwise copies 8 MB of logits to the host and
// spends two host passes over each row before the next step can start.
//
// A row with a NaN logit, or with every logit −∞, has no greedy token: its token is −1 (logprob NaN), and
// the caller samples that row on the host, where the sampler names the bad logit.
//
// Across devices: the token is the same bit for bit (a comparison, same tie rule). The log-partition is a
// sum of V terms in [0, 1], which the host adds in id order and the GPU in a tree, and whose exp each
// device rounds within an ulp: the logprobs agree to V·2⁻⁵² in absolute terms (test/tensor/greedy.test.ts).
import { DsvError } from '../../errors.js';
import { noGrad } from '../autograd.js';
import { Tensor, fmtShape } from '../tensor.js';
import { alloc } from './util.js';
import { contiguous } from './view.js';

/**
 * Per row of x f32 [R, V]: the greedy token i32 [R] and its logprob f64 [R] (see the header; token −1 where
 * the row has none). No gradient: decoding, not training.
 */
export function greedyPick(x: Tensor): { token: Tensor; logprob: Tensor } {
  if (x.rank !== 2 || x.dtype !== 'f32') throw new DsvError(`greedyPick: logits must be f32 [rows, vocab], got ${x.dtype} ${fmtShape(x.shape)}`);
  const [R, V] = x.shape as [number, number];
  if (V === 0) throw new DsvError('greedyPick: the vocabulary dim is empty');
  const be = x.backend;
  if (!be.greedyPick) throw new DsvError(`greedyPick: the ${x.device} backend has no greedyPick`);
  return noGrad(() => {
    const xc = contiguous(x);
    const token = alloc(be, [R], 'i32');
    const logprob = alloc(be, [R], 'f64');
    if (R > 0) be.greedyPick!(token, logprob, xc);
    return { token, logprob };
  });
}
