// Whole-model speed of a checkpoint, in the JSON lines of the official reference's harness
// (../shared/reference/bench_ref.py), so the two run side by side on the same weights:
//   python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda --prefill '' \
//       --decode-ctx '' --dump /tmp/dsv32-mid                                   # random weights → HF checkpoint
//   python3 tmp/reference/bench_ref.py --load /tmp/dsv32-mid --device cuda --prefill 1024,4096 --decode-ctx 1024,8192
//   node dist/bench/model-speed.js --model /tmp/dsv32-mid --device cuda --prefill 1024,4096 --decode-ctx 1024,8192
// Lines (stdout):
//   {"what":"prefill","S":S,"ms":median ms of one forward of S tokens at position 0,"tokens_per_s":..}
//   {"what":"decode","ctx":C,"ms":median ms per one-token forward at positions C..C+steps−1,"tokens_per_s":..,
//    "bytes": what the step must read (decodeBytes), "copy_GBps", "roofline_ms" = bytes / copy bandwidth,
//    "x_roofline" = ms / roofline_ms (issue 12's target: ≤ 1.5); the last three on the GPU only}
// Decode lines also give the context's fill (a chunked prefill of --fill-chunk tokens a forward, each chunk
// timed, as the engine prefills a long prompt) as fill_ms and fill_tokens_per_s.
// Batch 1 as the reference's default; numerics bf16 (f32 with --dtype f32); the latent cache in the numerics'
// own exact format (bf16 rows, or FP8 656 B rows with --kv-cache fp8, MQA decode either way). Prefill runs
// the reference's 'auto' attention (MHA for multi-token steps). A decode context C is filled by a real
// prefill of C tokens in chunks of --fill-chunk (4 096; the reference prefills up to its --max-real-prefill
// in one forward, then replicates). Times: CUDA events around the forward (its host
// work included: a forward is one call), the host clock on the CPU; before each timed run the dead tensors'
// device blocks are given back (releaseDeadTensors, untimed), so its allocations come from the cache as
// the engine's do, not from cuMemAlloc (measured on an H100 at the mid config's 4 096-token MQA prefill,
// bench/alloc-release.ts: ~103 ms a forward without, 80 ms with); `--repeat` prefill runs and `--steps`
// decode steps, medians, after one untimed warm-up of each. --profile: one more prefill of each S with every
// backend op synchronised and timed, its table on stderr; and one more decode step at each context with each
// op's kernels timed by CUDA events behind a held stream (gpuTimedOnce: device time alone, as a graph runs).
// --dense: dense attention (every causal key, no indexer: model.ts StepOptions.dense), the baseline DSA is
// compared against on the same weights and kernels; the lines say "keys":"dense" (else "dsa").
//   node dist/bench/model-speed.js --model ../shared/fixtures/tiny-f32 --device cpu --prefill 64 --decode-ctx 64 --steps 4
import { cudaBackend } from '../src/backend/cuda/index.js';
import { DeepseekV32 } from '../src/model/index.js';
import { mlaCacheBytesPerToken, type MlaCacheFormat } from '../src/tensor/ops/sparse-mla.js';
import { INDEXER_PAGE, indexerPageBytes } from '../src/tensor/ops/dsa-indexer.js';
import { releaseDeadTensors } from '../src/tensor/memory.js';
import { argError, gpuTimedOnce, median, opt, profiledOnce } from './harness.js';
import * as T from '../src/tensor/index.js';

const dir = opt('--model');
if (!dir) argError('model-speed: --model DIR (a Hugging Face DeepSeek-V3.2 checkpoint) is required');
const device = opt('--device') ?? 'cuda';
const numerics = (opt('--dtype') ?? 'bf16') as 'bf16' | 'f32';
if (numerics !== 'bf16' && numerics !== 'f32') argError(`model-speed: --dtype must be bf16 or f32, got ${numerics}`);
const format = (opt('--kv-cache') ?? (numerics === 'bf16' ? 'bf16' : 'f32')) as MlaCacheFormat;
const list = (name: string, dflt: string): number[] => (opt(name) ?? dflt).split(',').filter((s) => s !== '').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) argError(`model-speed: ${name} wants positive integers, got ${s}`);
  return n;
});
const prefills = list('--prefill', '1024,4096');
const contexts = list('--decode-ctx', '1024,4096');
const steps = Number(opt('--steps') ?? 32);
const repeat = Number(opt('--repeat') ?? 3);
const profile = process.argv.includes('--profile');
const dense = process.argv.includes('--dense');

