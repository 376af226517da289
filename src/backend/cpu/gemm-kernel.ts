// The pure-TypeScript GEMM kernel: C[m0:m1, n0:n1] = alpha * op(A) op(B) + beta * C on that rectangle.
// It is the fallback when no BLAS is installed, and the unit of work that gemm.ts hands to worker threads
// (each worker owns disjoint rectangles of C, so no two threads ever write the same element).
//
// Layout follows the Goto/BLIS scheme:
//   for each column block jc of NC columns
//     for each depth block pc of KC
//       pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide micro-panels   (kc x NR each, contiguous, L1-sized)
//       for each row block ic of MC rows
//         pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall micro-panels  (kc x MR each; the block sits in L2)
//         for each B micro-panel, for each A micro-panel: an MR x NR register-tile microkernel
// Packing does the transposes once per block, so the microkernel reads two contiguous streams and never
// branches on layout. Two microkernels:
//  - f32: packs into WebAssembly memory as f32 and runs the 4 x 8 SIMD kernel of gemm-wasm.ts
//    (f32 accumulation, as sgemm in BLAS); about 8x the scalar kernel.
//  - f64 (and f32 with DSV32_GEMM_WASM=off or no WebAssembly SIMD): packs into Float64Array and runs a
//    4 x 4 scalar kernel; JavaScript arithmetic is f64, so it accumulates in f64.
// Rows of A (when M < 4) or columns of B (when N < 4) are never worth packing; those shapes go to the
// streaming kernels at the bottom of this file (for f32 with op(B) = B^T, the SIMD dot kernel).

import { WASM_MR, WASM_NR, instantiateWasmKernel, type WasmKernel } from './gemm-wasm.js';

export type FloatArray = Float32Array | Float64Array;

/** Register tile: MR rows of A times NR columns of B, 16 accumulators (V8 has 16 xmm registers on x64). */
export const MR = 4;
export const NR = 4;
/** Depth block: an A and a B micro-panel (KC*4*8 bytes each = 8 KiB) fit L1 together. */
export const KC = 256;
/** Row block: MC*KC*8 = 256 KiB of packed A stays in L2 while every B micro-panel sweeps over it. */
export const MC = 128;
/** Column block: KC*NC*8 = 4 MiB of packed B, streamed from L2/L3 once per A block. */
export const NC = 2048;

/** Everything the kernel needs about one GEMM call; plain data so it can be posted to a worker. */
export interface GemmProblem<T extends FloatArray = FloatArray> {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  A: T;
  aOff: number;
  lda: number;
  B: T;
  bOff: number;
  ldb: number;
  beta: number;
  C: T;
  cOff: number;
  ldc: number;
}

/** DSV32_GEMM_WASM=off selects the scalar f32 kernel (to measure it, or where SIMD misbehaves). */
export function wasmEnabled(): boolean {
  return process.env.DSV32_GEMM_WASM !== 'off';
}

/**
 * Rows up to which an f32 product with op(B) = B^T uses the SIMD dot kernels, which copy rows of B at
 * memcpy speed, rather than the blocked kernel, whose packing of B (about 1 ns per element in JS) is paid
 * back only when each packed element feeds many rows. Measured single-threaded (CPU time) at N = K = 2048:
 * dot 34-36 GFLOP/s at 64-512 rows vs blocked 28-30. The copied rows of A must also stay modest in size.
 */
export const DOT_MAX_ROWS = 1024;
const DOT_MAX_A_FLOATS = 4 << 20;

/** Whether rows [m0, m0 + m) of this product run the SIMD dot kernels (needs WebAssembly SIMD too). */
export function usesDotKernel(p: GemmProblem, m: number): boolean {
  return p.transB && p.C instanceof Float32Array && m <= DOT_MAX_ROWS && m * p.K <= DOT_MAX_A_FLOATS;
}

/** Per-thread packing buffers, grown on demand and reused across calls. */
export class GemmScratch {
  ap = new Float64Array(0);
  bp = new Float64Array(0);
  tile = new Float64Array(MR * NR);
  /** The f32 SIMD kernel's instance (null where WebAssembly SIMD is missing), created on first f32 use. */
  private wasm: WasmKernel | null | undefined;
  private wasmView = new Float32Array(0);

