// `dsv32 golden`: the main job on a built-in default. Runs a tiny DeepSeek-V3.2 fixture checkpoint
// (prefill, then decode through the latent and FP8 indexer caches) and reports how its logits,
// lightning-indexer top-k sets and MoE routes compare with the official reference's goldens.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DsvError } from '../errors.js';
import '../backend/cuda/index.js'; // registers the 'cuda' device (lazily: no driver is touched here)
import { DeepseekV32 } from '../model/index.js';
import { DeviceForward } from '../model/device-forward.js';
import { SafetensorsFile } from '../tensor/safetensors.js';
import { readForced, runLogits, type LogitsRun } from './logits.js';

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

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Logit differences over positions [from, to) of every row: our [B, S, V] vs golden [B, to−from, V]. */
function logitDiff(run: LogitsRun, S: number, V: number, golden: Float64Array, from: number, to: number): { max: number; mean: number; argmax: number } {
  const B = run.logits.length / (S * V);
  const n = to - from;
  let max = 0;
  let sum = 0;
  let agree = 0;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      const ours = run.logits.subarray((b * S + from + i) * V, (b * S + from + i + 1) * V);
      const g = golden.subarray((b * n + i) * V, (b * n + i + 1) * V);
      let am = 0;
      let gm = 0;
      for (let v = 0; v < V; v++) {
        const d = Math.abs(ours[v]! - g[v]!);
        max = Math.max(max, d);
        sum += d;
        if (ours[v]! > ours[am]!) am = v;
        if (g[v]! > g[gm]!) gm = v;
      }
      if (am === gm) agree++;
    }
  }
  return { max, mean: sum / (B * n * V), argmax: agree / (B * n) };
}

/** Rows of [L, B, n, w] golden choices that differ from ours over positions [from, from+n). */
function choiceMismatches(ours: Int32Array[], golden: Float64Array, shape: number[], S: number, from: number, skipLayers = 0): { rows: number; total: number } {
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
            break;
          }
        }
      }
    }
  }
  return { rows, total };
}

/**
 * Prefill and decode rows of the device-generic forward (src/model/device-forward.ts) on `device`;
 * decode runs one token per step through its device-resident caches. Prefill logits are compared at
 * positions 1.. only: the golden's position 0 is a one-token prefix, which the reference ran through
 * its decode (absorbed MQA) path, while the device prefill is the MHA path.
 */
function runDeviceGolden(model: DeepseekV32, g: Golden, device: string): GoldenRow[] {
  const cfg = model.cfg;
  const V = cfg.vocabSize;
  const B = g.tokens.length;
  const S = g.tokens[0]!.length;
  const df = new DeviceForward(model, device);
  const run = df.prefill(g.tokens, { cache: true });
  const lv = run.logits!.toFloat32();
  const gl = g.get('logits');
  const scale = maxAbs(gl);
  // golden [B, S, V] cut to positions 1..S-1, as logitDiff reads it ([B, S-1, V])
  const gTail = new Float64Array(B * (S - 1) * V);
  for (let b = 0; b < B; b++) gTail.set(gl.subarray((b * S + 1) * V, (b + 1) * S * V), b * (S - 1) * V);
  const pre = logitDiff({ logits: lv, topk: [], routes: [] }, S, V, gTail, 1, S);
  const rows: GoldenRow[] = [];
  rows.push({ what: `prefill logits on ${device}, ${B}×${S - 1} positions 1.. (max |Δ| / max|logit|)`, value: (pre.max / scale).toExponential(2), bound: '≤ 1e-3', ok: pre.max <= 1e-3 * scale });
  rows.push({ what: `prefill argmax agreement on ${device}`, value: `${(pre.argmax * 100).toFixed(1)}%`, bound: '100%', ok: pre.argmax === 1 });
  const tk = choiceMismatches(run.topk.map((s) => s.idx), g.get('prefill_topk'), g.shape('prefill_topk'), S, 0);
  rows.push({ what: `prefill indexer top-k rows differing on ${device}`, value: `${tk.rows} / ${tk.total}`, bound: '0', ok: tk.rows === 0 });
  const routes = run.routes.map((r) => r ?? new Int32Array(0));
  const rt = choiceMismatches(routes, g.get('prefill_routing'), g.shape('prefill_routing'), S, 0, cfg.nDenseLayers);
  rows.push({ what: `prefill MoE route rows differing on ${device}`, value: `${rt.rows} / ${rt.total}`, bound: '0', ok: rt.rows === 0 });

  // Decode: the golden's decode tokens one at a time through the device caches (absorbed MQA), each
  // step's outputs gathered into the golden's [B, D, ·] layout.
  const D = g.decodeTokens[0]!.length;
  const L = cfg.nLayers;
  const k = g.shape('decode_topk')[3]!;
  const nAct = cfg.nActivatedExperts;
  const dLogits = new Float32Array(B * D * V);
  const dTopk = Array.from({ length: L }, () => new Int32Array(B * D * k));
  const dRoutes = Array.from({ length: L }, (_, l) => new Int32Array(l < cfg.nDenseLayers ? 0 : B * D * nAct));
  for (let j = 0; j < D; j++) {
    const d = df.decode(run.cache!, g.decodeTokens.map((r) => r[j]!));
    const dl = d.logits.toFloat32();
    for (let b = 0; b < B; b++) {
      dLogits.set(dl.subarray(b * V, (b + 1) * V), (b * D + j) * V);
      for (let l = 0; l < L; l++) {
        const w = d.topk[l]!.width;
        if (w !== k) throw new GoldenCliError(`decode step ${j}, layer ${l}: indexer width ${w}, the golden has ${k}`);
        dTopk[l]!.set(d.topk[l]!.idx.subarray(b * k, (b + 1) * k), (b * D + j) * k);
        const r = d.routes[l];
        if (r) dRoutes[l]!.set(r.subarray(b * nAct, (b + 1) * nAct), (b * D + j) * nAct);
      }
    }
  }
  const dec = logitDiff({ logits: dLogits, topk: [], routes: [] }, D, V, g.get('decode_logits'), 0, D);
  rows.push({ what: `decode logits on ${device}, ${B}×${D} steps (max |Δ| / max|logit|)`, value: (dec.max / scale).toExponential(2), bound: '≤ 1e-3', ok: dec.max <= 1e-3 * scale });
  const dtk = choiceMismatches(dTopk, g.get('decode_topk'), g.shape('decode_topk'), D, 0);
  rows.push({ what: `decode indexer top-k rows differing on ${device}`, value: `${dtk.rows} / ${dtk.total}`, bound: '0', ok: dtk.rows === 0 });
  const drt = choiceMismatches(dRoutes, g.get('decode_routing'), g.shape('decode_routing'), D, 0, cfg.nDenseLayers);
  rows.push({ what: `decode MoE route rows differing on ${device}`, value: `${drt.rows} / ${drt.total}`, bound: '0', ok: drt.rows === 0 });
  return rows;
}

