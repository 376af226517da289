// The device-generic prefill (src/model/device-forward.ts) on every available device: CPU always, CUDA
// when a driver and GPU are present (else skipped with the backend's reason). It must reproduce the
// official goldens as the host model does: every prefill top-k set and route exactly, logits within
// 1e-4 up to FP8 rounding ties (src/model/fp8-ties.ts). Logits are compared at positions ≥ 1 only: the golden's position 0 is a one-token
// prefix, which the reference ran through its decode (absorbed MQA) path; positions ≥ 1 come from one
// causal prefill (test/model/golden.test.ts explains why that equals each prefix's own forward).
//
// Fixtures: ../shared/fixtures beside the repository, or $DSV32_FIXTURES (e.g. on a GPU machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, TokenError } from '../../src/model/index.js';
import { DeviceError, DeviceForward } from '../../src/model/device-forward.js';
import { runGolden } from '../../src/cli/golden.js';
import { fixturesDir, loadGolden, repoRoot } from './golden-data.js';


const cudaReason = cudaUnavailableReason();
const devices: { name: string; skip: string | false }[] = [
  { name: 'cpu', skip: false },
  { name: 'cuda', skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` },
];

const models = new Map<string, DeepseekV32>();
function model(set: string): DeepseekV32 {
  let m = models.get(set);
  if (!m) {
    m = DeepseekV32.load(path.join(fixturesDir, set));
    models.set(set, m);
  }
  return m;
}

for (const dev of devices) {
  for (const [set, file] of [['tiny-f32', 'golden.safetensors'], ['tiny-fp8', 'golden_f32.safetensors']] as const) {
    const goldenFile = path.join(fixturesDir, set, file);
    const skip = dev.skip || (existsSync(goldenFile) ? false : `fixture ${goldenFile} not found (set DSV32_FIXTURES to the fixtures directory)`);
    test(`device forward on ${dev.name}: ${set} ${file} golden rows pass (choices exact, logits within 1e-4 up to FP8 ties)`, { skip }, () => {
      const m = model(set);
      const g = loadGolden(set, file);
      const run = new DeviceForward(m, dev.name).prefill(g.tokens);
      assert.equal(run.topk.length, m.cfg.nLayers);
      assert.equal(run.logits!.device, dev.name);
      assert.deepEqual(run.logits!.shape, [g.B, g.S, g.vocab]);
      // against the golden: `dsv32 golden --device-forward` (prefill and decode: every top-k row and route
      // exact, logits within 1e-4, up to FP8 rounding ties: src/model/fp8-ties.ts)
      for (const r of runGolden(fixturesDir, set, 'f32', dev.name, true)) assert.ok(r.ok, `${r.what}: ${r.value} (${r.bound})`);
    });
  }

  // A config off the fixtures' path: softmax scoring without groups, no shared expert, no FP8, top-k far
  // below the sequence length; the device forward must make the host model's choices and logits.
  test(`device forward on ${dev.name} equals the host model on a random softmax-scored checkpoint`, { skip: dev.skip }, () => {
    const cfg = randomConfig({
      num_hidden_layers: 2, vocab_size: 128, scoring_func: 'softmax', topk_method: 'greedy', n_group: 1, topk_group: 1,
      n_shared_experts: 0, index_topk: 5, routed_scaling_factor: 1.5,
    });
    const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 7)));
    const tokens = [[3, 9, 27, 81, 115, 89, 11, 33, 99, 41, 7, 2], [5, 25, 125, 113, 53, 9, 45, 97, 1, 5, 25, 4]];
    const host = m.forward(tokens, { mode: 'mha' });
    const df = new DeviceForward(m, dev.name);
    const run = df.prefill(tokens);
    for (let l = 0; l < cfg.nLayers; l++) {
      assert.equal(run.topk[l]!.width, 5);
      assert.deepEqual(Array.from(run.topk[l]!.idx), Array.from(host.topk[l]!.idx), `layer ${l} top-k`);
      assert.deepEqual(run.routes[l] && Array.from(run.routes[l]!), host.routes[l] && Array.from(host.routes[l]!), `layer ${l} routes`);
    }
    const a = run.logits!.toFloat32();
    const b = host.logits!.toFloat32();
    let maxAbs = 0;
    let maxRef = 0;
    for (let i = 0; i < b.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
      maxRef = Math.max(maxRef, Math.abs(b[i]!));
    }
    assert.ok(maxAbs <= 1e-5 * maxRef, `logits vs host model: max |Δ| ${maxAbs} (max |logit| ${maxRef})`);
    // 'last' is the last position of 'all' (up to the GEMM's summation order, which depends on M)
    const last = df.prefill(tokens, { logits: 'last' }).logits!;
    assert.deepEqual(last.shape, [2, 1, cfg.vocabSize]);
    const lv = last.toFloat32();
    for (let r = 0; r < 2; r++) {
      for (let v = 0; v < cfg.vocabSize; v++) {
        const want = a[(r * 12 + 11) * cfg.vocabSize + v]!;
        assert.ok(Math.abs(lv[r * cfg.vocabSize + v]! - want) <= 1e-6 * maxRef, `'last' logit ${v} of row ${r}`);
      }
    }
    assert.equal(df.prefill(tokens, { logits: 'none' }).logits, null);
    assert.throws(() => df.prefill([[1, 2], [3]]), TokenError);
    assert.throws(() => df.prefill([[1, cfg.vocabSize]]), TokenError);
  });
}

test('device forward: an unknown device is a DeviceError naming it', () => {
  const cfg = randomConfig({ num_hidden_layers: 1 });
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)));
  assert.throws(() => new DeviceForward(m, 'tpu'), (e: unknown) => e instanceof DeviceError && /device 'tpu' is not available/.test(e.message));
});

// `dsv32 golden --device …`: the device-generic prefill and decode through the CLI (on the CPU here; the lead runs
// `--device cuda` on the GPU machine), and a one-line error for a device that does not exist.
const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const golden = (...args: string[]) => spawnSync(process.execPath, [cli, 'golden', ...args], { encoding: 'utf8', env: { ...process.env, DSV32_FIXTURES: fixturesDir } });

const cliSkip = existsSync(path.join(fixturesDir, 'tiny-f32')) ? false : `fixtures not found at ${fixturesDir}`;

test('dsv32 golden --device-forward: prefill and decode rows of the device-generic forward all pass', { skip: cliSkip }, () => {
  const r = golden('--fixture', 'tiny-f32', '--device-forward', '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; device: string; deviceForward: boolean; rows: { what: string; value: string; ok: boolean }[] };
  assert.equal(out.ok, true);
  assert.equal(out.device, 'cpu');
  assert.equal(out.deviceForward, true);
  assert.equal(out.rows.length, 8, '4 prefill rows + 3 decode rows + the FP8 tie row');
  assert.match(out.rows.find((x) => x.what.startsWith('prefill indexer top-k'))!.value, /^0 \/ 288$/);
  assert.match(out.rows.find((x) => x.what.startsWith('prefill MoE route'))!.value, /^0 \/ 192$/);
  // 3 layers × 2 rows × 6 steps of top-k; 2 MoE layers × 2 rows × 6 steps of routes
  assert.match(out.rows.find((x) => x.what.startsWith('decode indexer top-k'))!.value, /^0 \/ 36$/);
  assert.match(out.rows.find((x) => x.what.startsWith('decode MoE route'))!.value, /^0 \/ 24$/);
  const dl = out.rows.find((x) => x.what.startsWith('decode logits on cpu'))!;
  assert.ok(dl.ok && Number(dl.value) <= 1e-4, `decode logits row: ${dl.value}`);
  assert.ok(out.rows.at(-1)!.what.startsWith('FP8 roundings at a tie') && out.rows.at(-1)!.ok);
});

test('dsv32 golden --device: an unknown device and bf16 on the device path are one-line errors', { skip: cliSkip }, () => {
  const r = golden('--device', 'tpu');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^dsv32: device 'tpu' is not available: unknown device 'tpu'/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const b = golden('--fixture', 'tiny-fp8', '--dtype', 'bf16', '--device-forward');
  assert.equal(b.status, 2);
  assert.match(b.stderr, /f32 numerics only/);
});