  ensure(apLen: number, bpLen: number): void {
    if (this.ap.length < apLen) this.ap = new Float64Array(apLen);
    if (this.bp.length < bpLen) this.bp = new Float64Array(bpLen);
  }

  /** The SIMD kernel with at least `floats` f32 of memory, and a view of that memory; null if unavailable. */
  wasmKernel(floats: number): { w: WasmKernel; f: Float32Array } | null {
    if (!wasmEnabled()) return null;
    if (this.wasm === undefined) this.wasm = instantiateWasmKernel();
    const w = this.wasm;
    if (!w) return null;
    const have = w.memory.buffer.byteLength;
    if (have < floats * 4) w.memory.grow(Math.ceil((floats * 4 - have) / 65536));
    if (this.wasmView.buffer !== w.memory.buffer) this.wasmView = new Float32Array(w.memory.buffer);
    return { w, f: this.wasmView };
  }
}

/**
 * C[m0:m1, n0:n1] = beta * C. beta = 0 overwrites (so NaN/Inf already in C do not survive), as BLAS does.
 */
export function scaleC(C: FloatArray, cOff: number, ldc: number, m0: number, m1: number, n0: number, n1: number, beta: number): void {
  if (beta === 1) return;
  for (let i = m0; i < m1; i++) {
    const row = cOff + i * ldc;
    if (beta === 0) C.fill(0, row + n0, row + n1);
    else for (let j = row + n0; j < row + n1; j++) C[j] *= beta;
  }
}

/** Computes the rectangle C[m0:m1, n0:n1] of the product (beta applied here too). */
export function gemmRect(p: GemmProblem, m0: number, m1: number, n0: number, n1: number, scratch: GemmScratch): void {
  if (m1 <= m0 || n1 <= n0) return;
  scaleC(p.C, p.cOff, p.ldc, m0, m1, n0, n1, p.beta);
  if (p.K === 0 || p.alpha === 0) return;
  const m = m1 - m0;
  const n = n1 - n0;
  // Packing pays when each packed element is reused by several micro-tiles; with fewer than MR rows
  // (or NR columns) there is no reuse, so stream the operands directly.
  if (usesDotKernel(p, m)) {
    if (rowsDotWasm(p as GemmProblem<Float32Array>, m0, m1, n0, n1, scratch)) return;
  }
  if (m < MR) {
    if (p.transB) rowsDotKernel(p, m0, m1, n0, n1);
    else rowsAxpyKernel(p, m0, m1, n0, n1);
    return;
  }
  if (n < NR) {
    colsKernel(p, m0, m1, n0, n1);
    return;
  }
  if (p.C instanceof Float32Array && blockedWasm(p, m0, m1, n0, n1, scratch)) return;
  blocked(p, m0, m1, n0, n1, scratch);
}

/** The f32 blocked loop with packing into WebAssembly memory and the 4 x 8 SIMD microkernel. */
function blockedWasm(p: GemmProblem, m0: number, m1: number, n0: number, n1: number, s: GemmScratch): boolean {
  const { K, alpha, C, cOff, ldc } = p;
  const kcMax = Math.min(KC, K);
  const apLen = Math.ceil(Math.min(MC, m1 - m0) / WASM_MR) * WASM_MR * kcMax;
  const bpLen = Math.ceil(Math.min(NC, n1 - n0) / WASM_NR) * WASM_NR * kcMax;
  const k = s.wasmKernel(apLen + bpLen + WASM_MR * WASM_NR);
  if (!k) return false;
  const { w, f } = k;
  const bpAt = apLen; // element offsets in f; the kernel takes byte addresses
  const tAt = apLen + bpLen;
  for (let jc = n0; jc < n1; jc += NC) {
    const nc = Math.min(NC, n1 - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packB(p, pc, kc, jc, nc, f, bpAt, WASM_NR);
      for (let ic = m0; ic < m1; ic += MC) {
        const mc = Math.min(MC, m1 - ic);
        packA(p, ic, mc, pc, kc, f, 0, WASM_MR);
        for (let jr = 0; jr < nc; jr += WASM_NR) {
          const nr = Math.min(WASM_NR, nc - jr);
          const bByte = 4 * (bpAt + jr * kc);
          for (let ir = 0; ir < mc; ir += WASM_MR) {
            w.k(kc, 4 * ir * kc, bByte, 4 * tAt);
            addTile(C, cOff + (ic + ir) * ldc + jc + jr, ldc, alpha, f, tAt, WASM_NR, Math.min(WASM_MR, mc - ir), nr);
          }
        }
      }
    }
  }
  return true;
}

