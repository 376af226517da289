// A trained checkpoint → an FP8 checkpoint in DeepSeek-V3.2's own layout: every weight the model runs
// through a linear layer (role 'linear' in weights.ts: attention and indexer projections, experts, the
// dense MLP, MTP's eh_proj) becomes e4m3 with a `weight_scale_inv` per 128×128 block (`weightQuant`, the
// arithmetic the official tiny-fp8 checkpoint was made with); the rest (embedding, head, norms, the
// gate, the indexer's weights_proj) is bf16, and the gate's e_score_correction_bias stays f32, as the
// official checkpoints have it. config.json gains V3.2's quantization_config.
//   bytes ≈ 1·(linear params) + 2·(other params): ~0.3 of an f32 checkpoint.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DsvError } from '../errors.js';
import { Checkpoint, saveSharded } from '../tensor/safetensors.js';
import { cast } from '../tensor/ops/view.js';
import { weightQuant } from '../tensor/ops/quant.js';
import { ITEMSIZE } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { parseConfig } from './config.js';
import { expectedTensors, FP8_BLOCK } from './weights.js';

export class QuantizeError extends DsvError {}

export const FP8_QUANTIZATION_CONFIG = {
  activation_scheme: 'dynamic',
  fmt: 'e4m3',
  quant_method: 'fp8',
  scale_fmt: 'ue8m0',
  weight_block_size: [FP8_BLOCK, FP8_BLOCK],
} as const;

/** Files beside the weights that a served model needs, copied as they are. */
const SIDE_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];

export interface QuantizeResult {
  linear: number;
  other: number;
  bytes: number;
  files: string[];
}

export function quantizeCheckpoint(src: string, out: string, opts: { maxShardBytes: number }): QuantizeResult {
  const cfgFile = join(src, 'config.json');
  if (!existsSync(cfgFile)) throw new QuantizeError(`--model ${src}: no config.json there (expected a Hugging Face checkpoint directory)`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new QuantizeError(`${cfgFile}: not JSON (${(e as Error).message})`);
  }
  const cfg = parseConfig(raw, cfgFile);
  if (cfg.fp8Weights) throw new QuantizeError(`${cfgFile}: the checkpoint is FP8 already (it has a quantization_config)`);
  const ck = Checkpoint.open(src);
  const tensors = new Map<string, Tensor>();
  let linear = 0;
  let other = 0;
  try {
    const known = new Set<string>();
    for (const spec of expectedTensors(cfg)) {
      known.add(spec.name);
      if (!ck.has(spec.name)) {
        if (spec.optional) continue;
        throw new QuantizeError(`${src}: tensor ${spec.name} is missing (the config calls for it)`);
      }
      const t = ck.tensor(spec.name);
      if (spec.role === 'linear') {
        const { w8, scaleInv } = weightQuant(t, FP8_BLOCK);
        tensors.set(spec.name, w8);
        tensors.set(`${spec.name}_scale_inv`, scaleInv);
        linear += t.numel;
      } else {
        tensors.set(spec.name, spec.role === 'bias' ? cast(t, 'f32') : cast(t, 'bf16'));
        other += t.numel;
      }
    }
    const extra = ck.keys().filter((k) => !known.has(k));
    if (extra.length) throw new QuantizeError(`${src}: tensors the config does not call for: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`);
  } finally {
    ck.close();
  }
  mkdirSync(out, { recursive: true });
  const files = saveSharded(out, tensors, { maxShardBytes: opts.maxShardBytes, metadata: { format: 'pt' } });
  writeFileSync(join(out, 'config.json'), JSON.stringify({ ...raw, torch_dtype: 'bfloat16', quantization_config: FP8_QUANTIZATION_CONFIG }, null, 2) + '\n');
  for (const f of SIDE_FILES) if (existsSync(join(src, f))) copyFileSync(join(src, f), join(out, f));
  let bytes = 0;
  for (const t of tensors.values()) bytes += t.numel * ITEMSIZE[t.dtype];
  return { linear, other, bytes, files };
}
