// Every foreign declaration of NCCL (libnccl.so.2), through koffi, in one place to audit against nccl.h:
// a wrong prototype does not throw, it corrupts memory. Conventions follow src/backend/cuda/ffi.ts:
// device pointers are uint64_t JS numbers, the stream is the driver's CUstream handle as the CUDA runtime
// holds it, the communicator is an opaque handle passed back unchanged.
//
// Enum values are NCCL's ABI, from nccl.h (NCCL 2.24+, which added the two FP8 types; earlier values are
// unchanged since 2.10 added ncclAvg). nccl.h is not installed on the development machine, so
// test/dist/nccl-ffi.test.ts checks these numbers against test/mock/mocknccl.c, which spells them out
// with their nccl.h names; a real install can be checked with `grep -n nccl[A-Z] nccl.h`.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { toolkitCandidates } from '../backend/cuda/ffi.js';
import type { DType } from '../tensor/dtype.js';
import { NcclError, NcclUnavailableError } from './errors.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Fn = (...args: any[]) => any;

/** NCCL_UNIQUE_ID_BYTES: the communicator's rendezvous token, passed by value to ncclCommInitRank. */
export const NCCL_UNIQUE_ID_BYTES = 128;

/** ncclResult_t, by name (nccl.h). */
export const NCCL_RESULT = {
  ncclSuccess: 0, ncclUnhandledCudaError: 1, ncclSystemError: 2, ncclInternalError: 3,
  ncclInvalidArgument: 4, ncclInvalidUsage: 5, ncclRemoteError: 6, ncclInProgress: 7,
} as const;

/** ncclDataType_t (nccl.h); ncclChar/ncclInt/ncclHalf/ncclFloat/ncclDouble are aliases of these. */
export const NCCL_DTYPE = {
  ncclInt8: 0, ncclUint8: 1, ncclInt32: 2, ncclUint32: 3, ncclInt64: 4, ncclUint64: 5,
  ncclFloat16: 6, ncclFloat32: 7, ncclFloat64: 8, ncclBfloat16: 9, ncclFloat8e4m3: 10, ncclFloat8e5m2: 11,
} as const;

/** ncclRedOp_t (nccl.h); ncclAvg needs NCCL ≥ 2.10. */
export const NCCL_OP = { ncclSum: 0, ncclProd: 1, ncclMax: 2, ncclMin: 3, ncclAvg: 4 } as const;

/**
 * The NCCL type of each tensor dtype. bool travels as bytes: reductions over it are refused by the
 * collective layer (sum of flags is not a flag), gathers and broadcasts are fine.
 */
export const NCCL_DTYPE_OF: Record<DType, number> = {
  f32: NCCL_DTYPE.ncclFloat32, f64: NCCL_DTYPE.ncclFloat64, bf16: NCCL_DTYPE.ncclBfloat16, f16: NCCL_DTYPE.ncclFloat16,
  f8e4m3: NCCL_DTYPE.ncclFloat8e4m3, i32: NCCL_DTYPE.ncclInt32, i64: NCCL_DTYPE.ncclInt64, u8: NCCL_DTYPE.ncclUint8,
  bool: NCCL_DTYPE.ncclUint8,
};

const RESULT_NAME = new Map<number, string>(Object.entries(NCCL_RESULT).map(([k, v]) => [v, k]));

// Declared once per process: koffi type names are global. CUstream is declared by the CUDA FFI module
// imported above, so both libraries see the same handle type.
const UniqueId = koffi.struct('ncclUniqueId', { internal: koffi.array('uint8_t', NCCL_UNIQUE_ID_BYTES, 'Typed') });
koffi.pointer('ncclComm_t', koffi.opaque());
void UniqueId;

/** Sonames tried, newest first (NCCL has kept soname 2 since 2.0). */
const SONAMES = ['libnccl.so.2', 'libnccl.so'];

/**
 * Where libnccl is looked for: DSV32_NCCL_LIB (only that when set), then as cuBLASLt is found (ldconfig,
 * CUDA homes, the pip wheels' site-packages/nvidia/<pkg>/lib, where nvidia-nccl-cu13 puts it), then the
 * active virtualenv's or conda env's site-packages, where a user's PyTorch usually lives.
 */
export function ncclCandidates(env: NodeJS.ProcessEnv = process.env): { tried: string[]; paths: string[] } {
  const base = toolkitCandidates('DSV32_NCCL_LIB', SONAMES, env);
  if (env.DSV32_NCCL_LIB) return base;
  const tried = [...base.tried];
  const paths = [...base.paths];
  for (const prefix of [env.VIRTUAL_ENV, env.CONDA_PREFIX].filter((p): p is string => !!p)) {
    const lib = join(prefix, 'lib');
    let pys: string[] = [];
    try {
      pys = readdirSync(lib).filter((d) => d.startsWith('python3'));
    } catch {
      /* not a Python prefix */
    }
    for (const py of pys) {
      for (const so of SONAMES) {
        const p = join(lib, py, 'site-packages', 'nvidia', 'nccl', 'lib', so);
        tried.push(p);
        if (existsSync(p) && !paths.includes(p)) paths.push(p);
      }
    }
    if (!pys.length) tried.push(`${lib}/python3*/site-packages/nvidia/nccl/lib (none)`);
  }
  return { tried, paths };
}

