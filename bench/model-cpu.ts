// CPU throughput of the model in f32: prefill and decode tokens/s on the tiny fixtures, then on a
// randomly initialised realistic small config (dim 1024, 8 layers, index_topk 256) at 1K-8K context.
// Decode time is split into the lightning indexer and the rest, to show that only the indexer's cost
// grows with the context (sparse attention reads index_topk keys whatever the length).
//   node dist/bench/model-cpu.js [--contexts 1024,2048,4096,8192] [--decode-steps 8]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeepseekV32, Indexer, mapSource, randomCheckpoint, randomConfig } from '../src/model/index.js';
import { Rng } from '../src/tensor/random.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const contexts = opt('--contexts', '1024,2048,4096,8192').split(',').map(Number);
const decodeSteps = Number(opt('--decode-steps', '8'));

// time spent inside Indexer.forward (the only per-step cost that scales with the context)
let indexerMs = 0;
const origForward = Indexer.prototype.forward;
Indexer.prototype.forward = function (this: Indexer, ...a: Parameters<typeof origForward>) {
  const t = performance.now();
  try {
    return origForward.apply(this, a);
  } finally {
    indexerMs += performance.now() - t;
  }
};

function tokens(B: number, S: number, vocab: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: B }, () => [0, ...Array.from({ length: S - 1 }, () => 2 + rng.int(vocab - 2))]);
}

function measure(m: DeepseekV32, B: number, ctx: number, steps: number): { prefillTps: number; decodeMs: number; decodeIndexerMs: number } {
  const toks = tokens(B, ctx + steps, m.cfg.vocabSize, ctx);
  let t = performance.now();
  const pre = m.forward(toks.map((r) => r.slice(0, ctx)), { logits: 'last' });
  const prefillS = (performance.now() - t) / 1000;
  indexerMs = 0;
  t = performance.now();
  for (let j = 0; j < steps; j++) m.forward(toks.map((r) => [r[ctx + j]!]), { cache: pre.cache, logits: 'last' });
  const decodeMs = (performance.now() - t) / steps;
  return { prefillTps: (B * ctx) / prefillS, decodeMs, decodeIndexerMs: indexerMs / steps };
}

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, '..', '..', '..', 'shared', 'fixtures');
console.log('# tiny fixtures (dim 256, 3 layers, index_topk 16), f32, batch 1');
console.log('set       | prefill 48 tok/s | decode ms/step @48 | decode tok/s');
for (const set of ['tiny-f32', 'tiny-fp8']) {
  const m = DeepseekV32.load(path.join(fixtures, set));
  measure(m, 1, 16, 2); // warm-up (weights load lazily)
  const r = measure(m, 1, 48, 16);
  console.log(`${set.padEnd(9)} | ${r.prefillTps.toFixed(0).padStart(16)} | ${r.decodeMs.toFixed(1).padStart(18)} | ${(1000 / r.decodeMs).toFixed(1).padStart(12)}`);
}

const cfg = randomConfig({
  vocab_size: 4096,
  hidden_size: 1024,
  intermediate_size: 2048,
  moe_intermediate_size: 512,
  num_hidden_layers: 8,
  first_k_dense_replace: 1,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  q_lora_rank: 512,
  kv_lora_rank: 256,
  qk_nope_head_dim: 64,
  qk_rope_head_dim: 32,
  v_head_dim: 64,
  n_routed_experts: 8,
  num_experts_per_tok: 2,
  n_group: 4,
  topk_group: 2,
  index_n_heads: 8,
  index_head_dim: 128,
  index_topk: 256,
});
let t0 = performance.now();
const big = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)));
measure(big, 1, 32, 1);
console.log(`\n# random config: dim 1024, 8 layers (1 dense + 7 MoE, 8 experts top-2), 8 heads, kv_lora 256, index 8×128, index_topk 256, f32, batch 1 (init ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
console.log('context | prefill tok/s | decode ms/step | of which indexer ms | rest ms | decode tok/s');
for (const ctx of contexts) {
  t0 = performance.now();
  const r = measure(big, 1, ctx, decodeSteps);
  console.log(
    `${String(ctx).padStart(7)} | ${r.prefillTps.toFixed(0).padStart(13)} | ${r.decodeMs.toFixed(1).padStart(14)} | ${r.decodeIndexerMs.toFixed(1).padStart(19)} | ${(r.decodeMs - r.decodeIndexerMs).toFixed(1).padStart(7)} | ${(1000 / r.decodeMs).toFixed(1).padStart(12)}`,
  );
}
