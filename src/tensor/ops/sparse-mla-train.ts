// Sparse MLA for training: the forward of src/tensor/ops/sparse-mla.ts (sparseMlaPrefill, same contract)
// recorded on the autograd tape, with its backward as an optional backend capability
// (Backend.sparseMlaBackward). CPU reference: src/backend/cpu/sparse-mla-backward.ts; CUDA: the
// CUDA-core kernel (kernels/sparse_mla_bwd.cu), or for bf16 with sparseMlaBackwardTune.gemm on a gather +
// cuBLASLt path (kernels/sparse_mla_bwd_gemm.cu); src/backend/cuda/sparse-mla-backward.ts picks.
//
//   sparseMlaPrefillTrain(q [Tq, H, D], kv [Tk, D], indices [Tq, k], scale, {dv}) → { out [Tq, H, dv], lse [Tq, H] }
//
// out is differentiable w.r.t. q and kv; lse is returned detached (nothing in DSA training differentiates
// it: the indexer's KL target is detached). sparseMlaPrefill itself stays tape-free (inference); the
// training forward is the same backend call, so the two agree bit for bit.
//
// Backward (standard flash-attention backward with the saved lse; s = scale·(q·kv_t) over the valid
// entries t, p = softmax(s) = exp(s − lse), out = Σ_t p_t·kv_t[:dv]):
//   Δ      = Σ_c dout[c]·out[c]                      = Σ_t p_t·dp_t
//   dp_t   = dout·kv_t[:dv]
//   ds_t   = p_t·(dp_t − Δ)·scale
//   dq     = Σ_t ds_t·kv_t                            (all D dims)
//   dkv_t += ds_t·q  (key role, all D dims)  +  p_t·dout  (value role, first dv dims),
// scatter-added over every (query, head, entry) that selected row t. Holes contribute nothing; a row of
// only holes has zero gradients.
// Dtypes: q and kv f32 or bf16 (any backend), or f64 on the CPU only (the gradcheck dtype: the forward then
// runs unrounded in double, src/backend/cpu/sparse-mla-backward.ts sparseMlaPrefillF64Cpu, with an f64
// lse). dq comes back in q's dtype; dkv is accumulated in f32 (f64 for f64) and cast to kv's dtype.
import { DsvError } from '../../errors.js';
import { noGrad, record } from '../autograd.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { sparseMlaPrefillF64Cpu } from '../../backend/cpu/sparse-mla-backward.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous, narrow, reshape, transpose } from './view.js';
import { matmul } from './matmul.js';
import { maskedSoftmax } from './softmax.js';
import { freeNow } from '../memory.js';
import { fromArray } from '../tensor.js';
import type { SparseMlaOptions } from './sparse-mla.js';

const FLOAT = new Set(['f32', 'bf16', 'f64']);

function need<K extends 'sparseMlaPrefill' | 'sparseMlaBackward'>(op: K, t: Tensor): NonNullable<Tensor['backend'][K]> {
  const f = t.backend[op];
  if (!f) throw new DsvError(`${op} is not implemented on device '${t.device}'`);
  return f.bind(t.backend) as NonNullable<Tensor['backend'][K]>;
}

/**
 * Sparse MLA prefill on the autograd tape: out [Tq, H, dv] (q's dtype) differentiable w.r.t. q and kv,
 * lse [Tq, H] (f32; f64 for f64 inputs) detached. Contract of the forward: sparseMlaPrefill.
 */
