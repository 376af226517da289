// Tensor- and expert-parallel inference (src/model/parallel.ts) on thread ranks of one process: each rank
// holds its share of the weights and runs the same steps, summing and gathering through the
// ThreadCollective.
//  - The official goldens, unchanged procedure (`dsv32 golden`'s checks): tiny-f32 on 2 and 4 ranks with
//    every top-k set and route the reference's and logits within 1e-4, prefill and decode; tiny-bf16 on 2.
//  - Against the whole model on one thread: with the whole model's choices replayed (so no near tie can
//    flip a route or a selection) the logits agree to the rounding of the reordered sums; with free
//    choices nearly every route and selection agrees (a handful may sit on near ties).
//  - FP8 weights split on 128×128 block boundaries; shares that would straddle a block, training and
//    checkpoint saving on a shard are refused with messages that say why.
// Each case runs on the CPU and, where a driver is found, on CUDA (every rank a thread of this process
// with its share on the one GPU, exchanging through host memory; the whole model on the same GPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runThreadRanks } from '../../src/dist/thread-collective.js';
import { fixturesDir } from '../model/golden-data.js';
import { DEVICES } from '../cuda/common.js';
import { compare, type TpCase, tpModel } from './tensor-parallel-cases.js';

const WORKER = new URL('./tensor-parallel.worker.js', import.meta.url);
const haveFixtures = existsSync(`${fixturesDir}/tiny-f32/config.json`);
const skipNoFixtures = haveFixtures ? false : `no fixtures at ${fixturesDir}`;

// tolerances. f32: the ranks' sums in another order differ from one rank's by f32 ulps (measured ≤ 1.1e-6
// of the largest logit). bf16: every rounding to bf16 happens after the ranks' sum, as on one rank
// (parallel.ts, moe.ts), and most positions agree to ~3e-7; but a sum that lands by an ulp on the other
// side of a bf16 midpoint moves the later positions of its row by up to 6e-3 of the largest logit
// (measured; the same happens between this thread's and a worker's GEMMs on one whole model), so bf16 is
// held to 2e-2 at most and 1e-3 on average. (Rounding each rank's part to bf16 before the sum, as the
// reference does, measured 1.1e-2–2.1e-2 of the largest logit at every position; a wrong shard is off by
// O(1).)
for (const [device, opts] of DEVICES) {
  for (const [set, numerics, N] of [['tiny-f32', 'f32', 2], ['tiny-f32', 'f32', 4], ['tiny-bf16', 'bf16', 2]] as const) {
    test(`${set} golden, ${numerics}, on ${N} tensor-parallel ranks: every check of dsv32 golden passes on every rank [${device}]`, { skip: opts.skip ?? skipNoFixtures }, async () => {
      const outs = await runThreadRanks<{ what: string; value: string; bound: string; ok: boolean }[]>(N, WORKER, { device, kind: 'golden', set, numerics } satisfies TpCase);
      for (const [r, rows] of outs.entries()) for (const row of rows) assert.ok(row.ok, `rank ${r}: ${row.what}: ${row.value} (${row.bound})`);
    });
  }

  test(`random model, f32, 2 / 4 / 8 ranks: logits with replayed choices within 1e-5 of the whole model, free choices ≥ 97% the same [${device}]`, opts, async () => {
    for (const N of [2, 4, 8]) await compare(device, { random: 'small', seed: 5 }, N, 'f32', 1e-5);
  });

  test(`random model, bf16, 2 and 4 ranks, with and without a shared expert: logits with replayed choices within bf16 rounding of the whole model [${device}]`, opts, async () => {
    for (const N of [2, 4]) await compare(device, { random: 'small', seed: 6 }, N, 'bf16', 2e-2, 1e-3);
    await compare(device, { random: 'unshared', seed: 6 }, 2, 'bf16', 2e-2, 1e-3);
  });

  // bf16 with FP8 weights on CUDA: every linear quantises its bf16 input to e4m3, which turns a bf16 ulp
  // (cuBLASLt's FP8 GEMM accumulates in another order for an f32 partial than for a bf16 output) into
  // 6–12% of an e4m3 value; measured on an H100, the ranks moved the logits by up to 5.2% of the largest
  // logit, and the whole model on CUDA differs from the whole model on the CPU by 7.2%. The f32 case, with
  // the same sharded FP8 GEMMs and expert segments, holds 1e-5 there; a wrong shard is off by O(1).
  test(`FP8 weights split on 128×128 block boundaries, 2 ranks: f32 and bf16 logits with replayed choices near the whole model [${device}]`, opts, async () => {
    await compare(device, { random: 'fp8', seed: 7 }, 2, 'f32', 1e-5);
    await compare(device, { random: 'fp8', seed: 7 }, 2, 'bf16', device === 'cpu' ? 2e-2 : 0.1, device === 'cpu' ? 1e-3 : 1e-2);
  });
}

test('a shard refuses what needs the whole model, naming why: FP8 shares straddling a block, training, saving', { skip: skipNoFixtures }, async () => {
  const outs = await runThreadRanks<Record<string, string>>(2, WORKER, { device: 'cpu', kind: 'errors', model: { random: 'small', seed: 5 } } satisfies TpCase);
  for (const o of outs) {
    assert.match(o.fp8!, /tiny-fp8.*q_b_proj\.weight' is FP8 with 128×128 block scales, and 2 ranks split its rows into shares of 96, not a multiple of 128/);
    assert.match(o.train!, /trainForward needs the whole model; these weights are rank \d's share of 2/);
    assert.match(o.state!, /stateTensors\(\) \(a checkpoint\) needs the whole model/);
  }
});

test('a world size that does not divide the heads, experts or vocabulary is refused before any weight is read', async () => {
  const { checkShardable } = await import('../../src/model/parallel.js');
  const cfg = tpModel({ random: 'small', seed: 5 }).cfg;
  assert.throws(() => checkShardable(cfg, 3), /tensor parallel over 3 ranks: num_attention_heads \(8\), n_routed_experts \(16\), vocab_size \(1024\), intermediate_size \(512\), n_shared_experts × moe_intermediate_size \(64\) are not divisible by 3/);
  assert.throws(() => checkShardable(cfg, 0), /world size must be a positive integer, got 0/);
});
