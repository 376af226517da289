// Where the device memory of a forward's dead tensors goes between forwards (a script, not a test): the
// mid config's random weights, an S-token MQA prefill (default 4 096) run four times back to back, then
// four times each after releaseDeadTensors (src/tensor/memory.ts), with the caching allocator's counters.
// Without a release nothing of the previous forward comes back (V8 collects under JS-heap pressure only,
// which device tensors do not create), so every allocation is a cuMemAlloc and the reserved memory grows
// by a forward's garbage each time.
//   node dist/bench/alloc-release.js [--tokens 4096]
import { cudaBackend } from '../src/backend/cuda/index.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../src/model/index.js';
import { releaseDeadTensors } from '../src/tensor/memory.js';
import { argError, benchDevice, opt } from './harness.js';
import { SHAPES } from './shapes.js';

benchDevice('alloc-release bench');
const S = Number(opt('--tokens') ?? 4096);
if (!Number.isInteger(S) || S < 1) argError(`--tokens must be a positive integer, got '${opt('--tokens')}'`);
const cfg = randomConfig({ ...SHAPES.mid, max_position_embeddings: Math.max(8192, S) });
const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)), { device: 'cuda' });
const be = cudaBackend();
const toks = [Array.from({ length: S }, (_, i) => (i * 7919 + 13) % cfg.vocabSize)];
/** host ms of one prefill, synchronised by reading its logits */
const run = (): number => {
  const t = performance.now();
  m.forward(toks, { numerics: 'bf16', mode: 'mqa', logits: 'last', cache: m.newCache(1, { format: 'bf16' }) }).logits!.toFloat32();
  return performance.now() - t;
};
const stats = (): Record<string, number> => {
  const s = be.memoryStats();
  return { driverAllocs: s.driverAllocs, cacheHits: s.cacheHits, reservedGB: +(s.reserved / 2 ** 30).toFixed(1) };
};
run();
for (let i = 0; i < 4; i++) console.log(JSON.stringify({ release: false, forwardMs: +run().toFixed(1), ...stats() }));
for (let i = 0; i < 4; i++) {
  const t = performance.now();
  await releaseDeadTensors('cuda');
  const releaseMs = performance.now() - t;
  console.log(JSON.stringify({ release: true, releaseMs: +releaseMs.toFixed(1), forwardMs: +run().toFixed(1), ...stats() }));
}
