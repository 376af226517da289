// Typed errors of the CUDA backend.
import { DsvError } from '../../errors.js';

/** No usable CUDA driver (or device) on this machine; the message lists every place that was tried. */
export class CudaUnavailableError extends DsvError {}

/** A CUDA driver or cuBLASLt call failed; names the call, the code and the library's own text. */
export class CudaError extends DsvError {
  constructor(readonly call: string, readonly code: number, readonly codeName: string, readonly detail: string) {
    super(`${call} failed: ${codeName} (${code}): ${detail}`);
  }
}

/**
 * A kernel met an out-of-range index (reported through the device error record). A RangeError, like
 * the CPU backend's, so op-level handlers (e.g. crossEntropy's target check) treat both alike.
 */
export class CudaIndexError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'CudaIndexError';
  }
}
