// The README's two commands (`npm start`, `npm test`) run scripts/setup.sh first; once a machine is set
// up, it must not set up again: no apt, no npm ci (the incremental build is all that runs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

test('scripts/setup.sh on a set-up machine installs nothing (only the incremental build runs)', () => {
  const t0 = Date.now();
  const r = spawnSync('bash', ['scripts/setup.sh'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr + r.stdout, /installing npm dependencies|npm ci|apt-get/);
  assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
});

test('npm start and npm test both begin with the set-up', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts.start!, /^bash scripts\/setup\.sh && /);
  assert.match(pkg.scripts.test!, /^bash scripts\/setup\.sh && /);
});
