// The device-generic decode (DeviceForward.decode over the device-resident caches of device-cache.ts)
// on every available device: CPU always, CUDA when a driver and GPU are present (else skipped with the
// backend's reason). After a prefill of the 48 golden prompt tokens it must reproduce the reference's 6
// decode steps — every decode top-k row and route exactly, logits within 1e-4 up to FP8 rounding ties — and agree
// with the device prefill of the extended sequence at the same positions (absorbed MQA == MHA).
//
// Fixtures: ../shared/fixtures beside the repository, or $DSV32_FIXTURES (e.g. on a GPU machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, TokenError } from '../../src/model/index.js';
import { DeviceError, DeviceForward, type DeviceDecodeResult } from '../../src/model/device-forward.js';
import { runGolden } from '../../src/cli/golden.js';
import { fixturesDir, loadGolden } from './golden-data.js';



const cudaReason = cudaUnavailableReason();
const devices: { name: string; skip: string | false }[] = [
  { name: 'cpu', skip: false },
  { name: 'cuda', skip: cudaReason === null ? false : `CUDA unavailable: ${cudaReason}` },
];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { d: number; ref: number } {
  let d = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    const x = Math.abs(a[i]! - b[i]!);
    if (!(x <= d)) d = x;
    ref = Math.max(ref, Math.abs(b[i]!));
  }
  return { d, ref };
}

/** Row b of a decode step's layer selection / routes (decode rows are [B, 1, w] / [B, w]). */
const row = (a: Int32Array, b: number, w: number): number[] => Array.from(a.subarray(b * w, (b + 1) * w));

