// `dsv32 launch --gpus N [--master-file PATH] -- <dsv32 command...>`: runs the command on N GPUs, one
// process per GPU (src/dist/launcher.ts; docs/multi-gpu.md). The children are this same CLI under this
// same Node, so a launch needs nothing on PATH.
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { intArg } from './args.js';
import { launch } from '../dist/launcher.js';

export function register(program: Command): void {
  program
    .command('launch')
    .description('run a dsv32 command on N GPUs, one process per GPU with NCCL between them (NVLink multicast off)')
    .requiredOption('--gpus <n>', 'number of ranks; rank r runs on CUDA device r', intArg('--gpus', 1, 1024))
    .option('--master-file <path>', 'where rank 0 writes the NCCL unique id for the others (default: a fresh temporary file)')
    .argument('<command...>', 'the dsv32 command and its arguments, after --')
    .action(async (command: string[], o: { gpus: number; masterFile?: string }) => {
      const main = fileURLToPath(new URL('./main.js', import.meta.url));
      const r = await launch({ gpus: o.gpus, args: command, program: [process.execPath, ...process.execArgv, main], idFile: o.masterFile });
      if (r.message) process.stderr.write(`dsv32 launch: ${r.message}\n`);
      process.exitCode = r.exitCode;
    });
}
