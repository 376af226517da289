// dsv32-mini's floor of usefulness (issue 15): held-out two-digit additions ("What is 38 + 46?") asked
// through /v1/chat/completions in thinking mode; an answer is right when the last integer of the reply's
// content (the text after </think>) is the sum. The problems come from `heldOutAdditions`, the 5% that the
// arithmetic generator never emits, so none was in the training data.
//   node dist/bench/arithmetic-eval.js [--model DIR | --base-url http://host:port/v1] [--n 20]
//        [--temperature 0] [--max-tokens 400] [--device auto|cpu|cuda] [--json]
// Without --base-url it serves --model (default: the built-in dsv32-mini) in this process on a free port.
import { heldOutAdditions } from '../src/data/synthetic/arithmetic.js';
import { loadEngine, BUILTIN_MODEL } from '../src/cli/serve.js';
import { createServer } from '../src/server/index.js';
import { opt } from './harness.js';

const n = Number(opt('--n') ?? 20);
const temperature = Number(opt('--temperature') ?? 0);
const maxTokens = Number(opt('--max-tokens') ?? 400);
// n of the held-out two-digit additions, spread evenly over the list (the first ones all start with 10)
const all = heldOutAdditions();
if (!(Number.isInteger(n) && n >= 1 && n <= all.length)) {
  console.error(`--n must be an integer from 1 to ${all.length} (the held-out two-digit additions), got ${opt('--n')}`);
  process.exit(2);
}
const fail = (msg: string): never => {
  console.error(`arithmetic-eval: ${msg}`);
  process.exit(2);
};
let base = opt('--base-url');
let close: (() => Promise<void>) | null = null;
if (!base) {
  const model = opt('--model') ?? BUILTIN_MODEL;
  let loaded: ReturnType<typeof loadEngine>;
  try {
    loaded = loadEngine({ model, device: opt('--device') ?? 'auto', dtype: 'bf16', maxNumSeqs: 8, speculativeTokens: 0, maxModelLen: 1024 });
  } catch (e) {
    fail((e as Error).message);
  }
  const server = createServer({ engine: loaded!.engine, codec: loaded!.codec, servedModelName: loaded!.name });
  base = (await server.listen(0, '127.0.0.1')) + '/v1';
  close = () => server.drain();
}
/** JSON of a request to the endpoint; a peer that is down or silent past `ms` is reported by URL. */
async function call<T>(path: string, ms: number, body?: unknown): Promise<T> {
  const url = `${base}${path}`;
  let r: Response;
  try {
    r = await fetch(url, { method: body ? 'POST' : 'GET', headers: { 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(ms) });
  } catch (e) {
    return fail(`${url}: no answer (${(e as Error).name === 'TimeoutError' ? `nothing within ${ms / 1000} s` : ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message})`);
  }
  if (!r.ok) return fail(`${url}: HTTP ${r.status}: ${(await r.text()).slice(0, 300)}`);
  return (await r.json()) as T;
}
const models = await call<{ data: { id: string }[] }>('/models', 10_000);
const modelName = models.data[0]?.id ?? fail(`${base}/models lists no model`);

const rows: { q: string; want: number; got: number | null; ok: boolean; tokens: number; ms: number; reply: string }[] = [];
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const p = all[Math.floor((i * all.length) / n)]!;
  const q = `What is ${p.a} + ${p.b}?`;
  const ts = performance.now();
  // one answer of up to --max-tokens on a slow CPU: minutes, not hours
  const body = await call<{ choices: { message: { content: string | null } }[]; usage: { completion_tokens: number } }>('/chat/completions', 600_000, {
    model: modelName, messages: [{ role: 'user', content: q }], temperature, max_tokens: maxTokens, chat_template_kwargs: { thinking: true },
  });
  const content = body.choices[0]!.message.content ?? '';
  const ints = content.match(/-?\d+/g);
  const got = ints ? Number(ints[ints.length - 1]) : null;
  rows.push({ q, want: p.answer, got, ok: got === p.answer, tokens: body.usage.completion_tokens, ms: performance.now() - ts, reply: content.slice(0, 80) });
}
const secs = (performance.now() - t0) / 1000;
const right = rows.filter((r) => r.ok).length;
const tokens = rows.reduce((a, r) => a + r.tokens, 0);
if (process.argv.includes('--json')) {
  process.stdout.write(JSON.stringify({ model: modelName, n, right, accuracy: right / n, temperature, tokens, seconds: secs, tokensPerSecond: tokens / secs, rows }) + '\n');
} else {
  for (const r of rows) process.stdout.write(`${r.ok ? 'ok  ' : 'MISS'} ${r.q.padEnd(20)} want ${String(r.want).padEnd(4)} got ${String(r.got).padEnd(6)} ${r.tokens} tokens  ${JSON.stringify(r.reply)}\n`);
  process.stdout.write(`${modelName}: ${right}/${n} right (${((100 * right) / n).toFixed(0)}%), temperature ${temperature}; ${tokens} tokens in ${secs.toFixed(1)} s (${(tokens / secs).toFixed(1)} tokens/s, one request at a time)\n`);
}
await close?.();
