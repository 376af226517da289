// Every foreign declaration of the CUDA backend: the driver API (libcuda.so.1), cuBLASLt and NVRTC, through
// koffi. Keeping them in one file means one place to audit against cuda.h / cublasLt.h: a wrong
// prototype does not throw, it corrupts memory or segfaults.
//
// Conventions (koffi 3.x):
//  - device pointers (CUdeviceptr) are uint64_t and travel as JS numbers (they stay far below 2^53);
//  - opaque handles (CUcontext, CUstream, CUmodule, ...) come back from _Out_ parameters as BigInt
//    addresses and are passed back unchanged;
//  - host buffers are TypedArrays/Buffers (koffi passes their data pointer for the call's duration).
// CUDA 13 exports versioned symbols for several entry points (cuda.h #defines cuMemAlloc → cuMemAlloc_v2,
// cuStreamBeginCapture → _v2, ...); the real symbol names are used here.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { CudaError, CudaUnavailableError } from './errors.js';

export type Handle = bigint | null;
/* eslint-disable @typescript-eslint/no-explicit-any */
type Fn = (...args: any[]) => any;

/** Where the driver library is looked for, in order: env override, ldconfig's cache, usual paths. */
export const DRIVER_PATHS = [
  '/usr/lib/x86_64-linux-gnu/libcuda.so.1',
  '/usr/lib64/libcuda.so.1',
  '/usr/local/nvidia/lib64/libcuda.so.1',
  '/usr/lib/wsl/lib/libcuda.so.1',
  '/usr/lib/aarch64-linux-gnu/libcuda.so.1',
];

export function ldconfigLookup(soname: string): string[] {
  try {
    const out = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const found: string[] = [];
    for (const line of out.split('\n')) {
      const m = /^\s*(\S+)\s.*=>\s*(\S+)\s*$/.exec(line);
      if (m && m[1] === soname) found.push(m[2]!);
    }
    return found;
  } catch {
    return [];
  }
}

export function driverCandidates(env: NodeJS.ProcessEnv = process.env): { tried: string[]; paths: string[] } {
  const tried: string[] = [];
  const paths: string[] = [];
  if (env.DSV32_CUDA_DRIVER_LIB) {
    tried.push(`$DSV32_CUDA_DRIVER_LIB (${env.DSV32_CUDA_DRIVER_LIB})`);
    paths.push(env.DSV32_CUDA_DRIVER_LIB);
    return { tried, paths };
  }
  tried.push('$DSV32_CUDA_DRIVER_LIB (unset)');
  const ld = ldconfigLookup('libcuda.so.1');
  tried.push(`ldconfig (${ld.length ? ld.join(', ') : 'no libcuda.so.1'})`);
  paths.push(...ld);
  for (const p of DRIVER_PATHS) {
    tried.push(p);
    if (existsSync(p) && !paths.includes(p)) paths.push(p);
  }
  return { tried, paths };
}

/**
 * Where a CUDA toolkit library (cuBLASLt, NVRTC) is looked for, in order: the environment override (only
 * that path when set), ldconfig's cache, $CUDA_HOME / $CUDA_PATH / /usr/local/cuda, and the lib folders of
 * NVIDIA's pip wheels (a PyTorch install ships them).
 */
