// `dsv32 logits`: run the model over a batch of token rows and write logits, the indexer's selections
// and the MoE routes of every position to a safetensors file (the external contract of issue 3).
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { DsvError } from '../errors.js';
import { DeepseekV32, checkTokens, selectionIndices, type ForwardResult } from '../model/index.js';
import { SafetensorsFile, saveSafetensors } from '../tensor/safetensors.js';
import { Tensor, fromArray } from '../tensor/tensor.js';
import { getBackend } from '../tensor/backend.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { progress } from './progress.js';

export class LogitsCliError extends DsvError {}

const tokensSchema = z.object({ tokens: z.array(z.array(z.number())) }).strict();

function readTokens(file: string): number[][] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LogitsCliError(`--tokens ${file}: cannot read JSON (${(e as Error).message})`);
  }
  const r = tokensSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new LogitsCliError(`--tokens ${file}: expected {"tokens": [[ids...], ...]}: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return r.data.tokens;
}

export interface Forced {
  topk: Int32Array[];
  routes: (Int32Array | null)[];
  k: number;
  nAct: number;
  S: number;
}

/** The golden's prefill choices [L, B, S, ·] as per-layer [B, S, ·] arrays. */
export function readForced(file: string, model: DeepseekV32, B: number): Forced {
  const f = SafetensorsFile.open(file);
  try {
    for (const n of ['prefill_topk', 'prefill_routing']) if (!f.has(n)) throw new LogitsCliError(`--force-from ${file}: no tensor '${n}'`);
    const ti = f.info('prefill_topk');
    const ri = f.info('prefill_routing');
    const cfg = model.cfg;
    const [L, Bt, S, k] = ti.shape as [number, number, number, number];
    if (ti.shape.length !== 4 || L !== cfg.nLayers || Bt !== B || k !== cfg.indexTopk) {
      throw new LogitsCliError(`--force-from ${file}: prefill_topk has shape [${ti.shape.join(', ')}], expected [${cfg.nLayers}, ${B}, S, ${cfg.indexTopk}]`);
    }
    if (ri.shape.length !== 4 || ri.shape[0] !== L || ri.shape[1] !== B || ri.shape[2] !== S || ri.shape[3] !== cfg.nActivatedExperts) {
      throw new LogitsCliError(`--force-from ${file}: prefill_routing has shape [${ri.shape.join(', ')}], expected [${L}, ${B}, ${S}, ${cfg.nActivatedExperts}]`);
    }
    const t = Int32Array.from(f.tensor('prefill_topk').toFloat64());
    const r = Int32Array.from(f.tensor('prefill_routing').toFloat64());
    const per = B * S;
    return {
      topk: Array.from({ length: L }, (_, l) => t.slice(l * per * k, (l + 1) * per * k)),
      routes: Array.from({ length: L }, (_, l) => (l < cfg.nDenseLayers ? null : r.slice(l * per * cfg.nActivatedExperts, (l + 1) * per * cfg.nActivatedExperts))),
      k,
      nAct: cfg.nActivatedExperts,
      S,
    };
  } finally {
    f.close();
  }
}

/** Rows [from, to) of every row b of per-layer [B, S, w] arrays. */
function sliceRows(a: Int32Array, B: number, S: number, w: number, from: number, to: number): Int32Array {
  const out = new Int32Array(B * (to - from) * w);
  for (let b = 0; b < B; b++) out.set(a.subarray((b * S + from) * w, (b * S + to) * w), b * (to - from) * w);
  return out;
}

export interface LogitsRun {
  logits: Float32Array; // [B, S, V]
  topk: Int32Array[]; // per layer [B, S, index_topk]
  routes: Int32Array[]; // per layer [B, S, n_act]
}

/** Prefill `decodeFrom` tokens (all when undefined), then decode the rest one at a time. */
export function runLogits(model: DeepseekV32, tokens: number[][], opts: { numerics: 'f32' | 'bf16'; decodeFrom?: number; forced?: Forced; progress?: boolean; cacheFormat?: MlaCacheFormat }): LogitsRun {
  const cfg = model.cfg;
  const { ids, B, S } = checkTokens(tokens, cfg.vocabSize, 'tokens');
  const N = opts.decodeFrom ?? S;
  if (!Number.isInteger(N) || N < 1 || N > S) throw new LogitsCliError(`--decode-from ${N}: expected an integer in [1, ${S}] (the sequence has ${S} tokens)`);
  if (opts.forced && opts.forced.S < S) throw new LogitsCliError(`--force-from: the golden covers ${opts.forced.S} positions, the tokens have ${S}`);
  const V = cfg.vocabSize;
  const K = cfg.indexTopk;
  const k = cfg.nActivatedExperts;
  const L = cfg.nLayers;
  const logits = new Float32Array(B * S * V);
  const topk = Array.from({ length: L }, () => new Int32Array(B * S * K).fill(-1));
  const routes = Array.from({ length: L }, () => new Int32Array(B * S * k).fill(-1));
  const cache = model.newCache(B, { format: opts.cacheFormat });
  const record = (r: ForwardResult, from: number, n: number): void => {
    const lv = r.logits!.toFloat32();
    for (let b = 0; b < B; b++) logits.set(lv.subarray(b * n * V, (b + 1) * n * V), (b * S + from) * V);
    for (let l = 0; l < L; l++) {
      const sel = r.topk[l]!;
      const idx = selectionIndices(sel);
      for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = 0; j < sel.width; j++) topk[l]![(b * S + from + i) * K + j] = idx[(b * n + i) * sel.width + j]!;
      const rr = r.routes[l];
      if (rr) {
        const rv = rr.toHost() as Int32Array;
        for (let b = 0; b < B; b++) routes[l]!.set(rv.subarray(b * n * k, (b + 1) * n * k), (b * S + from) * k);
      }
    }
  };
  // progress units: the prefill's layers (one unit when it is a single token), then one per decode step;
  // a bar only on a terminal
  const bar = progress('logits', (N > 1 ? L : 1) + (S - N), { enabled: opts.progress ?? false });
  const t0 = performance.now();
  let tokensDone = 0;
  const rate = (): string => `${((tokensDone * B) / ((performance.now() - t0) / 1000)).toFixed(1)} tok/s`;
  const step = (from: number, to: number): void => {
    const n = to - from;
    const f = opts.forced;
    const stepIds = new Int32Array(B * n);
    for (let b = 0; b < B; b++) stepIds.set(ids.subarray(b * S + from, b * S + to), b * n);
    const r = model.forwardIds(stepIds, B, n, {
      cache,
      numerics: opts.numerics,
      // the FP8 cache holds the latent quantised: attention runs in the absorbed form that reads it
      mode: opts.cacheFormat === 'fp8' ? 'mqa' : 'auto',
      forcedTopk: f?.topk.map((t) => sliceRows(t, B, f.S, f.k, from, to)),
      forcedRoutes: f?.routes.map((t) => (t ? sliceRows(t, B, f.S, f.nAct, from, to) : null)),
      onLayer: n > 1 ? (l) => bar.tick(`prefill of ${n} tokens: layer ${l + 1}/${L}`) : undefined,
    });
    tokensDone += n;
    if (n === 1) bar.tick(`position ${from + 1}/${S} · ${rate()}`);
    record(r, from, n);
  };
  try {
    step(0, N);
    if (N > 1) bar.update(L, `prefill of ${N} tokens done · ${rate()}`);
    for (let p = N; p < S; p++) step(p, p + 1);
  } finally {
    bar.stop();
  }
  return { logits, topk, routes };
}

/** The output must be writable before the model runs: its folder exists and the path is not a folder. */
function checkOutPath(out: string): void {
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new LogitsCliError(`--out ${out}: folder ${dir} does not exist`);
  if (existsSync(out) && statSync(out).isDirectory()) throw new LogitsCliError(`--out ${out}: is a folder, expected a .safetensors file path`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new LogitsCliError(`--out ${out}: folder ${dir} is not writable`);
  }
}

export function register(program: Command): void {
  program
    .command('logits')
    .description('run the model on token rows; write logits, indexer top-k and MoE routes of every position (safetensors)')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint directory (config.json + safetensors)')
    .requiredOption('--tokens <file>', 'JSON file {"tokens": [[ids...], ...]} (equal-length rows)')
    .addOption(new Option('--dtype <dtype>', 'numerics: f32, bf16, or fp8 (bf16 numerics with the FP8 latent cache, 656 B/token at 671B dims; MQA attention)').choices(['f32', 'bf16', 'fp8']).default('f32'))
    .addOption(new Option('--device <name>', 'where the model runs: cpu or cuda').default('cpu'))
    .option('--decode-from <n>', 'prefill the first N tokens, then decode the rest one at a time')
    .option('--force-from <golden>', "force the golden's prefill_topk and prefill_routing (teacher forcing)")
    .requiredOption('--out <file>', 'output .safetensors')
    .action((o: { model: string; tokens: string; dtype: 'f32' | 'bf16' | 'fp8'; device: string; decodeFrom?: string; forceFrom?: string; out: string }) => {
      checkOutPath(o.out);
      const tokens = readTokens(o.tokens);
      try {
        getBackend(o.device);
      } catch (e) {
        throw new LogitsCliError(`--device ${o.device}: not available: ${(e as Error).message}`, { cause: e });
      }
      const model = DeepseekV32.load(o.model, { device: o.device });
      let decodeFrom: number | undefined;
      if (o.decodeFrom !== undefined) {
        decodeFrom = Number(o.decodeFrom);
        if (!/^\d+$/.test(o.decodeFrom)) throw new LogitsCliError(`--decode-from ${o.decodeFrom}: expected a positive integer`);
      }
      const B = Array.isArray(tokens) ? tokens.length : 0;
      const forced = o.forceFrom ? readForced(o.forceFrom, model, B) : undefined;
      const numerics = o.dtype === 'f32' ? 'f32' : 'bf16';
      const run = runLogits(model, tokens, { numerics, decodeFrom, forced, progress: true, cacheFormat: o.dtype === 'fp8' ? 'fp8' : undefined });
      const S = tokens[0]!.length;
      const cfg = model.cfg;
      const out = new Map<string, Tensor>();
      out.set('logits', fromArray(run.logits, [B, S, cfg.vocabSize], { dtype: 'f32' }));
      const i64 = (a: Int32Array, w: number): Tensor => fromArray(BigInt64Array.from(a, (x) => BigInt(x)), [B, S, w], { dtype: 'i64' });
      for (let l = 0; l < cfg.nLayers; l++) {
        out.set(`topk.layer${l}`, i64(run.topk[l]!, cfg.indexTopk));
        out.set(`routes.layer${l}`, i64(run.routes[l]!, cfg.nActivatedExperts));
      }
      saveSafetensors(o.out, out, { dtype: o.dtype, device: o.device, decode_from: String(decodeFrom ?? S) });
    });
}
