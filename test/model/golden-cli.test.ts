// The README's main job: `dsv32 golden` must pass on the fixtures and fail loudly on bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const cli = resolve('dist/src/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'golden', ...args], { encoding: 'utf8' });

test('dsv32 golden: tiny-f32 and tiny-fp8 match the reference exactly in their choices', () => {
  for (const fixture of ['tiny-f32', 'tiny-fp8']) {
    const r = run('--fixture', fixture, '--json');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { ok: boolean; rows: { what: string; value: string; ok: boolean }[] };
    assert.equal(out.ok, true);
    const topk = out.rows.find((x) => x.what.startsWith('prefill indexer top-k'))!;
    assert.match(topk.value, /^0 \/ 288$/);
    const dec = out.rows.find((x) => x.what.startsWith('decode MoE route'))!;
    assert.match(dec.value, /^0 \/ 24$/);
  }
});

test('dsv32 golden: bad fixture directory and impossible dtype give one-line errors', () => {
  const r = run('--fixtures', '/nonexistent/fixtures');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^dsv32: fixture 'tiny-f32' not found at \/nonexistent\/fixtures\/tiny-f32/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const d = run('--fixture', 'tiny-bf16', '--dtype', 'f32');
  assert.equal(d.status, 2);
  assert.match(d.stderr, /tiny-bf16 has a bf16 golden only/);
});

test('dsv32 golden --tensor-parallel 2: the model split over 2 thread ranks passes the same checks; a world size that does not divide it is one line', () => {
  const r = run('--tensor-parallel', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; tensorParallel: number; rows: { what: string; value: string }[] };
  assert.equal(out.ok, true);
  assert.equal(out.tensorParallel, 2);
  assert.match(out.rows.find((x) => x.what.startsWith('prefill MoE route'))!.value, /^0 \/ 192$/);
  const bad = run('--tensor-parallel', '3');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^dsv32: --tensor-parallel 3: .*num_attention_heads \(4\).* not divisible by 3/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});

test('the CLI entry is executable, so the README\'s `npx dsv32 golden` runs it', async () => {
  const { statSync } = await import('node:fs');
  assert.ok((statSync(cli).mode & 0o111) !== 0, `${cli} is not executable (the build must chmod it)`);
});
