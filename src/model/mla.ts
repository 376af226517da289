// Multi-head Latent Attention with DeepSeek Sparse Attention (model.md §3, the reference's MLA):
//   qr = q_norm(wq_a(x));  q = wq_b(qr) → [.., H, nope | rope], q_pe ← interleaved RoPE
//   [kv | k_pe] = wkv_a(x); kv = kv_norm(kv); k_pe ← interleaved RoPE (one shared head)
//   kv ← dequant(act_quant(kv)) (FP8 round trip before caching; k_pe is not quantised)
//   selection = indexer(x, qr)
//   MHA mode (prefill): k_nope, v = wkv_b(kv) per head; sparse softmax(q·k·scale)·v
//   MQA mode (decode):  q_abs = q_nope·W_UK[h]; sparse attention in the latent space over (kv, k_pe);
//                       o = o_lat·W_UV[h]ᵀ
//   out = wo(o)
// The reference picks MQA exactly when a forward has one token (no mask); `mode` can force either
// (they agree: the invariant test).
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { matmul } from '../tensor/ops/matmul.js';
import { rope } from '../tensor/ops/rope.js';
import { cast, contiguous, expand, narrow, permute, reshape, transpose, unsqueeze } from '../tensor/ops/view.js';
import { DsvError } from '../errors.js';
import { cat } from '../tensor/ops/indexing.js';
import { fp8RoundTrip } from '../tensor/ops/quant.js';
import { mlaCacheWrite, sparseMlaDecode } from '../tensor/ops/sparse-mla.js';
import { type LayerCache, type ModelCache, PAGE, type StepLayout } from './cache.js';
import type { ModelConfig } from './config.js';
import { QUANT_BLOCK } from './fp8.js';
import { applyLinear } from './fp8-linear.js';
import { Indexer, type Selection } from './indexer.js';
import { rmsNormTo } from './norm.js';
import type { Numerics } from './numerics.js';
import { actDtype } from './numerics.js';
import { sparseMhaPrefill } from '../tensor/ops/sparse-mha.js';
import { dequantize, type ModelWeights } from './weights.js';

export type AttentionMode = 'auto' | 'mha' | 'mqa';

export interface AttentionStep {
  B: number;
  S: number;
  start: number;
  rot: { cos: Tensor; sin: Tensor };
  numerics: Numerics;
  mode: AttentionMode;
  forcedTopk: Int32Array | null;
  /** the model's cache (sequence regions); the layer's own LayerCache is passed beside it */
  cache: ModelCache;
  /** the step's place in the caches, built once per forward (ModelCache.layout) */
  layout: StepLayout;
}

export class MLA {
  readonly indexer: Indexer;
  private wkvbCache: { dt: DType; uk: Tensor; uv: Tensor } | null = null;

  constructor(
    private readonly cfg: ModelConfig,
    private readonly weights: ModelWeights,
    readonly prefix: string,
    private readonly ue8m0: boolean,
  ) {
    this.indexer = new Indexer(cfg, weights, `${prefix}.indexer`, ue8m0);
  }

  private lin(name: string) {
    return this.weights.linear(`${this.prefix}.${name}.weight`);
  }