for (const dev of devices) {
  for (const [set, file] of [['tiny-f32', 'golden.safetensors'], ['tiny-fp8', 'golden_f32.safetensors']] as const) {
    const goldenFile = path.join(fixturesDir, set, file);
    const skip = dev.skip || (existsSync(goldenFile) ? false : `fixture ${goldenFile} not found (set DSV32_FIXTURES to the fixtures directory)`);
    test(`device decode on ${dev.name}: ${set} ${file} golden decode rows pass (choices exact, logits within 1e-4 up to FP8 ties), equal to the extended prefill`, { skip }, () => {
      const m = DeepseekV32.load(path.join(fixturesDir, set));
      const cfg = m.cfg;
      const g = loadGolden(set, file);
      const df = new DeviceForward(m, dev.name);
      // capacity one past the prompt: the second decode step has to grow the device cache
      const pre = df.prefill(g.tokens, { cache: { capacity: g.S + 1 }, logits: 'none' });
      const cache = pre.cache!;
      assert.equal(cache.length, g.S);
      assert.equal(cache.layers[0]!.k8.dtype, 'f8e4m3');
      assert.equal(cache.layers[0]!.kv.device, dev.name);
      const steps: DeviceDecodeResult[] = [];
      for (let j = 0; j < g.steps; j++) {
        const d = df.decode(cache, g.decodeTokens.map((r) => r[j]!));
        steps.push(d);
        assert.equal(cache.length, g.S + j + 1);
        assert.deepEqual(d.logits.shape, [g.B, g.vocab]);
        assert.equal(d.logits.device, dev.name);
        for (let l = 0; l < cfg.nLayers; l++) assert.equal(d.topk[l]!.width, g.k, `step ${j} layer ${l} width`);
      }
      assert.ok(cache.capacity >= g.S + g.steps, `cache grew to ${cache.capacity}`);
      // decode logits [D][B, V] → golden layout [B, D, V]
      const ours = new Float32Array(g.B * g.steps * g.vocab);
      steps.forEach((d, j) => {
        const lv = d.logits.toFloat32();
        for (let b = 0; b < g.B; b++) ours.set(lv.subarray(b * g.vocab, (b + 1) * g.vocab), (b * g.steps + j) * g.vocab);
      });
      // against the golden: `dsv32 golden --device-forward` (every decode top-k row and route exact, logits
      // within 1e-4, up to FP8 rounding ties: src/model/fp8-ties.ts)
      for (const r of runGolden(fixturesDir, set, 'f32', dev.name, true)) assert.ok(r.ok, `${r.what}: ${r.value} (${r.bound})`);

      // the MHA == MQA invariant on the device path: one prefill of prompt + decode tokens
      const ext = df.prefill(g.tokens.map((r, b) => [...r, ...g.decodeTokens[b]!]));
      const E = g.S + g.steps;
      const el = ext.logits!.toFloat32();
      const extAt = new Float32Array(g.B * g.steps * g.vocab);
      for (let b = 0; b < g.B; b++) extAt.set(el.subarray((b * E + g.S) * g.vocab, (b * E + E) * g.vocab), b * g.steps * g.vocab);
      const inv = maxAbsDiff(ours, extAt);
      assert.ok(inv.d <= 1e-4 * inv.ref, `decode vs extended prefill: max |Δ| ${inv.d} > 1e-4·${inv.ref}`);
      for (let l = 0; l < cfg.nLayers; l++) {
        for (let j = 0; j < g.steps; j++) {
          for (let b = 0; b < g.B; b++) {
            const pos = b * E + g.S + j;
            assert.deepEqual(row(steps[j]!.topk[l]!.idx, b, g.k), row(ext.topk[l]!.idx, pos, g.k), `extended prefill top-k, layer ${l} step ${j} row ${b}`);
            if (l >= cfg.nDenseLayers) assert.deepEqual(row(steps[j]!.routes[l]!, b, g.nAct), row(ext.routes[l]!, pos, g.nAct), `extended prefill routes, layer ${l} step ${j} row ${b}`);
          }
        }
      }
    });
  }

  // Off the fixtures' path: softmax scoring, no shared expert, no FP8, and index_topk 5 far below the
  // context, so every decode step's sparse choice matters. Device decode must make the host model's
  // (absorbed MQA) choices and logits, and equal the device's own extended prefill.
  test(`device decode on ${dev.name} equals the host model's decode on a random checkpoint with index_topk 5`, { skip: dev.skip }, () => {
    const cfg = randomConfig({
      num_hidden_layers: 2, vocab_size: 128, scoring_func: 'softmax', topk_method: 'greedy', n_group: 1, topk_group: 1,
      n_shared_experts: 0, index_topk: 5, routed_scaling_factor: 1.5,
    });
    const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 11)));
    const prompt = [[3, 9, 27, 81, 115, 89, 11, 33], [5, 25, 125, 113, 53, 9, 45, 97]];
    const next = [[41, 7, 2, 64, 19], [1, 5, 25, 4, 100]];
    const hostCache = m.newCache(2);
    m.forward(prompt, { cache: hostCache, logits: 'none' });
    const df = new DeviceForward(m, dev.name);
    const cache = df.prefill(prompt, { cache: true, logits: 'none' }).cache!;
    assert.equal(cache.capacity, prompt[0]!.length + 256);
    const all = prompt.map((r, b) => [...r, ...next[b]!]);
    const ext = df.prefill(all);
    const E = all[0]!.length;
    for (let j = 0; j < next[0]!.length; j++) {
      const step = next.map((r) => r[j]!);
      const host = m.forward(step.map((t) => [t]), { cache: hostCache });
      const d = df.decode(cache, step);
      for (let l = 0; l < cfg.nLayers; l++) {
        assert.equal(d.topk[l]!.width, 5);
        assert.deepEqual(Array.from(d.topk[l]!.idx), Array.from(host.topk[l]!.idx), `step ${j} layer ${l} top-k vs host`);
        assert.deepEqual(d.routes[l] && Array.from(d.routes[l]!), host.routes[l] && Array.from(host.routes[l]!), `step ${j} layer ${l} routes vs host`);
        for (let b = 0; b < 2; b++) assert.deepEqual(row(d.topk[l]!.idx, b, 5), row(ext.topk[l]!.idx, b * E + prompt[0]!.length + j, 5), `step ${j} layer ${l} row ${b} vs extended prefill`);
      }
      const hv = host.logits!.toFloat32();
      const vh = maxAbsDiff(d.logits.toFloat32(), hv);
      assert.ok(vh.d <= 1e-5 * vh.ref, `step ${j} logits vs host decode: max |Δ| ${vh.d} (max |logit| ${vh.ref})`);
      const el = ext.logits!.toFloat32();
      const at = new Float32Array(2 * cfg.vocabSize);
      for (let b = 0; b < 2; b++) at.set(el.subarray((b * E + prompt[0]!.length + j) * cfg.vocabSize, (b * E + prompt[0]!.length + j + 1) * cfg.vocabSize), b * cfg.vocabSize);
      const ve = maxAbsDiff(d.logits.toFloat32(), at);
      assert.ok(ve.d <= 1e-5 * ve.ref, `step ${j} logits vs extended prefill: max |Δ| ${ve.d} (max |logit| ${ve.ref})`);
    }
    assert.equal(cache.length, E);

    // bad input: a wrong count of next tokens, an id outside the vocabulary, a cache of another forward
    assert.throws(() => df.decode(cache, [1]), (e: unknown) => e instanceof TokenError && /expected 2 next tokens/.test(e.message));
    assert.throws(() => df.decode(cache, [1, cfg.vocabSize]), (e: unknown) => e instanceof TokenError && /decode tokens: token 128 at row 1/.test(e.message));
    assert.equal(cache.length, E, 'a rejected step leaves the cache as it was');
    const other = new DeviceForward(m, dev.name);
    assert.throws(() => other.decode(cache, [1, 2]), (e: unknown) => e instanceof DeviceError && /not made by this DeviceForward/.test(e.message));
    assert.throws(() => df.prefill(prompt, { cache: { capacity: 3 } }), (e: unknown) => e instanceof DeviceError && /capacity 3 must be an integer ≥ the 8 prompt tokens/.test(e.message));
  });
}
