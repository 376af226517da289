// `dsv32 bench dsa` on a machine without a GPU: it says it ran the small CPU shapes, runs the sparse MLA
// and training-op scripts on the CPU references, skips the indexer script with the reason, writes one JSON
// object; bad arguments are one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cudaUnavailableReason } from '../../src/backend/cuda/index.js';

const MAIN = resolve('dist/src/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, 'bench', 'dsa', ...args], { encoding: 'utf8' });

test('dsv32 bench dsa --device cpu: small shapes said so, tables of both CPU scripts, the indexer skipped, one JSON object in --out', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'bench-dsa-')), 'r.json');
  const r = run('--device', 'cpu', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /CPU run: small shapes on the CPU references/);
  assert.match(r.stdout, /== sparse-mla[\s\S]*prefill s_kv 500[\s\S]*== dsa-train[\s\S]*sparse MLA backward/);
  assert.match(r.stdout, /dsa-indexer: skipped, needs a GPU/);
  const j = JSON.parse(readFileSync(out, 'utf8')) as Record<string, { skipped?: string; prefill?: { ms: number }[]; rows?: { op: string; ms: number }[] }>;
  assert.equal(j.device as unknown, 'cpu');
  assert.ok(j['sparse-mla']!.prefill!.every((p) => p.ms > 0), 'sparse-mla prefill times');
  assert.ok(j['dsa-train']!.rows!.some((x) => x.op === 'sparse MLA backward' && x.ms > 0), 'dsa-train rows');
  assert.match(j['dsa-indexer']!.skipped!, /needs a GPU/);
});

test('dsv32 bench dsa: a missing --out folder, an unknown device, and cuda without a driver are one-line errors', { skip: cudaUnavailableReason() === null ? 'a CUDA driver is present' : false }, () => {
  const a = run('--device', 'cpu', '--out', '/nonexistent-dir/r.json');
  assert.equal(a.status, 2);
  assert.match(a.stderr, /^dsv32: --out: the folder \/nonexistent-dir does not exist\n$/);
  const b = run('--device', 'tpu');
  assert.notEqual(b.status, 0);
  assert.match(b.stderr, /argument 'tpu' is invalid/);
  const c = run('--device', 'cuda');
  assert.equal(c.status, 2);
  assert.match(c.stderr, /^dsv32: bench dsa --device cuda: CUDA driver not found.*run with --device cpu/);
});
