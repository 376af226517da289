// AdamW with decoupled weight decay, step for step the arithmetic of torch.optim.AdamW
// (single-tensor path, amsgrad=False, maximize=False). For each parameter p with gradient g, at its
// t-th step:
//   p ← p · (1 − lr·wd)                                   decoupled decay, before the moment update
//   m ← lerp(m, g, 1 − β1)                                torch's lerp: m + w(g − m) for w < ½, else g − (g − m)(1 − w)
//   v ← v·β2 + ((1 − β2)·g)·g                             addcmul evaluates value·t1·t2 left to right
//   denom = sqrt(v) / sqrt(1 − β2^t) + eps
//   p ← p + (−lr/(1 − β1^t) · m) / denom                   addcdiv evaluates value·t1/t2 left to right
// Each op rounds to the state dtype as torch's scalar CPU path does; torch's vectorized lerp fuses the
// multiply-add, so f32 results may differ from torch in the last bit there (f64 follows the formula).
// Parameters without a gradient are skipped and their step count does not advance (as torch).
// Moments are kept in f64 for f64 parameters and in f32 otherwise (torch keeps the parameter's dtype;
// f32 moments for bf16 parameters only remove rounding, they do not change the algorithm).
// Updates run under noGrad through backend ops and are copied into the parameter's own storage, so
// every holder of the parameter sees them and the same code runs on any backend.
import { z } from 'zod';
import { DsvError } from '../errors.js';
import { noGrad } from '../tensor/autograd.js';
import type { DType } from '../tensor/dtype.js';
import { add, cast, div, mul, muls, sqrt, sub, adds } from '../tensor/ops/elementwise.js';
import { SafetensorsFile, saveSafetensors } from '../tensor/safetensors.js';
import { Tensor, fmtShape, full } from '../tensor/tensor.js';
import { contiguous } from '../tensor/ops/view.js';

export class OptimizerError extends DsvError {}

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** decoupled weight decay coefficient (torch default 0.01) */
  weightDecay?: number;
  /** which parameters get weight decay (default: all, as torch); e.g. skip norms and biases */
  decay?: (name: string, p: Tensor) => boolean;
}

export interface AdamWHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export interface AdamWParamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

export interface AdamWStateDict {
  hyper: AdamWHyper;
  /** every parameter name the optimizer was built with, in order */
  paramNames: string[];
  /** state of the parameters that have taken at least one step */
  state: Map<string, AdamWParamState>;
}

const FORMAT = 'dsv32.adamw/1';

