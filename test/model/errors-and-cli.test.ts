// Bad configs, corrupt checkpoints and bad tokens give clear errors; MTP runs incrementally; the
// `dsv32 logits` CLI contract on a fixture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, DeepseekV32, TokenError, WeightError, mapSource, parseConfig, randomCheckpoint, randomConfig } from '../../src/model/index.js';
import { readForced, runLogits } from '../../src/cli/logits.js';
import { SafetensorsFile } from '../../src/tensor/safetensors.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { fixtureDir, loadGolden, repoRoot } from './golden-data.js';

const tinyConfig = (): Record<string, unknown> => JSON.parse(readFileSync(path.join(fixtureDir('tiny-f32'), 'config.json'), 'utf8'));

test('config: real field names parsed, YaRN mscale² in the softmax scale, and skipped when max positions ≤ original', () => {
  const c = parseConfig(tinyConfig());
  const m = 0.1 * Math.log(40) + 1;
  assert.ok(Math.abs(c.softmaxScale - 48 ** -0.5 * m * m) < 1e-12);
  assert.equal(c.nDenseLayers, 1);
  assert.equal(c.scaleFmt, 'ue8m0');
  assert.equal(c.fp8Weights, false);
  const short = parseConfig({ ...tinyConfig(), max_position_embeddings: 4096 });
  assert.equal(short.yarn, null);
  assert.equal(short.softmaxScale, 48 ** -0.5);
  // 671B numbers of model.md §3
  const big = parseConfig({ ...tinyConfig(), qk_nope_head_dim: 128, qk_rope_head_dim: 64 });
  assert.ok(Math.abs(big.softmaxScale - 0.1352338) < 1e-6);
});

test('config: missing, unknown and inconsistent fields are named', () => {
  const bad = (patch: Record<string, unknown>, re: RegExp): void => {
    const c = { ...tinyConfig(), ...patch };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete c[k];
    assert.throws(() => parseConfig(c, 'x/config.json'), (e: unknown) => e instanceof ConfigError && re.test(e.message) && e.message.startsWith('x/config.json'));
  };
  bad({ hidden_size: undefined }, /hidden_size/);
  bad({ hiden_size: 256 }, /unknown field.*hiden_size/);
  bad({ index_head_dim: 96 }, /index_head_dim: must be a power of two/);
  bad({ kv_lora_rank: 100 }, /kv_lora_rank: must be a multiple of 128/);
  bad({ topk_group: 5 }, /topk_group/);
  bad({ n_group: 3 }, /n_group/);
  bad({ model_type: 'llama' }, /model_type/);
  bad({ first_k_dense_replace: 9 }, /first_k_dense_replace/);
});

