// Tokens picked from rows of logits where the logits are: per row r, at temperature τ_r with one uniform
// u_r ∈ [0, 1) of the sequence's own stream, with no filter (no top-k, top-p or min-p):
//   τ_r = 0  greedy: token = the first id of max z; logprob = log-softmax(z) at it (τ = 1, the model's own)
//   τ_r > 0  p_v ∝ e_v = exp(z_v/τ − max z/τ); token = the first id (id order) whose cumulative Σ e
//            exceeds u·Σ_v e_v; logprob = z_token/τ − logZ, logZ = max z/τ + log Σ_v e_v
// in f64 from f32 logits. This is the engine sampler's rule for these rows (src/engine/sampler.ts:
// distribution, drawFrom, logprobs; the CPU reference src/backend/cpu/pick.ts is bit for bit the
// sampler's). Why on the device: a decode step of 64 rows at a 129 280-token vocabulary otherwise copies
// 33 MB of logits to the host and spends 1–3 ms of host time a row on exps and the cumulative draw
// (the server's TPOT at 64 streams, sampling at τ = 1, was twice the engine's greedy one: docs/benchmarks.md).
//
// A row with a NaN logit, or with every logit −∞, has no token: −1 (logprob NaN); the caller samples it on
// the host, where the sampler names the bad logit.
//
// Across devices: a greedy token is the same bit for bit (a comparison, the same tie rule). The sums of
// e are V terms in [0, 1] that the host adds in id order and the GPU in chunks and a tree, each exp within
// an ulp of the host's: Σ e and the logprobs agree to about V·2⁻⁵² relative; a drawn token differs only
// when u·Σ e lies within that rounding of a cumulative boundary (a chance of about V·2⁻⁵² per draw;
// test/tensor/pick.test.ts checks that any difference is such a tie).
import { DsvError } from '../../errors.js';
import { noGrad } from '../autograd.js';
import { Tensor, fmtShape, fromArray } from '../tensor.js';
import { alloc } from './util.js';
import { contiguous } from './view.js';

/**
 * Per row of x f32 [R, V]: the token i32 [R] and its logprob f64 [R] (see the header; token −1 where the
 * row has none), at temperature[r] (0: greedy) with uniform u[r] (ignored when greedy). No gradient.
 */
export function pickTokens(x: Tensor, temperature: ArrayLike<number>, u: ArrayLike<number>): { token: Tensor; logprob: Tensor } {
  if (x.rank !== 2 || x.dtype !== 'f32') throw new DsvError(`pickTokens: logits must be f32 [rows, vocab], got ${x.dtype} ${fmtShape(x.shape)}`);
  const [R, V] = x.shape as [number, number];
  if (V === 0) throw new DsvError('pickTokens: the vocabulary dim is empty');
  if (temperature.length !== R || u.length !== R) throw new DsvError(`pickTokens: ${R} rows need ${R} temperatures and ${R} uniforms, got ${temperature.length} and ${u.length}`);
  for (let r = 0; r < R; r++) {
    const t = temperature[r]!;
    if (!(t >= 0) || t === Infinity) throw new DsvError(`pickTokens: temperature[${r}] must be a finite number ≥ 0, got ${t}`);
    if (t > 0 && !(u[r]! >= 0 && u[r]! < 1)) throw new DsvError(`pickTokens: u[${r}] must be in [0, 1), got ${u[r]}`);
  }
  const be = x.backend;
  if (!be.pickTokens) throw new DsvError(`pickTokens: the ${x.device} backend has no pickTokens`);
  return noGrad(() => {
    const xc = contiguous(x);
    const token = alloc(be, [R], 'i32');
    const logprob = alloc(be, [R], 'f64');
    const tau = fromArray(Float64Array.from(temperature), [R], { dtype: 'f64', device: x.device });
    const uu = fromArray(Float64Array.from({ length: R }, (_, r) => (temperature[r]! > 0 ? u[r]! : 0)), [R], { dtype: 'f64', device: x.device });
    if (R > 0) be.pickTokens!(token, logprob, xc, tau, uu);
    return { token, logprob };
  });
}