export interface Nccl {
  path: string;
  ncclGetVersion: Fn; ncclGetUniqueId: Fn; ncclCommInitRank: Fn; ncclCommDestroy: Fn;
  ncclCommCount: Fn; ncclCommUserRank: Fn;
  ncclAllReduce: Fn; ncclAllGather: Fn; ncclReduceScatter: Fn; ncclBroadcast: Fn; ncclSend: Fn; ncclRecv: Fn;
  ncclGroupStart: Fn; ncclGroupEnd: Fn; ncclGetErrorString: Fn; ncclGetLastError: Fn;
}

let nccl: Nccl | null = null;

/** The bound NCCL library; throws NcclUnavailableError naming every place tried (and load errors) when none loads. */
export function loadNccl(env: NodeJS.ProcessEnv = process.env): Nccl {
  if (nccl) return nccl;
  const { tried, paths } = ncclCandidates(env);
  const errors: string[] = [];
  let lib: ReturnType<typeof koffi.load> | null = null;
  let path = '';
  for (const p of paths) {
    try {
      lib = koffi.load(p);
      path = p;
      break;
    } catch (e) {
      errors.push(`${p}: ${(e as Error).message}`);
    }
  }
  if (!lib) {
    throw new NcclUnavailableError(`NCCL not found: tried ${tried.join(', ')}` + (errors.length ? `; load errors: ${errors.join('; ')}` : '') +
      '; set DSV32_NCCL_LIB to libnccl.so.2 (pip install nvidia-nccl-cu13 ships one)');
  }
  const f = (proto: string): Fn => lib!.func(proto) as Fn;
  nccl = {
    path,
    ncclGetVersion: f('int ncclGetVersion(_Out_ int *version)'),
    // written into a caller's 128-byte buffer: the bytes are what travels to the other ranks
    ncclGetUniqueId: f('int ncclGetUniqueId(_Out_ uint8_t *uniqueId)'),
    ncclCommInitRank: f('int ncclCommInitRank(_Out_ ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank)'),
    ncclCommDestroy: f('int ncclCommDestroy(ncclComm_t comm)'),
    ncclCommCount: f('int ncclCommCount(ncclComm_t comm, _Out_ int *count)'),
    ncclCommUserRank: f('int ncclCommUserRank(ncclComm_t comm, _Out_ int *rank)'),
    ncclAllReduce: f('int ncclAllReduce(uint64_t sendbuff, uint64_t recvbuff, size_t count, int datatype, int op, ncclComm_t comm, CUstream stream)'),
    ncclAllGather: f('int ncclAllGather(uint64_t sendbuff, uint64_t recvbuff, size_t sendcount, int datatype, ncclComm_t comm, CUstream stream)'),
    ncclReduceScatter: f('int ncclReduceScatter(uint64_t sendbuff, uint64_t recvbuff, size_t recvcount, int datatype, int op, ncclComm_t comm, CUstream stream)'),
    ncclBroadcast: f('int ncclBroadcast(uint64_t sendbuff, uint64_t recvbuff, size_t count, int datatype, int root, ncclComm_t comm, CUstream stream)'),
    ncclSend: f('int ncclSend(uint64_t sendbuff, size_t count, int datatype, int peer, ncclComm_t comm, CUstream stream)'),
    ncclRecv: f('int ncclRecv(uint64_t recvbuff, size_t count, int datatype, int peer, ncclComm_t comm, CUstream stream)'),
    ncclGroupStart: f('int ncclGroupStart()'),
    ncclGroupEnd: f('int ncclGroupEnd()'),
    ncclGetErrorString: f('const char *ncclGetErrorString(int result)'),
    ncclGetLastError: f('const char *ncclGetLastError(ncclComm_t comm)'),
  };
  return nccl;
}

/** ncclGetVersion's integer as "major.minor.patch" (NCCL_VERSION_CODE is major·10000 + minor·100 + patch since 2.9). */
export function formatNcclVersion(code: number): string {
  return `${Math.floor(code / 10000)}.${Math.floor(code / 100) % 100}.${code % 100}`;
}

/**
 * Throws an NcclError naming `call` unless rc is ncclSuccess. The text is ncclGetErrorString's, plus
 * ncclGetLastError's when NCCL recorded one (it says which argument or peer was wrong; the result
 * code alone rarely does).
 */
export function checkNccl(rc: number, call: string, comm: unknown = null): void {
  if (rc === NCCL_RESULT.ncclSuccess) return;
  const name = RESULT_NAME.get(rc) ?? `ncclResult_t ${rc}`;
  let text = 'no description from NCCL';
  if (nccl) {
    const s = nccl.ncclGetErrorString(rc) as string | null;
    if (s) text = s;
    const last = nccl.ncclGetLastError(comm) as string | null;
    if (last) text += `; last error: ${last}`;
  }
  throw new NcclError(call, rc, name, text);
}
