// scripts/mtp-layers.mjs: `strip` drops a checkpoint's MTP layer (config num_nextn_predict_layers 0),
// `attach` puts another checkpoint's back; strip then attach gives every tensor back bit for bit, FP8
// included. Mismatched architectures and bad arguments are one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseConfig, randomCheckpoint } from '../../src/model/index.js';
import { quantizeCheckpoint } from '../../src/model/quantize.js';
import { Checkpoint, saveSafetensors } from '../../src/tensor/safetensors.js';
import { TINY_CONFIG } from '../rl/rl-fixture.js';

const SCRIPT = resolve('scripts/mtp-layers.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });
// the RL tests' tiny model with one MTP layer (any V3.2 shape does; FP8 blocks cover partial tiles)
const HF = { ...TINY_CONFIG, num_nextn_predict_layers: 1 };

/** name → [dtype, shape, bytes as hex digest input] of every tensor of a checkpoint directory. */
function tensors(dir: string): Map<string, string> {
  const ck = Checkpoint.open(dir);
  try {
    return new Map(ck.keys().map((k) => {
      const t = ck.tensor(k);
      return [k, `${t.dtype} ${t.shape.join('x')} ${Buffer.from(t.toHost().buffer).toString('base64')}`];
    }));
  } finally {
    ck.close();
  }
}

test('mtp-layers: strip then attach gives an FP8 checkpoint back bit for bit; the stripped one has no MTP layer', () => {
  const root = mkdtempSync(join(tmpdir(), 'mtp-layers-'));
  const src = join(root, 'bf16');
  const fp8 = join(root, 'fp8');
  mkdirSync(src);
  writeFileSync(join(src, 'config.json'), JSON.stringify(HF));
  writeFileSync(join(src, 'tokenizer.json'), '{}');
  saveSafetensors(join(src, 'model.safetensors'), randomCheckpoint(parseConfig(HF), 7));
  quantizeCheckpoint(src, fp8, { maxShardBytes: 2 ** 20 });
  const strip = run('strip', '--model', fp8, '--out', join(root, 'strip'));
  assert.equal(strip.status, 0, strip.stderr);
  const stripped = tensors(join(root, 'strip'));
  assert.ok([...stripped.keys()].every((k) => !k.startsWith('model.layers.2.')), 'no tensor of layer 2 (the MTP layer)');
  assert.equal(JSON.parse(readFileSync(join(root, 'strip', 'config.json'), 'utf8')).num_nextn_predict_layers, 0);
  const back = run('attach', '--model', join(root, 'strip'), '--mtp-from', fp8, '--out', join(root, 'back'));
  assert.equal(back.status, 0, back.stderr);
  assert.deepEqual(tensors(join(root, 'back')), tensors(fp8));
  assert.equal(JSON.parse(readFileSync(join(root, 'back', 'config.json'), 'utf8')).num_nextn_predict_layers, 1);
  assert.equal(readFileSync(join(root, 'back', 'tokenizer.json'), 'utf8'), '{}', 'side files from the donor when the model has none');
  // errors: another architecture, a donor without MTP, a bad mode, an existing output
  const bad = (r: ReturnType<typeof run>, re: RegExp) => {
    assert.equal(r.status, 2);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  };
  bad(run('attach', '--model', join(root, 'strip'), '--mtp-from', src, '--out', join(root, 'x')), /--mtp-from .*: config quantization_config is undefined, the model's is/);
  bad(run('attach', '--model', fp8, '--mtp-from', join(root, 'strip'), '--out', join(root, 'y')), /its config has no MTP layer/);
  bad(run('merge', '--model', fp8), /first argument: expected strip or attach, got merge/);
  bad(run('strip', '--model', fp8, '--out', join(root, 'strip')), /--out .*: holds a checkpoint already/);
  bad(run('strip', '--model', root, '--out', join(root, 'z')), /--model .*: no config.json there/);
});