function blocked(p: GemmProblem, m0: number, m1: number, n0: number, n1: number, s: GemmScratch): void {
  const { K, alpha, C, cOff, ldc } = p;
  const kcMax = Math.min(KC, K);
  s.ensure(Math.ceil(Math.min(MC, m1 - m0) / MR) * MR * kcMax, Math.ceil(Math.min(NC, n1 - n0) / NR) * NR * kcMax);
  const ap = s.ap;
  const bp = s.bp;
  const tile = s.tile;
  for (let jc = n0; jc < n1; jc += NC) {
    const nc = Math.min(NC, n1 - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packB(p, pc, kc, jc, nc, bp, 0, NR);
      for (let ic = m0; ic < m1; ic += MC) {
        const mc = Math.min(MC, m1 - ic);
        packA(p, ic, mc, pc, kc, ap, 0, MR);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          const bi = jr * kc; // panel jr/NR starts at (jr/NR)*kc*NR
          for (let ir = 0; ir < mc; ir += MR) {
            const mr = Math.min(MR, mc - ir);
            micro4x4(kc, ap, ir * kc, bp, bi, tile);
            addTile(C, cOff + (ic + ir) * ldc + jc + jr, ldc, alpha, tile, 0, NR, mr, nr);
          }
        }
      }
    }
  }
}

/** op(A)[ic:ic+mc, pc:pc+kc] -> ap[at...] as ceil(mc/mr) panels, each kc depth steps of mr values (zero-padded). */
function packA(p: GemmProblem, ic: number, mc: number, pc: number, kc: number, ap: FloatArray, at: number, mr: number): void {
  const { A, aOff, lda, transA } = p;
  for (let ir = 0; ir < mc; ir += mr) {
    const base = at + ir * kc;
    const rows = Math.min(mr, mc - ir);
    for (let r = 0; r < mr; r++) {
      let d = base + r;
      if (r >= rows) {
        for (let q = 0; q < kc; q++, d += mr) ap[d] = 0;
      } else if (!transA) {
        // op(A)[i, k] = A[i*lda + k]: read a row of A contiguously
        let s = aOff + (ic + ir + r) * lda + pc;
        for (let q = 0; q < kc; q++, d += mr) ap[d] = A[s++]!;
      } else {
        // op(A)[i, k] = A[k*lda + i]
        let s = aOff + pc * lda + ic + ir + r;
        for (let q = 0; q < kc; q++, d += mr, s += lda) ap[d] = A[s]!;
      }
    }
  }
}

/** op(B)[pc:pc+kc, jc:jc+nc] -> bp[at...] as ceil(nc/nr) panels, each kc depth steps of nr values (zero-padded). */
function packB(p: GemmProblem, pc: number, kc: number, jc: number, nc: number, bp: FloatArray, at: number, nr: number): void {
  const { B, bOff, ldb, transB } = p;
  for (let jr = 0; jr < nc; jr += nr) {
    const base = at + jr * kc;
    const cols = Math.min(nr, nc - jr);
    if (!transB) {
      // op(B)[k, j] = B[k*ldb + j]: each depth step copies nr neighbours of one row of B
      let s = bOff + pc * ldb + jc + jr;
      let d = base;
      for (let q = 0; q < kc; q++, s += ldb, d += nr) {
        let c = 0;
        for (; c < cols; c++) bp[d + c] = B[s + c]!;
        for (; c < nr; c++) bp[d + c] = 0;
      }
    } else {
      // op(B)[k, j] = B[j*ldb + k]: read each row of B (a column of op(B)) contiguously
      for (let c = 0; c < nr; c++) {
        let d = base + c;
        if (c >= cols) {
          for (let q = 0; q < kc; q++, d += nr) bp[d] = 0;
        } else {
          let s = bOff + (jc + jr + c) * ldb + pc;
          for (let q = 0; q < kc; q++, d += nr) bp[d] = B[s++]!;
        }
      }
    }
  }
}

