// Tokens picked from rows of logits where the logits are: per row r, at temperature τ_r with one uniform
// u_r ∈ [0, 1) of the sequence's own stream, and the row's filters (top-k, top-p, min-p; any may be off):
//   τ_r = 0  greedy: token = the first id of max z; logprob = log-softmax(z) at it (τ = 1, the model's
//            own); the filters do not apply (K = {token})
//   τ_r > 0  e_v = exp(z_v/τ − max z/τ); K = the kept set of the filters (every id when none is on; the
//            rule: src/engine/sampler.ts's header); token = the first id of K (id order) whose cumulative
//            Σ e exceeds u·Σ_K e; logprob = z_token/τ − logZ over the whole vocabulary,
//            logZ = max z/τ + log Σ_v e_v
// in f64 from f32 logits, and on request K itself as a bit mask (bit v mod 32 of word ⌊v/32⌋ of the
// row's ⌈V/32⌉ i32 words) and logZ (so z_v/τ − logZ is any id's logprob: the engine's top logprobs).
// This is the engine sampler's rule (src/engine/sampler.ts: distribution, drawFrom, logprobs; the CPU
// reference src/backend/cpu/pick.ts is bit for bit the sampler's). Why on the device: a decode step of
// 64 rows at a 129 280-token vocabulary otherwise copies 33 MB of logits to the host and spends 1–3 ms
// of host time a row on exps and the cumulative draw (the server's TPOT at 64 streams, sampling at
// τ = 1, was twice the engine's greedy one; at top-p 0.95, 109 ms a step against 1 ms: docs/benchmarks.md).
//
// A row with a NaN logit, or with every logit −∞, has no token: −1 (logprob NaN); the caller samples it on
// the host, where the sampler names the bad logit.
//
// Across devices: a greedy token is the same bit for bit (a comparison, the same tie rule). The sums of
// e are V terms in [0, 1] that the host adds in id order and the GPU in chunks and a tree, each exp within
// an ulp of the host's: Σ e and the logprobs agree to about V·2⁻⁵² relative; a drawn token differs only
// when u·Σ e lies within that rounding of a cumulative boundary (a chance of about V·2⁻⁵² per draw). K's
// edges are sums and comparisons too: min-p compares e_v with min_p, top-p the prefix's mass with
// top_p·Σ (summed in other orders on the GPU), and the GPU orders ids by z where the host orders by e
// (the same order but where two logits' e round to one double); K differs only where one of those lies
// within rounding of its threshold (test/tensor/pick.test.ts checks that any difference is such a tie).
import { DsvError } from '../../errors.js';
import { noGrad } from '../autograd.js';
import { Tensor, fmtShape, fromArray } from '../tensor.js';
import { alloc } from './util.js';
import { contiguous } from './view.js';

/** Per-row filters (any may be omitted: off for every row); disabled per row: topK ≤ 0 or ≥ V, topP ≥ 1, minP ≤ 0. */
export interface PickFilters {
  topK?: ArrayLike<number>;
  topP?: ArrayLike<number>;
  minP?: ArrayLike<number>;
}

/**
 * Per row of x f32 [R, V]: the token i32 [R] and its logprob f64 [R] (see the header; token −1 where the
 * row has none), at temperature[r] (0: greedy) with uniform u[r] (ignored when greedy) and the row's
 * filters; with `mask`, K as bits i32 [R, ⌈V/32⌉] (a row without a token: no bit); with `logZ`, the
 * log-partition f64 [R] (NaN where no token). No gradient.
 */
