// Charts of training logs and benchmark tables: JSONL training logs (src/train/trainer.ts) or a CSV file →
// points → a Vega-Lite spec → SVG (vega's headless renderer: no browser, no canvas; text widths are
// estimated) → PNG (resvg). Nothing below cli/ imports this module.
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { Resvg } from '@resvg/resvg-js';
import { DsvError } from '../errors.js';

/** Bad plot input (a file, a line, a field): the CLI prints the message and exits 2. */
export class PlotError extends DsvError {}

/** The loss-like fields of a training log, plotted by default when present. */
export const LOSS_FIELDS = ['loss', 'lm', 'mtp', 'indexer', 'val_lm', 'val_indexer'] as const;

/** One point of a chart: `series` is the field (or column) it comes from. */
export interface Point {
  x: number;
  y: number;
  series: string;
}

/** A stretch of consecutive optimizer steps of one phase (pretrain, warmup, sparse, sft), on the x axis. */
export interface PhaseBand {
  phase: string;
  x0: number;
  x1: number;
}

export interface ChartData {
  points: Point[];
  /** the series in legend order */
  series: string[];
  bands: PhaseBand[];
  xTitle: string;
  /** series drawn with a marker at each value too (eval losses: a value every few hundred steps) */
  marked: string[];
}

type LogLine = Record<string, unknown> & { step: number; phase?: string };

/** A file's text; one that cannot be read is a PlotError naming it. */
function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PlotError(`${file}: cannot read (${err.code === 'ENOENT' ? 'no such file' : err.message})`);
  }
}

/** A JSONL training log's lines (blank lines skipped); a file that cannot be read, is empty or has a line that is not a JSON object with a numeric `step` is a PlotError naming the file and line. */
export function readTrainLog(file: string): LogLine[] {
  const text = readText(file);
  const out: LogLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i]!.trim();
    if (!s) continue;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      throw new PlotError(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { step?: unknown }).step !== 'number') {
      throw new PlotError(`${file}:${i + 1}: expected a JSON object with a numeric "step"`);
    }
    out.push(flattenArrays(v as Record<string, unknown>) as LogLine);
  }
  if (!out.length) throw new PlotError(`${file}: empty log (no JSON lines)`);
  return out;
}

/**
 * Numeric array fields become series: `mtp: [a]` (one MTP module, as the trainer logs it) is `mtp`;
 * `mtp: [a, b]` is `mtp.0`, `mtp.1`.
 */
function flattenArrays(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (Array.isArray(v) && v.every((x) => typeof x === 'number')) {
      if (v.length === 1) out[k] = v[0];
      else v.forEach((x, i) => (out[`${k}.${i}`] = x));
    } else out[k] = v;
  }
  return out;
}

const isEval = (l: LogLine): boolean => l.phase === 'eval';

/**
 * The points of one or more training logs, in order (e.g. pretrain, dsa, sft): each file's steps are offset
 * by the previous files' last step. `x: 'tokens'` puts the cumulative `tokens` of the step lines on the x
 * axis (an eval line sits at the tokens seen by its step). `y` defaults to the loss-like fields present;
 * a field no line has a number for is a PlotError listing those it has. A step logged twice (a run resumed
 * from an earlier checkpoint) keeps its last line.
 */
