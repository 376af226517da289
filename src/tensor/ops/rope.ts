// Rotary position embedding in both layouts used by DeepSeek-V3.2 (model.md §3, §4, §7):
//   interleaved (MLA q_pe/k_pe): pairs (x[2i], x[2i+1]) are the complex number x[2i] + j·x[2i+1];
//   half-split ("NeoX", the indexer): pairs (x[i], x[i + D/2]).
// Each pair is multiplied by e^{j·θ(t,i)}: o0 = x0·cos − x1·sin, o1 = x1·cos + x0·sin. The rotation is
// orthogonal, so its backward is the rotation by −θ (the backend's `inverse` flag).
import { noGrad, record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape, fromArray } from '../tensor.js';
import { alloc, requireFloat, sameDevice } from './util.js';
import { cast, contiguous } from './view.js';

/**
 * cos/sin tables [S, D/2] (f32) for the given positions and per-pair frequencies.
 *
 * Rounding follows the reference (`precompute_freqs_cis`): the angle is computed in f32 as
 * `torch.outer(t.float(), freqs.float())`, i.e. fround(fround(pos)·fround(freq)), and `torch.polar`
 * takes cos/sin of that f32 angle. Here cos/sin of the f32 angle are evaluated in double and rounded
 * once to f32 (correctly rounded in all but astronomically rare cases); a libm's f32 cosf may differ from
 * that by at most 1 ulp, which is far below the bf16/f32 noise the fixtures tolerate.
 */
export function ropeTables(
  positions: readonly number[],
  freqs: Float64Array | readonly number[],
  device?: string,
): { cos: Tensor; sin: Tensor } {
  const S = positions.length;
  const H = freqs.length;
  const c = new Float32Array(S * H);
  const s = new Float32Array(S * H);
  for (let t = 0; t < S; t++) {
    const p = Math.fround(positions[t]!);
    for (let i = 0; i < H; i++) {
      const ang = Math.fround(p * Math.fround(freqs[i]!));
      c[t * H + i] = Math.cos(ang);
      s[t * H + i] = Math.sin(ang);
    }
  }
  const opts = { dtype: 'f32' as const, ...(device ? { device } : {}) };
  return { cos: fromArray(c, [S, H], opts), sin: fromArray(s, [S, H], opts) };
}

function rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean, inverse: boolean): Tensor {
  const xc = noGrad(() => contiguous(x)); // the node recorded below links to x itself
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.rope(out, xc, cos, sin, interleaved, inverse);
  return record(out, 'rope', [x], (g) => [rotate(g, cos, sin, interleaved, !inverse)]);
}

/**
 * Rotate x [B, S, H, D] (any strides) by the tables cos, sin [S, D/2] (position t of x uses row t).
 * interleaved = true: pairs (2i, 2i+1); false: pairs (i, i + D/2). Output has x's dtype; the tables
 * are not differentiable.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean): Tensor {
  requireFloat('rope', x);
  sameDevice('rope', x, cos, sin);
  if (x.rank !== 4) throw new ShapeError(`rope: input must be [B, S, H, D], got ${fmtShape(x.shape)}`);
  const [, S, , D] = x.shape as [number, number, number, number];
  if (D % 2 !== 0) throw new ShapeError(`rope: head dim must be even, got ${fmtShape(x.shape)}`);
  for (const [name, t] of [['cos', cos], ['sin', sin]] as const) {
    if (t.rank !== 2 || t.shape[0] !== S || t.shape[1] !== D / 2) {
      throw new ShapeError(`rope: ${name} table ${fmtShape(t.shape)} does not fit input ${fmtShape(x.shape)} (expected [${S}, ${D / 2}])`);
    }
  }
  const c = contiguous(cast(cos, 'f32'));
  const s = contiguous(cast(sin, 'f32'));
  return rotate(x, c, s, interleaved, false);
}
