// Runs every compiled test file under dist/test with node's built-in runner.
// Node 20 has no glob support in `node --test`, so the files are listed here.
// Extra arguments filter by substring of the path: `node scripts/run-tests.mjs chat/ model/`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const passthrough = process.argv.slice(2).filter((a) => a.startsWith('--'));
let files = walk('dist/test', []).sort();
if (filters.length) files = files.filter((f) => filters.some((s) => f.includes(s)));
if (!files.length) {
  console.error('run-tests: no compiled test files found under dist/test (run `npm run build` first)');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', ...passthrough, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
