// `dsv32 plot`: training logs and CSV tables → SVG (vega) → PNG (resvg), and one-line errors for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { plot } from '../../src/cli/plot.js';
import { chartSpec, compareLogData, csvData, PlotError, renderSvg, trainLogData } from '../../src/report/plot.js';

const cli = resolve('dist/src/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'dsv32-plot-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
/** A small log in the trainer's format: `n` steps of `phase`, an eval line every `every` steps. */
const log = (name: string, n: number, phase: string, every: number): string => {
  const lines: string[] = [];
  for (let s = 1; s <= n; s++) {
    const lm = 5 / s + 2;
    lines.push(JSON.stringify({ step: s, phase, loss: lm * 1.3, lm: phase === 'warmup' ? null : lm, mtp: [lm * 0.3], // the trainer logs one entry per MTP module
      indexer: phase === 'pretrain' ? null : 0.1 / s, lr: 1e-3, grad_norm: 1, tokens: 256, ms: 10, tokens_per_s: 25600 }));
    if (s % every === 0) lines.push(JSON.stringify({ step: s, phase: 'eval', val_lm: lm + 0.1, val_indexer: null }));
  }
  return write(name, lines.join('\n') + '\n');
};
const pretrain = log('pretrain.jsonl', 20, 'pretrain', 5);
const dsa = log('dsa.jsonl', 10, 'sparse', 5);

/** The width and height in a PNG's IHDR chunk, after checking the signature. */
function pngSize(b: Buffer): { width: number; height: number } {
  assert.deepEqual([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(b.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

test('dsv32 plot: two logs → a PNG of the requested size; an unreadable log → exit 2, one line', async () => {
  const out = join(dir, 'img', 'loss.png');
  const run = (...args: string[]) =>
    promisify(execFile)(process.execPath, [cli, 'plot', ...args], { encoding: 'utf8' }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  const [ok, missing] = await Promise.all([
    run('--log', pretrain, '--log', dsa, '--out', out, '--width', '640', '--height', '360', '--title', 'test run'),
    run('--log', join(dir, 'nope.jsonl'), '--out', join(dir, 'x.png')),
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^wrote .*loss\.png \(\d+ bytes\): \d+ points of loss, lm, mtp, indexer, val_lm\n$/);
  assert.deepEqual(pngSize(readFileSync(out)), { width: 640, height: 360 });
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr, `dsv32: ${join(dir, 'nope.jsonl')}: cannot read (no such file)\n`);
});

test('plot: the SVG names every series and phase; steps of the second log continue the first', async () => {
  const data = trainLogData([pretrain, dsa]);
  assert.deepEqual(data.series, ['loss', 'lm', 'mtp', 'indexer', 'val_lm']);
  assert.deepEqual(data.marked, ['val_lm']);
  assert.deepEqual(data.bands, [
    { phase: 'pretrain', x0: 0, x1: 20 },
    { phase: 'sparse', x0: 20, x1: 30 },
  ]);
  assert.equal(Math.max(...data.points.map((p) => p.x)), 30);
  assert.deepEqual(data.points.filter((p) => p.series === 'val_lm').map((p) => p.x), [5, 10, 15, 20, 25, 30]);
  const svg = await renderSvg(chartSpec(data, { title: 'two stages', width: 500, height: 300 }).spec);
  assert.match(svg, /^<svg[^>]* width="500" height="300"/);
  for (const name of [...data.series, 'pretrain', 'sparse', 'two stages']) assert.ok(svg.includes(`>${name}</text>`), `SVG lacks the label ${name}`);
  // --x tokens: cumulative tokens of the step lines; an eval line at its step's
  const tok = trainLogData([pretrain, dsa], { x: 'tokens', y: ['lm', 'val_lm'] });
  assert.equal(Math.max(...tok.points.map((p) => p.x)), 30 * 256);
  assert.deepEqual(tok.points.filter((p) => p.series === 'val_lm').map((p) => p.x / 256), [5, 10, 15, 20, 25, 30]);
});

test('plot: a CSV table → an SVG file, columns as series', async () => {
  const csv = write('cost.csv', 'context,dense,dsa\n8192,0.2,0.2\n32768,0.5,0.35\n131072,1.8,0.7\n');
  const data = csvData(csv, { x: 'context' });
  assert.deepEqual(data.series, ['dense', 'dsa']);
  assert.equal(data.points.length, 6);
  const out = join(dir, 'cost.svg');
  const r = await plot({ log: [], csv, out, x: 'context', y: 'dense,dsa', width: 400, height: 300, logY: true });
  assert.equal(r.points, 6);
  const svg = readFileSync(out, 'utf8');
  for (const name of ['dense', 'dsa', 'context']) assert.ok(svg.includes(`>${name}</text>`), name);
});

test('plot: bad input gives a PlotError naming the file, the line or the fields', async () => {
  const bad = (o: Partial<Parameters<typeof plot>[0]>, re: RegExp) =>
    assert.rejects(plot({ log: [], out: join(dir, 'bad.png'), width: 400, height: 300, ...o }), (e: Error) => e instanceof PlotError && re.test(e.message) && !e.message.includes('\n'));
  const empty = write('empty.jsonl', '\n\n');
  const notJson = write('broken.jsonl', '{"step":1,"loss":2}\n{"step":2,"lo\n');
  const noStep = write('nostep.jsonl', '{"loss":2}\n');
  await bad({ log: [empty] }, /empty\.jsonl: empty log/);
  await bad({ log: [pretrain, notJson] }, /broken\.jsonl:2: not JSON/);
  await bad({ log: [noStep] }, /nostep\.jsonl:1: expected a JSON object with a numeric "step"/);
  await bad({ log: [pretrain], y: 'lm,perplexity' }, /--y: no numeric field "perplexity" in .*; available: loss, lm, mtp, lr, grad_norm, tokens, ms, tokens_per_s, val_lm$/);
  await bad({ log: [pretrain], x: 'epoch' }, /--x: with --log, "step" or "tokens", got "epoch"/);
  await bad({ log: [pretrain], out: join(dir, 'loss.jpg') }, /--out: expected a file ending in \.png or \.svg, got .*loss\.jpg$/);
  await bad({ log: [pretrain], csv: pretrain }, /not both/);
  await bad({}, /nothing to plot/);
  const csv = write('t.csv', 'n,t\n1,2\n2,x\n');
  await bad({ csv, y: 'nope' }, /--y: no column "nope" in .*t\.csv; available: n, t/);
  await bad({ csv }, /no numeric column besides "n"/);
  await bad({ csv, y: 't' }, /t\.csv:3: "t" is not a number \("x"\)/);
  assert.throws(() => trainLogData([write('lr.jsonl', '{"step":1,"lr":0.1}\n')]), /no loss fields .*available: lr/);
});

test('plot --compare: each log is a series on the same step axis, named by label, file or run folder', async () => {
  const d = compareLogData([pretrain, dsa], { y: 'lm' });
  assert.deepEqual(d.series, ['pretrain', 'dsa']);
  // not continued: both start at step 1
  assert.deepEqual(d.points.filter((p) => p.series === 'dsa').map((p) => p.x), Array.from({ length: 10 }, (_, i) => i + 1));
  assert.equal(d.points.find((p) => p.series === 'pretrain' && p.x === 4)!.y, 5 / 4 + 2);
  const runDir = join(dir, 'run-a');
  mkdirSync(runDir);
  writeFileSync(join(runDir, 'rl.jsonl'), readFileSync(dsa));
  assert.deepEqual(compareLogData([pretrain, join(runDir, 'rl.jsonl')], { y: 'lm' }).series, ['pretrain', 'run-a']);
  assert.deepEqual(compareLogData([pretrain, dsa], { y: 'lm', labels: ['a', 'b'] }).series, ['a', 'b']);
  assert.throws(() => compareLogData([pretrain, dsa], { y: 'lm', labels: ['a'] }), /--labels: 1 labels for 2 logs/);
  assert.throws(() => compareLogData([pretrain, pretrain], { y: 'lm' }), /the same series/);
  assert.throws(() => compareLogData([pretrain], { y: 'nope' }), (e: unknown) => e instanceof PlotError && /has no numeric "nope"; available: .*lm/.test(e.message));
  const out = join(dir, 'cmp.png');
  const r = await plot({ log: [pretrain, dsa], compare: true, y: 'lm', out, width: 400, height: 300 });
  assert.deepEqual(r.series, ['pretrain', 'dsa']);
  assert.deepEqual(pngSize(readFileSync(out)), { width: 400, height: 300 });
  await assert.rejects(plot({ log: [pretrain, dsa], compare: true, y: 'lm,loss', out, width: 400, height: 300 }), /--compare: give one field with --y/);
  await assert.rejects(plot({ log: [pretrain], labels: 'a', out, width: 400, height: 300 }), /--labels names the series of --compare/);
});
