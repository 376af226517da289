// `dsv32 launch`: one child process per GPU, each told its place through the environment that
// src/dist/rendezvous.ts reads. The launcher owns the children's lifetime: one failing rank would leave
// the others blocked forever inside an NCCL collective, so the first failure stops them all, and
// signals the launcher receives (SIGINT, SIGTERM, SIGHUP) are passed on once, so that Ctrl-C, a closed
// terminal or a scheduler's SIGTERM reaches every rank exactly once.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { DsvError } from '../errors.js';

export interface LaunchOptions {
  /** number of ranks, one per GPU: rank r runs on CUDA device r */
  gpus: number;
  /** the command line each rank runs after `program` (for the CLI: a dsv32 command and its arguments) */
  args: readonly string[];
  /** the executable and leading arguments of every child: the dsv32 CLI under this Node, normally */
  program: readonly string[];
  /** where rank 0 publishes the NCCL unique id; default: a file in a fresh temporary folder */
  idFile?: string;
  /** extra environment for the children, on top of this process's */
  env?: NodeJS.ProcessEnv;
  stdout?: Writable;
  stderr?: Writable;
  /** after a failure or a signal, how long ranks get to exit before SIGKILL */
  graceMs?: number;
}

export interface LaunchResult {
  /** what the launcher should exit with: 0, the failed rank's code, or 128 + the signal number */
  exitCode: number;
  /** the first rank that failed, if one did */
  failed: { rank: number; code: number | null; signal: NodeJS.Signals | null } | null;
  /** one line for the user when exitCode is not 0 */
  message: string | null;
}

export class LaunchArgumentError extends DsvError {}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Each child output line as `[rank r] line`, so interleaved ranks stay readable. */
function prefixLines(from: NodeJS.ReadableStream, to: Writable, rank: number): void {
  createInterface({ input: from, crlfDelay: Infinity }).on('line', (line) => to.write(`[rank ${rank}] ${line}\n`));
}

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.gpus) || o.gpus < 1) throw new LaunchArgumentError(`--gpus must be a positive integer, got ${o.gpus}`);
  if (!o.args.length) throw new LaunchArgumentError('no command to launch: give it after --, e.g. dsv32 launch --gpus 2 -- train --config run.json');
  if (o.args[0] === 'launch') throw new LaunchArgumentError('dsv32 launch cannot launch itself');
  if (!o.program.length) throw new LaunchArgumentError('program must name the executable to run');
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const graceMs = o.graceMs ?? 10_000;
  // A fresh folder per launch, so no rank can read the id of an earlier run's communicator.
  const ownDir = o.idFile ? null : mkdtempSync(join(tmpdir(), 'dsv32-launch-'));
  const idFile = o.idFile ?? join(ownDir!, 'nccl-unique-id');
  if (o.idFile) rmSync(o.idFile, { force: true });

  const children: (ChildProcess | null)[] = [];
  let failed: LaunchResult['failed'] = null;
  let signalled: NodeJS.Signals | null = null;
  let killTimer: NodeJS.Timeout | null = null;
  const alive = (): ChildProcess[] => children.filter((c): c is ChildProcess => !!c && c.exitCode === null && c.signalCode === null);
  const stopAll = (sig: NodeJS.Signals): void => {
    for (const c of alive()) c.kill(sig);
    killTimer ??= setTimeout(() => {
      for (const c of alive()) c.kill('SIGKILL');
    }, graceMs);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    signalled ??= sig;
    stopAll(sig);
  };
  for (const s of FORWARDED) process.on(s, onSignal);

  try {
    await new Promise<void>((resolveAll) => {
      let open = o.gpus;
      for (let rank = 0; rank < o.gpus; rank++) {
        const env = {
          ...process.env, ...o.env,
          DSV32_RANK: String(rank), DSV32_WORLD_SIZE: String(o.gpus), DSV32_CUDA_DEVICE: String(rank), DSV32_NCCL_ID_FILE: idFile,
          // NVLink multicast stays off whatever the caller's environment says (the machines' notes forbid it)
          NCCL_NVLS_ENABLE: '0',
        };
        // each rank in its own process group: a terminal's Ctrl-C (sent to the foreground group) reaches the
        // launcher alone, which passes it on once; in the launcher's group every rank got it twice, and a
        // serving rank 0 took the second as "exit without draining"
        const child = spawn(o.program[0]!, [...o.program.slice(1), ...o.args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        children.push(child);
        prefixLines(child.stdout!, stdout, rank);
        prefixLines(child.stderr!, stderr, rank);
        const fail = (code: number | null, signal: NodeJS.Signals | null): void => {
          if (failed || signalled) return;
          failed = { rank, code, signal };
          stopAll('SIGTERM');
        };
        child.on('error', (e) => {
          stderr.write(`[rank ${rank}] could not start ${o.program[0]}: ${e.message}\n`);
          fail(null, null);
        });
        child.on('exit', (code, signal) => {
          if (code !== 0) fail(code, signal);
        });
        // 'close' comes after the output streams ended: every line has been written by then
        child.on('close', () => {
          if (--open === 0) resolveAll();
        });
      }
    });
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
    if (killTimer) clearTimeout(killTimer);
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
  }

  const f = failed as LaunchResult['failed'];
  if (f) {
    const how = f.code !== null ? `exited with code ${f.code}` : f.signal ? `was killed by ${f.signal}` : 'could not be started';
    const exitCode = f.code !== null ? f.code : f.signal ? 128 + (constants.signals[f.signal] ?? 0) : 1;
    return { exitCode, failed: f, message: `rank ${f.rank} ${how}; the other ranks were stopped` };
  }
  if (signalled) {
    const s = signalled as NodeJS.Signals;
    return { exitCode: 128 + (constants.signals[s] ?? 0), failed: null, message: `interrupted by ${s}; passed on to every rank` };
  }
  return { exitCode: 0, failed: null, message: null };
}
