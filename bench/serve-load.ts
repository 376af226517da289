// Load on the HTTP server (a script, not a test): a random-weight model with the real vocabulary (129280)
// behind LLMEngine and the server in this process, and B concurrent streaming chat requests per level.
//   node dist/bench/serve-load.js [--device cpu|cuda] [--shape tiny|cpu-mid|mid] [--numerics f32|bf16]
//        [--batches 1,16,64] [--gen 32] [--fuzz 1000] [--skip-tokenizer] [--sampler-threads N] [--temperature T]
// --temperature: sent with every request (default: none, the API's default of 1, unfiltered).
// --device-sampling on|off|both: the engine's EngineOptions.deviceSampling (default: its own, on off the
// CPU); 'both' serves the levels off, then on, from one model (an engine and a server each).
// --sampler-threads: the engine's sampling threads (default: the engine's own choice; 0 samples on the
// main thread only), to compare threaded and inline sampling on one machine.
// --skip-tokenizer serves without a tokenizer (as --skip-tokenizer-init) and streams /v1/completions with
// token-id prompts of the same length as the chat prompts, so no tokenizer package is needed (GPU runs).
// Per level B (one JSON line each): requests completed / lost, 5xx count, client-side TTFT p50/p99 (request
// sent → first token chunk), TPOT p50/p99 (gaps between a stream's token chunks), output tokens/s over
// the level's wall time. With --fuzz N it then sends N malformed requests (as test/server/fuzz.test.ts
// does, fewer shapes) and reports the status counts and whether the server still answers.
import { LLMEngine } from '../src/engine/engine.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig } from '../src/model/index.js';
import { opt } from './harness.js';
import { shapeOf } from './shapes.js';
import { createServer } from '../src/server/index.js';

const arg = (name: string, dflt: string): string => opt(name) ?? dflt;
const device = arg('--device', 'cpu');
if (device === 'cuda') await import('../src/backend/cuda/index.js');
const shape = arg('--shape', 'tiny');
const numerics = arg('--numerics', 'f32') as 'f32' | 'bf16';
const batches = arg('--batches', '1,16,64').split(',').map(Number);
const G = Number(arg('--gen', '32'));
const fuzzN = Number(arg('--fuzz', '0'));
const raw = process.argv.includes('--skip-tokenizer');
const threadsArg = opt('--sampler-threads');
const tempArg = opt('--temperature');
const temperature = tempArg === undefined ? undefined : Number(tempArg);
if (temperature !== undefined && !(temperature >= 0)) {
  console.error(`serve-load: --temperature must be a number ≥ 0, got ${tempArg}`);
  process.exit(2);
}
const samplerThreads = threadsArg === undefined ? undefined : Number(threadsArg);