const model = DeepseekV32.load(dir, { device });
const V = model.cfg.vocabSize;
const tokens = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + 13) % V);
const onGpu = device !== 'cpu';
const ev = onGpu ? [cudaBackend().event(), cudaBackend().event()] as const : null;
/** ms of fn(): CUDA events on the GPU (after the forward's logits are read back, as a server would). */
function timed(fn: () => void): number {
  if (!ev) {
    const t = performance.now();
    fn();
    return performance.now() - t;
  }
  ev[0].record();
  fn();
  ev[1].record();
  ev[1].synchronize();
  return ev[1].since(ev[0]);
}
// --attention auto (default): the reference's own algorithm, MHA for multi-token steps (the reference-mode
// sparse MHA kernel); mqa: the absorbed form the engine runs (an FP8 cache is read in that form only)
const attention = opt('--attention') ?? (format === 'fp8' ? 'mqa' : 'auto');
if (attention !== 'auto' && attention !== 'mqa') argError(`model-speed: --attention must be auto or mqa, got ${attention}`);
const mode = attention;
let copyBW: number | null | undefined; // copyGBps()'s measurement, taken once
const line = (o: Record<string, unknown>): void => console.log(JSON.stringify({ impl: 'dsv32', device, numerics, kv_cache: format, attention, keys: dense ? 'dense' : 'dsa', ...o }));

for (const S of prefills) {
  const run = (): void => {
    const r = model.forward([tokens(S, S)], { numerics, mode, dense, cache: model.newCache(1, { format, capacity: S }), logits: 'last' });
    r.logits!.toFloat32();
  };
  run();
  const ts: number[] = [];
  for (let i = 0; i < repeat; i++) {
    await releaseDeadTensors(device);
    ts.push(timed(run));
  }
  const ms = median(ts);
  line({ what: 'prefill', S, ms, tokens_per_s: (S / ms) * 1e3 });
  if (profile) {
    const p = await profiledOnce(T.getBackend(device), run);
    process.stderr.write(`--- prefill S ${S}: one forward with every op synchronised: ${p.ms.toFixed(1)} ms\n${p.table}\n`);
  }
}
// A forward's device memory comes back only after its job ends (src/tensor/memory.ts), so a context is
// filled in chunks of --fill-chunk tokens with a release between them, as the engine's chunked prefill
// does: one 32 768-token forward of the mid config held all of an H100's 80 GB (measured 2026-12-06).
const fillChunk = Number(opt('--fill-chunk') ?? 4096);
if (!Number.isInteger(fillChunk) || fillChunk < 1) argError(`model-speed: --fill-chunk wants a positive integer, got ${opt('--fill-chunk')}`);
for (const C of contexts) {
  await releaseDeadTensors(device);
  const cache = model.newCache(1, { format, capacity: C + steps + 1 });
  const fill = tokens(C, C);
  // the fill is a chunked prefill, as the engine runs a long prompt: its time (each chunk timed, the
  // releases between them not) is reported as the context's prefill rate
  let fillMs = 0;
  for (let p = 0; p < C; p += fillChunk) {
    fillMs += timed(() => model.forward([fill.slice(p, p + fillChunk)], { numerics, mode, dense, cache, logits: 'none' }));
    await releaseDeadTensors(device);
  }
  let next = 1;
  // one decode step as the engine runs it (no positions' top-k), its logits left on the device
  const forwardNext = () => model.forward([[next]], { numerics, mode, dense, cache, logits: 'last', topk: false });
  const step = (): void => {
    const l = forwardNext().logits!.toFloat32();
    let best = 0;
    for (let j = 1; j < V; j++) if (l[j]! > l[best]!) best = j;
    next = best;
  };
  step();
  const ts: number[] = [];
  for (let i = 0; i < steps; i++) {
    await releaseDeadTensors(device);
    ts.push(timed(step));
  }
  const ms = median(ts);
  const bytes = decodeBytes(C);
  const bw = copyGBps();
  const roofMs = bw === null ? null : bytes / (bw * 1e6);
  line({ what: 'decode', ctx: C, ms, tokens_per_s: 1e3 / ms, fill_chunk: fillChunk, fill_ms: fillMs, fill_tokens_per_s: (C / fillMs) * 1e3, bytes, copy_GBps: bw, ...(roofMs === null ? {} : { roofline_ms: roofMs, x_roofline: ms / roofMs }) });
  if (profile) {
    await releaseDeadTensors(device);
    if (onGpu) {
      // a step whose allocations miss the cache calls cuMemAlloc, which waits for the device (the hold): a
      // step run just before at the next position leaves blocks of the sizes it needs (sizes change with the
      // context only every 8–128 positions), so the profiled step is tried up to three times
      let p = await gpuTimedOnce(forwardNext);
      for (let attempt = 1; attempt < 3 && !p.heldThrough; attempt++) {
        forwardNext();
        await releaseDeadTensors(device);
        p = await gpuTimedOnce(forwardNext);
      }
      line({ what: 'decode-profile', ctx: C, device_span_ms: p.spanMs, host_enqueue_ms: p.hostMs, held_through: p.heldThrough, driver_allocs: p.driverAllocs, host_wait: p.hostWait });
      process.stderr.write(`--- decode ctx ${C}: one step, each op's kernels timed by CUDA events behind a hold (device span ${p.spanMs.toFixed(3)} ms, host enqueue ${p.hostMs.toFixed(1)} ms${p.heldThrough ? '' : ', NOT held through: host gaps included'})\n${p.table}\n`);
    } else {
      const p = await profiledOnce(T.getBackend(device), forwardNext);
      process.stderr.write(`--- decode ctx ${C}: one step with every op timed: ${p.ms.toFixed(1)} ms\n${p.table}\n`);
    }
  }
}

