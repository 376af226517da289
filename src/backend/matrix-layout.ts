// How a strided matrix (the last two dims of a view) maps onto BLAS's row/column-major operands; shared
// by the CPU (OpenBLAS / TypeScript GEMM) and CUDA (cuBLASLt) backends.
import type { View } from '../tensor/backend.js';

export interface MatrixLayout {
  /** false: row-major (element (i, j) at i·ld + j); true: column-major (at j·ld + i) */
  trans: boolean;
  ld: number;
}

/**
 * Row- or column-major layout of an R×C matrix view with its leading dim, or null when neither (then the
 * caller copies it contiguous). Dims of size 1 have arbitrary strides, so they never disqualify a layout.
 */
export function matrixLayout(v: View, R: number, C: number): MatrixLayout | null {
  const r = v.shape.length;
  const sr = v.strides[r - 2]!;
  const sc = v.strides[r - 1]!;
  if (C <= 1 || sc === 1) {
    const ld = R <= 1 ? Math.max(C, 1) : sr;
    if (ld >= Math.max(C, 1)) return { trans: false, ld };
  }
  if (R <= 1 || sr === 1) {
    const ld = C <= 1 ? Math.max(R, 1) : sc;
    if (ld >= Math.max(R, 1)) return { trans: true, ld };
  }
  return null;
}
