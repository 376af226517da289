// How a dsv32 entry point runs its commander program (the full CLI, main.ts, and the GPU machine's
// reduced one, scripts/gpu-carry.sh): a usage error exits with commander's code; an error of ours
// (DsvError: bad input, an unreachable peer, ...) is one line on stderr and exit 2; anything else is a
// bug and keeps its stack trace.
import { type Command, CommanderError } from 'commander';
import { DsvError } from '../errors.js';

export async function runProgram(program: Command, argv: readonly string[] = process.argv): Promise<void> {
  try {
    await program.parseAsync([...argv]);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    if (e instanceof DsvError) {
      process.stderr.write(`dsv32: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
