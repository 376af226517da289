// `dsv32 golden`: the main job on a built-in default. Runs a tiny DeepSeek-V3.2 fixture checkpoint
// (prefill, then decode through the latent and FP8 indexer caches) and reports how its logits,
// lightning-indexer top-k sets and MoE routes compare with the official reference's goldens.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DsvError } from '../errors.js';
import { type Collective, openCollective } from '../dist/collective.js';
import { distEnv } from '../dist/rendezvous.js';
import { runThreadRanks } from '../dist/thread-collective.js';
import { intArg } from './args.js';
import type { GoldenRankData } from './golden-rank.js';
import '../backend/cuda/index.js'; // registers the 'cuda' device (lazily: no driver is touched here)
import { DeepseekV32 } from '../model/index.js';
import { getBackend } from '../tensor/backend.js';
import { SafetensorsFile } from '../tensor/safetensors.js';
import { FailureFront, FP8_TIE_BAND, MAX_FP8_TIE_FLIPS, resolveFp8Ties } from '../model/fp8-ties.js';
import { readForced, runLogits, type Forced } from './logits.js';

export class GoldenCliError extends DsvError {}

const FIXTURES = ['tiny-f32', 'tiny-bf16', 'tiny-fp8'] as const;
type Fixture = (typeof FIXTURES)[number];

/** `../shared/fixtures` beside the package root (dist/src/cli → three levels up), or $DSV32_FIXTURES. */
export function defaultFixturesDir(): string {
  if (process.env.DSV32_FIXTURES) return resolve(process.env.DSV32_FIXTURES);
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return resolve(root, '..', 'shared', 'fixtures');
}

export interface GoldenRow {
  what: string;
  value: string;
  bound: string;
  ok: boolean;
}

interface Golden {
  tokens: number[][];
  decodeTokens: number[][];
  get(name: string): Float64Array;
  shape(name: string): number[];
}

function readGolden(file: string): Golden {
  if (!existsSync(file)) throw new GoldenCliError(`golden file not found: ${file}`);
  const f = SafetensorsFile.open(file);
  const rows = (name: string): number[][] => {
    const [B, S] = f.info(name).shape as [number, number];
    const v = f.tensor(name).toFloat64();
    return Array.from({ length: B }, (_, b) => Array.from(v.subarray(b * S, (b + 1) * S)));
  };
  return {
    tokens: rows('tokens'),
    decodeTokens: rows('decode_tokens'),
    get: (name) => f.tensor(name).toFloat64(),
    shape: (name) => f.info(name).shape,
  };
}

/**
 * Logit differences over positions [from, to) of every row: ours [B, oursLen, V] (read at from + i) vs
 * golden [B, to−from, V]. A position with any |Δ| > tol is noted on `front` at causal order
 * (posBase + i)·B + b (posBase: its absolute position in the sequence).
 */
function logitDiff(ours: Float32Array, oursLen: number, V: number, golden: Float64Array, from: number, to: number, tol: number, front: FailureFront, posBase = from): { max: number; mean: number; argmax: number } {
  const B = ours.length / (oursLen * V);
  const n = to - from;
  let max = 0;
  let sum = 0;
  let agree = 0;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      const o = ours.subarray((b * oursLen + from + i) * V, (b * oursLen + from + i + 1) * V);
      const g = golden.subarray((b * n + i) * V, (b * n + i + 1) * V);
      let am = 0;
      let gm = 0;
      let rowMax = 0;
      for (let v = 0; v < V; v++) {
        const d = Math.abs(o[v]! - g[v]!);
        rowMax = Math.max(rowMax, d);
        sum += d;
        if (o[v]! > o[am]!) am = v;
        if (g[v]! > g[gm]!) gm = v;
      }
      max = Math.max(max, rowMax);
      if (!(rowMax <= tol)) front.note((posBase + i) * B + b);
      if (am === gm) agree++;
    }
  }
  return { max, mean: sum / (B * n * V), argmax: agree / (B * n) };
}

/** Rows of [L, B, n, w] golden choices that differ from ours over positions [from, from+n); each noted on `front`. */
function choiceMismatches(ours: Int32Array[], golden: Float64Array, shape: number[], S: number, from: number, front: FailureFront, skipLayers = 0, posBase = from): { rows: number; total: number } {
  const [L, B, n, w] = shape as [number, number, number, number];
  let rows = 0;
  let total = 0;
  for (let l = skipLayers; l < L; l++) {
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < n; i++) {
        total++;
        const o = ours[l]!.subarray((b * S + from + i) * w, (b * S + from + i + 1) * w);
        const g = golden.subarray(((l * B + b) * n + i) * w, ((l * B + b) * n + i + 1) * w);
        for (let j = 0; j < w; j++) {
          if (o[j] !== g[j]) {
            rows++;
            front.note((posBase + i) * B + b);
            break;
          }
        }
      }
    }
  }
  return { rows, total };
}

/** Rows and the earliest failing output of one run of the comparison. */
interface GoldenCheck {
  rows: GoldenRow[];
  front: FailureFront;
}

