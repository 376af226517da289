// `dsv32 bench dsa`: issue 11's DSA operation benchmarks in one command — sparse MLA forward (prefill and
// decode over the FP8 and bf16 caches), the training ops (sparse MLA backward, indexer scores and KL
// loss) and, on a GPU, the lightning indexer's logits, top-k and paged cache. Each is a script in bench/
// (they time with CUDA events and run their PyTorch references in the same command); this command runs
// them in turn, prints their tables (or, with --json, one JSON object of all their results) and writes
// that object to --out. On a CPU the scripts run small shapes on the CPU references, without PyTorch, and
// say so; the indexer script needs a GPU and is skipped there with that reason.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DsvError } from '../errors.js';
import { cudaUnavailableReason, resolveDevice } from '../backend/cuda/index.js';

const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');

interface Script { name: string; file: string; cpu: boolean; flags: (cpu: boolean, quick: boolean) => string[] }

const SCRIPTS: Script[] = [
  { name: 'sparse-mla', file: 'sparse-mla.js', cpu: true, flags: (cpu, quick) => [...(cpu ? ['--device', 'cpu', '--no-torch'] : []), ...(quick ? ['--quick'] : [])] },
  { name: 'dsa-train', file: 'dsa-train.js', cpu: true, flags: (cpu, quick) => [...(cpu ? ['--device', 'cpu', '--no-torch'] : []), ...(quick ? ['--quick'] : [])] },
  { name: 'dsa-indexer', file: 'dsa-indexer.js', cpu: false, flags: (_cpu, quick) => (quick ? [] : ['--full']) },
];

export interface BenchDsaOptions {
  device: 'cpu' | 'cuda';
  json: boolean;
  out?: string;
  quick: boolean;
}

