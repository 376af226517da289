// AdamW's update fused into one loop for the CPU backend (Backend.adamwStep). Each line is one op of the
// op-by-op update in src/train/optim.ts, in the same order: an f32 op is the f64 operation on f32 values
// rounded once to f32 (exact for + − × ÷ and √: f64 has more than 2·24 + 2 bits), which is what each
// tensor op computes and stores. So the result is bit for bit the op-by-op one (test/train/optim.test.ts
// checks both against a float32 reimplementation of torch.optim.AdamW), without allocating ~10 tensors
// per parameter: on the CPU those were about 40% of a training step (docs/benchmarks.md).
import type { AdamWScalars, View } from '../../tensor/backend.js';
import { dataOf } from './strided.js';

const f = Math.fround;

export function adamwStepCpu(p: View, g: View, m: View, v: View, h: AdamWScalars): void {
  const P = dataOf(p) as Float32Array;
  const G = dataOf(g) as Float32Array;
  const M = dataOf(m) as Float32Array;
  const V = dataOf(v) as Float32Array;
  const n = p.shape.reduce((a, d) => a * d, 1);
  const [po, go, mo, vo] = [p.offset, g.offset, m.offset, v.offset];
  const { decay, lerp, w, oneMinusW, b2, oneMinusB2, bc2Sqrt, eps, negStepSize } = h;
  for (let i = 0; i < n; i++) {
    const gi = G[go + i]!;
    const x = decay === 1 ? P[po + i]! : f(P[po + i]! * decay);
    const d = f(gi - M[mo + i]!);
    const mi = lerp ? f(M[mo + i]! + f(d * w)) : f(gi - f(d * oneMinusW));
    const vi = f(f(V[vo + i]! * b2) + f(f(gi * oneMinusB2) * gi));
    M[mo + i] = mi;
    V[vo + i] = vi;
    const denom = f(f(f(Math.sqrt(vi)) / bc2Sqrt) + eps);
    P[po + i] = f(x + f(f(mi * negStepSize) / denom));
  }
}
