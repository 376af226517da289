// CUDA launches of the MoE operations (kernels/moe.cu): routing, dispatch, grouped GEMM and combine.
// Contract: src/tensor/ops/moe.ts; CPU reference: src/backend/cpu/moe.ts. The op layer has checked shapes
// and made every input contiguous (indices i32); here only the kernels' own limits are checked. No launch
// reads device memory back, so all four can be captured in a CUDA graph; bad ids (forced routes, dispatch
// ids, combine rows) raise the device error word, read right after the launch when eager index checks are on
// and no graph is being captured (otherwise at the next synchronize).
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import { dtCode } from './codes.js';
import type { ParamKind } from './launch.js';
import * as C from './cuda-consts.js';
import { gemmPathOn } from './gemm-switch.js';

const SIG: Record<string, readonly ParamKind[]> = {
  moe_route: ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p'],
  moe_dispatch: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p'],
  grouped_matmul: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'i64', 'i64', 'i64'],
  grouped_matmul_dw: ['i64', 'i64', 'i64', 'p', 'p', 'p', 'p'],
  grouped_matmul_fp8: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p'],
  grouped_gemv: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p'],
  moe_combine: ['i64', 'i64', 'i64', 'p', 'i32', 'p', 'i32', 'p', 'p', 'p', 'i32', 'p'],
};
/** kernels/moe.cu: warps per routing CTA, GEMM tile rows/cols. */
const ROUTE_WARPS = 4;
const BM = 64;
const BN = 64;
const MAX_GRID_Y = 65535;
/** grouped_matmul_tc_*: tile rows/cols and the dynamic shared memory of its 3-stage ring (bf16 elements 3 · 2 · 128 · 40). */
const TC_BM = 128;
const TC_BN = 128;
const TC_SMEM = 3 * 2 * 128 * 40 * 2;

/**
 * Path choice, for tests and benchmarks: `tc` sends bf16 × bf16 grouped GEMMs (the forward and the backward's
 * dx) to the tensor-core kernel where its limits hold (K and N multiples of 8, 16-byte aligned operands),
 * else to the SIMT kernel. DSV32_CUDA_GEMM's word for it is `moe`. `dwTc` (word `moe-dw`) sends the weight
 * gradient of bf16 g and x to the tensor-core dW kernel (grouped_matmul_dw_tc_*) under the same limits; it
 * is off by default until a GPU run has checked it (2026-12-08: written and emulated,
 * scripts/kernel-emu/run-moe.mjs, but no device was lent; docs/runs/2026-12-08/run-1.sh is the round that
 * checks it). `gemv` (word `moe-gemv`) sends forwards of
 * at most `gemvMaxRows` rows whose inner dim is at least their output width (the gate and up projections of a
 * decode step) to the grouped GEMVs (kernels/gemv.cu): bf16 under the same limits, FP8 weights where
 * K % 16 == 0 and the codes are 16-byte aligned. Measured (bench/moe.ts, H100, mid config: 32 experts, k 4,
 * 2026-12-06 19:00): at 4 rows the gate/up GEMM (K 2 048, N 512) 0.022 ms against the tensor-core kernel's
 * 0.044, but the down projection (K 512, N 2 048) 0.024 against 0.018; at 64 rows 0.117 against 0.045.
 * `gemvAnyWidth` lifts the width bound (tests).
 */
export const moeTune = { tc: gemmPathOn('moe', true), gemv: gemmPathOn('moe-gemv', true), dwTc: gemmPathOn('moe-dw', false), gemvMaxRows: 8, gemvAnyWidth: false };

/** The tensor-core kernel's limits: whole 16-byte pieces along both operands' contiguous dims. */
function tcFits(b: CudaBackend, out: View, x: View, w: View, inner: number, cols: number): boolean {
  return moeTune.tc && x.dtype === 'bf16' && w.dtype === 'bf16' && out.dtype === 'bf16' && inner % 8 === 0 && cols % 8 === 0 &&
    [out, x, w].every((v) => b.address(v) % 16 === 0);
}

