// Finite-difference gradient check in float64. The output is contracted with a fixed random
// cotangent (so non-scalar outputs test every output element); analytic gradients from backward()
// must match central differences (f(x+h) − f(x−h)) / 2h for every input element.
import { backward, noGrad } from './autograd.js';
import { Rng } from './random.js';
import { Tensor, fromArray, fmtShape } from './tensor.js';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsErr: number;
  /** first mismatch, for the assertion message */
  detail?: string;
}

export function gradcheck(f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-4;
  for (const x of inputs) {
    if (x.dtype !== 'f64') throw new Error(`gradcheck: inputs must be f64, got ${x.dtype} for ${fmtShape(x.shape)}`);
  }
  const host = inputs.map((x) => x.toFloat64());
  const device = inputs[0]?.device ?? 'cpu';
  const leaves = (vals: Float64Array[], grad: boolean[]): Tensor[] =>
    vals.map((v, i) => fromArray(v, inputs[i]!.shape, { dtype: 'f64', device, requiresGrad: grad[i] ?? false }));

  const y0 = noGrad(() => f(...leaves(host, [])));
  const rng = new Rng(opts.seed ?? 1234);
  const cot = new Float64Array(y0.numel);
  for (let i = 0; i < cot.length; i++) cot[i] = rng.uniform() * 2 - 1;
  const contract = (y: Tensor): number => {
    const v = y.toFloat64();
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i]! * cot[i]!;
    return s;
  };

  const xs = leaves(host, inputs.map((x) => x.requiresGrad || true));
  const y = f(...xs);
  if (!y.requiresGrad) return { ok: false, maxAbsErr: Infinity, detail: 'output does not require grad' };
  backward(y, fromArray(cot, y.shape, { dtype: 'f64', device }));

  let maxAbsErr = 0;
  for (let i = 0; i < inputs.length; i++) {
    if (!inputs[i]!.requiresGrad) continue;
    const analytic = xs[i]!.grad ? xs[i]!.grad!.toFloat64() : new Float64Array(host[i]!.length);
    for (let j = 0; j < host[i]!.length; j++) {
      const plus = host.map((h) => h.slice());
      const minus = host.map((h) => h.slice());
      plus[i]![j]! += eps;
      minus[i]![j]! -= eps;
      const fp = noGrad(() => contract(f(...leaves(plus, []))));
      const fm = noGrad(() => contract(f(...leaves(minus, []))));
      const numeric = (fp - fm) / (2 * eps);
      const err = Math.abs(numeric - analytic[j]!);
      maxAbsErr = Math.max(maxAbsErr, err);
      if (err > atol + rtol * Math.abs(numeric)) {
        return { ok: false, maxAbsErr, detail: `input ${i} ${fmtShape(inputs[i]!.shape)} element ${j}: analytic ${analytic[j]} vs numeric ${numeric}` };
      }
    }
  }
  return { ok: true, maxAbsErr };
}
