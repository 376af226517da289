// Device temporaries of one multi-kernel call (the GEMM paths of the DSA training ops), disposed together
// when the call has enqueued its last kernel: stream-ordered reuse, later work on the stream runs after
// these kernels have finished with them.
import type { CudaBackend, CudaStorage } from './cuda-backend.js';

export interface Temporaries {
  tmp(dtype: 'bf16' | 'f32', numel: number): CudaStorage;
  dispose(): void;
}

export function temporaries(b: CudaBackend): Temporaries {
  const temps: CudaStorage[] = [];
  return {
    tmp(dtype, numel) {
      const st = b.alloc(dtype, numel);
      temps.push(st);
      return st;
    },
    dispose() {
      for (const st of temps) st.dispose();
    },
  };
}
