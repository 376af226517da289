// Engine throughput on a random-weight model (a script, not a test):
//   node dist/bench/engine.js [--device cpu|cuda] [--shape tiny|cpu-mid|mid | --model DIR] [--numerics f32|bf16]
//        [--batches 1,4,16] [--prompt 64] [--gen 32] [--spec 0] [--vocab V] [--temperature 0] [--top-p 1] [--mask]
//        [--cuda-graphs on|off|both] [--sampler-threads N] [--kv-cache fp8|bf16|f32] [--device-sampling on|off|both] [--dense] [--attention auto|mqa]
// For each batch size B, B concurrent requests (greedy unless --temperature; --top-p filters, --mask records
// each token's sampling mask, as RL rollouts do) (distinct prompts, ignoreEos) of `prompt` tokens
// generate `gen` tokens each. Reported per B: TTFT (first token after submission) mean, TPOT (mean gap
// between a sequence's tokens after the first), decode throughput B / TPOT, end-to-end tokens/s, and the
// model-only time of the same decode
// (model.forward of B one-token rows on a filled cache), so the engine's own overhead shows as the gap;
// modelShareOfEngine is the fraction of the engine's wall time spent inside model.step/mtpStep.
// steadyTokPerS: the tokens that arrived after every sequence had its first one, over that stretch — the
// decode phase alone, where TPOT also spans steps that carried other prompts' prefill chunks (with many
// long prompts and a short --gen most of them: 64 × 1 024-token prompts, --gen 32, H100, 2026-12-06).
// --cuda-graphs (default on): the engine's CUDA-graph decode (EngineOptions.cudaGraphs; it only takes
// effect on CUDA); 'both' runs each B twice, graphs off then on, so one run compares them. With graphs
// the replayed steps do not pass through model.step, so modelShareOfEngine counts only eager steps;
// graphReplays / graphCaptures say how many steps replayed and how many buckets were captured.
// --device-sampling (default: the engine's, on off the CPU): tokens picked where the logits are
// (EngineOptions.deviceSampling) instead of reading the logits back; 'both' runs it off
// then on; deviceSampledSteps counts the steps that did.
// --dense: dense attention (every causal key, no indexer: EngineOptions.denseAttention), the baseline DSA
// is compared against, in the engine and in the model-alone steps; the line says keys "dense" (else "dsa").
// One JSON line per B (per B and graph setting with 'both') on stdout.
import { LLMEngine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/types.js';
import { DeepseekV32, loadConfig, mapSource, randomCheckpoint, randomConfig } from '../src/model/index.js';
import { opt } from './harness.js';
import { releaseDeadTensors } from '../src/tensor/memory.js';
import type { MlaCacheFormat } from '../src/tensor/ops/sparse-mla.js';
import { shapeOf } from './shapes.js';

const arg = (name: string, dflt: string): string => opt(name) ?? dflt;
const device = arg('--device', 'cpu');
if (device === 'cuda') await import('../src/backend/cuda/index.js');
const shape = opt('--model')?.replace(/\/+$/, '').split('/').pop() ?? arg('--shape', 'tiny');
const numerics = arg('--numerics', 'f32') as 'f32' | 'bf16';
const batches = arg('--batches', '1,4,16').split(',').map(Number);
const P = Number(arg('--prompt', '64'));
const G = Number(arg('--gen', '32'));
const spec = Number(arg('--spec', '0'));
const graphsArg = arg('--cuda-graphs', 'on');
if (!['on', 'off', 'both'].includes(graphsArg)) {
  console.error(`engine bench: --cuda-graphs must be on, off or both, got "${graphsArg}"`);
  process.exit(2);
}
const graphModes = graphsArg === 'both' ? [false, true] : [graphsArg === 'on'];
const samplingArg = opt('--device-sampling');
if (samplingArg !== undefined && !['on', 'off', 'both'].includes(samplingArg)) {
  console.error(`engine bench: --device-sampling must be on, off or both, got "${samplingArg}"`);
  process.exit(2);
}
const samplingModes: (boolean | undefined)[] = samplingArg === undefined ? [undefined] : samplingArg === 'both' ? [false, true] : [samplingArg === 'on'];
// the engine's sampling threads (default: its own choice, defaultSamplerThreads; 0: the main thread only)
const samplerThreads = opt('--sampler-threads') === undefined ? undefined : Number(opt('--sampler-threads'));

const vocab = process.argv.includes('--vocab') ? { vocab_size: Number(arg('--vocab', '0')) } : {};
const modelDir = opt('--model');
const cfg = modelDir ? loadConfig(`${modelDir}/config.json`) : randomConfig({ ...shapeOf(shape), ...vocab, num_nextn_predict_layers: spec > 0 ? 1 : 0 });
const temperature = Number(arg('--temperature', '0'));
const topP = Number(arg('--top-p', '1'));
if (!(temperature >= 0 && Number.isFinite(temperature)) || !(topP > 0 && topP <= 1)) {
  console.error(`engine bench: --temperature must be a finite number ≥ 0 and --top-p in (0, 1], got ${arg('--temperature', '0')} and ${arg('--top-p', '1')}`);
  process.exit(2);
}
const returnSamplingMask = process.argv.includes('--mask');
// --kv-cache fp8|bf16|f32: the latent cache's format (default: the engine's own choice); an FP8 cache is
// read in the absorbed (MQA) form only, so the model-alone fill and steps run that form too
const kvCache = opt('--kv-cache') as MlaCacheFormat | undefined;
if (kvCache !== undefined && !['fp8', 'bf16', 'f32'].includes(kvCache)) {
  console.error(`--kv-cache must be fp8, bf16 or f32, got '${kvCache}'`);
  process.exit(2);
}
// --attention mqa: every chunk in the absorbed form (EngineOptions.attention), prefill included; default the
// engine's own ('auto': MHA for prefill chunks; MQA with an FP8 cache)
const attentionArg = opt('--attention');
if (attentionArg !== undefined && attentionArg !== 'auto' && attentionArg !== 'mqa') {
  console.error(`engine bench: --attention must be auto or mqa, got '${attentionArg}'`);
  process.exit(2);
}
const mode = kvCache === 'fp8' || attentionArg === 'mqa' ? 'mqa' : undefined;
const dense = process.argv.includes('--dense');
const model = modelDir ? DeepseekV32.load(modelDir, { device }) : DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)), { device });
model.forward([[1, 2, 3, 4]], { numerics }); // load every weight
// time inside the model's steps (main and MTP), to split the engine's time into model and the rest
const inModel = { ms: 0, steps: 0 };
for (const name of ['step', 'mtpStep'] as const) {
  const orig = model[name].bind(model) as (...a: unknown[]) => unknown;
  (model as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
    const t = performance.now();
    try {
      return orig(...a);
    } finally {
      inModel.ms += performance.now() - t;
      if (name === 'step') inModel.steps++;
    }
  };
}