/** Logit bound per element: the fixtures README's measured noise for f32 (5e-6, "anything larger than 1e-4
 * is a bug"), and 2× its forced bf16 tolerances. */
function logitBound(fixture: Fixture, numerics: 'f32' | 'bf16'): number {
  return numerics === 'f32' ? 1e-4 : fixture === 'tiny-bf16' ? 2 * 0.043 : 2 * 4.4e-4;
}

function logitRow(what: string, d: { max: number }, tol: number): GoldenRow {
  return { what: `${what} (max |Δ|)`, value: d.max.toExponential(2), bound: `≤ ${tol.toExponential(1)}`, ok: d.max <= tol };
}

function choiceRow(what: string, d: { rows: number; total: number }): GoldenRow {
  return { what, value: `${d.rows} / ${d.total}`, bound: '0', ok: d.rows === 0 };
}

/** Prefill and decode rows of the model; bf16 forces the golden's prefill choices (prefill rows only). */
function checkModel(model: DeepseekV32, g: Golden, numerics: 'f32' | 'bf16', forced: Forced | undefined, tol: number): GoldenCheck {
  const cfg = model.cfg;
  const V = cfg.vocabSize;
  const S = g.tokens[0]!.length;
  const D = g.decodeTokens[0]!.length;
  const B = g.tokens.length;
  const front = new FailureFront();
  const rows: GoldenRow[] = [];
  const prefill = runLogits(model, g.tokens, { numerics, forced });
  // Position 0 is a 1-token prefix, which the reference ran through its decode (MQA) path.
  const pre = logitDiff(prefill.logits, S, V, g.get('logits'), 0, S, tol, front);
  rows.push(logitRow(`prefill logits, ${B}×${S} positions`, pre, tol));
  rows.push({ what: 'prefill argmax agreement', value: `${(pre.argmax * 100).toFixed(1)}%`, bound: numerics === 'f32' ? '100%' : '—', ok: numerics !== 'f32' || pre.argmax === 1 });
  if (forced) return { rows, front };
  rows.push(choiceRow('prefill indexer top-k rows differing', choiceMismatches(prefill.topk, g.get('prefill_topk'), g.shape('prefill_topk'), S, 0, front)));
  rows.push(choiceRow('prefill MoE route rows differing', choiceMismatches(prefill.routes, g.get('prefill_routing'), g.shape('prefill_routing'), S, 0, front, cfg.nDenseLayers)));
  // Decode: prefill S tokens, then feed the golden's decode tokens one at a time through the caches.
  const all = g.tokens.map((r, b) => [...r, ...g.decodeTokens[b]!]);
  const dec = runLogits(model, all, { numerics, decodeFrom: S });
  rows.push(logitRow(`decode logits, ${B}×${D} steps`, logitDiff(dec.logits, S + D, V, g.get('decode_logits'), S, S + D, tol, front), tol));
  rows.push(choiceRow('decode indexer top-k rows differing', choiceMismatches(dec.topk, g.get('decode_topk'), g.shape('decode_topk'), S + D, S, front)));
  rows.push(choiceRow('decode MoE route rows differing', choiceMismatches(dec.routes, g.get('decode_routing'), g.shape('decode_routing'), S + D, S, front, cfg.nDenseLayers)));
  return { rows, front };
}

/**
 * The model on `device` (its weights, caches and every step there), prefill and decode rows. The
 * comparison is FP8-tie aware (src/model/fp8-ties.ts): where an output misses the golden, single e4m3
 * roundings within a few ulps of their midpoint are tried the other way round; the flips needed are
 * reported in the last row, which fails past MAX_FP8_TIE_FLIPS.
 */
export function runGolden(fixturesDir: string, fixture: Fixture, numerics: 'f32' | 'bf16', device = 'cpu', parallel?: Collective): GoldenRow[] {
  const dir = join(fixturesDir, fixture);
  if (!existsSync(join(dir, 'config.json'))) {
    throw new GoldenCliError(`fixture '${fixture}' not found at ${dir} (set --fixtures DIR or DSV32_FIXTURES)`);
  }
  const goldenFile = join(dir, fixture === 'tiny-fp8' && numerics === 'f32' ? 'golden_f32.safetensors' : 'golden.safetensors');
  if (fixture === 'tiny-f32' && numerics === 'bf16') throw new GoldenCliError('tiny-f32 has an f32 golden only: use --dtype f32, or --fixture tiny-bf16 for bf16');
  if (fixture === 'tiny-bf16' && numerics === 'f32') throw new GoldenCliError('tiny-bf16 has a bf16 golden only: use --dtype bf16, or --fixture tiny-f32 for f32');
  try {
    getBackend(device);
  } catch (e) {
    throw new GoldenCliError(`device '${device}' is not available: ${(e as Error).message}`, { cause: e });
  }
  const g = readGolden(goldenFile);
  // tensor parallel: this rank's share, every rank running the same checks in step (src/model/parallel.ts)
  const model = DeepseekV32.load(dir, { device, parallel });
  const tol = logitBound(fixture, numerics);
  // f32: the choices must come out exactly as the reference made them. bf16: choices sit on near-ties
  // that rounding order flips (fixtures README), so the golden's own choices are forced and only the
  // arithmetic is compared.
  const forced = numerics === 'bf16' ? readForced(goldenFile, model, g.tokens.length) : undefined;
  const res = resolveFp8Ties(() => checkModel(model, g, numerics, forced, tol), (c) => c.front.first);
  const flips = res.flips.map((t) => `call ${t.call} value ${t.index} (${t.dist.toExponential(1)} from the midpoint)`).join('; ');
  return [
    ...res.result.rows,
    {
      what: 'FP8 roundings at a tie taken the other way',
      value: `${res.flips.length}`,
      bound: `≤ ${MAX_FP8_TIE_FLIPS} of the ${res.ties} within ${FP8_TIE_BAND} of a midpoint${flips ? `: ${flips}` : ''}`,
      ok: res.flips.length <= MAX_FP8_TIE_FLIPS,
    },
  ];
}