export function toolkitCandidates(envVar: string, sonames: readonly string[], env: NodeJS.ProcessEnv = process.env): { tried: string[]; paths: string[] } {
  const tried: string[] = [];
  const paths: string[] = [];
  if (env[envVar]) return { tried: [`$${envVar} (${env[envVar]})`], paths: [env[envVar]!] };
  for (const so of sonames) {
    const ld = ldconfigLookup(so);
    tried.push(`ldconfig ${so} (${ld.length ? ld.join(', ') : 'none'})`);
    paths.push(...ld);
  }
  const homes = [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda'].filter((h): h is string => !!h);
  for (const h of homes) {
    for (const sub of ['lib64', 'targets/x86_64-linux/lib', 'lib']) {
      for (const so of sonames) {
        const p = join(h, sub, so);
        tried.push(p);
        if (existsSync(p)) paths.push(p);
      }
    }
  }
  // pip wheels: site-packages/nvidia/{cublas,cuda_nvrtc,cu13}/lib
  for (const sp of ['/opt/torch/.venv/lib/python3.12/site-packages', '/usr/local/lib/python3.12/dist-packages', '/usr/lib/python3/dist-packages']) {
    const nv = join(sp, 'nvidia');
    if (!existsSync(nv)) continue;
    for (const d of readdirSync(nv)) {
      for (const so of sonames) {
        const p = join(nv, d, 'lib', so);
        if (existsSync(p)) paths.push(p);
      }
    }
    tried.push(`${nv}/*/lib`);
  }
  return { tried, paths: [...new Set(paths)] };
}

/**
 * Load the first candidate that koffi can open and return a binder for its functions; otherwise throw
 * CudaUnavailableError naming `what`, every place tried and each load error.
 */
function openFirst(what: string, { tried, paths }: { tried: string[]; paths: string[] }): { path: string; f: (proto: string) => Fn } {
  const errors: string[] = [];
  for (const p of paths) {
    let lib: ReturnType<typeof koffi.load>;
    try {
      lib = koffi.load(p);
    } catch (e) {
      errors.push(`${p}: ${(e as Error).message}`);
      continue;
    }
    return { path: p, f: (proto) => lib.func(proto) as Fn };
  }
  throw new CudaUnavailableError(`${what} not found: tried ${tried.join(', ')}` + (errors.length ? `; load errors: ${errors.join('; ')}` : ''));
}

// Opaque handle types, declared once per process (koffi type names are global).
const T = (() => {
  const op = (n: string) => koffi.pointer(n, koffi.opaque());
  return {
    CUcontext: op('CUcontext'), CUstream: op('CUstream'), CUevent: op('CUevent'), CUmodule: op('CUmodule'),
    CUfunction: op('CUfunction'), CUgraph: op('CUgraph'), CUgraphExec: op('CUgraphExec'),
  };
})();
void T;

export interface Driver {
  path: string;
  cuInit: Fn; cuDriverGetVersion: Fn; cuDeviceGetCount: Fn; cuDeviceGet: Fn; cuDeviceGetName: Fn;
  cuDeviceGetAttribute: Fn; cuDeviceTotalMem: Fn; cuDevicePrimaryCtxRetain: Fn; cuDevicePrimaryCtxRelease: Fn;
  cuCtxSetCurrent: Fn; cuCtxSynchronize: Fn; cuGetErrorName: Fn; cuGetErrorString: Fn;
  cuMemAlloc: Fn; cuMemFree: Fn; cuMemGetInfo: Fn; cuMemHostAlloc: Fn; cuMemFreeHost: Fn;
  cuMemcpyHtoDAsync: Fn; cuMemcpyDtoHAsync: Fn; cuMemcpyDtoDAsync: Fn; cuMemsetD8Async: Fn;
  cuStreamCreate: Fn; cuStreamDestroy: Fn; cuStreamSynchronize: Fn; cuStreamQuery: Fn;
  cuEventCreate: Fn; cuEventRecord: Fn; cuEventSynchronize: Fn; cuEventQuery: Fn; cuEventElapsedTime: Fn; cuEventDestroy: Fn;
  cuModuleLoadData: Fn; cuModuleUnload: Fn; cuModuleGetFunction: Fn;
  cuFuncGetParamInfo: Fn; cuFuncSetAttribute: Fn; cuFuncGetAttribute: Fn; cuLaunchKernel: Fn;
  cuStreamBeginCapture: Fn; cuStreamEndCapture: Fn; cuStreamIsCapturing: Fn;
  cuGraphInstantiateWithFlags: Fn; cuGraphLaunch: Fn; cuGraphExecUpdate: Fn; cuGraphDestroy: Fn; cuGraphExecDestroy: Fn;
  cuGraphGetNodes: Fn;
}

let driver: Driver | null = null;
let driverError: CudaUnavailableError | null = null;

/** The bound driver API; throws CudaUnavailableError (once per process, cached) when no driver loads. */
export function loadDriver(): Driver {
  if (driver) return driver;
  if (driverError) throw driverError;
  let lib: ReturnType<typeof openFirst>;
  try {
    lib = openFirst('CUDA driver', driverCandidates());
  } catch (e) {
    driverError = e as CudaUnavailableError;
    throw e;
  }
  const f = lib.f;
  driver = {
    path: lib.path,
    cuInit: f('int cuInit(unsigned int flags)'),
    cuDriverGetVersion: f('int cuDriverGetVersion(_Out_ int *v)'),
    cuDeviceGetCount: f('int cuDeviceGetCount(_Out_ int *n)'),
    cuDeviceGet: f('int cuDeviceGet(_Out_ int *dev, int ordinal)'),
    cuDeviceGetName: f('int cuDeviceGetName(void *name, int len, int dev)'),
    cuDeviceGetAttribute: f('int cuDeviceGetAttribute(_Out_ int *v, int attrib, int dev)'),
    cuDeviceTotalMem: f('int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int dev)'),
    cuDevicePrimaryCtxRetain: f('int cuDevicePrimaryCtxRetain(_Out_ CUcontext *ctx, int dev)'),
    cuDevicePrimaryCtxRelease: f('int cuDevicePrimaryCtxRelease_v2(int dev)'),
    cuCtxSetCurrent: f('int cuCtxSetCurrent(CUcontext ctx)'),
    cuCtxSynchronize: f('int cuCtxSynchronize()'),
    cuGetErrorName: f('int cuGetErrorName(int err, _Out_ const char **s)'),
    cuGetErrorString: f('int cuGetErrorString(int err, _Out_ const char **s)'),
    cuMemAlloc: f('int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)'),
    cuMemFree: f('int cuMemFree_v2(uint64_t dptr)'),
    cuMemGetInfo: f('int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)'),
    cuMemHostAlloc: f('int cuMemHostAlloc(_Out_ void **p, size_t bytes, unsigned int flags)'),
    cuMemFreeHost: f('int cuMemFreeHost(void *p)'),
    cuMemcpyHtoDAsync: f('int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, CUstream s)'),
    cuMemcpyDtoHAsync: f('int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, CUstream s)'),
    cuMemcpyDtoDAsync: f('int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, CUstream s)'),
    cuMemsetD8Async: f('int cuMemsetD8Async(uint64_t dst, uint8_t v, size_t n, CUstream s)'),
    cuStreamCreate: f('int cuStreamCreate(_Out_ CUstream *s, unsigned int flags)'),
    cuStreamDestroy: f('int cuStreamDestroy_v2(CUstream s)'),
    cuStreamSynchronize: f('int cuStreamSynchronize(CUstream s)'),
    cuStreamQuery: f('int cuStreamQuery(CUstream s)'),
    cuEventCreate: f('int cuEventCreate(_Out_ CUevent *e, unsigned int flags)'),
    cuEventRecord: f('int cuEventRecord(CUevent e, CUstream s)'),
    cuEventSynchronize: f('int cuEventSynchronize(CUevent e)'),
    cuEventQuery: f('int cuEventQuery(CUevent e)'),
    cuEventElapsedTime: f('int cuEventElapsedTime_v2(_Out_ float *ms, CUevent start, CUevent end)'),
    cuEventDestroy: f('int cuEventDestroy_v2(CUevent e)'),
    cuModuleLoadData: f('int cuModuleLoadData(_Out_ CUmodule *m, const void *image)'),
    cuModuleUnload: f('int cuModuleUnload(CUmodule m)'),
    cuModuleGetFunction: f('int cuModuleGetFunction(_Out_ CUfunction *fn, CUmodule m, const char *name)'),
    cuFuncGetParamInfo: f('int cuFuncGetParamInfo(CUfunction fn, size_t index, _Out_ size_t *offset, _Out_ size_t *size)'),
    cuFuncSetAttribute: f('int cuFuncSetAttribute(CUfunction fn, int attrib, int value)'),
    cuFuncGetAttribute: f('int cuFuncGetAttribute(_Out_ int *v, int attrib, CUfunction fn)'),
    cuLaunchKernel: f('int cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, ' +
      'unsigned int bx, unsigned int by, unsigned int bz, unsigned int smem, CUstream s, void *params, void *extra)'),
    cuStreamBeginCapture: f('int cuStreamBeginCapture_v2(CUstream s, int mode)'),
    cuStreamEndCapture: f('int cuStreamEndCapture(CUstream s, _Out_ CUgraph *g)'),
    cuStreamIsCapturing: f('int cuStreamIsCapturing(CUstream s, _Out_ int *status)'),
    cuGraphInstantiateWithFlags: f('int cuGraphInstantiateWithFlags(_Out_ CUgraphExec *e, CUgraph g, unsigned long long flags)'),
    cuGraphLaunch: f('int cuGraphLaunch(CUgraphExec e, CUstream s)'),
    cuGraphExecUpdate: f('int cuGraphExecUpdate_v2(CUgraphExec e, CUgraph g, void *info)'),
    cuGraphDestroy: f('int cuGraphDestroy(CUgraph g)'),
    cuGraphExecDestroy: f('int cuGraphExecDestroy(CUgraphExec e)'),
    cuGraphGetNodes: f('int cuGraphGetNodes(CUgraph g, void *nodes, _Inout_ size_t *n)'),
  };
  return driver;
}

/** Throws a CudaError naming `call` with cuGetErrorName/cuGetErrorString text unless rc is 0. */
export function check(rc: number, call: string): void {
  if (rc === 0) return;
  let name = `CUresult ${rc}`;
  let text = 'no description from the driver';
  if (driver) {
    const n: (string | null)[] = [null];
    const s: (string | null)[] = [null];
    if (driver.cuGetErrorName(rc, n) === 0 && n[0]) name = n[0];
    if (driver.cuGetErrorString(rc, s) === 0 && s[0]) text = s[0];
  }
  throw new CudaError(call, rc, name, text);
}

// ---- cuBLASLt ----------------------------------------------------------------------------------------
export interface CublasLt {
  path: string;
  cublasLtCreate: Fn; cublasLtDestroy: Fn; cublasLtGetVersion: Fn; cublasLtGetStatusString: Fn; cublasLtGetStatusName: Fn;
  cublasLtMatmulDescCreate: Fn; cublasLtMatmulDescDestroy: Fn; cublasLtMatmulDescSetAttribute: Fn;
  cublasLtMatrixLayoutCreate: Fn; cublasLtMatrixLayoutDestroy: Fn; cublasLtMatrixLayoutSetAttribute: Fn;
  cublasLtMatmulPreferenceCreate: Fn; cublasLtMatmulPreferenceDestroy: Fn; cublasLtMatmulPreferenceSetAttribute: Fn;
  cublasLtMatmulAlgoGetHeuristic: Fn; cublasLtMatmul: Fn;
}
let lt: CublasLt | null = null;

export function loadCublasLt(): CublasLt {
  if (lt) return lt;
  const { path, f } = openFirst('cuBLASLt', toolkitCandidates('DSV32_CUBLASLT_LIB', ['libcublasLt.so.13', 'libcublasLt.so.12']));
  lt = {
    path,
    cublasLtCreate: f('int cublasLtCreate(_Out_ void **h)'),
    cublasLtDestroy: f('int cublasLtDestroy(void *h)'),
    cublasLtGetVersion: f('size_t cublasLtGetVersion()'),
    cublasLtGetStatusString: f('const char *cublasLtGetStatusString(int status)'),
    cublasLtGetStatusName: f('const char *cublasLtGetStatusName(int status)'),
    cublasLtMatmulDescCreate: f('int cublasLtMatmulDescCreate(_Out_ void **d, int computeType, int scaleType)'),
    cublasLtMatmulDescDestroy: f('int cublasLtMatmulDescDestroy(void *d)'),
    cublasLtMatmulDescSetAttribute: f('int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t size)'),
    cublasLtMatrixLayoutCreate: f('int cublasLtMatrixLayoutCreate(_Out_ void **l, int type, uint64_t rows, uint64_t cols, int64_t ld)'),
    cublasLtMatrixLayoutDestroy: f('int cublasLtMatrixLayoutDestroy(void *l)'),
    cublasLtMatrixLayoutSetAttribute: f('int cublasLtMatrixLayoutSetAttribute(void *l, int attr, const void *buf, size_t size)'),
    cublasLtMatmulPreferenceCreate: f('int cublasLtMatmulPreferenceCreate(_Out_ void **p)'),
    cublasLtMatmulPreferenceDestroy: f('int cublasLtMatmulPreferenceDestroy(void *p)'),
    cublasLtMatmulPreferenceSetAttribute: f('int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t size)'),
    cublasLtMatmulAlgoGetHeuristic: f('int cublasLtMatmulAlgoGetHeuristic(void *h, void *op, void *A, void *B, void *C, void *D, ' +
      'void *pref, int req, void *results, _Out_ int *count)'),
    cublasLtMatmul: f('int cublasLtMatmul(void *h, void *op, const void *alpha, uint64_t A, void *Adesc, uint64_t B, void *Bdesc, ' +
      'const void *beta, uint64_t C, void *Cdesc, uint64_t D, void *Ddesc, const void *algo, uint64_t ws, size_t wsSize, CUstream s)'),
  };
  return lt;
}

export function checkLt(rc: number, call: string): void {
  if (rc === 0) return;
  let name = `cublasStatus_t ${rc}`;
  let text = '';
  if (lt) {
    try {
      name = lt.cublasLtGetStatusName(rc) ?? name;
      text = lt.cublasLtGetStatusString(rc) ?? '';
    } catch {
      /* older cuBLASLt without the status-string entry points */
    }
  }
  throw new CudaError(call, rc, name, text || 'no description from cuBLASLt');
}

// ---- NVRTC (optional: run-time compilation of shape-specialised kernels) --------------------------------
export interface Nvrtc {
  path: string;
  nvrtcVersion: Fn; nvrtcGetErrorString: Fn; nvrtcCreateProgram: Fn; nvrtcDestroyProgram: Fn; nvrtcCompileProgram: Fn;
  nvrtcGetProgramLogSize: Fn; nvrtcGetProgramLog: Fn; nvrtcGetCUBINSize: Fn; nvrtcGetCUBIN: Fn;
}
let nvrtc: Nvrtc | null = null;

/** The bound NVRTC library; throws CudaUnavailableError naming every place tried when there is none. */
export function loadNvrtc(): Nvrtc {
  if (nvrtc) return nvrtc;
  const { path, f } = openFirst('NVRTC', toolkitCandidates('DSV32_NVRTC_LIB', ['libnvrtc.so.13', 'libnvrtc.so.12']));
  nvrtc = {
    path,
    nvrtcVersion: f('int nvrtcVersion(_Out_ int *major, _Out_ int *minor)'),
    nvrtcGetErrorString: f('const char *nvrtcGetErrorString(int result)'),
    nvrtcCreateProgram: f('int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, void *headers, void *includeNames)'),
    nvrtcDestroyProgram: f('int nvrtcDestroyProgram(_Inout_ void **prog)'),
    nvrtcCompileProgram: f('int nvrtcCompileProgram(void *prog, int numOptions, const char **options)'),
    nvrtcGetProgramLogSize: f('int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)'),
    nvrtcGetProgramLog: f('int nvrtcGetProgramLog(void *prog, void *log)'),
    nvrtcGetCUBINSize: f('int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)'),
    nvrtcGetCUBIN: f('int nvrtcGetCUBIN(void *prog, void *cubin)'),
  };
  return nvrtc;
}

/** koffi's address of a host buffer (BigInt), for pointer tables. */
export function addressOf(buf: ArrayBufferView): bigint {
  return koffi.address(buf) as bigint;
}
