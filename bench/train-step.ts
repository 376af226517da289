// Speed of one training step on this machine (forward + backward + AdamW), random weights, f32 master
// weights: tokens/s per phase (dense pretrain, DSA warm-up, sparse stage) at a given shape, the model
// TFLOPS (src/model/flops.ts) and, on an H100 or H200, the MFU.
//   node dist/bench/train-step.js [--shape tiny|small|cpu-mid|mid] [--config '{"hidden_size":384,...}'] [--batch 2] [--seq 64] [--steps 3] [--device cpu] [--numerics f32|bf16] [--profile] [--phases pretrain,warmup,sparse]
// (--profile: after the timed steps, one more step per phase with every backend op timed on its own,
//  printed as a table by total time with the costliest argument shapes and the kernels each op launched)
// (--config: config.json fields laid over the shape, as inline JSON or a file)
import { existsSync, readFileSync } from 'node:fs';
import { median, opt, profiledOnce } from './harness.js';
import { SHAPES } from './shapes.js';
import { DeepseekV32, randomCheckpoint, randomConfig } from '../src/model/index.js';
import { trainFlopsPerToken, type FlopsPhase } from '../src/model/flops.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { mapSource } from '../src/model/weights.js';
import { objective } from '../src/train/objective.js';
import { AdamW } from '../src/train/optim.js';
import { backwardReleasing, releaseDeadTensors } from '../src/tensor/memory.js';

const TRAIN_SHAPES: Record<string, Record<string, unknown>> = {
  // the training tests' model (test/train/tiny.ts)
  tiny: { vocab_size: 64, hidden_size: 64, intermediate_size: 96, moe_intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, q_lora_rank: 32, qk_nope_head_dim: 16, v_head_dim: 16, index_n_heads: 2, index_topk: 4, num_nextn_predict_layers: 1 },
  // randomConfig's defaults (dim 256, 3 layers, 8 experts top-2) with one MTP layer
  small: { num_nextn_predict_layers: 1 },
  'cpu-mid': SHAPES['cpu-mid']!,
  // issue 12's GPU comparison size (530 M parameters, index_topk 2 048)
  mid: SHAPES['mid']!,
};
const shape = opt('--shape') ?? 'small';
const B = Number(opt('--batch') ?? 2);
const S = Number(opt('--seq') ?? 64);
const steps = Number(opt('--steps') ?? 3);
const device = opt('--device') ?? 'cpu';
const numerics = (opt('--numerics') ?? 'f32') as 'f32' | 'bf16';
const chosen = TRAIN_SHAPES[shape];
if (!chosen) {
  console.error(`unknown --shape ${shape}: one of ${Object.keys(TRAIN_SHAPES).join(', ')}`);
  process.exit(2);
}
const over = opt('--config');
let extra: Record<string, unknown> = {};
if (over !== undefined) {
  try {
    extra = JSON.parse(existsSync(over) ? readFileSync(over, 'utf8') : over) as Record<string, unknown>;
  } catch (e) {
    console.error(`--config: expected a JSON object or a JSON file, got ${over.slice(0, 60)} (${(e as Error).message})`);
    process.exit(2);
  }
}
const cfg = randomConfig({ ...chosen, ...extra });
const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)), { master: 'f32', device });
const params = model.weights.parameters();
const opt2 = new AdamW(params, { lr: 1e-4 });
const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 7919) % cfg.vocabSize);
const nParams = params.reduce((a, [, p]) => a + p.numel, 0);
process.stdout.write(`shape ${shape}${over ? ' + --config' : ''} (${(nParams / 1e6).toFixed(2)} M params), B ${B} × S ${S}, index_topk ${cfg.indexTopk}, ${numerics}, ${device}\n`);
const PHASES = ['pretrain', 'warmup', 'sparse'] as const;
const phases = (opt('--phases') ?? PHASES.join(',')).split(',');
const bad = phases.find((p) => !(PHASES as readonly string[]).includes(p));
if (bad) {
  console.error(`--phases: unknown phase '${bad}'; expected a comma-separated list of ${PHASES.join(', ')}`);
  process.exit(2);
}
const profiling = process.argv.includes('--profile');
// model FLOPs (src/model/flops.ts) per phase; MFU against the dense bf16 tensor-core peak of an H100 or H200
// SXM (989 TFLOPS, NVIDIA's datasheets; both chips have the same compute), the peak the bf16 numerics target
const FLOPS_PHASE: Record<(typeof PHASES)[number], FlopsPhase> = { pretrain: 'dense', warmup: 'warmup', sparse: 'sparse' };
const gpu = device === 'cuda' ? cudaBackend().rt.info.name : '';
const peak = /H100|H200/.test(gpu) ? { tflops: 989, what: `${gpu}'s dense bf16 peak (989 TFLOPS)` } : null;
type Phase = (typeof PHASES)[number];
/** One optimizer step of `phase` (forward, backward with device-memory pauses, AdamW); its wall ms. */
async function trainStep(phase: Phase): Promise<number> {
  const t = performance.now();
  const r = objective(model, ids, B, S, { numerics, attention: phase === 'sparse' ? 'sparse' : 'dense', indexerLoss: phase !== 'pretrain', lm: phase !== 'warmup' });
  opt2.zeroGrad();
  await releaseDeadTensors(device);
  await backwardReleasing(r.loss, device);
  opt2.step();
  model.weights.update();
  r.loss.item();
  const ms = performance.now() - t;
  await releaseDeadTensors(device);
  return ms;
}
for (const phase of PHASES.filter((p) => phases.includes(p))) {
  for (const [n, p] of params) p.requiresGrad = phase !== 'warmup' || n.includes('.indexer.');
  const times: number[] = [];
  const be = params[0]![1].backend;
  be.resetPeakMemory?.(); // the peak printed is this phase's
  // allocations of the timed steps that went to the driver (each cuMemAlloc waits for the device) / the cache
  let allocs0 = { driver: 0, cache: 0 };
  for (let i = 0; i < steps + 1; i++) {
    if (i === 1) allocs0 = { driver: be.memoryStats?.().driverAllocs ?? 0, cache: be.memoryStats?.().cacheHits ?? 0 };
    const ms = await trainStep(phase);
    if (i > 0) times.push(ms); // the first step warms up
  }
  const st = be.memoryStats?.();
  const allocs = st?.driverAllocs === undefined ? '' : `  allocations a step: ${((st.driverAllocs - allocs0.driver) / steps).toFixed(0)} driver, ${(((st.cacheHits ?? 0) - allocs0.cache) / steps).toFixed(0)} cached`;
  if (profiling) {
    const p = await profiledOnce(be, () => trainStep(phase));
    process.stdout.write(`--- ${phase}: one step with every op synchronised: ${p.ms.toFixed(0)} ms\n${p.table}\n`);
  }

  const ms = median(times);
  const mem = be.memoryStats?.();
  const gb = (n: number): string => (n / 2 ** 30).toFixed(1);
  const tps = (B * S * 1000) / ms;
  const tflops = (tps * trainFlopsPerToken(cfg, S, FLOPS_PHASE[phase])) / 1e12;
  const mfu = peak ? `, MFU ${((100 * tflops) / peak.tflops).toFixed(1)}% of the ${peak.what}` : '';
  process.stdout.write(`${phase.padEnd(8)} ${ms.toFixed(0)} ms/step  ${tps.toFixed(0)} tokens/s  ${tflops.toFixed(2)} model TFLOPS${mfu}${mem ? `  device memory ${gb(mem.allocated)} GiB held, peak ${gb(mem.peak)} GiB` : ''}${allocs}\n`);
}