export function trainLogData(files: readonly string[], opts: { y?: readonly string[]; x?: 'step' | 'tokens' } = {}): ChartData {
  const x = opts.x ?? 'step';
  const logs = files.map((f) => ({ file: f, lines: readTrainLog(f) }));
  const numeric = new Set<string>();
  for (const { lines } of logs) for (const l of lines) for (const [k, v] of Object.entries(l)) if (k !== 'step' && typeof v === 'number' && Number.isFinite(v)) numeric.add(k);
  const available = [...numeric];
  let fields: string[];
  if (opts.y?.length) {
    const unknown = opts.y.filter((f) => !numeric.has(f));
    if (unknown.length) throw new PlotError(`--y: no numeric field ${unknown.map((u) => `"${u}"`).join(', ')} in ${files.join(', ')}; available: ${available.join(', ') || '(none)'}`);
    fields = [...opts.y];
  } else {
    fields = LOSS_FIELDS.filter((f) => numeric.has(f));
    if (!fields.length) throw new PlotError(`no loss fields (${LOSS_FIELDS.join(', ')}) in ${files.join(', ')}; name fields with --y (available: ${available.join(', ') || '(none)'})`);
  }
  const points: Point[] = [];
  const bands: PhaseBand[] = [];
  let stepOffset = 0;
  let tokenOffset = 0;
  for (const { file, lines } of logs) {
    // the last line of each step (train and eval apart), in step order
    const steps = new Map<number, LogLine>();
    const evals = new Map<number, LogLine>();
    for (const l of lines) (isEval(l) ? evals : steps).set(l.step, l);
    const trainLines = [...steps.values()].sort((a, b) => a.step - b.step);
    // x of each step line (and of the step before it, where its phase band begins)
    const xAt = new Map<number, number>();
    let prevX = x === 'step' ? stepOffset : tokenOffset;
    let cum = tokenOffset;
    for (const l of trainLines) {
      let xv: number;
      if (x === 'step') xv = stepOffset + l.step;
      else {
        if (typeof l.tokens !== 'number') throw new PlotError(`${file}: step ${l.step} has no "tokens" field for --x tokens`);
        cum += l.tokens;
        xv = cum;
      }
      xAt.set(l.step, xv);
      const phase = typeof l.phase === 'string' ? l.phase : 'train';
      const last = bands[bands.length - 1];
      if (last && last.phase === phase && last.x1 === prevX) last.x1 = xv;
      else bands.push({ phase, x0: prevX, x1: xv });
      prevX = xv;
      for (const f of fields) if (typeof l[f] === 'number' && Number.isFinite(l[f])) points.push({ x: xv, y: l[f] as number, series: f });
    }
    const trainSteps = trainLines.map((l) => l.step);
    for (const l of [...evals.values()].sort((a, b) => a.step - b.step)) {
      let xv: number;
      if (x === 'step') xv = stepOffset + l.step;
      else {
        // the tokens seen by the last step at or before the eval's
        let k = -1;
        for (let i = 0; i < trainSteps.length && trainSteps[i]! <= l.step; i++) k = i;
        xv = k < 0 ? tokenOffset : xAt.get(trainSteps[k]!)!;
      }
      for (const f of fields) if (typeof l[f] === 'number' && Number.isFinite(l[f])) points.push({ x: xv, y: l[f] as number, series: f });
    }
    stepOffset += Math.max(...lines.map((l) => l.step));
    tokenOffset = cum;
  }
  const series = fields.filter((f) => points.some((p) => p.series === f));
  if (!points.length) throw new PlotError(`no values for ${fields.join(', ')} in ${files.join(', ')}`);
  const fromEval = new Set<string>();
  for (const { lines } of logs) for (const l of lines) for (const f of fields) if (typeof l[f] === 'number') (isEval(l) ? fromEval.add(f) : fromEval.add(`train:${f}`));
  const marked = series.filter((f) => fromEval.has(f) && !fromEval.has(`train:${f}`));
  return { points, series, bands, xTitle: x === 'step' ? 'step' : 'tokens', marked };
}

/**
 * One field of several runs' logs side by side (an ablation): each file is a series, on the same step axis
 * (not continued one after another). A series is named by `labels` (one per file) or else by its file: the
 * name without .jsonl, or the folder's name for a run's rl.jsonl/train.jsonl. A step logged twice keeps its
 * last line; a file without a number for the field is a PlotError naming the fields it has.
 */
export function compareLogData(files: readonly string[], opts: { y: string; labels?: readonly string[] }): ChartData {
  if (opts.labels && opts.labels.length !== files.length) throw new PlotError(`--labels: ${opts.labels.length} labels for ${files.length} logs (expected one per --log)`);
  const names = files.map((f, i) => {
    if (opts.labels) return opts.labels[i]!;
    const base = basename(f).replace(/\.jsonl$/, '');
    return base === 'rl' || base === 'train' ? basename(dirname(resolve(f))) : base;
  });
  if (new Set(names).size !== names.length) throw new PlotError(`two logs would be the same series (${names.join(', ')}); name them with --labels`);
  const points: Point[] = [];
  files.forEach((f, i) => {
    const steps = new Map<number, LogLine>();
    for (const l of readTrainLog(f)) if (!isEval(l)) steps.set(l.step, l);
    const have = [...steps.values()].filter((l) => typeof l[opts.y] === 'number' && Number.isFinite(l[opts.y]));
    if (!have.length) {
      const numeric = new Set<string>();
      for (const l of steps.values()) for (const [k, v] of Object.entries(l)) if (k !== 'step' && typeof v === 'number') numeric.add(k);
      throw new PlotError(`--y: ${f} has no numeric "${opts.y}"; available: ${[...numeric].join(', ') || '(none)'}`);
    }
    for (const l of have.sort((a, b) => a.step - b.step)) points.push({ x: l.step, y: l[opts.y] as number, series: names[i]! });
  });
  return { points, series: names, bands: [], xTitle: 'step', marked: [] };
}

/** A comma-separated file with a header row (cells may be double-quoted; no commas inside them). */
export function readCsv(file: string): { columns: string[]; rows: { line: number; cells: string[] }[] } {
  const text = readText(file);
  const unquote = (c: string): string => c.trim().replace(/^"(.*)"$/, '$1');
  const lines = text.split(/\r?\n/).map((s, i) => ({ line: i + 1, s })).filter((l) => l.s.trim() !== '');
  if (!lines.length) throw new PlotError(`${file}: empty CSV (no header row)`);
  const columns = lines[0]!.s.split(',').map(unquote);
  const rows = lines.slice(1).map((l) => ({ line: l.line, cells: l.s.split(',').map(unquote) }));
  if (!rows.length) throw new PlotError(`${file}: no data rows below the header`);
  for (const r of rows) if (r.cells.length !== columns.length) throw new PlotError(`${file}:${r.line}: ${r.cells.length} cells, the header has ${columns.length}`);
  return { columns, rows };
}

