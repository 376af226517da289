// Tensor-parallel parity at a real shape (a script, not a test): the mid config's random weights split over
// N ranks (threads of this process, each holding its share on --device and exchanging through host
// memory, src/dist/thread-collective.ts) against the whole model on the same device, one prefill of
// --tokens tokens. The ranks replay the whole model's selections and routes, so only arithmetic differs;
// their free choices are compared too. One JSON line per (ranks, numerics):
//   node dist/bench/tp-parity.js [--device cpu|cuda] [--shape mid] [--ranks 2,4] [--numerics f32,bf16] [--tokens 256]
// Correctness only: ranks sharing one device say nothing of multi-GPU speed (docs/multi-gpu.md).
import { runThreadRanks } from '../src/dist/thread-collective.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, selectionIndices, type Numerics } from '../src/model/index.js';
import { checkShardable } from '../src/model/parallel.js';
import { argError, benchDevice, opt } from './harness.js';
import { shapeOf } from './shapes.js';
import type { ParityRank, ParityOut } from './tp-parity-rank.js';

const device = opt('--device') ?? 'cpu';
if (device === 'cuda') {
  benchDevice('tp-parity bench', 'or run it with --device cpu');
  await import('../src/backend/cuda/index.js');
}
else if (device !== 'cpu') argError(`--device must be cpu or cuda, got '${device}'`);
const shape = opt('--shape') ?? 'mid';
const ranks = (opt('--ranks') ?? '2,4').split(',').map(Number);
if (ranks.some((n) => !Number.isInteger(n) || n < 1)) argError(`--ranks must list positive integers, got '${opt('--ranks')}'`);
const numericsList = (opt('--numerics') ?? 'f32,bf16').split(',') as Numerics[];
if (numericsList.some((n) => n !== 'f32' && n !== 'bf16')) argError(`--numerics must list f32 and/or bf16, got '${opt('--numerics')}'`);
const S = Number(opt('--tokens') ?? '256');
if (!Number.isInteger(S) || S < 2) argError(`--tokens must be an integer ≥ 2, got '${opt('--tokens')}'`);
const SEED = 11;

const overrides = { ...shapeOf(shape), max_position_embeddings: Math.max(4096, S) };
const cfg = randomConfig(overrides);
for (const N of ranks) {
  try {
    checkShardable(cfg, N);
  } catch (e) {
    argError(`--ranks ${N}: ${(e as Error).message}`);
  }
}
const t0 = performance.now();
const whole = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, SEED)), { device });
const tokens = [Array.from({ length: S }, (_, i) => (i === 0 ? 0 : (i * 104729 + 17) % cfg.vocabSize))];
console.error(`# ${shape} on ${device}, ${S} tokens; whole model ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const agree = (a: (Int32Array | null)[], b: (Int32Array | null)[]): number => {
  let same = 0;
  let n = 0;
  a.forEach((x, l) => {
    if (!x) return;
    for (let i = 0; i < x.length; i++, n++) if (x[i] === b[l]![i]) same++;
  });
  return n ? same / n : 1;
};

for (const numerics of numericsList) {
  const free = whole.forward(tokens, { numerics });
  // a selection is [T, min(index_topk, context)] wide; a forced one must be [T, index_topk], −1 padded
  const k = cfg.indexTopk;
  const freeTopk = free.topk.map(selectionIndices);
  const forcedTopk = free.topk.map((sel) => {
    const w = sel.width;
    const idx = selectionIndices(sel);
    const out = new Int32Array(S * k).fill(-1);
    for (let t = 0; t < S; t++) out.set(idx.subarray(t * w, (t + 1) * w), t * k);
    return out;
  });
  const forcedRoutes = free.routes.map((r) => (r ? (r.toHost() as Int32Array) : null));
  const ref = whole.forward(tokens, { numerics, forcedTopk, forcedRoutes }).logits!.toFloat32();
  const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (const N of ranks) {
    const r0 = performance.now();
    const outs = await runThreadRanks<ParityOut>(N, new URL('./tp-parity-rank.js', import.meta.url), { overrides, seed: SEED, device, numerics, tokens, forcedTopk, forcedRoutes } satisfies ParityRank, { timeoutMs: 600_000 });
    const mine = outs[0]!.logits;
    let maxAbs = 0;
    let sumAbs = 0;
    let maxPos = -1;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(mine[i]! - ref[i]!);
      sumAbs += d;
      if (d > maxAbs) {
        maxAbs = d;
        maxPos = Math.floor(i / cfg.vocabSize);
      }
    }
    // the first position whose logits moved by more than 1e-4 of the largest logit (a flipped rounding
    // moves the positions after it)
    let firstMoved = -1;
    for (let p = 0; p < S && firstMoved < 0; p++) {
      for (let v = 0; v < cfg.vocabSize; v++) {
        if (Math.abs(mine[p * cfg.vocabSize + v]! - ref[p * cfg.vocabSize + v]!) > 1e-4 * scale) {
          firstMoved = p;
          break;
        }
      }
    }
    console.log(JSON.stringify({
      shape, device, numerics, tokens: S, ranks: N,
      ranksIdentical: outs.every((o) => o.logits.every((v, i) => Object.is(v, mine[i]))),
      maxAbs: +maxAbs.toExponential(3), maxRel: +(maxAbs / scale).toExponential(3), meanRel: +(sumAbs / ref.length / scale).toExponential(3),
      maxAtPosition: maxPos, firstPositionBeyond1e4: firstMoved, largestLogit: +scale.toFixed(3),
      freeRoutesSame: +agree(outs[0]!.routes, forcedRoutes).toFixed(5), freeSelectionsSame: +agree(outs[0]!.topk, freeTopk).toFixed(5),
      wallS: +((performance.now() - r0) / 1000).toFixed(1),
    }));
  }
}