/** out [M, cols] = x [M, inner] · W[e] per segment on the tensor cores; W[e] element (c, i) at e·es + c·sc + i·si. */
function groupedTc(b: CudaBackend, out: View, x: View, w: View, offsets: View, E: number, cols: number, inner: number, sc: number, si: number, op: string): void {
  const M = x.shape[0]!;
  const tiles = Math.ceil(M / TC_BM) + E + 2;
  if (tiles > MAX_GRID_Y) throw new DsvError(`${op} on cuda: ${tiles} row tiles exceed the grid's ${MAX_GRID_Y}`);
  const kern = b.rt.modules.get('moe', si === 1 ? 'grouped_matmul_tc_bf16' : 'grouped_matmul_tc_bf16_nmajor', SIG.grouped_matmul!);
  kern.setMaxDynamicSmem(TC_SMEM, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
  kern.launch(Math.ceil(cols / TC_BN), 256, TC_SMEM, [M, cols, inner, E, b.address(out), b.address(x), b.address(w), b.address(offsets), sc, si, cols * inner], tiles);
}

const sfx = (d: string): string => (d === 'bf16' ? 'bf16' : 'f32');
/** The grouped GEMV's row tiles of ≤ 8 rows: ⌈M/8⌉ plus one partial tile per non-empty segment (at most min(E + 2, M) of them). */
const gemvTiles = (M: number, E: number): number => Math.ceil(M / 8) + Math.min(E + 2, M);

function checked(b: CudaBackend, op: string): void {
  if (b.eagerIndexChecks && !b.rt.capturing) b.rt.checkErrors(op);
}

export function moeRouteCuda(b: CudaBackend, out: View, scores: View, bias: View | null, forced: View | null, groups: number, topkGroups: number): void {
  const [T, E] = scores.shape as [number, number];
  const k = out.shape[1]!;
  if (E > 1024) throw new DsvError(`moeRoute on cuda: at most 1024 experts (one warp's 32 × 32 taken bits), got ${E}`);
  if (k > 32) throw new DsvError(`moeRoute on cuda: at most 32 experts per token (one lane each), got ${k}`);
  if (groups > 32) throw new DsvError(`moeRoute on cuda: at most 32 expert groups (one lane each), got ${groups}`);
  const smem = 4 * ROUTE_WARPS * (E + 32);
  const kern = b.rt.modules.get('moe', 'moe_route', SIG.moe_route!);
  kern.launch(Math.ceil(T / ROUTE_WARPS), 32 * ROUTE_WARPS, smem,
    [T, E, k, groups, topkGroups, b.address(out), b.address(scores), bias ? b.address(bias) : 0, forced ? b.address(forced) : 0, b.rt.errWord]);
  if (forced) checked(b, 'moeRoute (a forced route holds an expert id outside [0, E) or repeats one)');
}

export function moeDispatchCuda(b: CudaBackend, pairs: View, rows: View, tokens: View, offsets: View, experts: View): void {
  const [T, k] = experts.shape as [number, number];
  const E = offsets.shape[0]! - 1;
  if (T * k > 2 ** 31 - 1) throw new DsvError(`moeDispatch on cuda: ${T * k} pairs exceed the i32 positions`);
  // warps sharing the scatter: as many of the CTA's 16 as their count rows allow in 48 KB of shared memory
  const ints = (48 * 1024) / 4;
  const nw = Math.min(16, Math.floor(ints / (E + 1)) - 1);
  if (nw < 1) throw new DsvError(`moeDispatch on cuda: at most ${ints / 2 - 1} experts, got ${E}`);
  const kern = b.rt.modules.get('moe', 'moe_dispatch', SIG.moe_dispatch!);
  kern.launch(1, 512, 4 * (nw + 1) * (E + 1), [T * k, k, E, nw, b.address(experts), b.address(pairs), b.address(rows), b.address(tokens), b.address(offsets), b.rt.errWord]);
  checked(b, 'moeDispatch (an expert id outside [0, E))');
}

export function groupedMatmulCuda(b: CudaBackend, out: View, x: View, w: View, offsets: View): void {
  const [M, K] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number, number];
  if (x.dtype === 'f64' || w.dtype === 'f64') throw new DsvError('groupedMatmul on cuda: f32 or bf16 operands only (f64 is the CPU gradcheck path)');
  if (M > 2 ** 31 - 1) throw new DsvError(`groupedMatmul on cuda: ${M} rows exceed the i32 row space`);
  if (M <= moeTune.gemvMaxRows && (K >= N || moeTune.gemvAnyWidth) && moeTune.gemv && tcFits(b, out, x, w, K, N)) {
    b.rt.modules.get('gemv', 'grouped_gemv_bf16', SIG.grouped_gemv!).launch(Math.ceil(N / 2), 32 * Math.min(8, Math.ceil(K / 256)), 0,
      [M, N, K, E, b.address(out), b.address(x), b.address(w), b.address(offsets)], gemvTiles(M, E));
    return;
  }
  if (tcFits(b, out, x, w, K, N)) return groupedTc(b, out, x, w, offsets, E, N, K, K, 1, 'groupedMatmul');
  // worst-case row tiles: every segment (and the two uncovered ranges) may end in a partial tile
  const tiles = Math.ceil(M / BM) + E + 2;
  if (tiles > MAX_GRID_Y) throw new DsvError(`groupedMatmul on cuda: ${tiles} row tiles exceed the grid's ${MAX_GRID_Y}`);
  const kern = b.rt.modules.get('moe', `grouped_matmul_${sfx(x.dtype)}_${sfx(w.dtype)}`, SIG.grouped_matmul!);
  kern.launch(Math.ceil(N / BN), 256, 0, [M, N, K, E, b.address(out), b.address(x), b.address(w), b.address(offsets), K, 1, N * K], tiles);
}

