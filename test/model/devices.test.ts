// The one model path on every available device: CPU always, CUDA when a driver and GPU are present (else
// skipped with the backend's reason). Weights, caches and every step live on the device.
//  - the goldens: `dsv32 golden`'s check (prefill and decode, choices exact, logits within 1e-4 up to
//    FP8 rounding ties) for tiny-f32 and tiny-fp8 in f32, and tiny-bf16 in bf16 with forced choices;
//  - off the fixtures' path (softmax scoring, no shared expert, no FP8, index_topk 5 far below the
//    context, so every sparse choice matters): the device run makes the CPU run's choices and logits,
//    and its decode (absorbed MQA) equals its own extended prefill (MHA) at the same positions;
//  - the CLI: `dsv32 golden --device cpu` and a one-line error for a device that does not exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';
import { runGolden } from '../../src/cli/golden.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, selectionIndices, type ForwardResult } from '../../src/model/index.js';
import { diff, fixturesDir, repoRoot } from './golden-data.js';

const cudaReason = cudaUnavailableReason();
const devices: { name: string; skip: string | false }[] = [
  { name: 'cpu', skip: false },
  { name: 'cuda', skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` },
];
const fixtures = existsSync(path.join(fixturesDir, 'tiny-f32')) ? false : `fixtures not found at ${fixturesDir} (set DSV32_FIXTURES)`;

for (const dev of devices) {
  for (const [fixture, numerics] of [['tiny-f32', 'f32'], ['tiny-fp8', 'f32'], ['tiny-bf16', 'bf16']] as const) {
    test(`model on ${dev.name}: ${fixture} ${numerics} golden rows all pass`, { skip: dev.skip || fixtures }, () => {
      for (const r of runGolden(fixturesDir, fixture, numerics, dev.name)) assert.ok(r.ok, `${r.what}: ${r.value} (${r.bound})`);
    });
  }

  test(`model on ${dev.name}: a random softmax-scored checkpoint with index_topk 5 — CPU choices and logits; decode = extended prefill`, { skip: dev.skip }, () => {
    const cfg = randomConfig({
      num_hidden_layers: 2, vocab_size: 128, scoring_func: 'softmax', topk_method: 'greedy', n_group: 1, topk_group: 1,
      n_shared_experts: 0, index_topk: 5, routed_scaling_factor: 1.5,
    });
    const ckpt = randomCheckpoint(cfg, 11);
    const cpu = DeepseekV32.fromSource(cfg, mapSource(ckpt));
    const m = DeepseekV32.fromSource(cfg, mapSource(ckpt), { device: dev.name });
    assert.equal(m.device, dev.name);
    const prompt = [[3, 9, 27, 81, 115, 89, 11, 33], [5, 25, 125, 113, 53, 9, 45, 97]];
    const next = [[41, 7, 2, 64, 19], [1, 5, 25, 4, 100]];
    const same = (a: ForwardResult, b: ForwardResult, what: string): void => {
      for (let l = 0; l < cfg.nLayers; l++) {
        assert.deepEqual(Array.from(selectionIndices(a.topk[l]!)), Array.from(selectionIndices(b.topk[l]!)), `${what}: layer ${l} top-k`);
        assert.deepEqual(a.routes[l] && Array.from(a.routes[l]!.toHost() as Int32Array), b.routes[l] && Array.from(b.routes[l]!.toHost() as Int32Array), `${what}: layer ${l} routes`);
      }
      const v = diff(a.logits!.toFloat32(), b.logits!.toFloat32());
      assert.ok(v.maxAbs <= 1e-5 * v.maxRef, `${what}: logits max |Δ| ${v.maxAbs} (max |logit| ${v.maxRef})`);
    };
    same(m.forward(prompt), cpu.forward(prompt), 'prefill');
    const cache = m.newCache(2, { capacity: 4 }); // too small: the first forward must grow it
    m.forward(prompt, { cache, logits: 'none' });
    const all = prompt.map((r, b) => [...r, ...next[b]!]);
    const ext = m.forward(all, { mode: 'mha' });
    const E = all[0]!.length;
    for (let j = 0; j < next[0]!.length; j++) {
      const d = m.forward(next.map((r) => [r[j]!]), { cache });
      assert.equal(d.logits!.device, dev.name);
      const el = ext.logits!.toFloat32();
      const at = new Float32Array(2 * cfg.vocabSize);
      for (let b = 0; b < 2; b++) at.set(el.subarray((b * E + 8 + j) * cfg.vocabSize, (b * E + 9 + j) * cfg.vocabSize), b * cfg.vocabSize);
      const v = diff(d.logits!.toFloat32(), at);
      assert.ok(v.maxAbs <= 1e-5 * v.maxRef, `step ${j}: decode vs extended prefill max |Δ| ${v.maxAbs}`);
      for (let l = 0; l < cfg.nLayers; l++) {
        const ei = selectionIndices(ext.topk[l]!);
        const di = selectionIndices(d.topk[l]!);
        for (let b = 0; b < 2; b++) assert.deepEqual(Array.from(di.subarray(b * 5, (b + 1) * 5)), Array.from(ei.subarray((b * E + 8 + j) * 5, (b * E + 9 + j) * 5)), `step ${j} layer ${l} row ${b}`);
      }
    }
    assert.equal(cache.length, E);
    assert.ok(cache.capacity >= E);
  });
}

const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const golden = (...args: string[]) => spawnSync(process.execPath, [cli, 'golden', ...args], { encoding: 'utf8', env: { ...process.env, DSV32_FIXTURES: fixturesDir } });

test('dsv32 golden --device: cpu passes with every row; an unknown device is a one-line error', { skip: fixtures }, () => {
  const r = golden('--fixture', 'tiny-f32', '--device', 'cpu', '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; device: string; rows: { what: string; value: string; ok: boolean }[] };
  assert.equal(out.ok, true);
  assert.equal(out.device, 'cpu');
  assert.equal(out.rows.length, 8, '4 prefill rows + 3 decode rows + the FP8 tie row');
  const bad = golden('--device', 'tpu');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^dsv32: device 'tpu' is not available: /);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});
