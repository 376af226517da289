// `dsv32 bench dsa-cost --device cpu` (the paper's Fig. 3 bench, bench/dsa-cost.ts) on the tiny CPU shapes:
// it says it ran them, prints a row per context, writes JSON with positive finite times for every context,
// mode and method, and a CSV that `dsv32 plot --csv` draws. Not a timing assertion. Bad arguments are
// one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const MAIN = resolve('dist/src/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
const CONTEXTS = [256, 512, 1024, 2048];

test('dsv32 bench dsa-cost --device cpu: tiny shapes said so, a row per context, JSON of positive finite times, a CSV dsv32 plot draws', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-dsa-cost-'));
  const out = join(dir, 'r.json');
  const csv = join(dir, 'fig3.csv');
  const r = run('bench', 'dsa-cost', '--device', 'cpu', '--out', out, '--csv', csv);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /CPU run: tiny shapes .* NOT the paper's 671B dimensions/);
  for (const L of CONTEXTS) assert.match(r.stdout, new RegExp(`^\\|\\s+${L} \\|`, 'm'), `a table row for context ${L}`);
  assert.match(r.stdout, /ratio at 2048: prefill [\d.]+× .*no verdict at these shapes/);

  const j = JSON.parse(readFileSync(out, 'utf8')) as {
    cpu: boolean; note: string; rows: Record<string, number>[];
    prefill: Record<string, number | string>[]; decode: Record<string, number | string>[];
  };
  assert.equal(j.cpu, true);
  assert.match(j.note, /CPU run: tiny shapes/);
  assert.deepEqual(j.rows.map((x) => x.context), CONTEXTS);
  const pos = (v: unknown, what: string): void => assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${what} = ${String(v)}`);
  for (const row of j.rows) {
    for (const k of ['prefill_dsa_us', 'prefill_dense_us', 'prefill_ratio', 'decode_dsa_us', 'decode_dense_us', 'decode_ratio']) pos(row[k], `${k} at ${row.context}`);
  }
  for (const [mode, list] of [['prefill', j.prefill], ['decode', j.decode]] as const) {
    assert.deepEqual(list.map((x) => x.context), CONTEXTS, `${mode} contexts`);
    for (const x of list) for (const k of ['dsa_ms', 'indexer_ms', 'topk_ms', 'sparse_mla_ms', 'dense_ms']) pos(x[k], `${mode} ${k} at ${x.context}`);
  }

  const lines = readFileSync(csv, 'utf8').trim().split('\n');
  assert.equal(lines[0], 'context,prefill_dsa,prefill_dense,decode_dsa,decode_dense');
  assert.deepEqual(lines.slice(1).map((l) => Number(l.split(',')[0])), CONTEXTS);
  const png = join(dir, 'fig3.png');
  const p = run('plot', '--csv', csv, '--x', 'context', '--log-y', '--out', png);
  assert.equal(p.status, 0, p.stderr);
  assert.ok(existsSync(png) && statSync(png).size > 1000, 'the PNG');
});

test('dsv32 bench dsa-cost: a context shorter than the chunk, a bad list and a missing --out folder are errors that name the problem', () => {
  const a = run('bench', 'dsa-cost', '--device', 'cpu', '--contexts', '4', '--no-torch');
  assert.notEqual(a.status, 0);
  assert.match(a.stderr, /context 4 is shorter than the prefill chunk s_q 8/);
  const b = run('bench', 'dsa-cost', '--device', 'cpu', '--contexts', '256,x');
  assert.notEqual(b.status, 0);
  assert.match(b.stderr, /comma-separated list of positive integers, got 256,x/);
  const c = run('bench', 'dsa-cost', '--device', 'cpu', '--out', '/nonexistent-dir/r.json');
  assert.equal(c.status, 2);
  assert.match(c.stderr, /^dsv32: --out: the folder \/nonexistent-dir does not exist\n$/);
});
