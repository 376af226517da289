// `dsv32 sandbox exec`: run one Python/Node program under the sandbox and print the structured result.
import { existsSync, statSync } from 'node:fs';
import { Command } from 'commander';
import { intArg } from './args.js';
import { DEFAULT_LIMITS, runFileSandboxed, type SandboxLang } from '../envs/sandbox.js';
import { DsvError } from '../errors.js';


export function register(program: Command): void {
  const sandbox = program.command('sandbox').description('run untrusted programs under bubblewrap + prlimit');
  sandbox
    .command('exec')
    .description('run FILE in a fresh sandbox (no network, read-only system, tmpfs /work) and print JSON')
    .requiredOption('--lang <lang>', 'python or node')
    .option('--timeout-ms <n>', 'wall-clock limit', intArg('--timeout-ms', 1), DEFAULT_LIMITS.timeoutMs)
    .option('--memory-mb <n>', 'memory limit', intArg('--memory-mb', 1), DEFAULT_LIMITS.memoryMb)
    .option('--max-output-bytes <n>', 'cap per output stream', intArg('--max-output-bytes', 1), DEFAULT_LIMITS.maxOutputBytes)
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