const prompt = (b: number): number[] => Array.from({ length: P }, (_, i) => (i * 7919 + b * 104729 + 13) % cfg.vocabSize);
const now = (): number => performance.now();

for (const B of batches) {
  // the model alone: B one-token rows per step on a cache filled with the prompts
  const cache = model.newCache(B, kvCache ? { format: kvCache } : {});
  // filled in position chunks of at most 16K tokens a forward, the dead tensors released between them: 64
  // prompts of 1024 ran an H100 out of memory both in one forward and in four without the releases
  // (2026-12-06; nothing made in a synchronous job is reclaimed before it ends: src/tensor/memory.ts)
  const fill = Math.max(1, Math.floor(16384 / B));
  for (let p0 = 0; p0 < P; p0 += fill) {
    model.forward(Array.from({ length: B }, (_, b) => prompt(b).slice(p0, p0 + fill)), { cache, logits: 'none', numerics, mode, dense });
    await releaseDeadTensors(device);
  }
  const steps = 8;
  const m0 = now();
  for (let i = 0; i < steps; i++) model.forward(Array.from({ length: B }, (_, b) => [(b + i) % cfg.vocabSize]), { cache, logits: 'last', numerics, mode, dense }).logits!.toFloat32();
  const modelStep = (now() - m0) / steps;
  for (const cudaGraphs of graphModes) for (const deviceSampling of samplingModes) {
    const blocksPer = Math.ceil((P + G + 4) / 64);
    const engine = new LLMEngine(model, { numBlocks: B * blocksPer + 2, maxNumSeqs: Math.max(B, 1), maxBatchTokens: Math.max(2048, B * (1 + spec)), numerics, speculativeTokens: spec, cudaGraphs, samplerThreads, cacheFormat: kvCache, deviceSampling, denseAttention: dense, attention: mode });
    inModel.ms = 0;
    inModel.steps = 0;
    const t0 = now();
    const first: number[] = [];
    const last: number[] = [];
    const gaps: number[] = [];
    const stamps: number[] = []; // every token's arrival
    await Promise.all(Array.from({ length: B }, async (_, b) => {
      let prev = 0;
      const it: AsyncIterable<EngineEvent> = engine.generate({ id: `r${b}`, promptIds: prompt(b), params: { temperature, topP, returnSamplingMask, seed: b, maxTokens: G, ignoreEos: true } });
      for await (const ev of it) {
        if (ev.type !== 'token') continue;
        const t = now();
        stamps.push(t);
        if (first[b] === undefined) first[b] = t;
        else gaps.push(t - prev);
        prev = t;
      }
      last[b] = prev;
    }));
    const end = Math.max(...last);
    // the decode phase alone: tokens after every sequence has its first one (no prefill chunk left in a
    // step), over that stretch; TPOT above also spans the steps that carried other prompts' chunks
    const allFirst = Math.max(...first);
    const steady = stamps.filter((t) => t > allFirst).length;
    const s = engine.stats();
    const gs = engine.graphStats();
    const engineModel = { ...inModel };
    engine.close();
    const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
    console.log(JSON.stringify({
      device, samplerThreads: samplerThreads ?? 'default', shape, vocab: cfg.vocabSize, numerics, keys: dense ? 'dense' : 'dsa', attention: mode ?? 'auto', kvCache: kvCache ?? 'default', temperature, topP, mask: returnSamplingMask, batch: B, prompt: P, gen: G, spec,
      cudaGraphsAsked: cudaGraphs, cudaGraphs: gs !== null, graphReplays: gs?.replays ?? 0, graphCaptures: gs?.captures ?? 0,
      ...(gs?.failures.length ? { graphFailures: gs.failures } : {}),
      ttftMs: +mean(first.map((t) => t - t0)).toFixed(2),
      tpotMs: +mean(gaps).toFixed(2),
      decodeTokPerS: +((1000 * B) / mean(gaps)).toFixed(1),
      steadyTokens: steady,
      steadyTokPerS: steady > 0 && end > allFirst ? +(steady / ((end - allFirst) / 1000)).toFixed(1) : null,
      totalTokPerS: +((B * G) / ((end - t0) / 1000)).toFixed(1),
      totalS: +((end - t0) / 1000).toFixed(3),
      engineSteps: engineModel.steps,
      modelShareOfEngine: +(engineModel.ms / (end - t0)).toFixed(3),
      modelDecodeStepMs: +modelStep.toFixed(2),
      modelDecodeTokPerS: +((B * 1000) / modelStep).toFixed(1),
      draftProposed: s.draftProposed, draftAccepted: s.draftAccepted, deviceSampledSteps: s.deviceSampledSteps,
    }));
  }
}
