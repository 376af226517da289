// Run-time compilation (NVRTC) for shape-specialised kernels: a source string with its constants baked in
// (-D options or text) becomes a cubin for this GPU's architecture, loaded like the shipped ones. The
// shipped kernels never need it (they are compiled ahead of time); it is for callers that want a kernel
// specialised to a shape known only at run time. Compiled cubins are cached on disk, keyed by a hash of
// the NVRTC version, the options and the source, so a process pays the compile (~100 ms) once per variant.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DsvError } from '../../errors.js';
import { loadNvrtc, type Nvrtc } from './ffi.js';

/** A compile error: the message names the program and carries NVRTC's log (file:line: error ...). */
export class NvrtcError extends DsvError {
  constructor(message: string, readonly log: string) {
    super(message);
  }
}

export interface CompileOptions {
  /** program name, shown in NVRTC's diagnostics (default "dsv32_rtc.cu") */
  name?: string;
  /** extra NVRTC options, e.g. ['-DN=4096', '--use_fast_math'] */
  options?: readonly string[];
  /** on-disk cache folder; null disables it (default $DSV32_NVRTC_CACHE or ~/.cache/dsv32/nvrtc) */
  cacheDir?: string | null;
}

export interface Compiled {
  cubin: Uint8Array;
  log: string;
  /** true when the cubin came from the on-disk cache */
  cached: boolean;
}

function check(lib: Nvrtc, rc: number, call: string): void {
  if (rc !== 0) throw new DsvError(`${call} failed: ${lib.nvrtcGetErrorString(rc) ?? `nvrtcResult ${rc}`}`);
}

/** `sm_90a` for compute capability 9.0 (the arch-specific Hopper target the shipped kernels use), else sm_XY. */
export function archFor([major, minor]: readonly [number, number]): string {
  return major === 9 && minor === 0 ? 'sm_90a' : `sm_${major}${minor}`;
}

/** Compile `source` to a cubin for `arch` (e.g. sm_90a). Throws NvrtcError with the log on a compile error. */
export function compileCubin(source: string, arch: string, o: CompileOptions = {}): Compiled {
  const lib = loadNvrtc();
  const name = o.name ?? 'dsv32_rtc.cu';
  const options = [`-arch=${arch}`, '-std=c++17', ...(o.options ?? [])];
  const major = [0];
  const minor = [0];
  check(lib, lib.nvrtcVersion(major, minor), 'nvrtcVersion');
  const cacheDir = o.cacheDir === undefined ? (process.env.DSV32_NVRTC_CACHE ?? join(homedir(), '.cache', 'dsv32', 'nvrtc')) : o.cacheDir;
  const key = createHash('sha256').update(JSON.stringify([major[0], minor[0], options, name, source])).digest('hex').slice(0, 32);
  const file = cacheDir ? join(cacheDir, `${key}.cubin`) : null;
  if (file && existsSync(file)) return { cubin: readFileSync(file), log: '', cached: true };

  const prog: unknown[] = [null];
  check(lib, lib.nvrtcCreateProgram(prog, source, name, 0, null, null), 'nvrtcCreateProgram');
  try {
    const rc = lib.nvrtcCompileProgram(prog[0], options.length, options);
    const size = [0];
    check(lib, lib.nvrtcGetProgramLogSize(prog[0], size), 'nvrtcGetProgramLogSize');
    const logBuf = Buffer.alloc(Math.max(1, Number(size[0])));
    check(lib, lib.nvrtcGetProgramLog(prog[0], logBuf), 'nvrtcGetProgramLog');
    const log = logBuf.toString('utf8', 0, Math.max(0, Number(size[0]) - 1)).trim();
    if (rc !== 0) {
      throw new NvrtcError(`NVRTC could not compile ${name} for ${arch} (${lib.nvrtcGetErrorString(rc) ?? `nvrtcResult ${rc}`}):\n${log}`, log);
    }
    const n = [0];
    check(lib, lib.nvrtcGetCUBINSize(prog[0], n), 'nvrtcGetCUBINSize');
    const cubin = Buffer.alloc(Number(n[0]));
    check(lib, lib.nvrtcGetCUBIN(prog[0], cubin), 'nvrtcGetCUBIN');
    if (file && cacheDir) {
      // write then rename: a concurrent reader sees a whole cubin or none
      mkdirSync(cacheDir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, cubin);
      renameSync(tmp, file);
    }
    return { cubin, log, cached: false };
  } finally {
    lib.nvrtcDestroyProgram(prog);
  }
}
