// The training path on CUDA against the CPU: the tiny model's objective (LM + λ·MTP + indexer KL) and
// every parameter's gradient, for dense attention (pretrain / warm-up) and sparse attention (the sparse
// stage), from the same weights. The CPU's choices (top-k selections, expert routes) are replayed on
// both devices, so a near-tie decided differently by the two score kernels cannot change the function;
// the losses then agree to f32 rounding and the gradients to a relative L2 error of 1e-4 (the backward
// sums in different orders: atomics on the GPU, loops on the CPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/backend/cuda/index.js';
import { DeepseekV32 } from '../../src/model/model.js';
import { randomCheckpoint } from '../../src/model/random-weights.js';
import { mapSource } from '../../src/model/weights.js';
import { backward, noGrad } from '../../src/tensor/autograd.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { objective } from '../../src/train/objective.js';
import { tinyConfig, tokenRows } from '../train/tiny.js';
import { onGpu } from './common.js';

for (const attention of ['dense', 'sparse'] as const) {
  test(`train objective and gradients on cuda equal the cpu's (${attention} attention, indexer KL on)`, onGpu, () => {
    const cfg = tinyConfig();
    const ck = randomCheckpoint(cfg, 1);
    const ids = tokenRows(2, 12, cfg.vocabSize);
    const model = (device: string): DeepseekV32 => DeepseekV32.fromSource(cfg, mapSource(ck), { master: 'f32', device });
    const choices = noGrad(() => model('cpu').trainForward(ids, 2, 12, { attention }));
    const forced = (sel: { width: number; idx: Tensor }[]): Int32Array[] => sel.map((s) => {
      const src = s.idx.toHost() as Int32Array;
      const out = new Int32Array((src.length / s.width) * cfg.indexTopk).fill(-1);
      for (let t = 0; t < src.length / s.width; t++) for (let j = 0; j < Math.min(s.width, cfg.indexTopk); j++) out[t * cfg.indexTopk + j] = src[t * s.width + j]!;
      return out;
    });
    const routes = (r: (Tensor | null)[]): (Int32Array | null)[] => r.map((t) => (t ? (t.toHost() as Int32Array) : null));
    const run = (device: string) => {
      const m = model(device);
      const ps = m.weights.parameters();
      const r = objective(m, ids, 2, 12, {
        attention, indexerLoss: true,
        forcedTopk: forced(choices.topk), forcedRoutes: routes(choices.routes), mtpForcedTopk: forced(choices.mtpTopk), mtpForcedRoutes: routes(choices.mtpRoutes),
      });
      backward(r.loss);
      return { r, grads: new Map(ps.map(([n, p]) => [n, p.grad ? p.grad.toFloat32() : null])) };
    };
    const a = run('cpu');
    const b = run('cuda');
    for (const k of ['lm', 'indexer'] as const) assert.ok(Math.abs(a.r[k]! - b.r[k]!) <= 1e-4 * Math.abs(a.r[k]!) + 1e-6, `${k}: cpu ${a.r[k]} cuda ${b.r[k]}`);
    for (const [n, g] of a.grads) {
      const h = b.grads.get(n);
      assert.equal(h === null, g === null, `${n}: gradient on one device only`);
      if (!g || !h) continue;
      let num = 0;
      let den = 0;
      for (let i = 0; i < g.length; i++) {
        num += (g[i]! - h[i]!) ** 2;
        den += g[i]! ** 2;
      }
      assert.ok(Math.sqrt(num / Math.max(den, 1e-30)) <= 1e-4, `${n}: relative L2 error ${Math.sqrt(num / Math.max(den, 1e-30))}`);
    }
  });
}
