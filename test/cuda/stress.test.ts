// Repetition hunt for intermittent CUDA results: the ops that once failed a run in several (layerNorm
// bf16, RMSNorm, a bf16 bmm with a transposed operand) many times over with fresh inputs, under
// allocation and garbage-collection pressure (each iteration frees and reallocates every device buffer,
// and host garbage is churned so V8 moves and collects objects between launches). A failure carries the
// diagnosis of `both` (inputs intact on the device? does a re-run agree?). DSV32_CUDA_STRESS sets the
// number of rounds (default 40, a few seconds; the GPU run script uses more).
import { describe, test } from 'node:test';
import * as T from '../../src/tensor/index.js';
import { onGpu, randn, both, TOL } from './common.js';

const ROUNDS = Number(process.env.DSV32_CUDA_STRESS ?? 40);

describe('cuda stress: repeated norms and bmm with fresh inputs', onGpu, () => {
  test(`${ROUNDS} rounds of layerNorm, rmsNorm and bmm aᵀ (bf16 and f32)`, () => {
    let junk: object[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const d of ['bf16', 'f32'] as T.DType[]) {
        const tl = TOL[d]! * (d === 'f32' ? 3 : 1);
        for (const D of [48, 1024, 7168]) {
          const x = randn([17, D], d);
          const w = randn([D], d);
          const bb = randn([D], d);
          both([x, w, bb], [[[17, D], d]], (b, [s, g, h], [o]) => b.layerNorm(o!, s!, g!, h!, 1e-5), tl, `round ${round} layerNorm ${d} D=${D}`);
          both([x, w], [[[17, D], d]], (b, [s, g], [o]) => b.rmsNorm(o!, s!, g!, 1e-6), tl, `round ${round} rmsNorm ${d} D=${D}`);
        }
        const at = randn([3, 64, 37], d);
        const bm = randn([3, 64, 45], d);
        both([at, bm], [[[3, 37, 45], d]], (be, [p, q], [o]) => be.matmul(o!, T.transpose(p!), q!), tl, `round ${round} bmm ${d} aᵀ`);
      }
      for (let k = 0; k < 2000; k++) junk.push({ k, s: `garbage ${k}`, a: new Float64Array(8) });
      if (junk.length > 20_000) junk = [];
    }
  });
});