/** Columns of a CSV file as series over column `x` (default the first); `y` defaults to every other column whose cells are all numbers or empty. */
export function csvData(file: string, opts: { x?: string; y?: readonly string[] } = {}): ChartData {
  const { columns, rows } = readCsv(file);
  const isNum = (c: string): boolean => c !== '' && Number.isFinite(Number(c));
  const col = (name: string, flag: string): number => {
    const i = columns.indexOf(name);
    if (i < 0) throw new PlotError(`${flag}: no column "${name}" in ${file}; available: ${columns.join(', ')}`);
    return i;
  };
  const xName = opts.x ?? columns[0]!;
  const xi = col(xName, '--x');
  const ys = opts.y?.length ? [...opts.y] : columns.filter((c, i) => i !== xi && rows.every((r) => r.cells[i] === '' || isNum(r.cells[i]!)));
  if (!ys.length) throw new PlotError(`${file}: no numeric column besides "${xName}"; name columns with --y (available: ${columns.join(', ')})`);
  const yi = ys.map((y) => col(y, '--y'));
  const points: Point[] = [];
  for (const r of rows) {
    const xc = r.cells[xi]!;
    if (!isNum(xc)) throw new PlotError(`${file}:${r.line}: "${xName}" is not a number (${JSON.stringify(xc)})`);
    ys.forEach((name, j) => {
      const c = r.cells[yi[j]!]!;
      if (c === '') return;
      if (!isNum(c)) throw new PlotError(`${file}:${r.line}: "${name}" is not a number (${JSON.stringify(c)})`);
      points.push({ x: Number(xc), y: Number(c), series: name });
    });
  }
  if (!points.length) throw new PlotError(`${file}: no values for ${ys.join(', ')}`);
  return { points, series: ys, bands: [], xTitle: xName, marked: rows.length <= 50 ? ys : [] };
}

export interface ChartOptions {
  title?: string;
  yTitle?: string;
  logY?: boolean;
  /** the whole chart's size in pixels (axes, legend and title included); default 800×450 */
  width?: number;
  height?: number;
}

/**
 * The Vega-Lite spec of a line chart: one coloured line per series (with a marker per value on
 * `data.marked`, such as the eval losses), and shaded bands behind them per training phase when there are several.
 * With `logY`, values ≤ 0 are left out (the count is returned).
 */
export function chartSpec(data: ChartData, opts: ChartOptions = {}): { spec: TopLevelSpec; dropped: number } {
  const width = opts.width ?? 800;
  const height = opts.height ?? 450;
  const points = opts.logY ? data.points.filter((p) => p.y > 0) : data.points;
  const dropped = data.points.length - points.length;
  if (!points.length) throw new PlotError('--log-y: no positive values to plot');
  const marked = new Set(data.marked);
  const values = points.map((p) => ({ x: p.x, y: p.y, series: p.series, marked: marked.has(p.series) }));
  const phases = [...new Set(data.bands.map((b) => b.phase))];
  const x = { field: 'x', type: 'quantitative' as const, title: data.xTitle, scale: { nice: false, zero: false } };
  const y = { field: 'y', type: 'quantitative' as const, title: opts.yTitle ?? (data.series.length === 1 ? data.series[0] : 'value'), scale: opts.logY ? { type: 'log' as const } : { zero: false } };
  const color = { field: 'series', type: 'nominal' as const, title: 'series', scale: { domain: data.series }, sort: data.series };
  const layers: unknown[] = [];
  if (phases.length > 1) {
    layers.push({
      data: { values: data.bands },
      mark: { type: 'rect', opacity: 0.12 },
      encoding: {
        x: { field: 'x0', type: 'quantitative' },
        x2: { field: 'x1' },
        color: { field: 'phase', type: 'nominal', title: 'phase', scale: { domain: phases, scheme: 'set2' } },
      },
    });
  }
  layers.push({
    data: { values },
    layer: [
      { mark: { type: 'line', strokeWidth: 1.5, clip: true }, encoding: { x, y, color } },
      { transform: [{ filter: 'datum.marked' }], mark: { type: 'point', filled: true, size: 30, clip: true }, encoding: { x, y, color } },
    ],
  });
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width,
    height,
    autosize: { type: 'fit', contains: 'padding' },
    padding: 8,
    background: 'white',
    ...(opts.title ? { title: opts.title } : {}),
    layer: layers,
    resolve: { scale: { color: 'independent' } },
    config: { font: 'DejaVu Sans, Liberation Sans, Arial, sans-serif', legend: { orient: 'right' } },
  } as unknown as TopLevelSpec;
  return { spec, dropped };
}

/** A Vega-Lite spec → SVG, headless (vega's string renderer, no canvas or DOM). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** SVG → PNG with resvg (system fonts; DejaVu Sans where the SVG names a family that is missing). */
export function svgToPng(svg: string): Buffer {
  const r = new Resvg(svg, { background: 'white', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' } });
  return r.render().asPng();
}