  /** x [B, S, dim] → [B, S, dim]; writes this step's latent, RoPE key and indexer key into the cache. */
  forward(x: Tensor, step: AttentionStep, cache: LayerCache): { out: Tensor; selection: Selection } {
    const cfg = this.cfg;
    const { B, S, start } = step;
    const dt = actDtype(step.numerics);
    const H = cfg.nHeads;
    const nope = cfg.qkNopeHeadDim;
    const r = cfg.qkRopeHeadDim;
    const c = cfg.kvLoraRank;
    const dv = cfg.vHeadDim;
    const eps = cfg.normEps;
    const end = start + S;
    const x2 = reshape(x, [B * S, cfg.dim]);

    const qr = rmsNormTo(applyLinear(x2, this.lin('q_a_proj'), dt, this.ue8m0), this.weights.float(`${this.prefix}.q_a_layernorm.weight`), eps, dt);
    const q = reshape(applyLinear(qr, this.lin('q_b_proj'), dt, this.ue8m0), [B, S, H, nope + r]);
    const qNope = narrow(q, 3, 0, nope);
    const qPe = rope(narrow(q, 3, nope, r), step.rot.cos, step.rot.sin, true);
    const kvA = applyLinear(x2, this.lin('kv_a_proj_with_mqa'), dt, this.ue8m0);
    const kvn = rmsNormTo(narrow(kvA, 1, 0, c), this.weights.float(`${this.prefix}.kv_a_layernorm.weight`), eps, dt);
    const kPe = reshape(rope(reshape(narrow(kvA, 1, c, r), [B, S, 1, r]), step.rot.cos, step.rot.sin, true), [B * S, r]);
    // the cached latent is the FP8 round trip's values (exact in every cache format, see cache.ts)
    const kvRt = fp8RoundTrip(kvn, QUANT_BLOCK, { ue8m0: this.ue8m0 });
    mlaCacheWrite(cache.latent, kvRt, kPe, step.layout.slots);
    const per = step.cache.blocksPerSequence;
    const seq = (b: number): { latent: Tensor; index: Tensor } => cache.sequence(b, per);

    const selection = this.indexer.forward(x2, qr, B, S, start, step.rot, cache, seq, step.layout, dt, step.forcedTopk);
    const mode = step.mode === 'auto' ? (S === 1 ? 'mqa' : 'mha') : step.mode;
    const dev = x.device;
    let o: Tensor; // [B, S, H·dv]
    if (mode === 'mha') {
      if (cache.format === 'fp8') throw new DsvError(`${this.prefix}: MHA attention reads the latent rows, which the FP8 cache does not hold in the clear; use an f32 or bf16 latent cache, or mode 'mqa'`);
      // q [S, H, nope + r] per head: [q_nope | q_pe], the reference's concatenation
      const q = reshape(cat([qNope, qPe], 3), [B * S, H, nope + r]);
      const outs: Tensor[] = [];
      for (let b = 0; b < B; b++) {
        // the sequence's cached rows [end, c + r]: latent, then the rotated RoPE key
        const rows = narrow(reshape(seq(b).latent, [per * PAGE, c + r]), 0, 0, end);
        // per-head keys [k_nope(h) | k_pe] and values of every cached position: wkv_b(latent)
        const kvB = reshape(applyLinear(cast(narrow(rows, 1, 0, c), dt), this.lin('kv_b_proj'), dt, this.ue8m0), [end, H, nope + dv]);
        const kPeH = expand(unsqueeze(cast(narrow(rows, 1, c, r), dt), 1), [end, H, r]);
        const k = cat([narrow(kvB, 2, 0, nope), kPeH], 2);
        const ib = narrow(selection.idx, 0, b * S, S);
        outs.push(sparseMhaPrefill(narrow(q, 0, b * S, S), k, narrow(kvB, 2, nope, dv), ib, cfg.softmaxScale).out);
      }
      o = reshape(cat(outs, 0), [B, S, H * dv]);
    } else {
      const { uk, uv } = this.absorbedWeights(dt, dev);
      // q_abs[b, s, h, :] = q_nope[b, s, h, :] · W_UK[h]  ([H, nope, c]), then q_pe: q [B·S, H, c + r]
      const qAbs = permute(cast(matmul(permute(qNope, [0, 2, 1, 3]), uk), dt), [0, 2, 1, 3]);
      const q = reshape(cat([qAbs, cast(qPe, dt)], 3), [B * S, H, c + r]);
      const lat: Tensor[] = [];
      for (let b = 0; b < B; b++) {
        const qb = narrow(q, 0, b * S, S);
        const ib = narrow(selection.idx, 0, b * S, S);
        // positions index the sequence's own region of the paged cache (any format)
        const lb = sparseMlaDecode(reshape(qb, [1, S, H, c + r]), seq(b).latent, reshape(ib, [1, S, selection.width]), cfg.softmaxScale, { dv: c });
        lat.push(reshape(lb.out, [S, H, c]));
      }
      // o[b, s, h, :] = o_lat[b, s, h, :] · W_UV[h]ᵀ
      const oLat = permute(reshape(cat(lat, 0), [B, S, H, c]), [0, 2, 1, 3]);
      const oh = cast(matmul(cast(oLat, 'f32'), transpose(uv)), dt); // [B, H, S, dv]
      o = reshape(contiguous(permute(oh, [0, 2, 1, 3])), [B, S, H * dv]);
    }
    const out = applyLinear(reshape(o, [B * S, H * dv]), this.lin('o_proj'), dt, this.ue8m0);
    return { out: reshape(out, [B, S, cfg.dim]), selection };
  }

  /** wkv_b viewed [H, nope+dv, c] (FP8 dequantised as the reference's weight_dequant), split UK/UV. */
  private absorbedWeights(dt: DType, device: string): { uk: Tensor; uv: Tensor } {
    if (this.wkvbCache && this.wkvbCache.dt === dt && this.wkvbCache.uk.device === device) return this.wkvbCache;
    const cfg = this.cfg;
    const H = cfg.nHeads;
    const nope = cfg.qkNopeHeadDim;
    const dv = cfg.vHeadDim;
    const c = cfg.kvLoraRank;
    const w = cast(reshape(dequantize(this.lin('kv_b_proj')), [H, nope + dv, c]), dt);
    const uk = cast(contiguous(narrow(w, 1, 0, nope)), 'f32');
    const uv = cast(contiguous(narrow(w, 1, nope, dv)), 'f32');
    this.wkvbCache = { dt, uk, uv };
    return this.wkvbCache;
  }
}
