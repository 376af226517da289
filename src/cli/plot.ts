// `dsv32 plot`: JSONL training logs (or a CSV table) → a PNG (or SVG) line chart (src/report/plot.ts).
//   dsv32 plot --log runs/pretrain/train.jsonl [--log runs/dsa/train.jsonl ...] --out loss.png [--y lm,val_lm] [--x step|tokens] [--log-y]
//   dsv32 plot --csv cost.csv --x context --y prefill,decode --out cost.png
//   dsv32 plot --compare --log runs/a/rl.jsonl --log runs/b/rl.jsonl --y reward --out reward.png [--labels a,b]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { Command } from 'commander';
import { intArg } from './args.js';
// the rendering libraries (vega, vega-lite, resvg) load only when the command runs, not with every dsv32 command
import type { ChartData } from '../report/plot.js';

interface PlotOptions {
  log: string[];
  compare?: boolean;
  labels?: string;
  csv?: string;
  out: string;
  x?: string;
  y?: string;
  title?: string;
  yTitle?: string;
  logY?: boolean;
  width: number;
  height: number;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export async function plot(o: PlotOptions): Promise<{ out: string; bytes: number; series: string[]; points: number; dropped: number }> {
  const { chartSpec, compareLogData, csvData, PlotError, renderSvg, svgToPng, trainLogData } = await import('../report/plot.js');
  if (o.log.length && o.csv) throw new PlotError('give --log (training logs) or --csv (a table), not both');
  if (!o.log.length && !o.csv) throw new PlotError('nothing to plot: give --log FILE.jsonl (repeatable) or --csv FILE.csv');
  const ext = extname(o.out).toLowerCase();
  if (ext !== '.png' && ext !== '.svg') throw new PlotError(`--out: expected a file ending in .png or .svg, got ${o.out}`);
  const y = o.y
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let data: ChartData;
  if (o.csv) data = csvData(o.csv, { x: o.x, y });
  else if (o.compare) {
    if (y?.length !== 1) throw new PlotError(`--compare: give one field with --y (each log is a series), got ${o.y === undefined ? 'none' : `"${o.y}"`}`);
    if (o.x !== undefined && o.x !== 'step') throw new PlotError(`--x: with --compare, only "step", got "${o.x}"`);
    const labels = o.labels?.split(',').map((s) => s.trim());
    data = compareLogData(o.log, { y: y[0]!, ...(labels ? { labels } : {}) });
  } else {
    if (o.labels !== undefined) throw new PlotError('--labels names the series of --compare; add --compare');
    if (o.x !== undefined && o.x !== 'step' && o.x !== 'tokens') throw new PlotError(`--x: with --log, "step" or "tokens", got "${o.x}"`);
    data = trainLogData(o.log, { y, x: o.x as 'step' | 'tokens' | undefined });
  }
  const { spec, dropped } = chartSpec(data, { title: o.title, yTitle: o.yTitle, logY: o.logY, width: o.width, height: o.height });
  const svg = await renderSvg(spec);
  const bytes = ext === '.svg' ? Buffer.from(svg) : svgToPng(svg);
  try {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, bytes);
  } catch (e) {
    throw new PlotError(`--out: cannot write ${o.out} (${(e as Error).message})`);
  }
  return { out: o.out, bytes: bytes.length, series: data.series, points: data.points.length - dropped, dropped };
}

export function register(program: Command): void {
  program
    .command('plot')
    .description('line chart of JSONL training logs (steps of several logs continued one after another) or of a CSV table, as PNG (or SVG when --out ends in .svg)')
    .option('--log <file>', 'a training log (train.jsonl); repeat for stages in order (pretrain, dsa, sft)', collect, [])
    .option('--csv <file>', 'a CSV table with a header row, instead of --log')
    .option('--compare', 'each --log is its own series (runs side by side, e.g. an ablation), for the one field given with --y')
    .option('--labels <names>', 'with --compare: comma-separated series names, one per --log (default: the file or run folder names)')
    .requiredOption('--out <file>', 'output .png (or .svg)')
    .option('--x <field>', 'x axis: step|tokens for --log (default step); a column for --csv (default the first)')
    .option('--y <fields>', 'comma-separated fields/columns (default: the loss fields present — loss, lm, mtp, indexer, val_lm, val_indexer — or every numeric CSV column)')
    .option('--title <text>', 'chart title')
    .option('--y-title <text>', 'y axis title')
    .option('--log-y', 'logarithmic y axis (values <= 0 left out)')
    .option('--width <px>', 'image width in pixels', intArg('--width', 100, 10000), 800)
    .option('--height <px>', 'image height in pixels', intArg('--height', 100, 10000), 450)
    .action(async (o: PlotOptions) => {
      const r = await plot(o);
      process.stdout.write(`wrote ${r.out} (${r.bytes} bytes): ${r.points} points of ${r.series.join(', ')}${r.dropped ? `; ${r.dropped} values <= 0 left out for --log-y` : ''}\n`);
    });
}
