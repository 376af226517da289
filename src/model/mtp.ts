// Multi-token prediction module (model.md §9; the checkpoint's extra layer, index num_hidden_layers):
//   h' = eh_proj( cat[ enorm(embed(t_{i+1})), hnorm(h_i) ] )     (h_i: the main model's final hidden)
//   h' → one full decoder layer (MLA with its own indexer, MoE) → shared_head.norm → shared_head.head
// The embedding and head are the MTP layer's own copies when the checkpoint has them, else the main
// model's. The layer keeps its own caches, so it can draft incrementally like the main model.
import { DsvError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { cat } from '../tensor/ops/indexing.js';
import { reshape } from '../tensor/ops/view.js';
import { logitsAt } from './logits.js';
import type { LayerCache } from './cache.js';
import type { ModelConfig } from './config.js';
import { DecoderLayer } from './decoder-layer.js';
import type { TensorParallel } from './parallel.js';
import { applyLinear } from './fp8-linear.js';
import type { Selection } from './indexer.js';
import { type AttentionStep, type TrainStep, isTrainStep } from './mla.js';
import { addRmsNorm, rmsNormTo } from './norm.js';
import { actDtype } from './numerics.js';
import { layerPrefix, type ModelWeights } from './weights.js';

export interface MtpOutput {
  /** f32 [R, vocab] at the step's logit rows: logits for token i+2 at position i */
  logits: Tensor;
  /** [T, dim] after shared_head.norm */
  hidden: Tensor;
  selection: Selection | null;
  routes: Tensor | null;
}

export class MtpModule {
  readonly block: DecoderLayer;
  private readonly p: string;

  constructor(private readonly cfg: ModelConfig, private readonly weights: ModelWeights, readonly layer: number, private readonly ue8m0: boolean, private readonly tp: TensorParallel) {
    this.p = layerPrefix(layer);
    this.block = new DecoderLayer(cfg, weights, layer, true, ue8m0, tp);
  }

  private own(name: string, fallback: string): Tensor {
    const n = `${this.p}.${name}`;
    return this.weights.float(this.weights.has(n) ? n : fallback);
  }

  /**
   * hidden [T, dim]: the main model's final hidden states of the step's tokens; nextIds [T]: the tokens
   * one position ahead (host ids, or an i32 tensor on the device: a captured graph's static input).
   * Positions, slots and logit rows follow the main model's step.
   */
  forward(hidden: Tensor, nextIds: Int32Array | Tensor, step: AttentionStep | TrainStep, cache: LayerCache | null, forcedRoutes: Int32Array | Tensor | null = null): MtpOutput {
    const cfg = this.cfg;
    const train = isTrainStep(step);
    const T = train ? step.B * step.S : step.layout.T;
    const n = nextIds instanceof Tensor ? nextIds.numel : nextIds.length;
    if (n !== T) throw new DsvError(`mtp: ${n} next tokens for a step of ${T} tokens`);
    const dt = actDtype(step.numerics);
    const eps = cfg.normEps;
    const table = this.own('embed_tokens.weight', 'model.embed_tokens.weight');
    const e = reshape(this.tp.embed(table, nextIds instanceof Tensor ? reshape(nextIds, [T]) : nextIds, dt, cfg), [T, cfg.dim]);
    const en = rmsNormTo(e, this.weights.float(`${this.p}.enorm.weight`), eps, dt);
    const hn = rmsNormTo(hidden, this.weights.float(`${this.p}.hnorm.weight`), eps, dt);
    const x = applyLinear(cat([en, hn], 1), this.weights.linear(`${this.p}.eh_proj.weight`), dt, this.ue8m0);
    const o = this.block.forward(x, null, step, cache, forcedRoutes);
    const h = addRmsNorm(o.h, o.residual, this.weights.float(`${this.p}.shared_head.norm.weight`), eps, dt).out;
    const head = this.own('shared_head.head.weight', 'lm_head.weight');
    // training: the logits of every row (the MTP loss); inference: the step's logit rows
    const logits = this.tp.gatherVocab(logitsAt(h, train ? Int32Array.from({ length: T }, (_, i) => i) : step.layout.logitRows, head));
    return { logits, hidden: h, selection: o.selection, routes: o.routes };
  }
}