const cfg = randomConfig({ ...shapeOf(shape), vocab_size: 129280, max_position_embeddings: 4096 });
const t0 = performance.now();
const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 1)), { device });
const maxB = Math.max(...batches);
const samplingArg = opt('--device-sampling');
if (samplingArg !== undefined && !['on', 'off', 'both'].includes(samplingArg)) {
  console.error(`serve-load: --device-sampling must be on, off or both, got ${samplingArg}`);
  process.exit(2);
}
const samplingModes: (boolean | undefined)[] = samplingArg === undefined ? [undefined] : samplingArg === 'both' ? [false, true] : [samplingArg === 'on'];
const codec = raw ? null : (await import('../src/chat/tokenizer.js')).loadDeepSeekV32Tokenizer();
let engine!: LLMEngine<{ readonly blocks: number }>;
let url = '';
let deviceSampling: boolean | undefined;
console.error(`# ${shape} on ${device} (${numerics}), model ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};

async function stream(i: number): Promise<{ ok: boolean; status: number; stamps: number[]; start: number; tokens: number }> {
  const start = performance.now();
  const common = { max_tokens: G, ignore_eos: true, stream: true, return_token_ids: true, seed: i, ...(temperature === undefined ? {} : { temperature }) };
  const res = raw
    ? await fetch(url + '/v1/completions', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: Array.from({ length: 24 }, (_, j) => 100 + ((i * 7919 + j * 31) % 120000)), ...common }),
      })
    : await fetch(url + '/v1/chat/completions', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: `Request ${i}: tell me a story about the number ${i * 7919}.` }], ...common }),
      });
  const stamps: number[] = [];
  let tokens = 0;
  let done = false;
  let buf = '';
  const dec = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, at).trim();
      buf = buf.slice(at + 2);
      if (!frame.startsWith('data: ')) continue;
      if (frame === 'data: [DONE]') {
        done = true;
        continue;
      }
      const ids = JSON.parse(frame.slice(6)).choices?.[0]?.token_ids as number[] | undefined;
      if (ids?.length) {
        tokens += ids.length;
        stamps.push(performance.now());
      }
    }
  }
  return { ok: done && tokens === G, status: res.status, stamps, start, tokens };
}

for (deviceSampling of samplingModes) {
  engine = new LLMEngine(model, { numerics, maxNumSeqs: Math.max(64, maxB), maxModelLen: 1024, modelName: shape, samplerThreads, deviceSampling });
  const server = createServer({ engine, codec, servedModelName: 'bench', maxWaiting: 4096 });
  url = await server.listen(0, '127.0.0.1');
  await stream(-1); // warm-up
  for (const B of batches) {
    const sampled0 = engine.stats().deviceSampledSteps;
    const w0 = performance.now();
    const rs = await Promise.all(Array.from({ length: B }, (_, i) => stream(i)));
    const wall = (performance.now() - w0) / 1000;
    const ttft = rs.map((r) => (r.stamps[0]! - r.start) / 1000);
    const tpot = rs.flatMap((r) => r.stamps.slice(1).map((s, j) => (s - r.stamps[j]!) / 1000));
    const tokens = rs.reduce((s, r) => s + r.tokens, 0);
    console.log(JSON.stringify({
      shape, device, numerics, samplerThreads: threadsArg ?? 'default', temperature: temperature ?? 'default', deviceSampling: deviceSampling ?? 'default', batch: B, gen: G, completed: rs.filter((r) => r.ok).length, lost: rs.filter((r) => !r.ok).length,
      status5xx: rs.filter((r) => r.status >= 500).length, ttftP50: +pct(ttft, 50).toFixed(3), ttftP99: +pct(ttft, 99).toFixed(3),
      tpotP50ms: +(pct(tpot, 50) * 1000).toFixed(1), tpotP99ms: +(pct(tpot, 99) * 1000).toFixed(1), outputTokPerS: +(tokens / wall).toFixed(1), wallS: +wall.toFixed(2),
      deviceSampledSteps: engine.stats().deviceSampledSteps - sampled0,
    }));
  }
  if (deviceSampling === samplingModes.at(-1) && fuzzN > 0) await fuzz();
  await server.drain(); // closes the engine too
  await server.app.close();
}
process.exit(0);

async function fuzz(): Promise<void> {
  let seed = 99;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const bad: unknown[] = [null, -1, 1e308, 'x', [], {}, [null], 2 ** 53 + 1, '', true, { a: [1] }];
  const fields = ['messages', 'max_tokens', 'temperature', 'top_p', 'top_k', 'n', 'stop', 'tools', 'tool_choice', 'logprobs', 'top_logprobs', 'stream', 'stream_options', 'prompt', 'model'];
  const counts: Record<number, number> = {};
  for (let i = 0; i < fuzzN; i++) {
    const chat = !raw && rnd() < 0.6;
    const body: Record<string, unknown> = chat ? { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } : { prompt: raw ? [5, 6, 7] : 'hi', max_tokens: 2 };
    body[pick(fields)] = pick(bad);
    let text = JSON.stringify(body);
    if (rnd() < 0.1) text = text.slice(0, Math.floor(rnd() * text.length));
    const res = await fetch(url + (chat ? '/v1/chat/completions' : '/v1/completions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    await res.text();
    counts[res.status] = (counts[res.status] ?? 0) + 1;
  }
  const health = (await fetch(url + '/health')).status;
  console.log(JSON.stringify({ fuzz: fuzzN, statuses: counts, status5xx: Object.entries(counts).filter(([s]) => Number(s) >= 500).reduce((a, [, n]) => a + n, 0), healthAfter: health }));
}