/** Run the scripts; returns the combined results (each script's --out JSON, or why it did not run). */
export function benchDsa(o: BenchDsaOptions): Record<string, unknown> {
  const cpu = o.device === 'cpu';
  if (!cpu) {
    const why = cudaUnavailableReason();
    if (why) throw new DsvError(`bench dsa --device cuda: ${why}; run with --device cpu for the small CPU shapes`);
  }
  if (o.out && !existsSync(dirname(resolve(o.out)))) throw new DsvError(`--out: the folder ${dirname(resolve(o.out))} does not exist`);
  const tmp = mkdtempSync(join(tmpdir(), 'dsv32-bench-'));
  const results: Record<string, unknown> = { device: o.device, date: new Date().toISOString().slice(0, 10), ...(cpu ? { note: 'CPU run: small shapes on the CPU references, no PyTorch; the issue\'s shapes need a GPU' } : {}) };
  try {
    if (cpu && !o.json) process.stdout.write(`${results.note as string}\n`);
    for (const s of SCRIPTS) {
      if (cpu && !s.cpu) {
        results[s.name] = { skipped: 'needs a GPU (the indexer benchmark has no CPU shapes)' };
        if (!o.json) process.stdout.write(`\n${s.name}: skipped, needs a GPU\n`);
        continue;
      }
      const file = join(BENCH_DIR, s.file);
      if (!existsSync(file)) throw new DsvError(`bench dsa: ${file} is missing (run npm run build)`);
      const outFile = join(tmp, `${s.name}.json`);
      if (!o.json) process.stdout.write(`\n== ${s.name}\n`);
      const r = spawnSync(process.execPath, [file, ...s.flags(cpu, o.quick), '--out', outFile], { stdio: o.json ? ['ignore', 'ignore', 'inherit'] : 'inherit' });
      if (r.status !== 0) throw new DsvError(`bench dsa: ${s.name} exited with ${r.status ?? r.signal}`);
      results[s.name] = JSON.parse(readFileSync(outFile, 'utf8')) as unknown;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (o.out) writeFileSync(o.out, JSON.stringify(results, null, 2));
  if (o.json) process.stdout.write(`${JSON.stringify(results)}\n`);
  return results;
}

export interface BenchDsaCostOptions {
  device: 'auto' | 'cpu' | 'cuda';
  json?: boolean;
  out?: string;
  csv?: string;
  sq?: string;
  contexts?: string;
  batch?: string;
  indexer?: 'mma' | 'gemm' | 'cores';
  torch?: boolean;
}

/**
 * `dsv32 bench dsa-cost`: the paper's Fig. 3 — time per token of one 671B-dimension attention layer, DSA
 * against dense MLA, prefill and decode, at contexts 4K–128K (bench/dsa-cost.ts, which says what it times).
 * Without a CUDA driver it runs tiny shapes on the CPU references and says so. --csv is drawn by
 * `dsv32 plot --csv FILE --x context --log-y --out fig.png`.
 */
export function benchDsaCost(o: BenchDsaCostOptions): void {
  if (o.device === 'cuda') {
    const why = cudaUnavailableReason();
    if (why) throw new DsvError(`bench dsa-cost --device cuda: ${why}; run with --device cpu for the tiny CPU shapes`);
  }
  for (const [flag, f] of [['--out', o.out], ['--csv', o.csv]] as const) {
    if (f && !existsSync(dirname(resolve(f)))) throw new DsvError(`${flag}: the folder ${dirname(resolve(f))} does not exist`);
  }
  const file = join(BENCH_DIR, 'dsa-cost.js');
  if (!existsSync(file)) throw new DsvError(`bench dsa-cost: ${file} is missing (run npm run build)`);
  const flags = ['--device', o.device, ...(o.json ? ['--json'] : []), ...(o.out ? ['--out', o.out] : []), ...(o.csv ? ['--csv', o.csv] : []),
    ...(o.sq ? ['--sq', o.sq] : []), ...(o.contexts ? ['--contexts', o.contexts] : []), ...(o.batch ? ['--batch', o.batch] : []),
    ...(o.indexer ? ['--indexer', o.indexer] : []), ...(o.torch === false ? ['--no-torch'] : [])];
  const r = spawnSync(process.execPath, [file, ...flags], { stdio: 'inherit' });
  if (r.status !== 0) throw new DsvError(`bench dsa-cost: exited with ${r.status ?? r.signal}`);
}

export function register(program: Command): void {
  const bench = program.command('bench').description('benchmarks (tables on stdout; figures are recorded in docs/benchmarks.md)');
  bench
    .command('dsa-cost')
    .description("the paper's Fig. 3: µs per token of one 671B-dimension attention layer, DSA (indexer + top-k + sparse MLA) against dense MLA, prefill and decode, contexts 4K–128K, with torch SDPA in the same run (tiny shapes on a CPU, said so)")
    .addOption(new Option('--device <name>', 'where to run (auto: the GPU when a CUDA driver is found, else the CPU)').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--json', 'print one JSON object instead of the tables')
    .option('--out <file>', 'also write that JSON object to a file')
    .option('--csv <file>', 'write µs per token per context and method as CSV (for dsv32 plot --csv FILE --x context)')
    .option('--sq <n>', 'prefill chunk of query tokens at the end of the context (default 1024; 8 on the CPU)')
    .option('--contexts <list>', 'comma-separated contexts (default 4096,16384,32768,65536,131072)')
    .option('--batch <n>', 'decode batch (default 64)')
    .addOption(new Option('--indexer <path>', 'the indexer logits\' CUDA path: the fused FP8 wgmma kernels, the FP8 cuBLASLt GEMM + reduce, or the CUDA-core kernels (default: src/backend/cuda/dsa-indexer.ts indexerTune)').choices(['mma', 'gemm', 'cores']))
    .option('--no-torch', 'skip the PyTorch SDPA reference')
    .action((o: BenchDsaCostOptions) => benchDsaCost(o));
  bench
    .command('dsa')
    .description('the DSA operations: sparse MLA prefill/decode, training ops, and on a GPU the indexer logits, top-k and paged cache, with PyTorch references in the same run')
    .addOption(new Option('--device <name>', 'where to run (auto: the GPU when a CUDA driver is found, else the CPU)').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--json', 'print one JSON object of every result instead of the tables')
    .option('--out <file>', 'also write that JSON object to a file')
    .option('--quick', 'fewer shapes (the first of each list)')
    .action((o: { device: 'auto' | 'cpu' | 'cuda'; json?: boolean; out?: string; quick?: boolean }) => {
      const device = o.device === 'auto' ? (resolveDevice('auto') as 'cpu' | 'cuda') : o.device;
      benchDsa({ device, json: o.json ?? false, out: o.out, quick: o.quick ?? false });
    });
}