export function register(program: Command): void {
  program
    .command('golden')
    .description('run a tiny DeepSeek-V3.2 fixture and compare logits, indexer top-k and MoE routes with the official reference goldens')
    .addOption(new Option('--fixture <name>', 'fixture set').choices([...FIXTURES]).default('tiny-f32'))
    .addOption(new Option('--dtype <dtype>', 'numerics mode (bf16 forces the golden choices)').choices(['f32', 'bf16']))
    .option('--fixtures <dir>', 'fixtures directory (default ../shared/fixtures beside the package, or $DSV32_FIXTURES)')
    .option('--json', 'print the rows as JSON')
    .addOption(new Option('--device <name>', 'where the model runs: cpu, or cuda (weights, caches and every step on the GPU)').default('cpu'))
    .option('--tensor-parallel <n>', 'split the model over n ranks, threads of this process (the tensor- and expert-parallel split; under dsv32 launch the ranks are its processes instead)', intArg('--tensor-parallel', 1, 64), 1)
    .action(async (o: { fixture: Fixture; dtype?: 'f32' | 'bf16'; fixtures?: string; json?: boolean; device: string; tensorParallel: number }) => {
      const numerics = o.dtype ?? (o.fixture === 'tiny-bf16' ? 'bf16' : 'f32');
      const fixturesDir = o.fixtures ? resolve(o.fixtures) : defaultFixturesDir();
      const t0 = performance.now();
      const launched = distEnv().worldSize;
      if (launched > 1 && o.tensorParallel > 1) throw new GoldenCliError(`--tensor-parallel ${o.tensorParallel}: under dsv32 launch the ranks are the launched processes (${launched}); drop the flag`);
      let rows: GoldenRow[];
      let ranks = o.tensorParallel;
      if (launched > 1) {
        // one process per GPU: this rank's share, in step with the others; rank 0 reports
        const c = await openCollective(getBackend(o.device));
        rows = runGolden(fixturesDir, o.fixture, numerics, o.device, c);
        c.close();
        ranks = launched;
        if (c.rank !== 0) {
          if (!rows.every((r) => r.ok)) process.exitCode = 1;
          return;
        }
      } else if (o.tensorParallel > 1) {
        const data: GoldenRankData = { fixturesDir, fixture: o.fixture, numerics, device: o.device };
        let all: GoldenRow[][];
        try {
          all = await runThreadRanks<GoldenRow[]>(o.tensorParallel, new URL('./golden-rank.js', import.meta.url), data);
        } catch (e) {
          throw new GoldenCliError(`--tensor-parallel ${o.tensorParallel}: ${(e as Error).message}`, { cause: e });
        }
        // every rank checks the same all-gathered logits; a row is ok where it is on every rank
        rows = all[0]!.map((r, i) => ({ ...r, ok: all.every((rr) => rr[i]!.ok) }));
      } else {
        rows = runGolden(fixturesDir, o.fixture, numerics, o.device);
      }
      const secs = (performance.now() - t0) / 1000;
      const ok = rows.every((r) => r.ok);
      const where = ranks > 1 ? `${o.device}, ${ranks} tensor-parallel ranks` : o.device;
      if (o.json) {
        process.stdout.write(JSON.stringify({ fixture: o.fixture, numerics, device: o.device, tensorParallel: ranks, ok, seconds: secs, rows }, null, 2) + '\n');
      } else {
        const w = Math.max(...rows.map((r) => r.what.length));
        process.stdout.write(`DeepSeek-V3.2 ${o.fixture} (${numerics}, ${where}) vs the official reference goldens\n`);
        for (const r of rows) process.stdout.write(`  ${r.ok ? 'ok  ' : 'FAIL'}  ${r.what.padEnd(w)}  ${r.value.padStart(10)}  (${r.bound})\n`);
        process.stdout.write(`${ok ? 'PASS' : 'FAIL'} in ${secs.toFixed(1)} s\n`);
      }
      if (!ok) process.exitCode = 1;
    });
}