/**
 * The bytes a batch-1 decode step at context C must read (issue 12's memory roofline): every weight of the
 * main model's layers, embedding row and head as the checkpoint stores them (FP8 with its scales, bf16),
 * but of each MoE layer's routed experts only the k a token picks; per layer the indexer's cached keys of
 * the C positions (INDEXER_PAGE-token pages of indexerPageBytes) and the min(index_topk, C) selected latent
 * rows in the cache's format (with --dense: all C latent rows, no indexer key). The MTP modules do not run in a plain decode step.
 */
function decodeBytes(C: number): number {
  const cfg = model.cfg;
  const src = model.weights.source;
  let w = 0;
  for (const name of src.keys()) {
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (layer && Number(layer[1]) >= cfg.nLayers) continue;
    const { dtype, shape } = src.info(name);
    let b = shape.reduce((a, d) => a * d, 1) * T.ITEMSIZE[dtype];
    if (name === 'model.embed_tokens.weight') b /= shape[0]!;
    else if (/\.mlp\.experts\.\d+\./.test(name)) b *= cfg.nActivatedExperts / cfg.nRoutedExperts;
    w += b;
  }
  // dense attention reads every cached latent row and no indexer key
  const keys = dense ? 0 : (C / INDEXER_PAGE) * indexerPageBytes(cfg.indexHeadDim);
  const latents = (dense ? C : Math.min(cfg.indexTopk, C)) * mlaCacheBytesPerToken(format, cfg.kvLoraRank, cfg.qkRopeHeadDim);
  return w + cfg.nLayers * (keys + latents);
}

/** The device-to-device copy bandwidth (read + write bytes a second, 2 × 256 MiB, CUDA-event median), null on the CPU. */
function copyGBps(): number | null {
  if (copyBW !== undefined) return copyBW;
  if (!onGpu) return (copyBW = null);
  const n = 128 << 20;
  const a = T.empty([n], { dtype: 'bf16', device });
  const b = T.empty([n], { dtype: 'bf16', device });
  const be = T.getBackend(device);
  be.copy(b, a);
  const ms = median(Array.from({ length: 7 }, () => timed(() => be.copy(b, a))));
  return (copyBW = (2 * 2 * n) / (ms * 1e6));
}
