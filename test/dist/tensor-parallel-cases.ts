// The models and cases shared by the tensor-parallel test and its rank worker (tensor-parallel.worker.ts):
// both sides build the same weights from the same seed, the test's whole model and each rank's share.
import type { Collective } from '../../src/dist/collective.js';
import { DeepseekV32, expectedTensors, mapSource, randomCheckpoint, randomConfig, type Numerics } from '../../src/model/index.js';
import { FP8_QUANTIZATION_CONFIG } from '../../src/model/quantize.js';
import { weightQuant } from '../../src/tensor/ops/quant.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { fixtureDir, type FixtureSet } from '../model/golden-data.js';

export type ModelSpec = { fixture: FixtureSet } | { random: 'small' | 'unshared' | 'fp8'; seed: number };

export type TpCase =
  | { kind: 'golden'; set: FixtureSet; numerics: 'f32' | 'bf16' }
  | { kind: 'forward'; model: ModelSpec; numerics: Numerics; tokens: number[][]; forcedTopk: Int32Array[]; forcedRoutes: (Int32Array | null)[] }
  | { kind: 'errors'; model: ModelSpec };

/**
 * 'small': the tiny shape with a wider vocabulary and 8 heads, shardable 2, 4 and 8 ways (bf16 values
 * held in f32). 'fp8': real head dims (nope 128, rope 64, v 128) so that 2 ranks' shares of every FP8
 * matrix are whole 128×128 blocks, every linear weight quantised as the official checkpoints are.
 */
function randomModel(kind: 'small' | 'unshared' | 'fp8', seed: number, parallel: Collective | undefined): DeepseekV32 {
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
  return DeepseekV32.fromSource(cfg, mapSource(w), { parallel });
}

/** The model of `spec`: the whole model (no collective) or this rank's share. */
export function tpModel(spec: ModelSpec, parallel?: Collective): DeepseekV32 {
  return 'fixture' in spec ? DeepseekV32.load(fixtureDir(spec.fixture), { parallel }) : randomModel(spec.random, spec.seed, parallel);
}