export function pickTokens(x: Tensor, temperature: ArrayLike<number>, u: ArrayLike<number>, opts: { filters?: PickFilters; mask?: boolean; logZ?: boolean } = {}): { token: Tensor; logprob: Tensor; mask?: Tensor; logZ?: Tensor } {
  if (x.rank !== 2 || x.dtype !== 'f32') throw new DsvError(`pickTokens: logits must be f32 [rows, vocab], got ${x.dtype} ${fmtShape(x.shape)}`);
  const [R, V] = x.shape as [number, number];
  if (V === 0) throw new DsvError('pickTokens: the vocabulary dim is empty');
  if (temperature.length !== R || u.length !== R) throw new DsvError(`pickTokens: ${R} rows need ${R} temperatures and ${R} uniforms, got ${temperature.length} and ${u.length}`);
  for (let r = 0; r < R; r++) {
    const t = temperature[r]!;
    if (!(t >= 0) || t === Infinity) throw new DsvError(`pickTokens: temperature[${r}] must be a finite number ≥ 0, got ${t}`);
    if (t > 0 && !(u[r]! >= 0 && u[r]! < 1)) throw new DsvError(`pickTokens: u[${r}] must be in [0, 1), got ${u[r]}`);
  }
  const f = opts.filters ?? {};
  const column = (name: string, a: ArrayLike<number> | undefined, off: number, ok: (v: number) => boolean, want: string): Float64Array => {
    if (a && a.length !== R) throw new DsvError(`pickTokens: ${R} rows need ${R} values of ${name}, got ${a.length}`);
    const out = new Float64Array(R).fill(off);
    for (let r = 0; a && r < R; r++) {
      if (!ok(a[r]!)) throw new DsvError(`pickTokens: ${name}[${r}] must be ${want}, got ${a[r]}`);
      out[r] = a[r]!;
    }
    return out;
  };
  const topK = column('topK', f.topK, 0, (v) => Number.isInteger(v) && v >= -1, 'an integer ≥ −1 (≤ 0: off)');
  const topP = column('topP', f.topP, 1, (v) => v > 0 && v <= 1, 'in (0, 1] (1: off)');
  const minP = column('minP', f.minP, 0, (v) => v >= 0 && v <= 1, 'in [0, 1] (0: off)');
  const filtered = f.topK !== undefined || f.topP !== undefined || f.minP !== undefined;
  const be = x.backend;
  if (!be.pickTokens) throw new DsvError(`pickTokens: the ${x.device} backend has no pickTokens`);
  return noGrad(() => {
    const xc = contiguous(x);
    const token = alloc(be, [R], 'i32');
    const logprob = alloc(be, [R], 'f64');
    const mask = opts.mask ? alloc(be, [R, Math.ceil(V / 32)], 'i32') : undefined;
    const logZ = opts.logZ ? alloc(be, [R], 'f64') : undefined;
    const dev = { device: x.device };
    const tau = fromArray(Float64Array.from(temperature), [R], { dtype: 'f64', ...dev });
    const uu = fromArray(Float64Array.from({ length: R }, (_, r) => (temperature[r]! > 0 ? u[r]! : 0)), [R], { dtype: 'f64', ...dev });
    // top-k clamped to V (k ≥ V keeps every id, as k ≤ 0 does), so the device reads it as an i32
    const filters = filtered
      ? { topK: fromArray(Int32Array.from(topK, (k) => (k > 0 && k < V ? k : 0)), [R], { dtype: 'i32', ...dev }), topP: fromArray(topP, [R], { dtype: 'f64', ...dev }), minP: fromArray(minP, [R], { dtype: 'f64', ...dev }) }
      : null;
    if (R > 0) be.pickTokens!(token, logprob, xc, tau, uu, filters, mask ?? null, logZ ?? null);
    return { token, logprob, ...(mask ? { mask } : {}), ...(logZ ? { logZ } : {}) };
  });
}

/** The kept ids (ascending) of row r of pickTokens' mask words (host i32 [R, ⌈V/32⌉]); zero words are skipped. */
export function keptIds(words: Int32Array, r: number, V: number): Int32Array {
  const W = Math.ceil(V / 32);
  const row = words.subarray(r * W, (r + 1) * W);
  let n = 0;
  for (let w = 0; w < W; w++) {
    // popcount of the word
    let x = row[w]! - ((row[w]! >>> 1) & 0x55555555);
    x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
    n += (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
  }
  const ids = new Int32Array(n);
  for (let w = 0, j = 0; w < W; w++) {
    for (let x = row[w]! >>> 0; x !== 0; x &= x - 1) ids[j++] = 32 * w + (31 - Math.clz32(x & -x));
  }
  return ids;
}
