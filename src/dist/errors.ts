// Typed errors of multi-GPU support: NCCL loading and calls, collective arguments, the rank rendezvous.
import { DsvError } from '../errors.js';

/** No loadable libnccl; the message lists every place that was tried and each load error. */
export class NcclUnavailableError extends DsvError {}

/** An NCCL call failed; names the call, the ncclResult_t name and NCCL's own text (plus its last error, if any). */
export class NcclError extends DsvError {
  constructor(readonly call: string, readonly code: number, readonly codeName: string, readonly detail: string) {
    super(`${call} failed: ${codeName} (${code}): ${detail}`);
  }
}

/** A collective was given a tensor it cannot take (shape, dtype, layout, device) or a bad rank/op. */
export class CollectiveError extends DsvError {}

/** The ranks could not agree on a communicator: bad DSV32_* environment, or the unique id never arrived. */
export class RendezvousError extends DsvError {}