export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly params: readonly [string, Tensor][];
  private readonly decays: boolean[];
  private state = new Map<string, AdamWParamState>();

  constructor(params: Tensor[] | [string, Tensor][], opts: AdamWOptions) {
    const named: [string, Tensor][] = params.map((p, i) => (p instanceof Tensor ? [String(i), p] : p));
    const seenT = new Set<Tensor>();
    const seenN = new Set<string>();
    for (const [n, p] of named) {
      if (!(p instanceof Tensor)) throw new OptimizerError(`AdamW: parameter '${n}' is not a Tensor`);
      if (seenT.has(p)) throw new OptimizerError(`AdamW: parameter '${n}' is listed twice`);
      if (seenN.has(n)) throw new OptimizerError(`AdamW: two parameters are named '${n}'`);
      if (p.dtype !== 'f32' && p.dtype !== 'f64' && p.dtype !== 'bf16' && p.dtype !== 'f16') {
        throw new OptimizerError(`AdamW: parameter '${n}' has dtype ${p.dtype}; only f32, f64, bf16 and f16 parameters can be trained`);
      }
      seenT.add(p);
      seenN.add(n);
    }
    const h = checkHyper({ lr: opts.lr, betas: opts.betas ?? [0.9, 0.999], eps: opts.eps ?? 1e-8, weightDecay: opts.weightDecay ?? 0.01 });
    this.params = named;
    this.lr = h.lr;
    this.betas = h.betas;
    this.eps = h.eps;
    this.weightDecay = h.weightDecay;
    this.decays = named.map(([n, p]) => (opts.decay ? opts.decay(n, p) : true));
  }

  step(): void {
    if (!(Number.isFinite(this.lr) && this.lr >= 0)) throw new OptimizerError(`AdamW: lr must be a finite number ≥ 0, got ${this.lr}`);
    const [b1, b2] = this.betas;
    noGrad(() => {
      this.params.forEach(([name, p], i) => {
        if (!p.grad) return;
        if (p.grad.device !== p.device || p.grad.shape.length !== p.shape.length || p.grad.shape.some((d, k) => d !== p.shape[k])) {
          throw new OptimizerError(`AdamW: gradient of '${name}' is ${fmtShape(p.grad.shape)} on ${p.grad.device}, parameter is ${fmtShape(p.shape)} on ${p.device}`);
        }
        const sd = stateDtype(p.dtype);
        let st = this.state.get(name);
        if (!st) {
          st = { step: 0, expAvg: full(p.shape, 0, { dtype: sd, device: p.device }), expAvgSq: full(p.shape, 0, { dtype: sd, device: p.device }) };
          this.state.set(name, st);
        }
        st.step += 1;
        // torch turns Python scalars into the tensor's compute type before the op; for f32 state an
        // op on f32-rounded scalars evaluated in f64 and rounded once is that same f32 operation.
        const sc = sd === 'f32' ? Math.fround : (v: number): number => v;
        const b = p.backend;
        // a transposed gradient (a linear's weight, through its transpose) is copied once for the fused step:
        // the composed ops below took ~1.2 s of a 5.7 s cpu-mid bf16 training step for its LM head's [8192, 1024]
        // on the 2-core CPU, the copy and the fused step ~0.85 s (synchronised profiles, 2026-12-07); on the GPU
        // they were ten launches a step
        const fused = b.adamwStep && sd === 'f32' && p.dtype === 'f32' && p.grad.dtype === 'f32' && [p, st.expAvg, st.expAvgSq].every((t) => t.isContiguous());
        if (fused) {
          const grad = contiguous(p.grad);
          // the same f32 operations in one pass (Backend.adamwStep; bit for bit the ops below)
          const w = 1 - b1;
          b.adamwStep!(p, grad, st.expAvg, st.expAvgSq, {
            decay: this.weightDecay !== 0 && this.decays[i] ? sc(1 - this.lr * this.weightDecay) : 1,
            lerp: Math.abs(w) < 0.5, w: sc(w), oneMinusW: sc(1 - w), b2: sc(b2), oneMinusB2: sc(1 - b2),
            bc2Sqrt: sc(Math.sqrt(1 - b2 ** st.step)), eps: sc(this.eps), negStepSize: sc(-this.lr / (1 - b1 ** st.step)),
          });
          return;
        }
        const g = cast(p.grad, sd);
        let x = cast(p, sd);
        if (this.weightDecay !== 0 && this.decays[i]) x = muls(x, sc(1 - this.lr * this.weightDecay));
        const w = 1 - b1;
        const m = st.expAvg;
        st.expAvg = Math.abs(w) < 0.5 ? add(m, muls(sub(g, m), sc(w))) : sub(g, muls(sub(g, m), sc(1 - w)));
        st.expAvgSq = add(muls(st.expAvgSq, sc(b2)), mul(muls(g, sc(1 - b2)), g));
        const bc1 = 1 - b1 ** st.step;
        const bc2Sqrt = Math.sqrt(1 - b2 ** st.step);
        const denom = adds(div(sqrt(st.expAvgSq), full([], bc2Sqrt, { dtype: sd, device: p.device })), sc(this.eps));
        const stepSize = this.lr / bc1;
        const updated = add(x, div(muls(st.expAvg, sc(-stepSize)), denom));
        p.backend.copy(p, updated);
      });
    });
  }

  zeroGrad(): void {
    for (const [, p] of this.params) p.grad = null;
  }

  /** Live view of the state (the tensors are the optimizer's own; loadStateDict copies). */
  stateDict(): AdamWStateDict {
    return {
      hyper: { lr: this.lr, betas: [...this.betas], eps: this.eps, weightDecay: this.weightDecay },
      paramNames: this.params.map(([n]) => n),
      state: new Map(this.state),
    };
  }

  /** Restore state saved by stateDict() from an optimizer over the same parameters (names and shapes). */
  loadStateDict(s: AdamWStateDict): void {
    const names = this.params.map(([n]) => n);
    const missing = names.filter((n) => !s.paramNames.includes(n));
    const extra = s.paramNames.filter((n) => !names.includes(n));
    if (missing.length || extra.length) {
      throw new OptimizerError(
        `AdamW.loadStateDict: saved state is for other parameters (not in the saved state: ${missing.join(', ') || '-'}; only in the saved state: ${extra.join(', ') || '-'})`,
      );
    }
    const byName = new Map(this.params);
    const next = new Map<string, AdamWParamState>();
    for (const [n, st] of s.state) {
      const p = byName.get(n);
      if (!p) throw new OptimizerError(`AdamW.loadStateDict: state for unknown parameter '${n}'`);
      if (!Number.isInteger(st.step) || st.step < 1) throw new OptimizerError(`AdamW.loadStateDict: '${n}' has step ${st.step}, expected an integer ≥ 1`);
      const sd = stateDtype(p.dtype);
      next.set(n, { step: st.step, expAvg: copyAs(st.expAvg, p, sd, `${n}.exp_avg`), expAvgSq: copyAs(st.expAvgSq, p, sd, `${n}.exp_avg_sq`) });
    }
    const h = checkHyper(s.hyper);
    this.lr = h.lr;
    (this as { betas: [number, number] }).betas = h.betas;
    (this as { eps: number }).eps = h.eps;
    (this as { weightDecay: number }).weightDecay = h.weightDecay;
    this.state = next;
  }

  /** Save to one safetensors file: moments as tensors (bit-exact), hyperparameters and steps as JSON metadata. */
  save(file: string): void {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    for (const [n, st] of this.state) {
      tensors.set(`${n}.exp_avg`, st.expAvg);
      tensors.set(`${n}.exp_avg_sq`, st.expAvgSq);
      steps[n] = st.step;
    }
    const s = this.stateDict();
    saveSafetensors(file, tensors, {
      format: FORMAT,
      hyper: JSON.stringify(s.hyper),
      param_names: JSON.stringify(s.paramNames),
      steps: JSON.stringify(steps),
    });
  }

  /** An AdamW over `params` restored from a file written by save() (decay filter as in opts). */
  static load(file: string, params: Tensor[] | [string, Tensor][], opts: Pick<AdamWOptions, 'decay'> = {}): AdamW {
    const f = SafetensorsFile.open(file);
    try {
      const md = f.metadata;
      if (md['format'] !== FORMAT) throw new OptimizerError(`${file}: not an AdamW state file (metadata format is ${JSON.stringify(md['format'])}, expected "${FORMAT}")`);
      const hyper = parseJson(file, md, 'hyper', hyperSchema);
      const paramNames = parseJson(file, md, 'param_names', z.array(z.string()));
      const steps = parseJson(file, md, 'steps', z.record(z.string(), z.number().int().positive()));
      const state = new Map<string, AdamWParamState>();
      for (const [n, step] of Object.entries(steps)) {
        for (const k of ['exp_avg', 'exp_avg_sq']) {
          if (!f.has(`${n}.${k}`)) throw new OptimizerError(`${file}: parameter '${n}' has a step count but no tensor '${n}.${k}'`);
        }
        state.set(n, { step, expAvg: f.tensor(`${n}.exp_avg`), expAvgSq: f.tensor(`${n}.exp_avg_sq`) });
      }
      const opt = new AdamW(params, { ...hyper, decay: opts.decay });
      opt.loadStateDict({ hyper, paramNames, state });
      return opt;
    } finally {
      f.close();
    }
  }
}

