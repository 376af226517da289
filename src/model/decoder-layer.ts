// One transformer block (the reference's Block): fused residual RMSNorm → MLA → fused residual
// RMSNorm → FFN (dense MLP for the first first_k_dense_replace layers, MoE after). Under tensor
// parallelism (parallel.ts) attention and the dense MLP return this rank's part of their output, and the
// layer sums the ranks' parts (the MoE sums its own: its shared expert is rounded after the sum): the
// reference's two all-reduces per block.
import type { Tensor } from '../tensor/tensor.js';
import type { LayerCache } from './cache.js';
import type { ModelConfig } from './config.js';
import type { Selection } from './indexer.js';
import { MLA, type AttentionStep, type TrainStep } from './mla.js';
import { Mlp } from './mlp.js';
import { MoE } from './moe.js';
import { addRmsNorm } from './norm.js';
import { actDtype } from './numerics.js';
import { partialDtype, type TensorParallel } from './parallel.js';
import { layerPrefix, type ModelWeights } from './weights.js';

export interface LayerOutput {
  h: Tensor;
  residual: Tensor;
  /** key positions [T, width] when the step records them */
  selection: Selection | null;
  /** experts [T, k] ascending, or null for a dense layer */
  routes: Tensor | null;
  /** the gate's own choice [T, k] (Routing.own): `routes` unless routes were forced; null for a dense layer */
  ownRoutes: Tensor | null;
}

export class DecoderLayer {
  readonly attn: MLA;
  readonly ffn: Mlp | MoE;
  private readonly p: string;

  constructor(private readonly cfg: ModelConfig, private readonly weights: ModelWeights, readonly layer: number, moe: boolean, ue8m0: boolean, private readonly tp: TensorParallel) {
    this.p = layerPrefix(layer);
    this.attn = new MLA(cfg, weights, `${this.p}.self_attn`, ue8m0);
    this.ffn = moe ? new MoE(cfg, weights, `${this.p}.mlp`, ue8m0, tp) : new Mlp(weights, `${this.p}.mlp`, ue8m0);
  }

  get isMoE(): boolean {
    return this.ffn instanceof MoE;
  }

  /** h, residual [T, dim] (the step's new tokens, flat); a training step has no cache. */
  forward(h: Tensor, residual: Tensor | null, step: AttentionStep | TrainStep, cache: LayerCache | null, forcedRoutes: Int32Array | Tensor | null): LayerOutput {
    const dt = actDtype(step.numerics);
    const eps = this.cfg.normEps;
    const n1 = addRmsNorm(h, residual, this.weights.float(`${this.p}.input_layernorm.weight`), eps, dt);
    const a = this.attn.forward(n1.out, step, cache);
    const n2 = addRmsNorm(this.tp.reduce(a.out, dt), n1.residual, this.weights.float(`${this.p}.post_attention_layernorm.weight`), eps, dt);
    const x2 = n2.out;
    let y: Tensor;
    let routes: Tensor | null = null;
    let ownRoutes: Tensor | null = null;
    if (this.ffn instanceof MoE) {
      const r = this.ffn.forward(x2, dt, forcedRoutes);
      y = r.y;
      routes = r.routing.experts;
      ownRoutes = r.routing.own;
    } else {
      y = this.tp.reduce(this.ffn.forward(x2, dt, partialDtype(dt, this.weights.shard)), dt);
    }
    return { h: y, residual: n2.residual, selection: a.selection, routes, ownRoutes };
  }
}
