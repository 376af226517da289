import type { Backend, Storage } from '../../tensor/backend.js';
import type { DType, HostArray } from '../../tensor/dtype.js';

/** CPU storage: one host typed array in the dtype's representation (see tensor/dtype.ts). */
export class CpuStorage implements Storage {
  constructor(readonly backend: Backend, readonly dtype: DType, readonly data: HostArray) {}
  get numel(): number {
    return this.data.length;
  }
}
