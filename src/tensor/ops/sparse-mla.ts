// Sparse MLA forward (DeepSeek Sparse Attention's attention core) in the absorbed-MQA form, and the
// paged MLA latent cache it reads when decoding. Optional backend capabilities (Backend.sparseMlaPrefill,
// sparseMlaDecode, mlaCacheWrite); the CPU reference is src/backend/cpu/sparse-mla.ts, the CUDA kernels
// kernels/sparse_mla.cu.
//
// Shapes (671B: H = 128 heads, dv = 512 latent dims, dr = 64 RoPE dims, D = dv + dr = 576):
//   q  [Tq, H, D]: per head q_abs = q_nope·W_UK[h] (dv values) then q_pe (dr values);
//   kv [Tk, D]:    one shared key per token, the latent c_KV (dv) then k_pe (dr); the value is the latent.
//   indices [Tq, k] i32: which kv rows query i attends to. Batches are flattened into the index space
//   (row b·T + t), as FlashMLA does; causality must already be encoded (the op masks nothing else).
//   An entry of −1, or any value outside [0, Tk), is a hole and is skipped.
// Math (q's dtype is the activation dtype; rnd rounds to it):
//   s_t = rnd(rnd(rnd(q[:dv]·kv_t[:dv]) + rnd(q[dv:]·kv_t[dv:])) · scale) over the valid entries t
//   out[i, h] = Σ_t softmax(s)_t · kv_t[:dv]           [Tq, H, dv] in q's dtype
//   lse[i, h] = ln Σ_t exp(s_t)  (NATURAL log of the scaled scores; FlashMLA's reference uses base 2 for
//              its max_logits path but returns natural-log lse)                 [Tq, H] f32
// A row whose entries are all holes has out = 0 and lse = −∞ (the log of an empty sum; FlashMLA returns
// +∞ there, which a backward using exp(s − lse) also turns into zero probabilities).
// The CPU reference follows the model's former host MQA path (the oracle test/oracles/sparse-attention.ts) bit for bit,
// including the per-einsum roundings and p_t = rnd(e_t / z); the CUDA kernel keeps the score roundings
// but runs an online softmax in f32 (no rounding of p), so it agrees to accumulation order in f32 and to
// about one bf16 ulp of the output in bf16.
//
// Decode reads the keys from a paged cache; a slot is block_id·page + offset (page = cache.shape[1], any
// size; the cache [blocks, page, bytes] is contiguous, so slot s is simply token row s). Layouts:
//   'fp8'  u8 [blocks, page, dv + 4·⌈dv/128⌉ + 2·dr] (656 B at 671B dims): dv e4m3 latent values, one f32
//          power-of-two scale per 128 of them, then dr bf16 RoPE values — FlashMLA's "FP8 with scale".
//          The scale is 2^ceil(log2(amax/448)) with amax = max(|x|, 1e-4), computed exactly as actQuant
//          with ue8m0 (src/tensor/ops/quant.ts): the writer reproduces actQuant's bytes, and the decoded
//          latent equals the model's fp8RoundTrip of it.
//   'bf16' bf16 [blocks, page, D] (1152 B/token): latent and rope rounded to bf16, no quantisation.
//   'f32'  f32 [blocks, page, D] (2304 B/token): exact values — the f32 numerics mode, where the reference
//          keeps the RoPE key in f32 (its latent is still the FP8 round trip, done by the model).
import { DsvError } from '../../errors.js';
import { noGrad } from '../autograd.js';
import { type Backend, getBackend } from '../backend.js';
import { ShapeError, Tensor, fmtShape, getDefaultDevice } from '../tensor.js';
import { alloc, sameDevice } from './util.js';
import { cast, contiguous, reshape } from './view.js';

export type MlaCacheFormat = 'fp8' | 'bf16' | 'f32';

export interface SparseMlaOptions {
  /** latent (value) dims; the rest of the last dim of q and kv is RoPE. Default 512. */
  dv?: number;
}

const FLOAT = new Set(['f32', 'bf16']);

/** Bytes per token of a cache format: 656 for FP8, 1152 for bf16 and 2304 for f32 at dv 512, dr 64. */
export function mlaCacheBytesPerToken(format: MlaCacheFormat, dv = 512, dr = 64): number {
  return format === 'fp8' ? dv + 4 * Math.ceil(dv / 128) + 2 * dr : (format === 'bf16' ? 2 : 4) * (dv + dr);
}