export function sparseMlaPrefillTrain(q: Tensor, kv: Tensor, indices: Tensor, scale: number, opts: SparseMlaOptions = {}): { out: Tensor; lse: Tensor } {
  const op = 'sparseMlaPrefillTrain';
  const dv = opts.dv ?? 512;
  sameDevice(op, q, kv, indices);
  if (!FLOAT.has(q.dtype)) throw new DsvError(`${op}: q must be f32, bf16 or f64, got ${q.dtype}`);
  if (q.dtype === 'f64' && q.device !== 'cpu') throw new DsvError(`${op}: f64 (the gradcheck dtype) runs on the CPU only, got device '${q.device}'`);
  if (q.rank !== 3) throw new ShapeError(`${op}: q must be [Tq, H, D], got ${fmtShape(q.shape)}`);
  const [Tq, H, D] = q.shape as [number, number, number];
  if (!(Number.isInteger(dv) && dv > 0 && dv <= D)) throw new ShapeError(`${op}: dv ${dv} must be in [1, ${D}] (q's last dim)`);
  if (kv.rank !== 2 || kv.shape[1] !== D) throw new ShapeError(`${op}: kv ${fmtShape(kv.shape)} must be [Tk, ${D}] for q ${fmtShape(q.shape)}`);
  if (kv.dtype !== q.dtype) throw new DsvError(`${op}: kv (${kv.dtype}) must have q's dtype (${q.dtype})`);
  if (indices.dtype !== 'i32' && indices.dtype !== 'i64') throw new DsvError(`${op}: indices must be i32 (or i64), got ${indices.dtype}`);
  if (indices.rank !== 2 || indices.shape[0] !== Tq) throw new ShapeError(`${op}: indices ${fmtShape(indices.shape)} must be [${Tq}, k]`);
  // contiguous() outside noGrad: a strided input's gradient flows back through the copy
  const qc = contiguous(q);
  const kvc = contiguous(kv);
  const idx = noGrad(() => contiguous(indices.dtype === 'i32' ? indices : cast(indices, 'i32')));
  const f64 = q.dtype === 'f64';
  const { out, lse } = noGrad(() => {
    const o = alloc(q.backend, [Tq, H, dv], q.dtype);
    const l = alloc(q.backend, [Tq, H], f64 ? 'f64' : 'f32');
    if (Tq * H > 0) {
      if (f64) sparseMlaPrefillF64Cpu(o, l, qc, kvc, idx, dv, scale);
      else need('sparseMlaPrefill', q)(o, l, qc, kvc, idx, dv, scale);
    }
    return { out: o, lse: l };
  });
  record(out, op, [qc, kvc], (g) => {
    const dq = alloc(q.backend, [Tq, H, D], q.dtype);
    const dkv = alloc(q.backend, [kv.shape[0]!, D], f64 ? 'f64' : 'f32');
    if (Tq * H > 0 && dkv.numel > 0) need('sparseMlaBackward', q)(dq, dkv, contiguous(cast(g, q.dtype)), qc, kvc, out, lse, idx, dv, scale);
    else {
      q.backend.fill(dq, 0);
      if (dkv.numel) q.backend.fill(dkv, 0);
    }
    return [dq, dkv.dtype === kv.dtype ? dkv : cast(dkv, kv.dtype)];
  });
  return { out, lse };
}

let maskMemo: { key: string; mask: Tensor } | null = null;
/** bool [S·H, S]: true where key t ≤ s = row / H (causally visible); one per shape and device. */
function causalMask(S: number, H: number, device: string): Tensor {
  const key = `${S}/${H}/${device}`;
  if (maskMemo?.key === key) return maskMemo.mask;
  const v = new Uint8Array(S * H * S);
  for (let r = 0; r < S * H; r++) v.fill(1, r * S, r * S + Math.floor(r / H) + 1);
  maskMemo = { key, mask: fromArray(v, [S * H, S], { dtype: 'bool', device }) };
  return maskMemo.mask;
}

