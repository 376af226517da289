// Compiles every kernels/*.cu to an sm_90a cubin in dist/kernels/ with nvcc, in parallel.
// Fails (exit 1) on any compile error, and on any local-memory use (spills or a stack frame) reported
// by `ptxas -v`: a spilled hot kernel is a bug, not a warning. Writes dist/kernels/ptxas.txt with the
// resource report of every kernel.
//   node scripts/build-kernels.mjs [--nvcc PATH] [--out DIR] [--allow-spills]
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const nvcc = opt('--nvcc', process.env.NVCC ?? 'nvcc');
const outDir = resolve(opt('--out', join(root, 'dist', 'kernels')));
const allowSpills = args.includes('--allow-spills');
const srcDir = join(root, 'kernels');

const sources = readdirSync(srcDir).filter((f) => f.endsWith('.cu')).sort();
if (!sources.length) {
  console.error(`build-kernels: no .cu files in ${srcDir}`);
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });

async function compile(file) {
  const out = join(outDir, file.replace(/\.cu$/, '.cubin'));
  const argv = ['-cubin', '-gencode=arch=compute_90a,code=sm_90a', '-O3', '-std=c++17', '-Xptxas', '-v',
    '-I', srcDir, '-o', out, join(srcDir, file)];
  try {
    const { stderr } = await run(nvcc, argv, { maxBuffer: 64 << 20 });
    return { file, out, log: stderr, ok: true };
  } catch (e) {
    return { file, out, log: `${e.stderr ?? ''}${e.stdout ?? ''}${e.code === 'ENOENT' ? `nvcc not found at '${nvcc}' (set NVCC or --nvcc)` : ''}`, ok: false };
  }
}

/** Kernels with a non-zero stack frame or spill count, from ptxas -v output. */
function localMemoryUsers(log) {
  const bad = [];
  let fn = '?';
  for (const line of log.split('\n')) {
    const m = /Compiling entry function '([^']+)'/.exec(line);
    if (m) fn = m[1];
    const s = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (s && (+s[1] || +s[2] || +s[3])) bad.push(`${fn}: ${line.trim()}`);
  }
  return bad;
}

const limit = Math.max(1, Math.min(cpus().length, 8));
const results = [];
const queue = [...sources];
await Promise.all(Array.from({ length: limit }, async () => {
  for (let f = queue.shift(); f; f = queue.shift()) results.push(await compile(f));
}));
results.sort((a, b) => a.file.localeCompare(b.file));

let failed = false;
const report = [];
for (const r of results) {
  report.push(`== ${r.file}\n${r.log}`);
  if (!r.ok) {
    failed = true;
    console.error(`build-kernels: ${r.file} failed to compile:\n${r.log}`);
    continue;
  }
  const bad = localMemoryUsers(r.log);
  if (bad.length && !allowSpills) {
    failed = true;
    console.error(`build-kernels: ${r.file} uses local memory:\n  ${bad.join('\n  ')}`);
  }
  if (!existsSync(r.out)) {
    failed = true;
    console.error(`build-kernels: ${r.file}: nvcc reported success but wrote no ${r.out}`);
  }
}
writeFileSync(join(outDir, 'ptxas.txt'), report.join('\n'));
if (failed) process.exit(1);
console.log(`build-kernels: ${results.length} kernel files → ${outDir}`);