test('checkpoint: missing, misshaped, wrongly typed, unexpected and non-finite tensors are named', () => {
  const cfg = randomConfig({ num_hidden_layers: 2 });
  const good = (): Map<string, ReturnType<typeof fromArray>> => randomCheckpoint(cfg, 1);
  const open = (m: Map<string, ReturnType<typeof fromArray>>): DeepseekV32 => DeepseekV32.fromSource(cfg, mapSource(m, 'ckpt'));
  let m = good();
  m.delete('model.layers.1.self_attn.indexer.wk.weight');
  assert.throws(() => open(m), /missing tensor 'model\.layers\.1\.self_attn\.indexer\.wk\.weight'/);
  m = good();
  m.set('model.layers.0.self_attn.o_proj.weight', fromArray(new Float32Array(10), [2, 5], { dtype: 'bf16' }));
  assert.throws(() => open(m), /'model\.layers\.0\.self_attn\.o_proj\.weight' has shape \[2, 5\], expected \[256, 128\]/);
  m = good();
  m.set('model.norm.weight', fromArray(new Float32Array(256), [256], { dtype: 'i32' }));
  assert.throws(() => open(m), (e: unknown) => e instanceof WeightError && /model\.norm\.weight' has dtype i32/.test(e.message));
  m = good();
  m.set('model.layers.7.mlp.gate.weight', fromArray(new Float32Array(4), [4], { dtype: 'bf16' }));
  assert.throws(() => open(m), /unexpected tensor 'model\.layers\.7\.mlp\.gate\.weight'/);
  m = good();
  m.set('model.layers.1.self_attn.q_a_proj.weight', fromArray(new Float32Array(128 * 256), [128, 256], { dtype: 'f8e4m3' }));
  assert.throws(() => open(m), /F8_E4M3 but config\.json has no quantization_config/);
  m = good();
  const bad = new Float32Array(256).fill(1);
  bad[17] = NaN;
  m.set('model.layers.0.input_layernorm.weight', fromArray(bad, [256], { dtype: 'bf16' }));
  assert.throws(() => open(m).forward([[0, 1, 2]]), /'model\.layers\.0\.input_layernorm\.weight' holds a non-finite value \(NaN\) at flat index 17/);
});

test('checkpoint: a truncated safetensors file is reported with its path', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dsv32-ckpt-'));
  copyFileSync(path.join(fixtureDir('tiny-f32'), 'config.json'), path.join(dir, 'config.json'));
  const src = path.join(fixtureDir('tiny-f32'), 'model.safetensors');
  const dst = path.join(dir, 'model.safetensors');
  copyFileSync(src, dst);
  truncateSync(dst, statSync(src).size - 1000);
  assert.throws(() => DeepseekV32.load(dir), (e: unknown) => e instanceof Error && e.message.includes(dst) && /truncated|past the end/.test(e.message));
});

test('tokens: ragged batch, out-of-vocabulary and non-integer ids are rejected', () => {
  const cfg = randomConfig({ num_hidden_layers: 1, first_k_dense_replace: 1 });
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 2)));
  assert.throws(() => m.forward([[0, 1], [2]]), (e: unknown) => e instanceof TokenError && /ragged batch: row 1 has 1 tokens, row 0 has 2/.test(e.message));
  assert.throws(() => m.forward([[0, 512]]), /token 512 at row 0, position 1 is not an id in \[0, 512\)/);
  assert.throws(() => m.forward([[0, 1.5]]), /token 1\.5/);
  assert.throws(() => m.forward([]), /non-empty batch/);
});

test('MTP layer: loaded from the extra checkpoint layer, drafts with its own cache (prefill+decode == prefill)', () => {
  const cfg = randomConfig({ num_nextn_predict_layers: 1 });
  const map = randomCheckpoint(cfg, 3);
  assert.ok(map.has('model.layers.3.eh_proj.weight'));
  const m = DeepseekV32.fromSource(cfg, mapSource(map));
  assert.equal(m.mtp.length, 1);
  const toks = [[0, 5, 9, 33, 70, 101, 7, 8, 300, 12]];
  const S = toks[0]!.length - 1;
  const next = Int32Array.from(toks[0]!.slice(1));
  const mainFull = m.forward([toks[0]!.slice(0, S)]);
  const full = m.mtpForward(mainFull.hidden, next, mainFull.cache);
  assert.deepEqual(full.logits.shape, [1, S, cfg.vocabSize]);
  // incremental: the first 6 positions, then one at a time with the MTP layer's own cache
  const pre = m.forward([toks[0]!.slice(0, 6)]);
  const inc = m.mtpForward(pre.hidden, next.subarray(0, 6), pre.cache);
  const fl = full.logits.toFloat32();
  const iv = inc.logits.toFloat32();
  for (let j = 0; j < iv.length; j++) assert.ok(Math.abs(iv[j]! - fl[j]!) < 1e-5 * (1 + Math.abs(fl[j]!)), `MTP prefill logit ${j}`);
  for (let p = 6; p < S; p++) {
    const d = m.forward([[toks[0]![p]!]], { cache: pre.cache });
    const o = m.mtpForward(d.hidden, next.subarray(p, p + 1), pre.cache);
    const v = o.logits.toFloat32();
    let mx = 0;
    let ref = 0;
    for (let j = 0; j < cfg.vocabSize; j++) {
      mx = Math.max(mx, Math.abs(v[j]! - fl[p * cfg.vocabSize + j]!));
      ref = Math.max(ref, Math.abs(fl[p * cfg.vocabSize + j]!));
    }
    assert.ok(mx < 1e-5 * ref, `MTP position ${p}: ${mx}`);
  }
});

