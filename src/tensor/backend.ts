// The Backend interface: everything a device must provide so model code runs unchanged on it.
//
// Contract shared by all kernels:
//  - `out` views are freshly allocated and contiguous unless a kernel says otherwise (copy/fill accept
//    any strided destination).
//  - Inputs marked "strided" may be arbitrary views (including stride-0 broadcast dims); inputs marked
//    "contiguous" have been made contiguous by the op layer (src/tensor/ops) before the call.
//  - Floating math accumulates in f32 (f64 for f64 tensors); results are rounded to the out dtype.
import type { DType, HostArray } from './dtype.js';

export interface Storage {
  readonly backend: Backend;
  readonly dtype: DType;
  /** capacity in elements */
  readonly numel: number;
}

/** Backend.softmax's options: z = scale · x, −∞ where masked; lse[row] = log Σ exp(z) when given. */
export interface SoftmaxOptions {
  /** multiply x by this before the softmax (attention's softmax scale) */
  scale?: number;
  /** bool [R, D] with R dividing the row count: row r uses mask row r mod R; false = masked out (−∞) */
  mask?: View;
  /** contiguous [rows], the compute type (f32; f64 for f64): each row's log-sum-exp of the scaled, masked z */
  lse?: View;
}

/** A strided window onto a Storage; Tensor implements it. */
export interface View {
  readonly storage: Storage;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'sigmoid' | 'silu' | 'relu' | 'tanh' | 'sign'
  | 'square' | 'recip' | 'floor' | 'ceil' | 'not'
  // parameterised by `alpha`:
  | 'adds' | 'muls' | 'pows' | 'rpows' | 'clampmin' | 'clampmax';

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum'
  | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'and' | 'or';

export type ReduceOp = 'sum' | 'max' | 'min';

export interface Backend {
  readonly name: string;
  /**
   * Inference weights stored as bf16 stay bf16 on this device (its GEMMs read bf16 operands at full
   * speed, in half the bytes). Absent: they are widened to f32 when loaded (the CPU computes in f32, and
   * widening per call would double a decode step's weight reads).
   */
  readonly keepsBf16Weights?: boolean;
  /**
   * The backend has no e4m3 arithmetic: its FP8 products (fp8BlockLinear, groupedMatmulFp8) decode the
   * weight's codes to f32 on every call. Callers holding a frozen weight across many calls may pass its
   * decoded values instead (an f32 tensor whose every value is an e4m3 value: cast(w8, 'f32')), the same
   * products without the per-call decode, at 4× the codes' bytes (src/model/fp8-linear.ts fp8Codes).
   */
  readonly widensFp8Weights?: boolean;
  alloc(dtype: DType, numel: number): Storage;
  /**
   * Device memory held by tensors now and at most since the last resetPeakMemory (bytes); devices only.
   * driverAllocs / cacheHits: allocations since creation that went to the driver / came from the cache.
   */
  memoryStats?(): { allocated: number; peak: number; total?: number; driverAllocs?: number; cacheHits?: number };
  /** Return now the memory of every tensor the JS heap no longer reaches (devices only); the bytes. */
  reclaimDead?(): number;
  resetPeakMemory?(): void;
  /** Copy a host array (its whole length) into a new storage. */
  fromHost(data: HostArray, dtype: DType): Storage;
  /** The view's elements, row-major, in a new host array of the view's dtype. */
  toHost(v: View): HostArray;
  /** dst[i] = cast(src[i]); both strided, same shape. */
  copy(dst: View, src: View): void;
  /** dst[i] = value (rounded to dst's dtype); dst strided. */
  fill(dst: View, value: number): void;
  /** out = op(x); x strided, out contiguous with x's shape. */
  unary(op: UnaryOp, out: View, x: View, alpha?: number): void;
  /** out = a op b; a and b strided and already broadcast to out's shape; comparisons write bool. */
  binary(op: BinaryOp, out: View, a: View, b: View): void;
  /** out = cond ? a : b; all strided, broadcast to out's shape. */
  where(out: View, cond: View, a: View, b: View): void;
  /** Reduce x (strided) over `axes` (sorted, unique); out holds the kept dims in order. */
  reduce(op: ReduceOp, out: View, x: View, axes: readonly number[]): void;
  /**
   * out[..., m, n] = Σ_k a[..., m, k] · b[..., k, n]. a, b strided: batch dims broadcast to out's;
   * each matrix's last two dims may be row- or column-major (transposed views stay zero-copy).
   */
  matmul(out: View, a: View, b: View): void;
  /** Softmax (or log-softmax) over the last dim; x contiguous; opts: pre-scale, mask, per-row log-sum-exp. */
  softmax(out: View, x: View, log: boolean, opts?: SoftmaxOptions): void;
  /**
   * Optional: softmax's backward over the last dim from its output y and the gradient g (contiguous, dx's
   * shape and dtype): dx = y ⊙ (g − Δ) · scale with Δ = Σ_row g⊙y, in the compute type (f32 for narrow
   * floats, f64 for f64), rounded to dx's dtype. Without it the op composes it from mul, sum and sub.
   */
  softmaxBackward?(dx: View, y: View, g: View, scale: number): void;
  /**
   * out = x / sqrt(mean(x², last) + eps) · w in the reference's order (a halving tree for the sum, 1/sqrt,
   * w·(x·inv), each rounded in f32; f64 rows in f64); x contiguous [..., D], w [D]; out x's dtype or f32 ↔ bf16.
   */
  rmsNorm(out: View, x: View, w: View, eps: number): void;
  /**
   * The pre-norm residual step: h = x + r in the compute type, hOut = h rounded to out's dtype (the new
   * residual stream), out = rmsNorm(h) · w with the norm of the unrounded sum; x, r one dtype, contiguous.
   */
  rmsNormResidual(out: View, hOut: View, x: View, r: View, w: View, eps: number): void;
  /**
   * SwiGLU's middle: out = silu(g)·u, silu rounded to the compute type (f32, f64 for f64) and the product
   * rounded once to out's dtype (g's); g, u strided with out's shape.
   */
  swiglu(out: View, g: View, u: View): void;
  /** out = (x − mean) / sqrt(var + eps) · w + b over the last dim (biased variance). */
  layerNorm(out: View, x: View, w: View, b: View, eps: number): void;
  /**
   * Rotary embedding. x contiguous [N, S, H, D]; cos, sin contiguous [S, D/2] (f32).
   * interleaved: pairs (x[2i], x[2i+1]); otherwise half-split (x[i], x[i + D/2]) ("NeoX").
   * inverse rotates by −θ (the backward of the forward rotation).
   */
  rope(out: View, x: View, cos: View, sin: View, interleaved: boolean, inverse: boolean): void;
  /** Unnormalised Sylvester-order Walsh–Hadamard transform over the last dim (a power of 2), times scale. */
  hadamard(out: View, x: View, scale: number): void;
  /**
   * Top-k over the last dim of contiguous x: values descending (largest=true) or ascending; ties broken
   * by the lowest index; NaN counts as larger than everything. indices are i64.
   */
  topk(values: View, indices: View, x: View, k: number, largest: boolean): void;
  /**
   * Optional: DSA lightning-indexer logits (contract and math: src/tensor/ops/dsa-indexer.ts). q f8e4m3
   * [Tq, H, D], k f8e4m3 [Tk, D], kScale f32 [Tk], w f32 [Tq, H], start/end i32 [Tq], all contiguous;
   * out f32 [Tq, Tk] = Σ_h w·relu(q·k)·scale on [start, end), −inf elsewhere.
   */
  indexerLogits?(out: View, q: View, k: View, kScale: View, w: View, start: View, end: View): void;
  /**
   * Optional: the same logits with keys read from the paged indexer cache u8 [blocks, 64·(D+4)] through
   * blockTable i32 [B, maxBlocks]; q [B, N, H, D], w f32 [B, N, H], contextLens i32 [B]; out f32 [B·N, maxCtx].
   */
  indexerLogitsPaged?(out: View, q: View, cache: View, w: View, blockTable: View, contextLens: View): void;
  /** Optional: store keys k f8e4m3 [T, D] and scales f32 [T] at i32 slots [T] (−1 skips) of the paged indexer cache, in place. */
  indexerCacheWrite?(cache: View, k: View, kScale: View, slots: View): void;
  /**
   * Optional: DSA top-k selection. x f32 [R, N] contiguous; out i32 [R, k]: per row the k largest of
   * columns [start, end) with selectTopkRow's rule (src/backend/cpu/topk-select.ts), ascending, −1 padded;
   * column indices, or paged slots through blockTable i32 [S, maxBlocks] (row r in sequence ⌊r/rowsPerSeq⌋).
   */
  topkSelect?(out: View, x: View, k: number, start: View | null, end: View | null, blockTable: View | null, rowsPerSeq: number): void;
  /**
   * Optional: dense attention's selection. out i32 [R, k] contiguous: row r holds 0 .. min(end[r], k) − 1,
   * then −1 (end i32 [R]); or those positions' slots through blockTable, as topkSelect emits them.
   */
  causalSelect?(out: View, end: View, blockTable: View | null, rowsPerSeq: number): void;
  /**
   * Optional: tokens picked from logits (src/tensor/ops/pick.ts). x f32 [R, V] contiguous, temperature and u
   * f64 [R]; filters null (none on any row) or topK i32 [R] (0: off, else < V), topP and minP f64 [R];
   * token i32 [R] (−1 where a logit is NaN or all are −∞), logprob f64 [R]; mask null or i32 [R, ⌈V/32⌉],
   * every word written: bit v mod 32 of word ⌊v/32⌋ set iff v is kept; logZ null or f64 [R], the row's
   * log-partition at τ (NaN where there is no token).
   */
  pickTokens?(token: View, logprob: View, x: View, temperature: View, u: View, filters: { topK: View; topP: View; minP: View } | null, mask: View | null, logZ: View | null): void;
  /**
   * out[..i.., j, ..] = x[..i.., idx[..i.., j, ..], ..] along `axis` (torch.gather); x, idx contiguous.
   * The op layer (ops/indexing.ts) guarantees x.shape equals idx.shape in every dim but `axis`.
   */
  gather(out: View, x: View, axis: number, idx: View): void;
  /**
   * out[.., idx[.., j, ..], ..] += src[.., j, ..] along `axis` (torch.scatter_add_); out contiguous, modified in place.
   * The op layer guarantees src.shape equals idx.shape, and out.shape equals it in every dim but `axis`.
   */
  scatterAdd(out: View, axis: number, idx: View, src: View): void;
  /** out = x.index_select(axis, idx) with idx 1-D; x contiguous. */
  indexSelect(out: View, x: View, axis: number, idx: View): void;
  /** out.index_add_(axis, idx, src) in place; out contiguous. */
  indexAdd(out: View, axis: number, idx: View, src: View): void;
  /**
   * Block FP8 quantisation over the last dim in blocks of `block` (a trailing partial block is its own
   * block): amax = max(|x|, 1e-4); s = amax/448, or 2^ceil(log2(amax/448)) when ue8m0;
   * q = e4m3(clamp(x/s, ±448)). x contiguous [..., N]; q f8e4m3 [..., N]; s f32 [..., ceil(N/block)].
   */
  actQuant(q: View, s: View, x: View, block: number, ue8m0: boolean): void;
  /**
   * Optional: sparse MLA forward, absorbed-MQA form (contract and math: src/tensor/ops/sparse-mla.ts).
   * q [Tq, H, D] and kv [Tk, D] contiguous, same dtype (f32/bf16), D = dv + rope dims; indices i32 [Tq, k]
   * contiguous (−1 or out of [0, Tk) = hole); out [Tq, H, dv] in q's dtype; lse f32 [Tq, H], natural log.
   */
  sparseMlaPrefill?(out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void;
  /**
   * Optional: sparse MLA over a paged latent cache. q [N, H, D] contiguous (N = B·s_q); cache contiguous
   * u8 [blocks, page, dv + 4·⌈dv/128⌉ + 2·dr] (FP8 layout) or bf16 [blocks, page, D]; indices i32 [N, k]
   * slots (block·page + offset); out [N, H, dv], lse f32 [N, H].
   */
  sparseMlaDecode?(out: View, lse: View, q: View, cache: View, indices: View, dv: number, scale: number): void;
  /**
   * Optional: sparse attention in the MHA form (contract: src/tensor/ops/sparse-mha.ts). q [Tq, H, dq],
   * k [Tk, H, dq], v [Tk, H, dv] contiguous, one dtype (f32/bf16); indices i32 [Tq, kk]; out [Tq, H, dv], lse f32 [Tq, H].
   */
  sparseMhaPrefill?(out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void;
  /** Optional: store latent [N, dv] and rope [N, dr] (contiguous f32/bf16) at i32 slots [N] (−1 skips) of a cache, in place. */
  mlaCacheWrite?(cache: View, latent: View, rope: View, slots: View): void;
  /**
   * Optional: sparse MLA backward (src/tensor/ops/sparse-mla-train.ts). dout/out [Tq, H, dv], q [Tq, H, D],
   * kv [Tk, D], lse [Tq, H] (saved by the forward), indices i32 [Tq, k], all contiguous; writes dq [Tq, H, D]
   * (q's dtype) and dkv [Tk, D] (f32; f64 for f64 inputs), both overwritten.
   */
  sparseMlaBackward?(dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void;
  /**
   * Optional: float (unquantised, training) indexer scores (src/tensor/ops/indexer-train.ts). q [Tq, H, D],
   * k [Tk, D] (f32/bf16), w [Tq, H] f32, contiguous; dense (start/end i32 [Tq], indices null) → out f32
   * [Tq, Tk], or sparse (indices i32 [Tq, kSel], start/end null) → out f32 [Tq, kSel]; −inf outside/at holes.
   */
  indexerScores?(out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void;
  /** Optional: the backward of indexerScores: dout like out → dq (q's dtype), dk f32 [Tk, D], dw f32 [Tq, H], overwritten. */
  indexerScoresBackward?(dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void;
  /**
   * Optional: the indexer's KL loss (src/tensor/ops/indexer-train.ts): scores f32 [Tq, N], the attention's
   * q [Tq, H, D], kv [Tk, D], lse f32 [Tq, H], dense start/end or sparse indices [Tq, N] → loss [Tq] per row
   * and grad [Tq, N] = ∂loss/∂scores, in the scores' dtype.
   */
  indexerKlLoss?(loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null, dv: number, scale: number): void;
  /**
   * Optional: FP8 block-scaled linear from quantised activations (contract and math: src/tensor/ops/fp8-linear.ts).
   * q f8e4m3 [M, K] and sq f32 [M, ⌈K/128⌉] (actQuant's output), w8 f8e4m3 [N, K], sw f32 [⌈N/128⌉, ⌈K/128⌉]
   * (the checkpoint's weight_scale_inv), all contiguous; out f32/bf16 [M, N] =
   * Σ_kb (q[:, kb]·w8[:, kb]ᵀ) · sq[m, kb] · sw[⌊n/128⌋, kb], promoted block by block into an f32 accumulator.
   */
  fp8BlockLinear?(out: View, q: View, sq: View, w8: View, sw: View): void;
  /**
   * Optional: MoE routing (contract and math: src/tensor/ops/moe.ts). scores f32 [T, E], bias f32 [E] or
   * null, forced i32 [T, k] or null (replayed routes, validated here), all contiguous; out i32 [T, k]: the
   * group-limited top-k of gate.ts's selectExperts (or the sorted forced row), ascending per token.
   */
  moeRoute?(out: View, scores: View, bias: View | null, forced: View | null, groups: number, topkGroups: number): void;
  /**
   * Optional: MoE dispatch, a stable counting sort of the (token, slot) pairs of experts i32 [T, k] by expert
   * (E = offsets.shape[0] − 1); pairs, rows (the inverse), tokens i32 [T·k]; offsets i32 [E + 1].
   */
  moeDispatch?(pairs: View, rows: View, tokens: View, offsets: View, experts: View): void;
  /** Optional: grouped GEMM out [M, N] (x's dtype) = x [M, K] · w[e]ᵀ (w [E, N, K]) on rows [offsets[e], offsets[e+1]); contiguous. */
  groupedMatmul?(out: View, x: View, w: View, offsets: View): void;
  /** Optional: its backward per segment: dx [M, K] = g·w[e] (x's dtype), dw [E, N, K] = g_segᵀ·x_seg (w's dtype); either may be null. */
  groupedMatmulBackward?(dx: View | null, dw: View | null, g: View, x: View, w: View, offsets: View): void;
  /**
   * Optional: FP8 grouped GEMM: q f8e4m3 [M, K] and sq f32 [M, ⌈K/128⌉] (actQuant's output), w8 f8e4m3 [E, N, K],
   * sw f32 [E, ⌈N/128⌉, ⌈K/128⌉], offsets i32 [E + 1]; out f32/bf16 [M, N] = fp8BlockLinear per segment.
   */
  groupedMatmulFp8?(out: View, q: View, sq: View, w8: View, sw: View, offsets: View): void;
  /** Optional: MoE combine out [T, D] = Σ_j w[t, j]·ySlots[rows[t·k + j]] (+ shared [T, D]) in f32, slot order; contiguous. */
  moeCombine?(out: View, ySlots: View, weights: View, rows: View, shared: View | null): void;
  /**
   * One AdamW update of an f32 parameter in place, with its f32 gradient and moments (all contiguous,
   * same length): the same f32 operations, rounded at the same points, as the op-by-op update in
   * src/train/optim.ts, in one pass instead of ~10 tensors per parameter. Optional: without it the
   * optimizer runs the ops.
   */
  adamwStep?(p: View, g: View, m: View, v: View, h: AdamWScalars): void;
  /** Wait for queued work (no-op on synchronous backends). */
  synchronize(): void;
}

/** AdamW's per-step scalars, each already an f32 value (Math.fround) as the op-by-op update uses them. */
export interface AdamWScalars {
  /** 1 − lr·weight_decay (1: no decay) */
  decay: number;
  /** m' = m + (g − m)·w when lerp, else g − (g − m)·(1 − w)  (torch's lerp, by |w| < 0.5) */
  lerp: boolean;
  w: number;
  oneMinusW: number;
  b2: number;
  oneMinusB2: number;
  /** √(1 − β₂ᵗ) */
  bc2Sqrt: number;
  eps: number;
  /** −lr / (1 − β₁ᵗ) */
  negStepSize: number;
}

const registry = new Map<string, Backend>();
const factories = new Map<string, () => Backend>();

export function registerBackend(name: string, make: () => Backend): void {
  factories.set(name, make);
}

/** The backend named `name`, created on first use. Throws a clear error when it is unavailable. */
export function getBackend(name: string): Backend {
  let b = registry.get(name);
  if (!b) {
    const make = factories.get(name);
    if (!make) throw new Error(`unknown device '${name}' (known: ${[...factories.keys()].join(', ')})`);
    b = make();
    registry.set(name, b);
  }
  return b;
}

export function registeredBackends(): string[] {
  return [...factories.keys()];
}
