// The fused AdamW step on the GPU (kernels/adamw.cu, CudaBackend.adamwStep) against the CPU backend's
// adamwStep, which is bit for bit the op-by-op f32 update (test/train/optim.test.ts). The kernel rounds
// every operation once, as the CPU does, so the two must agree BIT FOR BIT: p, exp_avg and exp_avg_sq
// are compared as Uint32 words after every step, at awkward sizes (1, 3, 1023, 4097, 2^20 + 5), for both
// lerp branches, with and without weight decay, and at element offsets that take each of the kernel's
// paths (all aligned: float4 only; all at offset 1: a 3-element scalar head, then float4; offsets that
// differ mod 4: scalar throughout). The storages are larger than the views and compared whole, so a
// write outside the view shows up as a difference too. Then AdamW.step() on cuda parameters must give
// the CPU's parameters and state after 3 steps. The GPU suites skip with the driver's reason where there
// is none; the binding check below runs everywhere.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as T from '../../src/tensor/index.js';
import { AdamW } from '../../src/train/optim.js';
import { ADAMW_SIG } from '../../src/backend/cuda/cuda-backend.js';
import { DsvError } from '../../src/errors.js';
import { onGpu, cuda, nextSeed } from './common.js';

const f = Math.fround;

/** The scalars AdamW.step passes to Backend.adamwStep (src/train/optim.ts), for an f32 parameter. */
function scalars(lr: number, [b1, b2]: [number, number], eps: number, wd: number, step: number): T.AdamWScalars {
  const w = 1 - b1;
  return {
    decay: wd !== 0 ? f(1 - lr * wd) : 1,
    lerp: Math.abs(w) < 0.5, w: f(w), oneMinusW: f(1 - w), b2: f(b2), oneMinusB2: f(1 - b2),
    bc2Sqrt: f(Math.sqrt(1 - b2 ** step)), eps: f(eps), negStepSize: f(-lr / (1 - b1 ** step)),
  };
}

/** `a` and `b` word for word; on failure the count, the first differing index and both values. */
function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let first = -1;
  let bad = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad) {
    const hex = (u: number): string => `0x${u.toString(16).padStart(8, '0')}`;
    assert.fail(`${what}: ${bad} of ${a.length} words differ; first at index ${first}: cuda ${got[first]} (${hex(a[first]!)}), cpu ${want[first]} (${hex(b[first]!)})`);
  }
}

/**
 * Gradients as training sees them, and the cases that break a sloppy kernel: mostly ~1e-2, 1% ~1e4 (a
 * dropped rounding of g·(1 − β₂)·g shows), exact zeros and −0, |g| up to 1e-19 (g·(1 − β₂)·g subnormal
 * or 0) and up to 1e-37 (g − m and (g − m)·w subnormal near m = 0): flush-to-zero shows.
 */
function gradients(n: number, rng: T.Rng): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const r = rng.uniform();
    const s = rng.uniform() - 0.5;
    if (r < 0.01) return s * 2e4;
    if (r < 0.02) return 0;
    if (r < 0.03) return -0;
    if (r < 0.04) return s * 2e-19;
    if (r < 0.05) return s * 2e-37;
    return s * 2e-2;
  });
}

