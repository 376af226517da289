// `dsv32 sandbox exec`: run one Python/Node program under the sandbox and print the structured result.
import { existsSync, statSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_LIMITS, runFileSandboxed, type SandboxLang } from '../envs/sandbox.js';
import { DsvError } from '../errors.js';

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got "${v}"`);
    return n;
  };
}

export function register(program: Command): void {
  const sandbox = program.command('sandbox').description('run untrusted programs under bubblewrap + prlimit');
  sandbox
    .command('exec')
    .description('run FILE in a fresh sandbox (no network, read-only system, tmpfs /work) and print JSON')
    .requiredOption('--lang <lang>', 'python or node')
    .option('--timeout-ms <n>', 'wall-clock limit', positiveInt('--timeout-ms'), DEFAULT_LIMITS.timeoutMs)
    .option('--memory-mb <n>', 'memory limit', positiveInt('--memory-mb'), DEFAULT_LIMITS.memoryMb)
    .option('--max-output-bytes <n>', 'cap per output stream', positiveInt('--max-output-bytes'), DEFAULT_LIMITS.maxOutputBytes)
    .option('--stdin <text>', 'text given to the program on stdin', '')
    .argument('<file>', 'program file')
    .action(async (file: string, o: { lang: string; timeoutMs: number; memoryMb: number; maxOutputBytes: number; stdin: string }) => {
      if (o.lang !== 'python' && o.lang !== 'node') throw new DsvError(`--lang must be "python" or "node", got "${o.lang}"`);
      if (!existsSync(file) || !statSync(file).isFile()) throw new DsvError(`program file ${file} does not exist or is not a file`);
      const r = await runFileSandboxed(o.lang as SandboxLang, file, {
        limits: { timeoutMs: o.timeoutMs, memoryMb: o.memoryMb, maxOutputBytes: o.maxOutputBytes },
        stdin: o.stdin,
      });
      process.stdout.write(JSON.stringify(r) + '\n');
    });
}