/** A zeroed paged cache of `blocks` pages of `page` tokens. */
export function newMlaCache(blocks: number, page: number, opts: { format?: MlaCacheFormat; dv?: number; dr?: number; device?: string } = {}): Tensor {
  const format = opts.format ?? 'fp8';
  const dv = opts.dv ?? 512;
  const dr = opts.dr ?? 64;
  if (!(Number.isInteger(blocks) && blocks >= 0 && Number.isInteger(page) && page > 0)) throw new DsvError(`newMlaCache: blocks ${blocks} and page ${page} must be integers (page > 0)`);
  const width = format === 'fp8' ? mlaCacheBytesPerToken('fp8', dv, dr) : dv + dr;
  const t = new Tensor(getBackendOf(opts.device).alloc(format === 'fp8' ? 'u8' : format, blocks * page * width), [blocks, page, width]);
  if (t.numel) t.backend.fill(t, 0);
  return t;
}

function getBackendOf(device: string | undefined): Backend {
  return getBackend(device ?? getDefaultDevice());
}

/** The format of a cache tensor (u8 → fp8, bf16 → bf16), checked against dv and dr. */
export function mlaCacheFormat(op: string, cache: Tensor, dv: number, dr: number): MlaCacheFormat {
  if (cache.rank !== 3) throw new ShapeError(`${op}: the cache must be [blocks, page, bytes-or-values], got ${fmtShape(cache.shape)}`);
  const w = cache.shape[2]!;
  if (cache.dtype === 'u8') {
    if (w !== mlaCacheBytesPerToken('fp8', dv, dr)) throw new ShapeError(`${op}: an FP8 cache for dv ${dv}, rope ${dr} has ${mlaCacheBytesPerToken('fp8', dv, dr)} bytes per token, got ${fmtShape(cache.shape)}`);
    return 'fp8';
  }
  if (cache.dtype === 'bf16' || cache.dtype === 'f32') {
    if (w !== dv + dr) throw new ShapeError(`${op}: a ${cache.dtype} cache for dv ${dv}, rope ${dr} has ${dv + dr} values per token, got ${fmtShape(cache.shape)}`);
    return cache.dtype;
  }
  throw new DsvError(`${op}: the cache must be u8 (FP8 layout), bf16 or f32, got ${cache.dtype}`);
}

function capability<K extends 'sparseMlaPrefill' | 'sparseMlaDecode' | 'mlaCacheWrite'>(op: K, t: Tensor): NonNullable<Tensor['backend'][K]> {
  const f = t.backend[op];
  if (!f) throw new DsvError(`${op} is not implemented on device '${t.device}'`);
  return f.bind(t.backend) as NonNullable<Tensor['backend'][K]>;
}

function indices32(op: string, idx: Tensor, rows: number[]): Tensor {
  if (idx.dtype !== 'i32' && idx.dtype !== 'i64') throw new DsvError(`${op}: indices must be i32 (or i64), got ${idx.dtype}`);
  if (idx.rank !== rows.length + 1 || rows.some((d, i) => idx.shape[i] !== d)) {
    throw new ShapeError(`${op}: indices ${fmtShape(idx.shape)} must be [${rows.join(', ')}, k]`);
  }
  return contiguous(idx.dtype === 'i32' ? idx : cast(idx, 'i32'));
}

function checkQ(op: string, q: Tensor, rank: number, dv: number): void {
  if (!FLOAT.has(q.dtype)) throw new DsvError(`${op}: q must be f32 or bf16, got ${q.dtype}`);
  if (q.rank !== rank) throw new ShapeError(`${op}: q must have rank ${rank}, got ${fmtShape(q.shape)}`);
  const D = q.shape[rank - 1]!;
  if (!(Number.isInteger(dv) && dv > 0 && dv <= D)) throw new ShapeError(`${op}: dv ${dv} must be in [1, ${D}] (q's last dim)`);
}

/**
 * Sparse MLA prefill: q [Tq, H, D], kv [Tk, D] (same dtype, f32 or bf16), indices [Tq, k] → out [Tq, H, dv]
 * in q's dtype and lse [Tq, H] f32 (natural log). Forward only (no autograd record).
 */