/**
 * `device` 'cpu' runs the host model (prefill and decode rows) unless `deviceForward` asks for the
 * device-generic forward; any other device always runs the device-generic forward (prefill and decode).
 */
export function runGolden(fixturesDir: string, fixture: Fixture, numerics: 'f32' | 'bf16', device = 'cpu', deviceForward = false): GoldenRow[] {
  const onDevice = deviceForward || device !== 'cpu';
  const dir = join(fixturesDir, fixture);
  if (!existsSync(join(dir, 'config.json'))) {
    throw new GoldenCliError(`fixture '${fixture}' not found at ${dir} (set --fixtures DIR or DSV32_FIXTURES)`);
  }
  const goldenFile = join(dir, fixture === 'tiny-fp8' && numerics === 'f32' ? 'golden_f32.safetensors' : 'golden.safetensors');
  if (fixture === 'tiny-f32' && numerics === 'bf16') throw new GoldenCliError('tiny-f32 has an f32 golden only: use --dtype f32, or --fixture tiny-bf16 for bf16');
  if (fixture === 'tiny-bf16' && numerics === 'f32') throw new GoldenCliError('tiny-bf16 has a bf16 golden only: use --dtype bf16, or --fixture tiny-f32 for f32');
  if (onDevice && numerics !== 'f32') throw new GoldenCliError(`--device ${device}${deviceForward ? ' --device-forward' : ''} runs the device-generic forward, which has f32 numerics only: use --dtype f32 (--fixture tiny-f32 or tiny-fp8)`);
  const g = readGolden(goldenFile);
  const model = DeepseekV32.load(dir);
  if (onDevice) return runDeviceGolden(model, g, device);
  const cfg = model.cfg;
  const V = cfg.vocabSize;
  const S = g.tokens[0]!.length;
  const D = g.decodeTokens[0]!.length;
  const B = g.tokens.length;
  // f32: the choices must come out exactly as the reference made them. bf16: choices sit on near-ties
  // that rounding order flips (fixtures README), so the golden's own choices are forced and only the
  // arithmetic is compared.
  const forced = numerics === 'bf16' ? readForced(goldenFile, model, B) : undefined;
  const rows: GoldenRow[] = [];
  const logitBound = numerics === 'f32' ? 1e-3 : fixture === 'tiny-bf16' ? 2 * 0.043 : 2 * 4.4e-4; // 2× the README's forced bf16 tolerances

  const prefill = runLogits(model, g.tokens, { numerics, forced });
  const gl = g.get('logits');
  const scale = maxAbs(gl);
  // Position 0 is a 1-token prefix, which the reference ran through its decode (MQA) path.
  const pre = logitDiff(prefill, S, V, gl, 0, S);
  rows.push({ what: `prefill logits, ${B}×${S} positions (max |Δ| / max|logit|)`, value: (pre.max / scale).toExponential(2), bound: `≤ ${numerics === 'f32' ? '1e-3' : (logitBound / scale).toExponential(2)}`, ok: pre.max <= logitBound * (numerics === 'f32' ? scale : 1) });
  rows.push({ what: 'prefill argmax agreement', value: `${(pre.argmax * 100).toFixed(1)}%`, bound: numerics === 'f32' ? '100%' : '—', ok: numerics !== 'f32' || pre.argmax === 1 });
  if (!forced) {
    const tk = choiceMismatches(prefill.topk, g.get('prefill_topk'), g.shape('prefill_topk'), S, 0);
    rows.push({ what: 'prefill indexer top-k rows differing', value: `${tk.rows} / ${tk.total}`, bound: '0', ok: tk.rows === 0 });
    const rt = choiceMismatches(prefill.routes, g.get('prefill_routing'), g.shape('prefill_routing'), S, 0, cfg.nDenseLayers);
    rows.push({ what: 'prefill MoE route rows differing', value: `${rt.rows} / ${rt.total}`, bound: '0', ok: rt.rows === 0 });
  }

  if (!forced) {
    // Decode: prefill S tokens, then feed the golden's decode tokens one at a time through the caches.
    const all = g.tokens.map((r, b) => [...r, ...g.decodeTokens[b]!]);
    const dec = runLogits(model, all, { numerics, decodeFrom: S });
    const dl = logitDiff(dec, S + D, V, g.get('decode_logits'), S, S + D);
    rows.push({ what: `decode logits, ${B}×${D} steps (max |Δ| / max|logit|)`, value: (dl.max / scale).toExponential(2), bound: '≤ 1e-3', ok: dl.max <= 1e-3 * scale });
    const tk = choiceMismatches(dec.topk, g.get('decode_topk'), g.shape('decode_topk'), S + D, S);
    rows.push({ what: 'decode indexer top-k rows differing', value: `${tk.rows} / ${tk.total}`, bound: '0', ok: tk.rows === 0 });
    const rt = choiceMismatches(dec.routes, g.get('decode_routing'), g.shape('decode_routing'), S + D, S, cfg.nDenseLayers);
    rows.push({ what: 'decode MoE route rows differing', value: `${rt.rows} / ${rt.total}`, bound: '0', ok: rt.rows === 0 });
  }
  return rows;
}