export function groupedMatmulBackwardCuda(b: CudaBackend, dx: View | null, dw: View | null, g: View, x: View, w: View, offsets: View): void {
  const [M, K] = x.shape as [number, number];
  const [E, N] = w.shape as [number, number, number];
  if (x.dtype === 'f64' || w.dtype === 'f64') throw new DsvError('groupedMatmul backward on cuda: f32 or bf16 operands only (f64 is the CPU gradcheck path)');
  if (dx) {
    // dx [M, K] = g [M, N] · W[e]: the forward kernel with C = K output columns, inner I = N, W[e] read transposed
    if (tcFits(b, dx, g, w, N, K)) groupedTc(b, dx, g, w, offsets, E, K, N, 1, K, 'groupedMatmul backward');
    else {
      const tiles = Math.ceil(M / BM) + E + 2;
      if (tiles > MAX_GRID_Y) throw new DsvError(`groupedMatmul backward on cuda: ${tiles} row tiles exceed the grid's ${MAX_GRID_Y}`);
      const kern = b.rt.modules.get('moe', `grouped_matmul_${sfx(g.dtype)}_${sfx(w.dtype)}`, SIG.grouped_matmul!);
      kern.launch(Math.ceil(K / BN), 256, 0, [M, K, N, E, b.address(dx), b.address(g), b.address(w), b.address(offsets), 1, K, N * K], tiles);
    }
  }
  if (dw) {
    if (Math.ceil(N / BM) > MAX_GRID_Y) throw new DsvError(`groupedMatmul backward on cuda: ${N} weight rows exceed the grid`);
    if (g.dtype !== x.dtype) throw new DsvError(`groupedMatmul backward on cuda: g (${g.dtype}) must have x's dtype (${x.dtype})`);
    if (moeTune.dwTc && x.dtype === 'bf16' && N % 8 === 0 && K % 8 === 0 && b.address(g) % 16 === 0 && b.address(x) % 16 === 0) {
      // the tensor-core kernel: grid.x = E · ⌈K/128⌉ (expert-major), grid.y = ⌈N/128⌉
      if (Math.ceil(N / TC_BM) > MAX_GRID_Y) throw new DsvError(`groupedMatmul backward on cuda: ${N} weight rows exceed the grid`);
      const tc = b.rt.modules.get('moe', `grouped_matmul_dw_tc_bf16_${sfx(dw.dtype)}`, SIG.grouped_matmul_dw!);
      tc.setMaxDynamicSmem(TC_SMEM, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
      tc.launch(E * Math.ceil(K / TC_BN), 256, TC_SMEM, [M, N, K, b.address(dw), b.address(g), b.address(x), b.address(offsets)], Math.ceil(N / TC_BM));
      return;
    }
    const kern = b.rt.modules.get('moe', `grouped_matmul_dw_${sfx(x.dtype)}_${sfx(dw.dtype)}`, SIG.grouped_matmul_dw!);
    // grid.x = E · ⌈K/64⌉ (expert-major), grid.y = ⌈N/64⌉
    kern.launch(E * Math.ceil(K / BN), 256, 0, [M, N, K, b.address(dw), b.address(g), b.address(x), b.address(offsets)], Math.ceil(N / BM));
  }
}

export function groupedMatmulFp8Cuda(b: CudaBackend, out: View, q: View, sq: View, w8: View, sw: View, offsets: View): void {
  const [M, K] = q.shape as [number, number];
  const [E, N] = w8.shape as [number, number, number];
  if (M > 2 ** 31 - 1) throw new DsvError(`groupedMatmulFp8 on cuda: ${M} rows exceed the i32 row space`);
  if (M <= moeTune.gemvMaxRows && (K >= N || moeTune.gemvAnyWidth) && moeTune.gemv && K % 16 === 0 && [q, w8].every((v) => b.address(v) % 16 === 0)) {
    b.rt.modules.get('gemv', `grouped_gemv_e4m3_${sfx(out.dtype)}`, SIG.grouped_matmul_fp8!).launch(Math.ceil(N / 2), 32 * Math.min(8, Math.ceil(K / 512)), 0,
      [M, N, K, E, b.address(out), b.address(q), b.address(sq), b.address(w8), b.address(sw), b.address(offsets)], gemvTiles(M, E));
    return;
  }
  const tiles = Math.ceil(M / BM) + E + 2;
  if (tiles > MAX_GRID_Y) throw new DsvError(`groupedMatmulFp8 on cuda: ${tiles} row tiles exceed the grid's ${MAX_GRID_Y}`);
  const kern = b.rt.modules.get('moe', `grouped_matmul_fp8_${sfx(out.dtype)}`, SIG.grouped_matmul_fp8!);
  kern.launch(Math.ceil(N / BN), 256, 0, [M, N, K, E, b.address(out), b.address(q), b.address(sq), b.address(w8), b.address(sw), b.address(offsets)], tiles);
}

export function moeCombineCuda(b: CudaBackend, out: View, ySlots: View, weights: View, rows: View, shared: View | null): void {
  const [T, D] = out.shape as [number, number];
  const k = weights.shape[1]!;
  for (const v of [out, ySlots, shared]) {
    if (v && v.dtype !== 'f32' && v.dtype !== 'bf16') throw new DsvError(`moeCombine on cuda: f32 or bf16 tensors only, got ${v.dtype}`);
  }
  if (weights.dtype !== 'f32') throw new DsvError(`moeCombine on cuda: weights must be f32, got ${weights.dtype}`);
  const n = T * D;
  const kern = b.rt.modules.get('moe', 'moe_combine', SIG.moe_combine!);
  kern.launch(Math.max(1, Math.min(Math.ceil(n / 256), 65535 * 8)), 256, 0,
    [T, k, D, b.address(out), dtCode(out.dtype), b.address(ySlots), dtCode(ySlots.dtype), b.address(weights), b.address(rows),
      shared ? b.address(shared) : 0, shared ? dtCode(shared.dtype) : 0, b.rt.errWord]);
  checked(b, 'moeCombine (a row outside [0, T·k))');
}
