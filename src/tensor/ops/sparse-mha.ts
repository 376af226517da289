// Sparse attention in the MHA form: the reference's prefill path of MLA, where every head has its own
// key k_h = [k_nope(h) | k_pe] and value v_h from wkv_b(latent). Optional backend capability
// (Backend.sparseMhaPrefill); CPU reference src/backend/cpu/sparse-attention.ts, CUDA kernels/sparse_mha.cu.
//   q [Tq, H, dq], k [Tk, H, dq], v [Tk, H, dv] (f32 or bf16, one dtype), indices [Tq, kk] (i32; −1 or
//   outside [0, Tk) is a hole; causality must already be encoded, as the indexer's selections are)
//   s_t = rnd(rnd(q·k_t)·scale); out = rnd(Σ_t rnd(softmax(s)_t)·v_t) [Tq, H, dv] in q's dtype,
//   lse [Tq, H] f32 (natural log). A row with no valid entry gives 0 and lse −∞.
// Forward only: training runs the absorbed (MQA) form, whose backward exists (sparse-mla-train.ts).
import { DsvError } from '../../errors.js';
import { noGrad } from '../autograd.js';
import { ShapeError, Tensor, fmtShape } from '../tensor.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous } from './view.js';

export function sparseMhaPrefill(q: Tensor, k: Tensor, v: Tensor, indices: Tensor, scale: number): { out: Tensor; lse: Tensor } {
  const op = 'sparseMhaPrefill';
  sameDevice(op, q, k, v, indices);
  if (q.dtype !== 'f32' && q.dtype !== 'bf16') throw new DsvError(`${op}: q must be f32 or bf16, got ${q.dtype}`);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) throw new DsvError(`${op}: k (${k.dtype}) and v (${v.dtype}) must have q's dtype (${q.dtype})`);
  if (q.rank !== 3) throw new ShapeError(`${op}: q must be [Tq, H, dq], got ${fmtShape(q.shape)}`);
  const [Tq, H, dq] = q.shape as [number, number, number];
  if (k.rank !== 3 || k.shape[1] !== H || k.shape[2] !== dq) throw new ShapeError(`${op}: k ${fmtShape(k.shape)} must be [Tk, ${H}, ${dq}]`);
  const Tk = k.shape[0]!;
  if (v.rank !== 3 || v.shape[0] !== Tk || v.shape[1] !== H) throw new ShapeError(`${op}: v ${fmtShape(v.shape)} must be [${Tk}, ${H}, dv]`);
  if (indices.rank !== 2 || indices.shape[0] !== Tq) throw new ShapeError(`${op}: indices ${fmtShape(indices.shape)} must be [${Tq}, k]`);
  if (indices.dtype !== 'i32' && indices.dtype !== 'i64') throw new DsvError(`${op}: indices must be i32 (or i64), got ${indices.dtype}`);
  const f = q.backend.sparseMhaPrefill;
  if (!f) throw new DsvError(`${op} is not implemented on device '${q.device}'`);
  return noGrad(() => {
    const out = alloc(q.backend, [Tq, H, v.shape[2]!], q.dtype);
    const lse = alloc(q.backend, [Tq, H], 'f32');
    if (Tq * H > 0) f.call(q.backend, out, lse, contiguous(q), contiguous(k), contiguous(v), contiguous(indices.dtype === 'i32' ? indices : cast(indices, 'i32')), scale);
    return { out, lse };
  });
}
