// Keep Routing (DeepSeek-V3.2 §3.1, ../shared/docs/rl.md §1.5): replay the MoE routes chosen at sampling in the
// training forward.
//
// Why: the inference engine and the trainer compute the gate logits with different kernels, and the policy
// moves between rollout and update, so top-k routing differs "even for identical inputs" (R3 measured ~10 %
// of router decisions and 94 % of tokens with at least one differing layer). A changed route switches the
// active parameter subspace abruptly: the trainer would optimise experts the sampled token never used.
// Fix: the engine records, per token and MoE layer, the k expert ids it used; the trainer forces them:
//
//   experts_{t,l} = recorded_{t,l}                  (the gate's top-k selection is skipped)
//   w_{t,l,j}     = s_{t,l}[e_j] / Σ_{j'} s_{t,l}[e_j'] · routed_scaling_factor,   s = sigmoid(x·W_gᵀ)
//
// The weights come from the CURRENT router at the forced ids (the R3 convention), so the router keeps its
// gradient ∂w/∂W_g. src/model/gate.ts Gate.route(x, forced) implements the replay; this file converts the
// engine's recording into the model's ForwardOptions.forcedRoutes and measures routing disagreement.
//
// Recorded layout (what the engine writes per sequence): int16 (int32 accepted) row-major
// [tokens, layers, k]: data[(t·layers + l)·k + j] = j-th expert id (any order, distinct, in [0, E)) of token t
// at layer l. `tokens` are the positions of the training forward's input in order (prompt positions from
// prefill, then each generated token's decode step; position t's routes are those of the forward that
// consumed token t). `layers` is either
//   - the MoE layers only (cfg.nLayers − cfg.nDenseLayers; canonical, rl.md's 58 × 8 for V3.2), layer l
//     being model layer cfg.nDenseLayers + l, or
//   - every layer (cfg.nLayers, SGLang's routed_experts layout), whose dense layers' rows are ignored.
// int16 holds ids < 32768 (V3.2 has 256 experts): 2·58·8 = 928 B per token.
import { DsvError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import type { Tensor } from '../tensor/tensor.js';

export interface RecordedRoutes {
  /** row-major [tokens, layers, k] expert ids */
  data: Int16Array | Int32Array;
  tokens: number;
  layers: number;
  k: number;
}

export class RoutesError extends DsvError {}

function moeLayers(cfg: ModelConfig): number {
  return cfg.nLayers - cfg.nDenseLayers;
}

/** Validate a recording against the model: shape, layer count, k, and every id distinct and in [0, E). */
export function checkRecordedRoutes(cfg: ModelConfig, rec: RecordedRoutes, name = 'routes'): void {
  if (!(rec.data instanceof Int16Array) && !(rec.data instanceof Int32Array)) throw new RoutesError(`${name}.data must be an Int16Array (or Int32Array)`);
  for (const f of ['tokens', 'layers', 'k'] as const) {
    if (!(Number.isInteger(rec[f]) && rec[f] >= 0)) throw new RoutesError(`${name}.${f} must be a non-negative integer, got ${rec[f]}`);
  }
  const L = moeLayers(cfg);
  if (rec.layers !== L && rec.layers !== cfg.nLayers) {
    throw new RoutesError(`${name}: ${rec.layers} layers recorded, expected the model's ${L} MoE layers (or all ${cfg.nLayers} layers)`);
  }
  if (rec.k !== cfg.nActivatedExperts) throw new RoutesError(`${name}: k = ${rec.k} experts per token recorded, the model routes to ${cfg.nActivatedExperts}`);
  const n = rec.tokens * rec.layers * rec.k;
  if (rec.data.length !== n) throw new RoutesError(`${name}.data holds ${rec.data.length} ids, expected tokens·layers·k = ${rec.tokens}·${rec.layers}·${rec.k} = ${n}`);
  const E = cfg.nRoutedExperts;
  const first = rec.layers === L ? 0 : cfg.nDenseLayers;
  for (let t = 0; t < rec.tokens; t++) {
    for (let l = first; l < rec.layers; l++) {
      const o = (t * rec.layers + l) * rec.k;
      for (let j = 0; j < rec.k; j++) {
        const e = rec.data[o + j]!;
        const layer = rec.layers === L ? cfg.nDenseLayers + l : l;
        if (!(e >= 0 && e < E)) throw new RoutesError(`${name}: token ${t}, layer ${layer} has expert id ${e}, expected 0..${E - 1}`);
        for (let i = 0; i < j; i++) if (rec.data[o + i] === e) throw new RoutesError(`${name}: token ${t}, layer ${layer} repeats expert ${e}`);
      }
    }
  }
}

/** Model layer → row in the recording's layer axis (null for dense layers). */
function layerRow(cfg: ModelConfig, rec: RecordedRoutes, layer: number): number | null {
  if (layer < cfg.nDenseLayers) return null;
  return rec.layers === cfg.nLayers ? layer : layer - cfg.nDenseLayers;
}

/**
 * Per-sequence recordings → ForwardOptions.forcedRoutes for a batch of B sequences of S positions: one
 * entry per model layer, null for dense layers, else Int32Array [B, S, k]. Sequence b's recording must cover
 * at most S tokens; positions after its end (right padding, never trained; by causality they cannot change
 * earlier positions) are given the experts 0..k−1 (any valid route would do).
 */
export function forcedRoutesFromRecorded(cfg: ModelConfig, recorded: readonly RecordedRoutes[], S: number): (Int32Array | null)[] {
  if (!Array.isArray(recorded) || recorded.length === 0) throw new RoutesError('routes: expected one recording per sequence (a non-empty array)');
  if (!(Number.isInteger(S) && S >= 1)) throw new RoutesError(`routes: the sequence length S must be a positive integer, got ${S}`);
  const B = recorded.length;
  const k = cfg.nActivatedExperts;
  recorded.forEach((r, b) => {
    checkRecordedRoutes(cfg, r, `routes[${b}]`);
    if (r.tokens > S) throw new RoutesError(`routes[${b}]: ${r.tokens} tokens recorded, more than the forward's ${S} positions`);
  });
  const out: (Int32Array | null)[] = [];
  for (let layer = 0; layer < cfg.nLayers; layer++) {
    if (layer < cfg.nDenseLayers) {
      out.push(null);
      continue;
    }
    const f = new Int32Array(B * S * k);
    recorded.forEach((r, b) => {
      const l = layerRow(cfg, r, layer)!;
      for (let s = 0; s < S; s++) {
        const dst = (b * S + s) * k;
        if (s < r.tokens) for (let j = 0; j < k; j++) f[dst + j] = r.data[(s * r.layers + l) * k + j]!;
        else for (let j = 0; j < k; j++) f[dst + j] = j;
      }
    });
    out.push(f);
  }
  return out;
}

/**
 * The routes a forward of `batch` equal-length sequences used (ForwardResult.routes: per layer i32 [B·S, k]
 * — the gate's token axis — or [B, S, k]; null for dense layers) as one recording per sequence in the
 * canonical layout (MoE layers only, int16): what the engine records, and R2-style replay of the trainer's
 * own old-policy routes.
 */
export function recordRoutes(cfg: ModelConfig, routes: readonly (Tensor | null)[], batch: number): RecordedRoutes[] {
  if (routes.length !== cfg.nLayers) throw new RoutesError(`recordRoutes: ${routes.length} layers of routes, the model has ${cfg.nLayers}`);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new RoutesError(`recordRoutes: batch must be a positive integer, got ${batch}`);
  const k = cfg.nActivatedExperts;
  const L = moeLayers(cfg);
  let n = -1;
  const host: Int32Array[] = [];
  for (let layer = cfg.nDenseLayers; layer < cfg.nLayers; layer++) {
    const r = routes[layer];
    const okShape = r && r.shape[r.rank - 1] === k && ((r.rank === 2 && r.shape[0]! % batch === 0) || (r.rank === 3 && r.shape[0] === batch));
    if (!r || !okShape) throw new RoutesError(`recordRoutes: layer ${layer} must hold routes [B·S, ${k}] or [B, S, ${k}] with B = ${batch}, got ${r ? `[${r.shape.join(', ')}]` : 'null'}`);
    if (n < 0) n = r.numel;
    else if (r.numel !== n) throw new RoutesError(`recordRoutes: layer ${layer} has routes [${r.shape.join(', ')}], other layers ${n / k} tokens`);
    host.push(Int32Array.from(r.toFloat64()));
  }
  const S = Math.max(n, 0) / k / batch;
  const out: RecordedRoutes[] = [];
  for (let b = 0; b < batch; b++) {
    const data = new Int16Array(S * L * k);
    for (let s = 0; s < S; s++) for (let l = 0; l < L; l++) for (let j = 0; j < k; j++) data[(s * L + l) * k + j] = host[l]![(b * S + s) * k + j]!;
    out.push({ data, tokens: S, layers: L, k });
  }
  return out;
}

export interface RoutingDisagreement {
  /** differing / compared (0 when nothing is compared) */
  fraction: number;
  /** (token, MoE layer) pairs whose expert sets differ */
  differing: number;
  /** (token, MoE layer) pairs compared */
  compared: number;
  /** per MoE layer (canonical order): fraction of its tokens that differ */
  perLayer: number[];
  /** fraction of tokens with at least one differing layer (R3's 94 % statistic) */
  tokensAnyLayer: number;
}

/**
 * Routing disagreement between two recordings of the same tokens, e.g. the engine's replayed routes and the
 * model's own choice (recordRoutes of an unforced forward at the current θ): the fraction of token × MoE
 * layer pairs whose expert SETS differ (order within a row is ignored; the gate lists them ascending, the
 * engine may not). Compares the first min(tokens) positions of each pair of sequences.
 */
export function routingDisagreement(cfg: ModelConfig, a: readonly RecordedRoutes[], b: readonly RecordedRoutes[]): RoutingDisagreement {
  if (a.length !== b.length) throw new RoutesError(`routingDisagreement: ${a.length} sequences against ${b.length}`);
  const L = moeLayers(cfg);
  const k = cfg.nActivatedExperts;
  const perDiff = new Array<number>(L).fill(0);
  let compared = 0;
  let tokens = 0;
  let tokensAny = 0;
  a.forEach((ra, i) => {
    const rb = b[i]!;
    checkRecordedRoutes(cfg, ra, `a[${i}]`);
    checkRecordedRoutes(cfg, rb, `b[${i}]`);
    const n = Math.min(ra.tokens, rb.tokens);
    for (let t = 0; t < n; t++) {
      let any = false;
      for (let l = 0; l < L; l++) {
        const layer = cfg.nDenseLayers + l;
        const la = layerRow(cfg, ra, layer)!;
        const lb = layerRow(cfg, rb, layer)!;
        const xa = Array.from(ra.data.subarray((t * ra.layers + la) * k, (t * ra.layers + la + 1) * k)).sort((p, q) => p - q);
        const xb = Array.from(rb.data.subarray((t * rb.layers + lb) * k, (t * rb.layers + lb + 1) * k)).sort((p, q) => p - q);
        if (xa.some((e, j) => e !== xb[j])) {
          perDiff[l]!++;
          any = true;
        }
      }
      compared += L;
      tokens++;
      if (any) tokensAny++;
    }
  });
  const differing = perDiff.reduce((s, v) => s + v, 0);
  return {
    fraction: compared ? differing / compared : 0,
    differing,
    compared,
    perLayer: perDiff.map((d) => (tokens ? d / tokens : 0)),
    tokensAnyLayer: tokens ? tokensAny / tokens : 0,
  };
}
