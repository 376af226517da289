// `dsv32 sandbox exec`: run one Python/Node program under the sandbox and print the structured result.
import { existsSync, statSync } from 'node:fs';
import { Command } from 'commander';
import { intArg } from './args.js';
import { DEFAULT_LIMITS, MAX_TIMEOUT_MS, runFileSandboxed, type SandboxLang, type SandboxResult } from '../envs/sandbox.js';
import { DsvError } from '../errors.js';

/**
 * Exit status of `sandbox exec` for each outcome, so that a script can branch without parsing the
 * JSON. 1 and 2 are taken by the CLI itself (commander's argument errors, DsvError), hence from 3 up.
 */
export const SANDBOX_EXIT = {
  ok: 0,
  programFailed: 3,
  timedOut: 4,
  memoryExceeded: 5,
  outputTruncated: 6,
} as const;

/** Where several apply, the limit that stopped the program wins over the exit status it left. */
export function sandboxExitStatus(r: SandboxResult): number {
  if (r.timedOut) return SANDBOX_EXIT.timedOut;
  if (r.memoryExceeded) return SANDBOX_EXIT.memoryExceeded;
  if (r.outputTruncated) return SANDBOX_EXIT.outputTruncated;
  return r.exitCode === 0 ? SANDBOX_EXIT.ok : SANDBOX_EXIT.programFailed;
}

const EXIT_HELP = `
Exit status:
  ${SANDBOX_EXIT.ok}  the program exited with status 0
  1  bad or missing option
  2  other bad input (file, --lang) or no usable sandbox on this host
  ${SANDBOX_EXIT.programFailed}  the program exited with another status or was killed by a signal (see exitCode)
  ${SANDBOX_EXIT.timedOut}  the wall-clock limit was reached (timedOut)
  ${SANDBOX_EXIT.memoryExceeded}  the memory limit was reached (memoryExceeded)
  ${SANDBOX_EXIT.outputTruncated}  an output stream reached its cap and the program was killed (outputTruncated)
The JSON result is printed for 0 and 3-6.`;

export function register(program: Command): void {
  const sandbox = program.command('sandbox').description('run untrusted programs under bubblewrap + prlimit');
  sandbox
    .command('exec')
    .description('run FILE in a fresh sandbox (no network, read-only system, tmpfs /work) and print JSON')
    .requiredOption('--lang <lang>', 'python or node')
    .option('--timeout-ms <n>', `wall-clock limit (at most ${MAX_TIMEOUT_MS})`, intArg('--timeout-ms', 1, MAX_TIMEOUT_MS), DEFAULT_LIMITS.timeoutMs)
    .option('--memory-mb <n>', 'memory limit', intArg('--memory-mb', 1), DEFAULT_LIMITS.memoryMb)
    .option('--max-output-bytes <n>', 'cap per output stream', intArg('--max-output-bytes', 1), DEFAULT_LIMITS.maxOutputBytes)
    .option('--stdin <text>', 'text given to the program on stdin', '')
    .argument('<file>', 'program file')
    .addHelpText('after', EXIT_HELP)
    .action(async (file: string, o: { lang: string; timeoutMs: number; memoryMb: number; maxOutputBytes: number; stdin: string }) => {
      if (o.lang !== 'python' && o.lang !== 'node') throw new DsvError(`--lang must be "python" or "node", got "${o.lang}"`);
      if (!existsSync(file) || !statSync(file).isFile()) throw new DsvError(`program file ${file} does not exist or is not a file`);
      const r = await runFileSandboxed(o.lang as SandboxLang, file, {
        limits: { timeoutMs: o.timeoutMs, memoryMb: o.memoryMb, maxOutputBytes: o.maxOutputBytes },
        stdin: o.stdin,
      });
      process.stdout.write(JSON.stringify(r) + '\n');
      // exitCode, not exit(): a pipe may not have taken all of stdout yet
      process.exitCode = sandboxExitStatus(r);
    });
}
