// Training checkpoints: a Hugging Face model directory plus the state that makes a resume exact.
//   <out>/step-<000123>/config.json                       the model's config.json, as given
//   <out>/step-<000123>/tokenizer.json                    the data's tokenizer, when the run names one
//   <out>/step-<000123>/model-0000i-of-0000n.safetensors  the f32 master weights, shards of ≤ 16 MB
//   <out>/step-<000123>/model.safetensors.index.json      (DeepseekV32.load opens the directory)
//   <out>/step-<000123>/optimizer.safetensors             AdamW moments (bit-exact) and step counts
//   <out>/step-<000123>/trainer.json                      the step reached and the run's identity
//   <out>/latest                                          the name of the newest complete checkpoint
// A checkpoint is written into a temporary directory and renamed into place, and `latest` is replaced
// atomically after that, so a kill at any moment leaves `latest` naming a complete checkpoint. Since the
// weights are the exact f32 masters, the moments exact, and the data order and learning rate functions
// of the step, training resumed from step k continues bit for bit as the run that was never stopped.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DsvError } from '../errors.js';
import { saveSharded } from '../tensor/safetensors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { AdamW } from './optim.js';

export class CheckpointError extends DsvError {}

export const MAX_SHARD_BYTES = 16 * 1024 * 1024;
export const LATEST = 'latest';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_FILE = 'trainer.json';

export interface TrainerState {
  /** steps completed */
  step: number;
  stage: string;
  /** fingerprint of the run's configuration: a resume under another configuration is refused */
  configHash: string;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/**
 * The Hugging Face model directory of a checkpoint, without the trainer's state: the weights in shards of
 * ≤ 16 MB, config.json, and the tokenizer when given. Also what an RL trainer hands its rollout server.
 */
export function saveModelDir(dir: string, o: { configJson: string; weights: Map<string, Tensor>; tokenizer?: string; metadata?: Record<string, string> }): void {
  saveSharded(dir, o.weights, { maxShardBytes: MAX_SHARD_BYTES, metadata: { format: 'pt', ...o.metadata } });
  writeFileSync(join(dir, 'config.json'), o.configJson);
  if (o.tokenizer) copyFileSync(o.tokenizer, join(dir, 'tokenizer.json'));
}

export function saveCheckpoint(out: string, o: { configJson: string; weights: Map<string, Tensor>; optimizer: AdamW; state: TrainerState; keep: number; tokenizer?: string }): string {
  mkdirSync(out, { recursive: true });
  const name = checkpointName(o.state.step);
  const tmp = join(out, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  saveModelDir(tmp, { configJson: o.configJson, weights: o.weights, ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), metadata: { dsv32_step: String(o.state.step) } });
  o.optimizer.save(join(tmp, OPTIMIZER_FILE));
  writeFileSync(join(tmp, TRAINER_FILE), JSON.stringify(o.state, null, 2) + '\n');
  const dir = join(out, name);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  const lt = join(out, `.${LATEST}.tmp-${process.pid}`);
  writeFileSync(lt, name + '\n');
  renameSync(lt, join(out, LATEST));
  // keep the newest `keep` complete checkpoints
  const all = readdirSync(out).filter((f) => /^step-\d+$/.test(f)).sort();
  for (const f of all.slice(0, Math.max(0, all.length - o.keep))) if (f !== name) rmSync(join(out, f), { recursive: true, force: true });
  return dir;
}

/** The newest complete checkpoint of `out` and its trainer state, or null when there is none. */
export function latestCheckpoint(out: string): { dir: string; state: TrainerState } | null {
  const p = join(out, LATEST);
  if (!existsSync(p)) return null;
  const name = readFileSync(p, 'utf8').trim();
  const dir = join(out, name);
  const sf = join(dir, TRAINER_FILE);
  if (!existsSync(sf)) throw new CheckpointError(`${p} names ${name}, which has no ${TRAINER_FILE}`);
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(sf, 'utf8')) as TrainerState;
  } catch (e) {
    throw new CheckpointError(`${sf}: not JSON (${(e as Error).message})`);
  }
  if (!Number.isInteger(state.step) || state.step < 0) throw new CheckpointError(`${sf}: step must be a non-negative integer, got ${JSON.stringify(state.step)}`);
  return { dir, state };
}