describe('fused AdamW step: cuda against the cpu backend, bit for bit', onGpu, () => {
  const SIZES = [1, 3, 1023, 4097, (1 << 20) + 5];
  // element offsets of p, g, m, v inside storages of n + 8 elements
  const LAYOUTS: [string, [number, number, number, number]][] = [
    ['offset 0 (float4)', [0, 0, 0, 0]],
    ['offset 1 (3-element head, then float4)', [1, 1, 1, 1]],
    ['offsets 1, 2, 3, 5 (scalar)', [1, 2, 3, 5]],
  ];
  const HYPER: [string, [number, number], number][] = [
    ['lerp, no decay', [0.9, 0.95], 0],
    ['lerp, decay 0.1', [0.9, 0.95], 0.1],
    ['g − (g − m)·(1 − w), no decay', [0.3, 0.999], 0],
    ['g − (g − m)·(1 − w), decay 0.1', [0.3, 0.999], 0.1],
  ];
  const STEPS = 3;

  for (const n of SIZES) {
    test(`n = ${n}: every layout and hyperparameter set, ${STEPS} steps`, () => {
      const seed = nextSeed();
      const rng = new T.Rng(seed);
      const cpu = T.getBackend('cpu');
      const gpu = cuda();
      for (const [layout, offs] of LAYOUTS) {
        for (const [hname, betas, wd] of HYPER) {
          const what = `n ${n}, ${layout}, ${hname} (seed ${seed})`;
          const total = n + 8;
          const p0 = Float32Array.from({ length: total }, () => (rng.uniform() - 0.5) * 2);
          // m and v are 0 at a tenth of the elements, as in a fresh state (subnormal m' and v' survive there)
          const fresh = (x: number): number => (rng.uniform() < 0.1 ? 0 : x);
          const m0 = Float32Array.from({ length: total }, () => fresh((rng.uniform() - 0.5) * 2e-2));
          const v0 = Float32Array.from({ length: total }, () => fresh(rng.uniform() * 1e-4));
          const make = (host: Float32Array, dev: string): T.Tensor => T.fromBits(host.slice(), 'f32', [total], { device: dev });
          const [pc, mc, vc] = [p0, m0, v0].map((a) => make(a, 'cpu'));
          const [pg, mg, vg] = [p0, m0, v0].map((a) => make(a, 'cuda'));
          const view = (t: T.Tensor, k: number): T.Tensor => T.narrow(t, 0, offs[k]!, n);
          for (let step = 1; step <= STEPS; step++) {
            const g = new Float32Array(total);
            g.set(gradients(n, rng), offs[1]!);
            const gc = make(g, 'cpu');
            const gg = make(g, 'cuda');
            const h = scalars(3e-3, betas, 1e-8, wd, step);
            cpu.adamwStep!(view(pc!, 0), view(gc, 1), view(mc!, 2), view(vc!, 3), h);
            gpu.adamwStep(view(pg!, 0), view(gg, 1), view(mg!, 2), view(vg!, 3), h);
            assertSameBits(pg!.toHost() as Float32Array, pc!.toHost() as Float32Array, `${what}, step ${step}: param`);
            assertSameBits(mg!.toHost() as Float32Array, mc!.toHost() as Float32Array, `${what}, step ${step}: exp_avg`);
            assertSameBits(vg!.toHost() as Float32Array, vc!.toHost() as Float32Array, `${what}, step ${step}: exp_avg_sq`);
          }
        }
      }
    });
  }

  test('AdamW.step() on cuda parameters gives the cpu parameters and state after 3 steps (through the fused kernel)', () => {
    const seed = nextSeed();
    const rng = new T.Rng(seed);
    const shapes: [string, number[]][] = [['w', [3, 341]], ['bias', [1]], ['emb', [4097]], ['big', [257, 1021]]];
    const init = shapes.map(([, s]) => Float32Array.from({ length: s.reduce((a, d) => a * d, 1) }, () => (rng.uniform() - 0.5) * 2));
    const grads = Array.from({ length: 3 }, () => shapes.map(([, s]) => gradients(s.reduce((a, d) => a * d, 1), rng)));
    const gpu = cuda();
    const fused = gpu.adamwStep.bind(gpu);
    let calls = 0;
    gpu.adamwStep = (...a: Parameters<typeof fused>): void => {
      calls++;
      fused(...a);
    };
    try {
      const run = (dev: string): AdamW => {
        const ps = shapes.map(([name, s], i): [string, T.Tensor] => [name, T.fromBits(init[i]!.slice(), 'f32', s, { device: dev })]);
        const opt = new AdamW(ps, { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, decay: (name) => name !== 'bias' });
        for (const gs of grads) {
          ps.forEach(([, p], i) => (p.grad = T.fromBits(gs[i]!.slice(), 'f32', p.shape, { device: dev })));
          opt.step();
        }
        return opt;
      };
      const oc = run('cpu');
      const og = run('cuda');
      assert.equal(calls, 3 * shapes.length, 'every cuda parameter update went through CudaBackend.adamwStep');
      const sc = oc.stateDict().state;
      const sg = og.stateDict().state;
      shapes.forEach(([name], i) => {
        assertSameBits(og.params[i]![1].toHost() as Float32Array, oc.params[i]![1].toHost() as Float32Array, `${name} (seed ${seed}): param`);
        assertSameBits(sg.get(name)!.expAvg.toHost() as Float32Array, sc.get(name)!.expAvg.toHost() as Float32Array, `${name} (seed ${seed}): exp_avg`);
        assertSameBits(sg.get(name)!.expAvgSq.toHost() as Float32Array, sc.get(name)!.expAvgSq.toHost() as Float32Array, `${name} (seed ${seed}): exp_avg_sq`);
      });
    } finally {
      delete (gpu as { adamwStep?: unknown }).adamwStep;  // back to the prototype's method
    }
  });

  test('adamwStep rejects a non-f32 or non-contiguous operand with a DsvError naming it', () => {
    const gpu = cuda();
    const h = scalars(1e-3, [0.9, 0.999], 1e-8, 0, 1);
    const x = (dtype: T.DType = 'f32'): T.Tensor => T.full([4, 6], 0, { dtype, device: 'cuda' });
    assert.throws(() => gpu.adamwStep(x(), x('bf16'), x(), x(), h), (e: unknown) => e instanceof DsvError && /gradient is bf16/.test((e as Error).message));
    assert.throws(() => gpu.adamwStep(x(), x(), T.transpose(x()), x(), h), (e: unknown) => e instanceof DsvError && /exp_avg is not contiguous/.test((e as Error).message));
    assert.throws(() => gpu.adamwStep(x(), x(), x(), T.full([5], 0, { device: 'cuda' }), h), (e: unknown) => e instanceof DsvError && /exp_avg_sq has 5 elements, the parameter 24/.test((e as Error).message));
  });
});

test('the adamw_f32 binding matches the kernel\'s declaration in kernels/adamw.cu (no GPU needed)', () => {
  const src = readFileSync(new URL('../../../kernels/adamw.cu', import.meta.url), 'utf8');
  const decl = /extern "C" __global__ void(?: __launch_bounds__\([^)]*\))? adamw_f32\(([^)]*)\)/.exec(src);
  assert.ok(decl, 'kernels/adamw.cu declares adamw_f32');
  const kind = (param: string): string => {
    const t = param.trim().replace(/\s+\w+$/, '');
    if (t.includes('*')) return 'p';
    return ({ int64_t: 'i64', int: 'i32', float: 'f32', double: 'f64' } as Record<string, string>)[t] ?? `? ${t}`;
  };
  assert.deepEqual(decl[1]!.split(',').map(kind), [...ADAMW_SIG]);
});