export function register(program: Command): void {
  program
    .command('golden')
    .description('run a tiny DeepSeek-V3.2 fixture and compare logits, indexer top-k and MoE routes with the official reference goldens')
    .addOption(new Option('--fixture <name>', 'fixture set').choices([...FIXTURES]).default('tiny-f32'))
    .addOption(new Option('--dtype <dtype>', 'numerics mode (bf16 forces the golden choices)').choices(['f32', 'bf16']))
    .option('--fixtures <dir>', 'fixtures directory (default ../shared/fixtures beside the package, or $DSV32_FIXTURES)')
    .option('--json', 'print the rows as JSON')
    .addOption(new Option('--device <name>', 'cpu: the host model (prefill and decode); any other device (cuda): the device-generic tensor-op forward, f32 only, prefill and decode rows').default('cpu'))
    .option('--device-forward', 'run the device-generic tensor-op forward (prefill + cached decode) on --device cpu too (as it runs on cuda)')
    .action((o: { fixture: Fixture; dtype?: 'f32' | 'bf16'; fixtures?: string; json?: boolean; device: string; deviceForward?: boolean }) => {
      const numerics = o.dtype ?? (o.fixture === 'tiny-bf16' ? 'bf16' : 'f32');
      const t0 = performance.now();
      const rows = runGolden(o.fixtures ? resolve(o.fixtures) : defaultFixturesDir(), o.fixture, numerics, o.device, o.deviceForward ?? false);
      const secs = (performance.now() - t0) / 1000;
      const ok = rows.every((r) => r.ok);
      if (o.json) {
        process.stdout.write(JSON.stringify({ fixture: o.fixture, numerics, device: o.device, deviceForward: o.deviceForward ?? false, ok, seconds: secs, rows }, null, 2) + '\n');
      } else {
        const w = Math.max(...rows.map((r) => r.what.length));
        process.stdout.write(`DeepSeek-V3.2 ${o.fixture} (${numerics}${o.device === 'cpu' && !o.deviceForward ? '' : `, ${o.device}, device-generic forward`}) vs the official reference goldens\n`);
        for (const r of rows) process.stdout.write(`  ${r.ok ? 'ok  ' : 'FAIL'}  ${r.what.padEnd(w)}  ${r.value.padStart(10)}  (${r.bound})\n`);
        process.stdout.write(`${ok ? 'PASS' : 'FAIL'} in ${secs.toFixed(1)} s\n`);
      }
      if (!ok) process.exitCode = 1;
    });
}
