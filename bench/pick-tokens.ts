// pickTokens' kernel lab bench (a script, not a test): kernels/pick.cu against what it replaces in an
// engine step, the logits copied to the host and sampled there (the sampler pool's threads, as the engine
// runs them by default), greedy, at τ = 1, and at τ = 1 with top-p 0.95 (RL rollouts' filter, also with
// the kept set as a mask), top-k 50 or min-p 0.05, at decode batch sizes and the V3.2 / mid vocabularies.
//   kernel µs:  CUDA-event median of bursts of the op alone (its output allocations included);
//               GB/s = the row bytes read once (R·V·4) over that time, x_copy = copy bandwidth / that
//               GB/s, i.e. the kernel's time over the time of reading the logits once at the measured
//               device copy bandwidth (the roofline; the second pass reads L2);
//   device ms:  host clock of the engine's device path: the op, then token and logprob back to the host;
//   host ms:    host clock of the path it replaces: the logits back to the host (toFloat32), then every
//               row sampled on the pool (the same parameters and uniforms; with the mask as its ids).
//   node dist/bench/pick-tokens.js [--rows 1,16,64] [--vocab 32000,129280]
import { SamplerPool, defaultSamplerThreads, sampleOne, type SampleJob } from '../src/engine/sampler-pool.js';
import * as T from '../src/tensor/index.js';
import { filtering } from '../src/backend/cpu/pick.js';
import { argError, benchDevice, burstMs, median, opt, printTable, randDevice } from './harness.js';

const { device } = benchDevice('pick-tokens');
const list = (name: string, dflt: string): number[] => (opt(name) ?? dflt).split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) argError(`pick-tokens: ${name} wants positive integers, got ${s}`);
  return n;
});
const rows = list('--rows', '1,16,64');
const vocabs = list('--vocab', '32000,129280');

const be = T.getBackend(device);
const n = 64 << 20;
const a = T.empty([n], { dtype: 'f32', device });
const b = T.empty([n], { dtype: 'f32', device });
const copyGBps = (2 * 4 * n) / (burstMs(() => be.copy(b, a), 7, 3) * 1e6);

const hostMs = (fn: () => void, reps = 9): number => {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  return median(ts);
};

const MODES = [
  { name: 'greedy', temperature: 0, topP: 1, topK: 0, minP: 0, mask: false },
  { name: 'τ 1', temperature: 1, topP: 1, topK: 0, minP: 0, mask: false },
  { name: 'τ 1 top-p .95', temperature: 1, topP: 0.95, topK: 0, minP: 0, mask: false },
  { name: 'τ 1 top-p .95 +mask', temperature: 1, topP: 0.95, topK: 0, minP: 0, mask: true },
  { name: 'τ 1 top-k 50', temperature: 1, topP: 1, topK: 50, minP: 0, mask: false },
  { name: 'τ 1 min-p .05', temperature: 1, topP: 1, topK: 0, minP: 0.05, mask: false },
];
const out: string[][] = [];
for (const V of vocabs) {
  const pool = new SamplerPool(defaultSamplerThreads(V));
  for (const R of rows) for (const m of MODES) {
    const { temperature } = m;
    const x = randDevice([R, V], 'f32', 7 + R, device, 4);
    const tau = new Float64Array(R).fill(temperature);
    const u = Float64Array.from({ length: R }, (_, r) => (r + 0.5) / R);
    const filtered = filtering(m, V);
    const opts = { ...(filtered ? { filters: { topP: new Float64Array(R).fill(m.topP), topK: new Float64Array(R).fill(m.topK), minP: new Float64Array(R).fill(m.minP) } } : {}), mask: m.mask };
    const kernelMs = burstMs(() => T.pickTokens(x, tau, u, opts), 9, 20);
    const gbps = (R * V * 4) / (kernelMs * 1e6);
    let kept = 0;
    const devMs = hostMs(() => {
      const g = T.pickTokens(x, tau, u, opts);
      g.token.toHost();
      g.logprob.toHost();
      if (g.mask) {
        const w = g.mask.toHost() as Int32Array;
        kept = 0;
        for (let r = 0; r < R; r++) kept += T.keptIds(w, r, V).length;
      }
    });
    const jobs: SampleJob[] = Array.from({ length: R }, (_, r) => ({ row: r, params: { temperature, topP: m.topP, topK: m.topK, minP: m.minP }, u: temperature ? u[r]! : null, logprobs: 0, mask: m.mask }));
    const hMs = hostMs(() => {
      const l = x.toFloat32();
      if (pool.usable && R > 1) pool.sample(l, V, jobs);
      else for (const j of jobs) sampleOne(l.subarray(j.row * V, (j.row + 1) * V), j);
    });
    out.push([String(V), String(R), m.name + (m.mask ? ` (|K| ${Math.round(kept / R)})` : ''), (kernelMs * 1e3).toFixed(1), gbps.toFixed(0), (copyGBps / gbps).toFixed(2), devMs.toFixed(3), hMs.toFixed(3), (hMs / devMs).toFixed(1)]);
  }
  pool.close();
}
console.log(`device copy bandwidth ${copyGBps.toFixed(0)} GB/s; sampler threads ${defaultSamplerThreads(vocabs[0]!)} (this machine's default)`);
printTable(['vocab', 'rows', 'sampling', 'kernel µs', 'GB/s', 'x_copy', 'device path ms', 'host path ms', 'host/device'], out);
