// Shared by the benchmarks: timing (median of several runs), the machine description, the numpy reference
// run through python3 in the same invocation, and table printing.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Median seconds of `fn` after one warm-up call: at least `reps` calls and at least `minTime` seconds. */
export function medianSeconds(fn: () => void, reps: number, minTime: number): number {
  fn();
  const times: number[] = [];
  const start = performance.now();
  while ((times.length < reps || performance.now() - start < minTime * 1000) && times.length < 1000) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  return times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
}

export function machine(): string {
  let model = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1]!;
  } catch {
    // not Linux: os.cpus() is good enough
  }
  // The 1-minute load average shows whether other processes shared the cores during the run.
  return `${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (nproc), ${model}, Node ${process.version}, load average ${loadavg()[0]!.toFixed(2)}`;
}

export interface NumpyResult {
  numpy: string;
  blas: Record<string, unknown>;
  results: Array<{ shape: number[]; seconds: number }>;
}

/**
 * Times the same shapes in numpy. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which some machines set to keep old
 * OpenBLAS builds safe, are removed for this child only: they would pin numpy's current OpenBLAS to a
 * slower kernel than it picks itself. Returns null (with the reason) when python3 or numpy is missing.
 */
export function numpyReference(kind: 'gemm' | 'softmax', shapes: number[][], reps: number, minTime: number): NumpyResult | string {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'numpy_ref.py');
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', [script], {
    input: JSON.stringify({ kind, shapes, reps, min_time: minTime }),
    encoding: 'utf8',
    env,
    maxBuffer: 1 << 24,
  });
  if (r.error) return `python3 could not be run (${r.error.message})`;
  if (r.status !== 0) return `numpy_ref.py failed: ${r.stderr.trim().split('\n').pop()}`;
  return JSON.parse(r.stdout) as NumpyResult;
}

/** Prints rows as an aligned Markdown table, so the output can be pasted into docs/benchmarks.md. */
export function printTable(header: string[], rows: string[][]): void {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(w[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${w.map((n) => '-'.repeat(n + 1) + ':').join('|')}|`);
  for (const r of rows) console.log(line(r));
}

export function geomean(xs: number[]): number {
  const ok = xs.filter((x) => x > 0 && Number.isFinite(x));
  return ok.length ? Math.exp(ok.reduce((s, x) => s + Math.log(x), 0) / ok.length) : NaN;
}