export function sparseMlaPrefill(q: Tensor, kv: Tensor, indices: Tensor, scale: number, opts: SparseMlaOptions = {}): { out: Tensor; lse: Tensor } {
  const op = 'sparseMlaPrefill';
  const dv = opts.dv ?? 512;
  sameDevice(op, q, kv, indices);
  checkQ(op, q, 3, dv);
  const [Tq, H, D] = q.shape as [number, number, number];
  if (kv.rank !== 2 || kv.shape[1] !== D) throw new ShapeError(`${op}: kv ${fmtShape(kv.shape)} must be [Tk, ${D}] for q ${fmtShape(q.shape)}`);
  if (kv.dtype !== q.dtype) throw new DsvError(`${op}: kv (${kv.dtype}) must have q's dtype (${q.dtype})`);
  return noGrad(() => {
    const idx = indices32(op, indices, [Tq]);
    const out = alloc(q.backend, [Tq, H, dv], q.dtype);
    const lse = alloc(q.backend, [Tq, H], 'f32');
    if (Tq * H > 0) capability(op, q)(out, lse, contiguous(q), contiguous(kv), idx, dv, scale);
    return { out, lse };
  });
}

/**
 * Sparse MLA decode: q [B, s_q, H, D] (f32 or bf16), a paged cache (see the header), indices [B, s_q, k]
 * of slots → out [B, s_q, H, dv] in q's dtype and lse [B, s_q, H] f32.
 */
export function sparseMlaDecode(q: Tensor, cache: Tensor, indices: Tensor, scale: number, opts: SparseMlaOptions = {}): { out: Tensor; lse: Tensor } {
  const op = 'sparseMlaDecode';
  const dv = opts.dv ?? 512;
  sameDevice(op, q, cache, indices);
  checkQ(op, q, 4, dv);
  const [B, S, H, D] = q.shape as [number, number, number, number];
  mlaCacheFormat(op, cache, dv, D - dv);
  return noGrad(() => {
    const idx = indices32(op, indices, [B, S]);
    const out = alloc(q.backend, [B, S, H, dv], q.dtype);
    const lse = alloc(q.backend, [B, S, H], 'f32');
    if (B * S * H > 0) {
      capability(op, q)(reshape(out, [B * S, H, dv]), reshape(lse, [B * S, H]), reshape(contiguous(q), [B * S, H, D]), contiguous(cache),
        reshape(idx, [B * S, idx.shape[2]!]), dv, scale);
    }
    return { out, lse };
  });
}

/**
 * Store the latent [N, dv] and RoPE key [N, dr] (f32 or bf16) of N tokens at cache slots [N] (i32/i64;
 * −1 skips a token), in place. The cache must be contiguous. Slots must be distinct (a repeated slot is
 * written twice in an unspecified order on the GPU); a slot outside the cache throws.
 */
export function mlaCacheWrite(cache: Tensor, latent: Tensor, rope: Tensor, slots: Tensor): void {
  const op = 'mlaCacheWrite';
  sameDevice(op, cache, latent, rope, slots);
  if (latent.rank !== 2 || rope.rank !== 2 || latent.shape[0] !== rope.shape[0]) {
    throw new ShapeError(`${op}: latent ${fmtShape(latent.shape)} and rope ${fmtShape(rope.shape)} must be [N, dv] and [N, dr]`);
  }
  if (!FLOAT.has(latent.dtype) || !FLOAT.has(rope.dtype)) throw new DsvError(`${op}: latent and rope must be f32 or bf16, got ${latent.dtype} and ${rope.dtype}`);
  const N = latent.shape[0]!;
  mlaCacheFormat(op, cache, latent.shape[1]!, rope.shape[1]!);
  if (!cache.isContiguous()) throw new DsvError(`${op}: the cache must be contiguous (it is written in place)`);
  noGrad(() => {
    const sl = indices32(op, slots, []);
    if (sl.shape[0] !== N) throw new ShapeError(`${op}: slots ${fmtShape(slots.shape)} must be [${N}]`);
    if (N > 0) capability(op, cache)(cache, contiguous(latent), contiguous(rope), sl);
  });
}