test('dsv32 logits on tiny-f32 with --decode-from and --force-from: keys, shapes, dtypes, golden choices', () => {
  const g = loadGolden('tiny-f32');
  const dir = mkdtempSync(path.join(tmpdir(), 'dsv32-logits-'));
  const tok = path.join(dir, 't.json');
  writeFileSync(tok, JSON.stringify({ tokens: g.tokens.map((r) => r.slice(0, 24)) }));
  const out = path.join(dir, 'o.safetensors');
  const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const golden = path.join(fixtureDir('tiny-f32'), 'golden.safetensors');
  const r = spawnSync(process.execPath, [cli, 'logits', '--model', fixtureDir('tiny-f32'), '--tokens', tok, '--decode-from', '20', '--force-from', golden, '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const f = SafetensorsFile.open(out);
  try {
    assert.deepEqual(f.info('logits').shape, [2, 24, 1024]);
    assert.equal(f.info('logits').dtype, 'f32');
    for (let l = 0; l < 3; l++) {
      assert.deepEqual(f.info(`topk.layer${l}`).shape, [2, 24, 16]);
      assert.equal(f.info(`topk.layer${l}`).dtype, 'i64');
      assert.deepEqual(f.info(`routes.layer${l}`).shape, [2, 24, 2]);
    }
    // forced with the golden's own choices = the golden's rows; row 3 holds 4 keys then −1 padding
    const t1 = Array.from(f.tensor('topk.layer1').toFloat64());
    assert.deepEqual(t1.slice(3 * 16, 4 * 16), [0, 1, 2, 3, ...new Array(12).fill(-1)]);
    for (let i = 0; i < 24; i++) assert.deepEqual(t1.slice(i * 16, (i + 1) * 16), Array.from(g.prefillTopk.subarray((1 * 2 * 48 + i) * 16, (1 * 2 * 48 + i + 1) * 16)));
    assert.deepEqual(Array.from(f.tensor('routes.layer0').toFloat64()).slice(0, 4), [-1, -1, -1, -1]);
    // The logits are the in-process run's (same machine, same GEMM path). Against the golden they hold
    // only up to FP8 rounding ties, which golden.test.ts resolves (src/model/fp8-ties.ts).
    const model = DeepseekV32.load(fixtureDir('tiny-f32'));
    const want = runLogits(model, g.tokens.map((r) => r.slice(0, 24)), { numerics: 'f32', decodeFrom: 20, forced: readForced(golden, model, 2) }).logits;
    const lg = f.tensor('logits').toFloat32();
    let mx = 0;
    for (let i = 0; i < want.length; i++) mx = Math.max(mx, Math.abs(lg[i]! - want[i]!));
    assert.ok(mx <= 1e-6, `logits vs the in-process run ${mx}`);
  } finally {
    f.close();
  }
  writeFileSync(tok, JSON.stringify({ tokens: [[0, 5], [3]] }));
  const bad = spawnSync(process.execPath, [cli, 'logits', '--model', fixtureDir('tiny-f32'), '--tokens', tok, '--out', out], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^dsv32: tokens: ragged batch/);
  assert.doesNotMatch(bad.stderr, /at .*\.js/);
});

test('dsv32 logits: --out in a missing folder fails before the model runs; a terminal shows progress', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dsv32-logits-'));
  const tok = path.join(dir, 't.json');
  writeFileSync(tok, JSON.stringify({ tokens: [[0, 5, 9, 33, 70, 101, 7, 8]] }));
  const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  // a model folder that does not exist either: the --out check must come first
  const missing = spawnSync(process.execPath, [cli, 'logits', '--model', path.join(dir, 'no-model'), '--tokens', tok, '--out', path.join(dir, 'nope', 'o.safetensors')], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^dsv32: --out .*nope\/o\.safetensors: folder .*nope does not exist/);
  const isDir = spawnSync(process.execPath, [cli, 'logits', '--model', fixtureDir('tiny-f32'), '--tokens', tok, '--out', dir], { encoding: 'utf8' });
  assert.equal(isDir.status, 2);
  assert.match(isDir.stderr, /is a folder, expected a \.safetensors file path/);

  const probe = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return t.skip('util-linux `script` is not available to provide a terminal');
  // 300 positions decoded one at a time (~2 s): long enough for the bar to be drawn
  writeFileSync(tok, JSON.stringify({ tokens: [Array.from({ length: 304 }, (_, i) => (i * 37 + 5) % 1024)] }));
  const out = path.join(dir, 'o.safetensors');
  const cmd = [process.execPath, cli, 'logits', '--model', fixtureDir('tiny-f32'), '--tokens', tok, '--decode-from', '4', '--out', out].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stdout);
  assert.match(r.stdout, /logits \[[^\]]*\] \d+\/303/, 'a bar over 3 prefill layers + 300 decode steps');
  assert.match(r.stdout, /position \d+\/304 · [\d.]+ tok\/s/);
  assert.ok(statSync(out).size > 0);
});