/** tile = sum over kc of an MR-column of packed A times an NR-row of packed B (outer products). */
function micro4x4(kc: number, ap: Float64Array, ai: number, bp: Float64Array, bi: number, tile: Float64Array): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const end = ai + kc * MR;
  for (; ai < end; ai += MR, bi += NR) {
    const b0 = bp[bi], b1 = bp[bi + 1], b2 = bp[bi + 2], b3 = bp[bi + 3];
    let a = ap[ai];
    c00 += a * b0; c01 += a * b1; c02 += a * b2; c03 += a * b3;
    a = ap[ai + 1];
    c10 += a * b0; c11 += a * b1; c12 += a * b2; c13 += a * b3;
    a = ap[ai + 2];
    c20 += a * b0; c21 += a * b1; c22 += a * b2; c23 += a * b3;
    a = ap[ai + 3];
    c30 += a * b0; c31 += a * b1; c32 += a * b2; c33 += a * b3;
  }
  tile[0] = c00; tile[1] = c01; tile[2] = c02; tile[3] = c03;
  tile[4] = c10; tile[5] = c11; tile[6] = c12; tile[7] = c13;
  tile[8] = c20; tile[9] = c21; tile[10] = c22; tile[11] = c23;
  tile[12] = c30; tile[13] = c31; tile[14] = c32; tile[15] = c33;
}

/** C[ci + r*ldc + c] += alpha * tile[t + r*stride + c] for the valid mr x nr corner of the tile. */
function addTile(
  C: FloatArray, ci: number, ldc: number, alpha: number, tile: FloatArray, t: number, stride: number, mr: number, nr: number,
): void {
  for (let r = 0; r < mr; r++, ci += ldc, t += stride) {
    for (let c = 0; c < nr; c++) C[ci + c] += alpha * tile[t + c]!;
  }
}

/**
 * Few rows, op(B) = B^T, f32, with the SIMD dot kernel: rows of B are copied (memcpy-speed .set) into
 * WebAssembly memory a block at a time, each row zero-padded to kp, a multiple of 4, so that the kernel
 * needs no tail loop; the padding of x is zero too, so the pad lanes add exactly 0.
 */
function rowsDotWasm(p: GemmProblem<Float32Array>, m0: number, m1: number, n0: number, n1: number, s: GemmScratch): boolean {
  const { A, aOff, lda, transA, B, bOff, ldb, C, cOff, ldc, K, alpha } = p;
  const kp = (K + 3) & ~3;
  const m = m1 - m0;
  // Rows of B per block: about 256 KiB, so the kernel reads the block back from L2.
  const nb = Math.max(4, Math.floor(65536 / kp) & ~3);
  const bAt = m * kp;
  const tAt = bAt + nb * kp;
  const k = s.wasmKernel(tAt + 32);
  if (!k) return false;
  const { w, f } = k;
  for (let r = 0; r < m; r++) {
    const d = r * kp;
    if (!transA) {
      const src = aOff + (m0 + r) * lda;
      f.set(A.subarray(src, src + K), d);
    } else {
      for (let q = 0, src = aOff + m0 + r; q < K; q++, src += lda) f[d + q] = A[src]!;
    }
    f.fill(0, d + K, d + kp);
  }
  for (let j0 = n0; j0 < n1; j0 += nb) {
    const rows = Math.min(nb, n1 - j0);
    const padded = (rows + 3) & ~3;
    for (let jj = 0; jj < padded; jj++) {
      const d = bAt + jj * kp;
      if (jj < rows) {
        const src = bOff + (j0 + jj) * ldb;
        f.set(B.subarray(src, src + K), d);
        if (kp !== K) f.fill(0, d + K, d + kp);
      } else {
        f.fill(0, d, d + kp); // rows past N: their sums are discarded, but must not be NaN garbage
      }
    }
    for (let g = 0; g < padded; g += 4) {
      const valid = Math.min(4, rows - g);
      const bByte = 4 * (bAt + g * kp);
      // Two rows of A per call where possible: each loaded vector of B then feeds two multiply-adds.
      for (let r = 0; r < m; r += 2) {
        const two = r + 1 < m;
        if (two) w.d2(kp, 4 * r * kp, bByte, 4 * tAt);
        else w.d(kp, 4 * r * kp, bByte, 4 * tAt);
        for (let h = 0; h < (two ? 2 : 1); h++) {
          const c = cOff + (m0 + r + h) * ldc + j0 + g;
          for (let i = 0; i < valid; i++) {
            const t = tAt + 16 * h + 4 * i;
            C[c + i] += alpha * (f[t]! + f[t + 1]! + f[t + 2]! + f[t + 3]!);
          }
        }
      }
    }
  }
  return true;
}