function stateDtype(d: DType): DType {
  return d === 'f64' ? 'f64' : 'f32';
}

function copyAs(src: Tensor, like: Tensor, dtype: DType, what: string): Tensor {
  if (src.shape.length !== like.shape.length || src.shape.some((d, i) => d !== like.shape[i])) {
    throw new OptimizerError(`AdamW.loadStateDict: '${what}' has shape ${fmtShape(src.shape)}, parameter is ${fmtShape(like.shape)}`);
  }
  if (src.dtype !== dtype) throw new OptimizerError(`AdamW.loadStateDict: '${what}' is ${src.dtype}, expected ${dtype} for a ${like.dtype} parameter`);
  const out = full(like.shape, 0, { dtype, device: like.device });
  const s = src.device === like.device ? src : new Tensor(like.backend.fromHost(src.toHost(), src.dtype), src.shape);
  out.backend.copy(out, s);
  return out;
}

function checkHyper(h: AdamWHyper): AdamWHyper {
  const bad = (what: string, v: unknown): never => {
    throw new OptimizerError(`AdamW: ${what}, got ${JSON.stringify(v)}`);
  };
  if (typeof h.lr !== 'number' || !Number.isFinite(h.lr) || h.lr < 0) bad('lr must be a finite number ≥ 0', h.lr);
  if (!Array.isArray(h.betas) || h.betas.length !== 2 || h.betas.some((b) => typeof b !== 'number' || !(b >= 0 && b < 1))) bad('betas must be two numbers in [0, 1)', h.betas);
  if (typeof h.eps !== 'number' || !(h.eps >= 0) || !Number.isFinite(h.eps)) bad('eps must be a finite number ≥ 0', h.eps);
  if (typeof h.weightDecay !== 'number' || !(h.weightDecay >= 0) || !Number.isFinite(h.weightDecay)) bad('weightDecay must be a finite number ≥ 0', h.weightDecay);
  return { lr: h.lr, betas: [h.betas[0], h.betas[1]], eps: h.eps, weightDecay: h.weightDecay };
}

const hyperSchema = z.object({ lr: z.number(), betas: z.tuple([z.number(), z.number()]), eps: z.number(), weightDecay: z.number() });

function parseJson<T>(file: string, md: Record<string, string>, key: string, schema: z.ZodType<T>): T {
  const raw = md[key];
  if (raw === undefined) throw new OptimizerError(`${file}: metadata '${key}' is missing`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new OptimizerError(`${file}: metadata '${key}' is not JSON (${(e as Error).message})`, { cause: e });
  }
  const r = schema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new OptimizerError(`${file}: metadata '${key}' is malformed (${i.path.join('.') || 'value'}: ${i.message})`);
  }
  return r.data;
}
