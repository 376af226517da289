// How the ranks of one launch find each other: the launcher's DSV32_* environment, read and checked, and
// the NCCL unique id handed from rank 0 to the others through a file. A file, not a socket, because the
// ranks are processes of one host started by one launcher, and a file needs no port that could be taken.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { NCCL_UNIQUE_ID_BYTES } from './nccl-ffi.js';
import { RendezvousError } from './errors.js';

export interface DistEnv {
  rank: number;
  worldSize: number;
  /** the CUDA device ordinal of this rank */
  device: number;
  /** where rank 0 publishes the unique id; null when worldSize is 1 */
  idFile: string | null;
}

function intEnv(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number): number {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new RendezvousError(`${name} must be an integer ≥ ${min}, got '${v}'`);
  return Number(v);
}

/**
 * This process's place in the launch, from DSV32_RANK, DSV32_WORLD_SIZE, DSV32_CUDA_DEVICE and
 * DSV32_NCCL_ID_FILE (set by `dsv32 launch`). Unset means a single process: rank 0 of 1.
 */
export function distEnv(env: NodeJS.ProcessEnv = process.env): DistEnv {
  const worldSize = intEnv(env, 'DSV32_WORLD_SIZE', 1, 1);
  const rank = intEnv(env, 'DSV32_RANK', 0, 0);
  if (rank >= worldSize) throw new RendezvousError(`DSV32_RANK ${rank} is not below DSV32_WORLD_SIZE ${worldSize}`);
  const device = intEnv(env, 'DSV32_CUDA_DEVICE', rank, 0);
  const idFile = env.DSV32_NCCL_ID_FILE || null;
  if (worldSize > 1 && !idFile) throw new RendezvousError(`DSV32_NCCL_ID_FILE must be set when DSV32_WORLD_SIZE is ${worldSize} (dsv32 launch sets it)`);
  return { rank, worldSize, device, idFile };
}

/**
 * Rank 0's side: write the id so that a reader sees either no file or all 128 bytes (temporary file in
 * the same folder, then rename, which is atomic on one filesystem).
 */
export function publishUniqueId(file: string, id: Uint8Array): void {
  if (id.length !== NCCL_UNIQUE_ID_BYTES) throw new RendezvousError(`a unique id is ${NCCL_UNIQUE_ID_BYTES} bytes, got ${id.length}`);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, id);
  renameSync(tmp, file);
}

/** The default wait for rank 0's id: long enough for rank 0 to load a model shard before it gets there. */
export const DEFAULT_ID_TIMEOUT_MS = 300_000;

/**
 * The other ranks' side: poll for the file until `timeoutMs` (DSV32_NCCL_ID_TIMEOUT_MS overrides the
 * default), then fail naming the file and the wait, since the usual cause is rank 0 dying before it
 * published, which the launcher reports separately.
 */
export async function waitForUniqueId(file: string, opts: { timeoutMs?: number; pollMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Uint8Array> {
  const env = opts.env ?? process.env;
  const timeoutMs = opts.timeoutMs ?? intEnv(env, 'DSV32_NCCL_ID_TIMEOUT_MS', DEFAULT_ID_TIMEOUT_MS, 1);
  const pollMs = opts.pollMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(file)) {
      const b = readFileSync(file);
      if (b.length !== NCCL_UNIQUE_ID_BYTES) throw new RendezvousError(`${file} (DSV32_NCCL_ID_FILE) holds ${b.length} bytes, expected a ${NCCL_UNIQUE_ID_BYTES}-byte NCCL unique id`);
      return new Uint8Array(b);
    }
    if (Date.now() >= deadline) {
      throw new RendezvousError(`timed out after ${timeoutMs} ms waiting for rank 0 to write the NCCL unique id to ${file} (DSV32_NCCL_ID_FILE); ` +
        'did rank 0 fail before creating its communicator? (DSV32_NCCL_ID_TIMEOUT_MS sets the wait)');
    }
    await sleep(pollMs);
  }
}
