// dsv32 quantize: the official tiny-bf16 checkpoint quantised by our code is the official tiny-fp8
// checkpoint, tensor for tensor and byte for byte (names, dtypes, shapes, FP8 values, block scales), and
// the quantized directory loads and runs; bad input is refused naming the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../../src/tensor/safetensors.js';
import { QuantizeError, quantizeCheckpoint } from '../../src/model/quantize.js';
import { DeepseekV32 } from '../../src/model/index.js';
import { dequantize } from '../../src/model/weights.js';
import { fixturesDir } from './golden-data.js';

const skip = existsSync(path.join(fixturesDir, 'tiny-fp8')) ? false : `fixtures not found at ${fixturesDir} (set DSV32_FIXTURES)`;

test('quantize tiny-bf16 → exactly the official tiny-fp8 weights; the result loads and agrees with tiny-fp8', { skip }, () => {
  const out = mkdtempSync(path.join(tmpdir(), 'dsv32-quant-'));
  try {
    const r = quantizeCheckpoint(path.join(fixturesDir, 'tiny-bf16'), out, { maxShardBytes: 1 << 20 });
    assert.ok(r.files.length > 1, 'a 1 MiB shard limit splits the 3 MiB checkpoint');
    const mine = Checkpoint.open(out);
    const ref = Checkpoint.open(path.join(fixturesDir, 'tiny-fp8', 'model.safetensors'));
    try {
      assert.deepEqual(mine.keys().sort(), ref.keys().sort());
      for (const k of ref.keys()) {
        const a = mine.info(k);
        const b = ref.info(k);
        assert.equal(a.dtype, b.dtype, `${k} dtype`);
        assert.deepEqual(a.shape, b.shape, `${k} shape`);
        assert.ok(Buffer.from(mine.readBytes(k)).equals(Buffer.from(ref.readBytes(k))), `${k} bytes`);
      }
    } finally {
      mine.close();
      ref.close();
    }
    const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    const refCfg = JSON.parse(readFileSync(path.join(fixturesDir, 'tiny-fp8', 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(cfg.quantization_config, refCfg.quantization_config);
    // same weights → the same logits as the official FP8 checkpoint, on a short prompt
    const ids = [5, 17, 300, 2, 999, 64];
    const run = (dir: string): Float32Array => {
      const m = DeepseekV32.load(dir);
      return m.forward([ids]).logits!.toFloat32();
    };
    assert.deepEqual(run(out), run(path.join(fixturesDir, 'tiny-fp8')));
    assert.throws(() => quantizeCheckpoint(out, path.join(out, 'again'), { maxShardBytes: 1 << 20 }), (e: Error) => e instanceof QuantizeError && /FP8 already/.test(e.message));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('quantize: a directory without config.json is named', () => {
  const d = mkdtempSync(path.join(tmpdir(), 'dsv32-quant-'));
  try {
    assert.throws(() => quantizeCheckpoint(d, path.join(d, 'o'), { maxShardBytes: 1 << 20 }), (e: Error) => e instanceof QuantizeError && e.message.includes(d) && /config\.json/.test(e.message));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('an FP8 checkpoint opened for training: every FP8 linear becomes a trainable f32 master copy equal to e4m3 code × its block scale', { skip }, () => {
  const dir = path.join(fixturesDir, 'tiny-fp8');
  const train = DeepseekV32.load(dir, { master: 'f32' });
  const infer = DeepseekV32.load(dir);
  const params = new Map(train.weights.parameters());
  let fp8 = 0;
  for (const name of Checkpoint.open(path.join(dir, 'model.safetensors')).keys()) {
    if (!name.endsWith('_scale_inv')) continue;
    const w = name.slice(0, -'_scale_inv'.length);
    const p = params.get(w);
    assert.ok(p, `${w}: a trainable parameter`);
    assert.equal(p.dtype, 'f32');
    assert.ok(p.requiresGrad);
    assert.deepEqual(p.toFloat32(), dequantize(infer.weights.linear(w)).toFloat32(), `${w}: the dequantised matrix`);
    fp8++;
  }
  assert.ok(fp8 > 10, `${fp8} FP8 linears`);
});
