// CUDA launches of the indexer's training kernels (kernels/indexer_train.cu): float scores, their backward,
// and the KL loss. Contract: src/tensor/ops/indexer-train.ts; CPU reference: src/backend/cpu/indexer-train.ts.
// The op layer has checked shapes and made every input contiguous; here only the kernels' limits (shared
// memory, H ≤ 256 for the backward's per-thread dw) and dtypes are checked. A null start/end/indices view
// is passed as a null pointer: the kernels read the range (dense) or the indices (sparse).
import { DsvError } from '../../errors.js';
import type { View } from '../../tensor/backend.js';
import type { CudaBackend } from './cuda-backend.js';
import * as C from './cuda-consts.js';
import type { ParamKind } from './launch.js';

const NT = 256;
const TKI = 32;
const HG = 16;
const TKL = 16;
const MAX_GRID_Y = 65535;

const SCORES_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const SCORES_BWD_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];
const KL_SIG: readonly ParamKind[] = ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'];

const ptr = (b: CudaBackend, v: View | null): number => (v ? b.address(v) : 0);

function sfx(op: string, q: View, k: View): string {
  if ((q.dtype !== 'f32' && q.dtype !== 'bf16') || k.dtype !== q.dtype) throw new DsvError(`${op} on cuda: q and k must both be f32 or both bf16, got ${q.dtype} and ${k.dtype}`);
  return q.dtype;
}

function smemFor(b: CudaBackend, op: string, bytes: number, kern: { setMaxDynamicSmem(n: number, a: number): void }): void {
  if (bytes > b.rt.info.maxSharedPerBlockOptin - 1024) throw new DsvError(`${op} on cuda: ${bytes} bytes of shared memory needed, the device allows ${b.rt.info.maxSharedPerBlockOptin}`);
  if (bytes > 46 * 1024) kern.setMaxDynamicSmem(bytes, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
}

export function indexerScoresCuda(b: CudaBackend, out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const op = 'indexerScores';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const N = out.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_scores_fwd_${sfx(op, q, k)}`, SCORES_SIG);
  if (out.dtype !== 'f32' || w.dtype !== 'f32') throw new DsvError(`${op} on cuda: out and w must be f32`);
  const tiles = Math.ceil(N / TKI);
  if (tiles > MAX_GRID_Y) throw new DsvError(`${op} on cuda: ${N} columns exceed the grid (${MAX_GRID_Y} tiles of ${TKI})`);
  const smem = 4 * (H * D + H + TKI * (D + 1) + (NT / 32) * TKI);
  smemFor(b, op, smem, kern);
  if (Tq * N === 0) return;
  kern.launch(Tq, NT, smem, [Tq, H, D, Tk, N, b.address(out), b.address(q), b.address(k), b.address(w), ptr(b, start), ptr(b, end), ptr(b, indices)], tiles);
}

export function indexerScoresBackwardCuda(b: CudaBackend, dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
  const op = 'indexerScoresBackward';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = k.shape[0]!;
  const N = dout.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_scores_bwd_${sfx(op, q, k)}`, SCORES_BWD_SIG);
  if (dk.dtype !== 'f32' || dw.dtype !== 'f32' || dout.dtype !== 'f32' || w.dtype !== 'f32' || dq.dtype !== q.dtype) {
    throw new DsvError(`${op} on cuda: dk, dw, dout and w must be f32 and dq in q's dtype`);
  }
  if (H > NT) throw new DsvError(`${op} on cuda: at most ${NT} heads, got ${H}`);
  const smem = 4 * (2 * H * D + TKI * (D + 1) + 2 * H * TKI + H + TKI);
  smemFor(b, op, smem, kern);
  b.fill(dk, 0); // accumulated with atomics
  if (Tq === 0) return;
  kern.launch(Tq, NT, smem, [Tq, H, D, Tk, N, b.address(dq), b.address(dk), b.address(dw), b.address(dout), b.address(q), b.address(k), b.address(w),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}

export function indexerKlLossCuda(b: CudaBackend, loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null,
  dv: number, scale: number): void {
  const op = 'indexerKlLoss';
  const [Tq, H, D] = q.shape as [number, number, number];
  const Tk = kv.shape[0]!;
  const N = scores.shape[1]!;
  const kern = b.rt.modules.get('indexer_train', `indexer_kl_loss_${sfx(op, q, kv)}`, KL_SIG);
  if (loss.dtype !== 'f32' || grad.dtype !== 'f32' || scores.dtype !== 'f32' || lse.dtype !== 'f32') throw new DsvError(`${op} on cuda: scores, lse, loss and grad must be f32`);
  const smem = 4 * (HG * D + TKL * D + HG * TKL + HG);
  smemFor(b, op, smem, kern);
  if (Tq === 0) return;
  kern.launch(Tq, NT, smem, [Tq, H, D, dv, Tk, N, scale, b.address(loss), b.address(grad), b.address(scores), b.address(q), b.address(kv), b.address(lse),
    ptr(b, start), ptr(b, end), ptr(b, indices)]);
}