/**
 * Few rows, op(B) = B^T (the usual `x W^T` of a linear layer): C[i, j] = alpha * dot(op(A) row i, B row j).
 * Both rows are contiguous when A is not transposed; four B rows share each load of A.
 */
function rowsDotKernel(p: GemmProblem, m0: number, m1: number, n0: number, n1: number): void {
  const { A, aOff, lda, transA, B, bOff, ldb, C, cOff, ldc, K, alpha } = p;
  const aStep = transA ? lda : 1;
  for (let i = m0; i < m1; i++) {
    const aRow = transA ? aOff + i : aOff + i * lda;
    const cRow = cOff + i * ldc;
    let j = n0;
    for (; j + 4 <= n1; j += 4) {
      let b0 = bOff + j * ldb, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let a = aRow;
      for (let k = 0; k < K; k++, a += aStep) {
        const av = A[a];
        s0 += av * B[b0++];
        s1 += av * B[b1++];
        s2 += av * B[b2++];
        s3 += av * B[b3++];
      }
      C[cRow + j] += alpha * s0;
      C[cRow + j + 1] += alpha * s1;
      C[cRow + j + 2] += alpha * s2;
      C[cRow + j + 3] += alpha * s3;
    }
    for (; j < n1; j++) {
      let b = bOff + j * ldb;
      let s = 0;
      let a = aRow;
      for (let k = 0; k < K; k++, a += aStep) s += A[a] * B[b++];
      C[cRow + j] += alpha * s;
    }
  }
}

/**
 * Few rows, op(B) = B: C row i += alpha * sum_k op(A)[i, k] * B row k, streaming rows of B.
 * Four depth steps are fused per pass so each C element is loaded and stored once per four rows of B.
 */
function rowsAxpyKernel(p: GemmProblem, m0: number, m1: number, n0: number, n1: number): void {
  const { A, aOff, lda, transA, B, bOff, ldb, C, cOff, ldc, K, alpha } = p;
  for (let i = m0; i < m1; i++) {
    const cRow = cOff + i * ldc;
    const aAt = (k: number): number => (transA ? A[aOff + k * lda + i] : A[aOff + i * lda + k]);
    let k = 0;
    for (; k + 4 <= K; k += 4) {
      const a0 = alpha * aAt(k), a1 = alpha * aAt(k + 1), a2 = alpha * aAt(k + 2), a3 = alpha * aAt(k + 3);
      let b0 = bOff + k * ldb + n0, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
      for (let c = cRow + n0, e = cRow + n1; c < e; c++) {
        C[c] += a0 * B[b0++] + a1 * B[b1++] + a2 * B[b2++] + a3 * B[b3++];
      }
    }
    for (; k < K; k++) {
      const a0 = alpha * aAt(k);
      let b0 = bOff + k * ldb + n0;
      for (let c = cRow + n0, e = cRow + n1; c < e; c++) C[c] += a0 * B[b0++];
    }
  }
}

/** Few columns: each C[i, j] is one dot product of a row of op(A) with a column of op(B). */
function colsKernel(p: GemmProblem, m0: number, m1: number, n0: number, n1: number): void {
  const { A, aOff, lda, transA, B, bOff, ldb, transB, C, cOff, ldc, K, alpha } = p;
  const aStep = transA ? lda : 1;
  const bStep = transB ? 1 : ldb;
  for (let j = n0; j < n1; j++) {
    const bCol = transB ? bOff + j * ldb : bOff + j;
    for (let i = m0; i < m1; i++) {
      let a = transA ? aOff + i : aOff + i * lda;
      let b = bCol;
      let s = 0;
      for (let k = 0; k < K; k++, a += aStep, b += bStep) s += A[a] * B[b];
      C[cOff + i * ldc + j] += alpha * s;
    }
  }
}
