// The models and cases shared by the tensor-parallel test and its rank worker (tensor-parallel.worker.ts):
// both sides build the same weights from the same seed, the test's whole model (the oracle) and each
// rank's share, on the device under test.
import assert from 'node:assert/strict';
import type { Collective } from '../../src/dist/collective.js';
import { runThreadRanks } from '../../src/dist/thread-collective.js';
import { MAX_FP8_TIE_FLIPS, resolveFp8Ties } from '../../src/model/fp8-ties.js';
import { selectionIndices } from '../../src/model/index.js';
import { DeepseekV32, expectedTensors, mapSource, randomCheckpoint, randomConfig, type Numerics } from '../../src/model/index.js';
import { FP8_QUANTIZATION_CONFIG } from '../../src/model/quantize.js';
import { weightQuant } from '../../src/tensor/ops/quant.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { diff, fixtureDir, type FixtureSet } from '../model/golden-data.js';

const WORKER = new URL('./tensor-parallel.worker.js', import.meta.url);

export type ModelSpec = { fixture: FixtureSet } | { random: 'small' | 'unshared' | 'fp8'; seed: number };

/** What a rank does; `device` is where the ranks' shares live. */
export type TpCase = { device: string } & (
  | { kind: 'golden'; set: FixtureSet; numerics: 'f32' | 'bf16' }
  | { kind: 'forward'; model: ModelSpec; numerics: Numerics; tokens: number[][]; forcedTopk: Int32Array[]; forcedRoutes: (Int32Array | null)[] }
  | { kind: 'errors'; model: ModelSpec });

/**
 * 'small': the tiny shape with a wider vocabulary and 8 heads, shardable 2, 4 and 8 ways (bf16 values
 * held in f32). 'fp8': real head dims (nope 128, rope 64, v 128) so that 2 ranks' shares of every FP8
 * matrix are whole 128×128 blocks, every linear weight quantised as the official checkpoints are.
 */
function randomModel(kind: 'small' | 'unshared' | 'fp8', seed: number, parallel: Collective | undefined, device: string): DeepseekV32 {
  const cfg = kind !== 'fp8'
    ? randomConfig({
      vocab_size: 1024, num_attention_heads: 8, num_key_value_heads: 8, n_routed_experts: 16, n_group: 4, num_hidden_layers: 3, index_topk: 8,
      n_shared_experts: kind === 'small' ? 1 : 0,
    })
    : randomConfig({
      vocab_size: 512, num_hidden_layers: 2, qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, moe_intermediate_size: 256,
      index_topk: 8, quantization_config: { ...FP8_QUANTIZATION_CONFIG, weight_block_size: [128, 128] },
    });
  const w = randomCheckpoint(cfg, seed);
  if (kind === 'fp8') {
    for (const spec of expectedTensors(cfg)) {
      const t = w.get(spec.name);
      if (!t || spec.role !== 'linear') continue;
      const q = weightQuant(t, 128);
      w.set(spec.name, q.w8);
      w.set(`${spec.name}_scale_inv`, q.scaleInv as Tensor);
    }
  }
  return DeepseekV32.fromSource(cfg, mapSource(w), { parallel, device });
}

/** The model of `spec` on `device`: the whole model (no collective) or this rank's share. */
export function tpModel(spec: ModelSpec, parallel?: Collective, device = 'cpu'): DeepseekV32 {
  return 'fixture' in spec ? DeepseekV32.load(fixtureDir(spec.fixture), { parallel, device }) : randomModel(spec.random, spec.seed, parallel, device);
}

export interface ForwardOut {
  forced: Float32Array;
  routes: (Int32Array | null)[];
  topk: Int32Array[];
}

/** Fraction of equal entries over the layers' arrays. */
function agreement(a: (Int32Array | null)[], b: (Int32Array | null)[]): number {
  let same = 0;
  let n = 0;
  a.forEach((x, l) => {
    if (!x) return;
    const y = b[l]!;
    for (let i = 0; i < x.length; i++, n++) if (x[i] === y[i]) same++;
  });
  return same / n;
}

/** The first position (causal order: position, then row) whose logits differ from ref's by more than bound. */
function firstBeyond(mine: Float32Array, ref: Float32Array, B: number, S: number, V: number, bound: number): number {
  for (let p = 0; p < S; p++) {
    for (let b = 0; b < B; b++) {
      const o = (b * S + p) * V;
      if (!(diff(mine.subarray(o, o + V), ref.subarray(o, o + V)).maxAbs <= bound)) return p * B + b;
    }
  }
  return Infinity;
}

/**
 * N ranks on `device` against the whole model on the same device, on this thread (that the device's
 * whole model equals the CPU's is the device tests' business: in bf16 with FP8 weights the two differ
 * by up to 7% of the largest logit on this model, measured on an H100, as FP8 quantisation amplifies a
 * bf16 ulp; the ranks are held to their own device's arithmetic). With the whole model's choices replayed, the logits
 * must agree within tol × the largest logit, up to FP8 rounding ties (src/model/fp8-ties.ts): a latent
 * value at an e4m3 midpoint may round the other way after the ranks' reordered sums, which moves later
 * positions by ~1e-3; the whole model is rerun with such ties flipped until it matches, at most
 * MAX_FP8_TIE_FLIPS of them, so a real difference still fails.
 */
export async function compare(device: string, spec: ModelSpec, N: number, numerics: Numerics, tol: number, meanTol = tol): Promise<void> {
  // the whole model on the ranks' device; its choices, replayed by the ranks, come from its own free run
  const whole = tpModel(spec, undefined, device);
  const B = 2;
  const S = 12;
  const V = whole.cfg.vocabSize;
  const tokens = Array.from({ length: B }, (_, b) => Array.from({ length: S }, (_, i) => (b === 0 && i === 0 ? 0 : (b * 7919 + i * 104729) % V)));
  const free = whole.forward(tokens, { numerics });
  const forcedTopk = free.topk.map(selectionIndices);
  const forcedRoutes = free.routes.map((r) => (r ? (r.toHost() as Int32Array) : null));
  const outs = await runThreadRanks<ForwardOut>(N, WORKER, { device, kind: 'forward', model: spec, numerics, tokens, forcedTopk, forcedRoutes } satisfies TpCase);
  const mine = outs[0]!.forced;
  const scale = mine.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const res = resolveFp8Ties(() => whole.forward(tokens, { numerics, forcedTopk, forcedRoutes }).logits!.toFloat32(), (ref) => firstBeyond(mine, ref, B, S, V, tol * scale));
  assert.ok(res.flips.length <= MAX_FP8_TIE_FLIPS, `${res.flips.length} FP8 tie flips`);
  const d = diff(mine, res.result);
  assert.ok(d.maxAbs <= tol * scale, `${N} ranks, ${numerics}: max |Δ| ${d.maxAbs} > ${tol} × max |logit| ${scale} (after ${res.flips.length} FP8 tie flips)`);
  assert.ok(d.meanAbs <= meanTol * scale, `${N} ranks, ${numerics}: mean |Δ| ${d.meanAbs} > ${meanTol} × max |logit| ${scale}`);
  for (const [r, o] of outs.entries()) {
    // the ranks all-gather one result: the same bits everywhere
    assert.deepEqual(o.forced, mine, `rank ${r}'s logits differ from rank 0's`);
    assert.ok(agreement(o.routes, forcedRoutes) >= 0.97, `rank ${r}: routes agree on ${agreement(o.routes, forcedRoutes)}`);
    assert.ok(agreement(o.topk, forcedTopk) >= 0.97, `rank ${r}: selections agree on ${agreement(o.topk, forcedTopk)}`);
  }
}

