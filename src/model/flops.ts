// Model FLOPs per token: the arithmetic the architecture needs, counted as 2 FLOPs per multiply-add of
// every matrix product (weights and attention), independent of how a backend computes it (absorbed or
// not, fused or not). MFU = (FLOPs per token · tokens/s) / the device's peak, as in PaLM's appendix B.
// Elementwise work (norms, RoPE, softmax, SwiGLU) is left out, as there: it is O(dim) per token against
// O(dim²) for the products.
//
// Per token and layer, in multiply-adds (dim d, heads H, q LoRA r_q, KV latent r_kv, head dims
// nope/rope/v, indexer heads H_i × d_i, vocabulary V):
//   MLA projections   d·r_q + r_q·H·(nope+rope) + d·(r_kv+rope) + r_kv·H·(nope+v) + H·v·d
//   attention         H·(nope+rope+v) per key attended (scores, then the weighted values)
//   indexer           r_q·H_i·d_i + d·d_i + d·H_i, and H_i·d_i per key scored
//   dense MLP         3·d·inter;   MoE: d·E (the gate) + (k + shared)·3·d·moe_inter
//   LM head           d·V (also after each MTP module, whose input projection is 2d·d)
// Keys per query at position p (0-based) of a causal sequence: p + 1 with dense attention, min(topk, p+1)
// with sparse attention; the mean over S positions is (S+1)/2 and, for S > k, (k(k+1)/2 + (S−k)·k)/S.
//
// Training counts forward + backward as 3 forward passes for what is trained (the backward computes
// the gradients of the inputs and of the weights, each a product of the forward's size). By phase:
//   dense     (pretraining, dense continuation) the whole model, dense attention; no indexer
//   warmup    the main model forward only (frozen, dense attention), the indexers forward + backward
//             over every causal key (their KL target is the head-summed dense attention)
//   sparse    (DSA sparse stage, SFT) the whole model with sparse attention; the indexers score every
//             causal key in the forward (top-k needs them all) and back-propagate their KL over the
//             selected keys only
import type { ModelConfig } from './config.js';

export type FlopsPhase = 'dense' | 'warmup' | 'sparse';

/** Mean keys per query over positions 0..S−1 of a causal sequence, attending to at most `cap` keys. */
export function meanCausalKeys(S: number, cap = Infinity): number {
  const k = Math.min(cap, S);
  return (k * (k + 1)) / 2 / S + ((S - k) * k) / S;
}

interface PerToken {
  /** multiply-adds of the main model's weight products (every layer, the MTP modules, the heads) */
  weights: number;
  /** multiply-adds per attended key, summed over layers */
  attnPerKey: number;
  /** the indexers' weight products */
  indexerWeights: number;
  /** multiply-adds per scored key, summed over the indexers */
  indexerPerKey: number;
}

function perToken(c: ModelConfig): PerToken {
  const d = c.dim;
  const mla = d * c.qLoraRank + c.qLoraRank * c.nHeads * c.qkHeadDim + d * (c.kvLoraRank + c.qkRopeHeadDim) + c.kvLoraRank * c.nHeads * (c.qkNopeHeadDim + c.vHeadDim) + c.nHeads * c.vHeadDim * d;
  const moe = d * c.nRoutedExperts + (c.nActivatedExperts + c.nSharedExperts) * 3 * d * c.moeInterDim;
  const dense = 3 * d * c.interDim;
  const head = d * c.vocabSize;
  // the layers the main forward runs, then the MTP modules (each a MoE layer after its 2d → d projection)
  const layers = c.nLayers + c.nMtpLayers;
  const ffn = c.nDenseLayers * dense + (c.nLayers - c.nDenseLayers) * moe + c.nMtpLayers * moe;
  return {
    weights: layers * mla + ffn + head * (1 + c.nMtpLayers) + c.nMtpLayers * 2 * d * d,
    attnPerKey: layers * c.nHeads * (c.qkHeadDim + c.vHeadDim),
    indexerWeights: layers * (c.qLoraRank * c.indexNHeads * c.indexHeadDim + d * c.indexHeadDim + d * c.indexNHeads),
    indexerPerKey: layers * c.indexNHeads * c.indexHeadDim,
  };
}

/** FLOPs of one forward pass per token of a sequence of S tokens (dense or sparse attention). */
export function forwardFlopsPerToken(c: ModelConfig, S: number, attention: 'dense' | 'sparse'): number {
  const p = perToken(c);
  const all = meanCausalKeys(S);
  if (attention === 'dense') return 2 * (p.weights + p.attnPerKey * all);
  return 2 * (p.weights + p.attnPerKey * meanCausalKeys(S, c.indexTopk) + p.indexerWeights + p.indexerPerKey * all);
}

/** FLOPs of one training step per token (forward + backward) in a phase, at sequence length S. */
export function trainFlopsPerToken(c: ModelConfig, S: number, phase: FlopsPhase): number {
  const p = perToken(c);
  const all = meanCausalKeys(S);
  const sel = meanCausalKeys(S, c.indexTopk);
  switch (phase) {
    case 'dense':
      return 3 * 2 * (p.weights + p.attnPerKey * all);
    case 'warmup':
      return 2 * (p.weights + p.attnPerKey * all) + 3 * 2 * (p.indexerWeights + p.indexerPerKey * all);
    case 'sparse':
      return 3 * 2 * (p.weights + p.attnPerKey * sel + p.indexerWeights) + 2 * p.indexerPerKey * all + 2 * 2 * p.indexerPerKey * sel;
  }
}