test('the FP8 latent cache loses nothing in bf16 numerics: MQA logits with the FP8 cache equal those with a bf16 cache, bit for bit; dsv32 logits --dtype fp8 runs it', () => {
  const m = DeepseekV32.load(fixtureDir('tiny-fp8'));
  const toks = [[0, 5, 9, 33, 70, 101, 7, 8, 300, 12, 64, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]];
  const run = (format: 'bf16' | 'fp8'): Float32Array[] => {
    const cache = m.newCache(2, { format });
    const out = [m.forward(toks.map((r) => r.slice(0, 8)), { cache, numerics: 'bf16', mode: 'mqa' }).logits!.toFloat32()];
    for (let p = 8; p < 12; p++) out.push(m.forward(toks.map((r) => [r[p]!]), { cache, numerics: 'bf16' }).logits!.toFloat32());
    return out;
  };
  const a = run('bf16');
  const b = run('fp8');
  a.forEach((x, i) => assert.deepEqual(new Uint32Array(x.buffer), new Uint32Array(b[i]!.buffer), `step ${i}`));
  const dir = mkdtempSync(path.join(tmpdir(), 'dsv32-logits-'));
  const tok = path.join(dir, 't.json');
  writeFileSync(tok, JSON.stringify({ tokens: toks }));
  const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const out = path.join(dir, 'o.safetensors');
  const r = spawnSync(process.execPath, [cli, 'logits', '--model', fixtureDir('tiny-fp8'), '--tokens', tok, '--dtype', 'fp8', '--decode-from', '8', '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const f = SafetensorsFile.open(out);
  try {
    const lg = f.tensor('logits').toFloat32();
    const V = m.cfg.vocabSize;
    // the decode positions are the in-process FP8-cache run's, bit for bit
    for (let p = 8; p < 12; p++) for (let bi = 0; bi < 2; bi++) {
      assert.deepEqual(Array.from(lg.subarray((bi * 12 + p) * V, (bi * 12 + p + 1) * V)), Array.from(b[p - 7]!.subarray(bi * V, (bi + 1) * V)), `position ${p} row ${bi}`);
    }
  } finally {
    f.close();
  }
  const bad = spawnSync(process.execPath, [cli, 'logits', '--model', fixtureDir('tiny-fp8'), '--tokens', tok, '--device', 'tpu', '--out', out], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^dsv32: --device tpu: not available/);
});