/**
 * Dense causal MLA on the autograd tape: sparseMlaPrefillTrain's math for the selection where query s
 * of each of B sequences of S rows takes every key 0..s (dense attention: pretraining, the indexer's
 * dense warm-up), with the same contract: q [B·S, H, D], kv [B·S, D] → out [B·S, H, dv] (q's dtype),
 * lse [B·S, H] detached. As GEMMs over each sequence's S·H query rows (row s·H + h):
 *   scores[b] = scale · q[b] [S·H, D] · kv[b]ᵀ [D, S], −∞ for keys after s   (f32; f64 for f64)
 *   p[b]      = softmax(scores[b]),   out[b] = p[b] · kv[b][:, :dv],   lse = log Σ exp(scores) per row
 * the scale, mask, softmax and lse in one pass over the product (maskedSoftmax), and the backward the ops'
 * own (matmul, the softmax's one-pass backward). bf16 q and kv stay bf16 in the GEMMs: the scores
 * are the bf16 GEMM's f32 product (the products of bf16 values are exact in f32, so these are the f32
 * GEMM's scores up to the order of the sums) and p is rounded to bf16 for p·kv, as the sparse op and the
 * reference round their probabilities; the backward's GEMMs run in bf16 (torch autocast's rule). The f32
 * GEMMs of the widened operands were 168 ms of the mid config's 1.2 s dense training step (every op
 * synchronised, H100, 2026-12-07: docs/runs/2026-12-07-train-profile-h100). Why a second way to the same numbers: with every
 * key selected the sparse kernel gathers S keys per query on CUDA cores, and on an H100 the dense
 * forward + backward through it took 37% of a dsv32-mini training step (docs/gpu.md); these are
 * cuBLASLt GEMMs. The cost is memory, O(B·S²·H): ~1 GB a layer at B 32 × S 512 × H 8 (f32), so this is
 * for training shapes; inference prefill stays on the paged sparse ops. Same values as the sparse op up to
 * rounding (test/tensor/sparse-mla-backward.test.ts).
 */
export function causalMlaPrefillTrain(q: Tensor, kv: Tensor, B: number, S: number, scale: number, opts: SparseMlaOptions = {}): { out: Tensor; lse: Tensor } {
  const op = 'causalMlaPrefillTrain';
  const dv = opts.dv ?? 512;
  sameDevice(op, q, kv);
  if (!FLOAT.has(q.dtype)) throw new DsvError(`${op}: q must be f32, bf16 or f64, got ${q.dtype}`);
  if (q.rank !== 3 || q.shape[0] !== B * S) throw new ShapeError(`${op}: q must be [B·S = ${B * S}, H, D], got ${fmtShape(q.shape)}`);
  const [, H, D] = q.shape as [number, number, number];
  if (!(Number.isInteger(dv) && dv > 0 && dv <= D)) throw new ShapeError(`${op}: dv ${dv} must be in [1, ${D}] (q's last dim)`);
  if (kv.rank !== 2 || kv.shape[0] !== B * S || kv.shape[1] !== D) throw new ShapeError(`${op}: kv ${fmtShape(kv.shape)} must be [${B * S}, ${D}] for q ${fmtShape(q.shape)}`);
  if (kv.dtype !== q.dtype) throw new DsvError(`${op}: kv (${kv.dtype}) must have q's dtype (${q.dtype})`);
  const wide = q.dtype === 'f64' ? 'f64' : 'f32';
  // bf16 operands stay bf16 (f32 products, see above); f32 and f64 as they are
  const gd = q.dtype === 'bf16' ? 'bf16' : wide;
  const qw = reshape(contiguous(cast(q, gd)), [B, S * H, D]);
  const kw = reshape(contiguous(cast(kv, gd)), [B, S, D]);
  // scale, causal mask, softmax and lse in one pass (maskedSoftmax); the f32 product is freed at once
  // (freeNow): the backward needs only p (the softmax's saved output) and p's cast (the second GEMM's operand)
  const prod = matmul(qw, transpose(kw, 1, 2), { out: wide }); // [B, S·H, S]
  const { p, lse } = maskedSoftmax(prod, scale, causalMask(S, H, q.device));
  freeNow(prod);
  const o = matmul(cast(p, gd), narrow(kw, 2, 0, dv)); // [B, S·H, dv]
  return { out: cast(reshape(o, [B * S, H, dv]), q.dtype), lse: reshape(lse, [B * S, H]) };
}
