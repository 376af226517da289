// Registers the 'cuda' device. Importing this never touches the driver: the backend (and libcuda) is
// created on first use, and a machine without a driver gets a CudaUnavailableError naming every path
// that was tried.
import { registerBackend, getBackend } from '../../tensor/backend.js';
import { CudaBackend } from './cuda-backend.js';
import { CudaUnavailableError } from './errors.js';
import { loadDriver } from './ffi.js';

registerBackend('cuda', () => new CudaBackend(Number(process.env.DSV32_CUDA_DEVICE ?? 0)));

/** null when a CUDA device is usable here, else the reason (for test skips and CLI messages). */
export function cudaUnavailableReason(): string | null {
  try {
    loadDriver();
    getBackend('cuda');
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * A --device / config `device` value resolved: 'auto' is 'cuda' when a CUDA device is usable, else
 * 'cpu'; 'cuda' where none is usable throws CudaUnavailableError with the reason.
 */
export function resolveDevice(device: 'auto' | 'cpu' | 'cuda' | string): string {
  if (device === 'cpu') return 'cpu';
  const why = cudaUnavailableReason();
  if (why === null) return 'cuda';
  if (device === 'auto') return 'cpu';
  throw new CudaUnavailableError(`cuda is not usable here: ${why}`);
}

export function cudaBackend(): CudaBackend {
  return getBackend('cuda') as CudaBackend;
}

export { CudaBackend, CudaUnavailableError };
export { CudaStorage, type SoftmaxExOptions } from './cuda-backend.js';
export { CudaError, CudaIndexError } from './errors.js';
export type { CudaGraph, CudaEvent, DeviceInfo } from './runtime.js';
export type { PinnedBuffer } from './pinned.js';
export { NvrtcError, type CompileOptions } from './nvrtc.js';
export type { Kernel, ParamKind } from './launch.js';
export type { MemoryStats } from './allocator.js';
