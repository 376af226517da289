// The blocks of the device-generic forward (device-forward.ts: prefill and cached decode), written with tensor ops only so they run
// on whichever backend holds the weights (CPU or CUDA). f32 numerics: the same formulas as the host
// modules (indexer.ts, mla.ts, sparse-attention.ts, gate.ts, moe.ts, mlp.ts), with the sparse choices
// expressed as masks instead of index loops:
//   - indexer top-k: a causal −inf mask on the index scores, topk (ties → lowest index on every backend);
//   - sparse attention: dense scores with −inf outside (selected ∩ causal), exp(−inf) adds exact zeros,
//     so the softmax and P·V equal the sparse ones up to f32 summation order;
//   - group-limited routing: −inf over the experts of the groups not kept, then topk.
// The one host read inside the forward is the MoE dispatch (see deviceMoe).
import { DsvError } from '../errors.js';
import { Tensor, arange, fromArray, full } from '../tensor/tensor.js';
import { add, div, gt, le, lt, mul, muls, relu, sigmoid, silu, where } from '../tensor/ops/elementwise.js';
import { hadamard } from '../tensor/ops/hadamard.js';
import { cat, gather, indexAdd, indexSelect, scatterAdd } from '../tensor/ops/indexing.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { layerNorm, rmsNorm } from '../tensor/ops/norm.js';
import { actQuant, fp8RoundTrip } from '../tensor/ops/quant.js';
import { amax, sum } from '../tensor/ops/reduce.js';
import { rope } from '../tensor/ops/rope.js';
import { softmax } from '../tensor/ops/softmax.js';
import { topk } from '../tensor/ops/topk.js';
import { cast, contiguous, expand, narrow, permute, reshape, transpose, unsqueeze } from '../tensor/ops/view.js';
import type { ModelConfig } from './config.js';
import { applyDeviceLinear, type DeviceWeights } from './device-weights.js';
import { QUANT_BLOCK } from './fp8.js';
import { type DeviceLayerCache, writeRows } from './device-cache.js';

/** What every layer of one step (a prefill, or a decode of one token per row) shares. */
export interface DeviceStep {
  B: number;
  /** new tokens per row, at positions start..start+S-1 */
  S: number;
  start: number;
  /** keys visible to the step: positions 0..T-1 (T = start + S) */
  T: number;
  /** rotary tables [S, rope/2] of the step's positions, on the device */
  rot: { cos: Tensor; sin: Tensor };
  /** bool [S, T]: key t is visible to query s (t ≤ start + s) */
  causal: Tensor;
  ue8m0: boolean;
}

/** The causal visibility mask [S, start+S] (t ≤ start + s), built on the device from two aranges. */
export function causalMask(S: number, device: string, start = 0): Tensor {
  const q = reshape(arange(start, start + S, 1, { dtype: 'f32', device }), [S, 1]);
  const k = reshape(arange(0, start + S, 1, { dtype: 'f32', device }), [1, start + S]);
  return le(k, q);
}

const LN_EPS = 1e-6;

/**
 * The lightning indexer's choice for a step: raw topk indices i64 [B, S, width] with
 * width = min(index_topk, T). Rows of queries at positions < width − 1 have fewer visible keys than
 * width; their surplus entries are masked (future) keys, which selectionMask and sortedSelection drop.
 * With a cache the step's FP8 keys are appended at [start, T) and the scores run over all T cached
 * keys; without one the step must start at 0 and scores its own keys.
 */
export function deviceIndexer(cfg: ModelConfig, dw: DeviceWeights, prefix: string, x2: Tensor, qr: Tensor, st: DeviceStep, cache: DeviceLayerCache | null = null): { idx: Tensor; width: number } {
  const { B, S, T } = st;
  if (!cache && st.start !== 0) throw new DsvError(`${prefix}: a step at position ${st.start} needs the cached keys of the earlier positions`);
  const Hi = cfg.indexNHeads;
  const Dh = cfg.indexHeadDim;
  const r = cfg.qkRopeHeadDim;
  if (Dh > QUANT_BLOCK) throw new DsvError(`${prefix}: index_head_dim ${Dh} must fit one ${QUANT_BLOCK}-block of act_quant (the reference's fp8_index)`);
  const lin = (n: string): ReturnType<DeviceWeights['linear']> => dw.linear(`${prefix}.${n}.weight`);
  // q [B, S, Hi, Dh], k [B, S, 1, Dh]: rope on the first r dims (half-split layout), then Hadamard·Dh^-½
  let q = reshape(applyDeviceLinear(qr, lin('wq_b'), st.ue8m0), [B, S, Hi, Dh]);
  q = cat([rope(narrow(q, 3, 0, r), st.rot.cos, st.rot.sin, false), narrow(q, 3, r, Dh - r)], 3);
  const kn = reshape(layerNorm(applyDeviceLinear(x2, lin('wk'), st.ue8m0), dw.float(`${prefix}.k_norm.weight`), dw.float(`${prefix}.k_norm.bias`), LN_EPS), [B, S, 1, Dh]);
  let k = cat([rope(narrow(kn, 3, 0, r), st.rot.cos, st.rot.sin, false), narrow(kn, 3, r, Dh - r)], 3);
  q = hadamard(q, Dh ** -0.5);
  k = hadamard(k, Dh ** -0.5);
  // act_quant: one block per head row, so the scales are [B, S, Hi, 1] and [B, S, 1, 1]
  const qq = actQuant(q, QUANT_BLOCK, { ue8m0: st.ue8m0 });
  const kq = actQuant(k, QUANT_BLOCK, { ue8m0: st.ue8m0 });
  // head weights w = weights_proj(x)·Hi^-½·q_scale·Dh^-½ (f32, folded as the reference does)
  const wp = linear(x2, dw.float(`${prefix}.weights_proj.weight`));
  const w = muls(mul(muls(wp, Hi ** -0.5), reshape(qq.s, [B * S, Hi])), cfg.indexSoftmaxScale);
  // I[b, s, t] = k_scale[t] · Σ_h relu(q8[s, h]·k8[t]) · w[s, h]; the head sum is a [1, Hi]·[Hi, T] matmul
  let k8: Tensor = reshape(kq.q, [B, S, Dh]);
  let ks: Tensor = reshape(kq.s, [B, S, 1]);
  if (cache) {
    writeRows(cache.k8, k8, st.start);
    writeRows(cache.ks, ks, st.start);
    k8 = narrow(cache.k8, 1, 0, T);
    ks = narrow(cache.ks, 1, 0, T);
  }
  const q8 = reshape(cast(qq.q, 'f32'), [B, S * Hi, Dh]);
  const logits = relu(reshape(matmul(q8, transpose(cast(k8, 'f32'))), [B, S, Hi, T]));
  const headSum = reshape(matmul(reshape(w, [B, S, 1, Hi]), logits), [B, S, T]);
  const scores = mul(headSum, reshape(contiguous(ks), [B, 1, T]));
  const width = Math.min(cfg.indexTopk, T);
  const idx = topk(where(st.causal, scores, -Infinity), width).indices;
  return { idx, width };
}

/** f32 [B, S, width]: 1 where the raw choice idx is causally visible (idx ≤ query position), else 0. */
function visibleChoices(idx: Tensor, S: number, start: number): Tensor {
  const pos = reshape(arange(start, start + S, 1, { dtype: 'f32', device: idx.device }), [1, S, 1]);
  return cast(le(cast(idx, 'f32'), pos), 'f32');
}

/**
 * bool [B, S, T]: key t is attended by query s — it is among s's chosen keys and visible (the causal
 * mask, applied through the choices: only visible ones are scattered).
 */
export function selectionMask(idx: Tensor, S: number, T: number, start = 0): Tensor {
  const [B] = idx.shape as [number];
  const hits = scatterAdd(full([B, S, T], 0, { dtype: 'f32', device: idx.device }), 2, idx, visibleChoices(idx, S, start));
  return gt(hits, 0);
}

/** The choice as the host model reports it: i32 [B, S, width], ascending key positions, −1 padded. */
export function sortedSelection(idx: Tensor, S: number, start = 0): Tensor {
  const width = idx.shape[2]!;
  const f = cast(idx, 'f32');
  // invisible entries get key T = start + S, past every position, so an ascending sort puts them last
  const T = start + S;
  const keyed = where(gt(visibleChoices(idx, S, start), 0), f, T);
  const sorted = topk(keyed, width, { largest: false }).values;
  return cast(where(lt(sorted, T), sorted, -1), 'i32');
}

/**
 * MLA (model.md §3) of x [B, S, dim] at positions start..start+S-1. The step's FP8 round-tripped
 * latent and RoPE key are appended to `cache` when one is given. Two modes, as the reference:
 *   'mha' (prefill from position 0): per-head keys/values wkv_b(latent) of the step's own positions,
 *         scores = (q_nope·k_nope + q_pe·k_pe)·scale;
 *   'mqa' (decode, absorbed; needs the cache): q_abs[h] = q_nope[h]·W_UK[h] ([nope]·[nope, c]), one
 *         latent key per cached position shared by all heads, scores = (q_abs·kv + q_pe·pe)·scale,
 *         o_lat = P·kv and o[h] = o_lat[h]·W_UV[h]ᵀ — the same numbers up to f32 summation order,
 *         since q_nope·(W_UK·kv) = (q_nope·W_UK)·kv and P·(kv·W_UVᵀ) = (P·kv)·W_UVᵀ.
 * Either way the sparse choice enters as −inf outside (selected ∩ causal) before the softmax.
 */
export function deviceMla(cfg: ModelConfig, dw: DeviceWeights, prefix: string, x: Tensor, st: DeviceStep, cache: DeviceLayerCache | null = null, mode: 'mha' | 'mqa' = 'mha'): { out: Tensor; idx: Tensor } {
  const { B, S, T, start } = st;
  const H = cfg.nHeads;
  const nope = cfg.qkNopeHeadDim;
  const r = cfg.qkRopeHeadDim;
  const c = cfg.kvLoraRank;
  const dv = cfg.vHeadDim;
  const eps = cfg.normEps;
  if (mode === 'mha' && start !== 0) throw new DsvError(`${prefix}: MHA mode attends to the step's own positions and must start at 0, got ${start}`);
  if (mode === 'mqa' && !cache) throw new DsvError(`${prefix}: MQA (absorbed) mode reads the latent cache; none was given`);
  const lin = (n: string): ReturnType<DeviceWeights['linear']> => dw.linear(`${prefix}.${n}.weight`);
  const x2 = reshape(x, [B * S, cfg.dim]);
  const qr = rmsNorm(applyDeviceLinear(x2, lin('q_a_proj'), st.ue8m0), dw.float(`${prefix}.q_a_layernorm.weight`), eps);
  const q = reshape(applyDeviceLinear(qr, lin('q_b_proj'), st.ue8m0), [B, S, H, nope + r]);
  const qPe = rope(narrow(q, 3, nope, r), st.rot.cos, st.rot.sin, true);
  const kvA = applyDeviceLinear(x2, lin('kv_a_proj_with_mqa'), st.ue8m0);
  const kvn = rmsNorm(narrow(kvA, 1, 0, c), dw.float(`${prefix}.kv_a_layernorm.weight`), eps);
  const kPe = rope(reshape(narrow(kvA, 1, c, r), [B, S, 1, r]), st.rot.cos, st.rot.sin, true);
  // the latent is cached after its FP8 round trip; the keys and values are computed from that value
  const lat = fp8RoundTrip(kvn, QUANT_BLOCK, { ue8m0: st.ue8m0 });
  if (cache) {
    writeRows(cache.kv, reshape(lat, [B, S, c]), start);
    writeRows(cache.pe, reshape(kPe, [B, S, r]), start);
  }

  const { idx } = deviceIndexer(cfg, dw, `${prefix}.indexer`, x2, qr, st, cache);
  const allowed = unsqueeze(selectionMask(idx, S, T, start), 1); // [B, 1, S, T]

  let o: Tensor; // [B, S, H, dv]
  if (mode === 'mha') {
    const kvB = reshape(applyDeviceLinear(lat, lin('kv_b_proj'), st.ue8m0), [B, S, H, nope + dv]);
    const qh = contiguous(permute(cat([narrow(q, 3, 0, nope), qPe], 3), [0, 2, 1, 3])); // [B, H, S, nope+r]
    const kh = contiguous(permute(cat([narrow(kvB, 3, 0, nope), expand(kPe, [B, S, H, r])], 3), [0, 2, 1, 3])); // [B, H, T, nope+r]
    const vh = contiguous(permute(narrow(kvB, 3, nope, dv), [0, 2, 1, 3])); // [B, H, T, dv]
    const scores = muls(matmul(qh, transpose(kh)), cfg.softmaxScale); // [B, H, S, T]
    const p = softmax(where(allowed, scores, -Infinity), -1);
    o = contiguous(permute(matmul(p, vh), [0, 2, 1, 3]));
  } else {
    const { uk, uv } = dw.absorbedKvB(`${prefix}.kv_b_proj.weight`, H, nope, dv, c);
    const kvAll = unsqueeze(narrow(cache!.kv, 1, 0, T), 1); // [B, 1, T, c]
    const peAll = unsqueeze(narrow(cache!.pe, 1, 0, T), 1); // [B, 1, T, r]
    const qAbs = matmul(permute(narrow(q, 3, 0, nope), [0, 2, 1, 3]), uk); // [B, H, S, c]
    const qp = permute(qPe, [0, 2, 1, 3]); // [B, H, S, r]
    const scores = muls(add(matmul(qAbs, transpose(kvAll)), matmul(qp, transpose(peAll))), cfg.softmaxScale); // [B, H, S, T]
    const p = softmax(where(allowed, scores, -Infinity), -1);
    const oLat = matmul(p, kvAll); // [B, H, S, c]
    o = contiguous(permute(matmul(oLat, transpose(uv)), [0, 2, 1, 3])); // [B, S, H, dv]
  }
  const out = applyDeviceLinear(reshape(o, [B * S, H * dv]), lin('o_proj'), st.ue8m0);
  return { out: reshape(out, [B, S, cfg.dim]), idx };
}

/** SwiGLU feed-forward: down(silu(gate(x)) · up(x)). */
export function deviceMlp(dw: DeviceWeights, prefix: string, x: Tensor, ue8m0: boolean): Tensor {
  const g = applyDeviceLinear(x, dw.linear(`${prefix}.gate_proj.weight`), ue8m0);
  const u = applyDeviceLinear(x, dw.linear(`${prefix}.up_proj.weight`), ue8m0);
  return applyDeviceLinear(mul(silu(g), u), dw.linear(`${prefix}.down_proj.weight`), ue8m0);
}

/**
 * The MoE gate of T tokens x [T, dim] (gate.ts): experts i64 [T, k] ascending and their weights f32
 * [T, k] from the unbiased scores (normalised for sigmoid) × routed_scaling_factor.
 */
export function deviceGate(cfg: ModelConfig, dw: DeviceWeights, prefix: string, x: Tensor): { experts: Tensor; weights: Tensor } {
  const T = x.shape[0]!;
  const E = cfg.nRoutedExperts;
  const G = cfg.nExpertGroups;
  const k = cfg.nActivatedExperts;
  const logits = linear(x, dw.float(`${prefix}.weight`));
  const s = cfg.scoreFunc === 'sigmoid' ? sigmoid(logits) : softmax(logits, -1);
  const biasName = `${prefix}.e_score_correction_bias`;
  const bias = dw.has(biasName) ? dw.float(biasName) : null;
  let sel = bias ? add(s, bias) : s;
  if (G > 1) {
    // group score: sum of the group's top 2 (with a bias) or its max; keep the topk_group best groups
    const grouped = reshape(sel, [T, G, E / G]);
    const gs = bias ? sum(topk(grouped, 2).values, -1) : amax(grouped, -1);
    const keep = topk(gs, cfg.nLimitedGroups).indices;
    const kept = scatterAdd(full([T, G], 0, { dtype: 'f32', device: x.device }), 1, keep, full([T, cfg.nLimitedGroups], 1, { dtype: 'f32', device: x.device }));
    sel = reshape(where(unsqueeze(gt(kept, 0), -1), grouped, -Infinity), [T, E]);
  }
  const chosen = topk(sel, k).indices;
  // ascending expert ids (the host model's order, and the reference's accumulation order)
  const experts = cast(topk(cast(chosen, 'f32'), k, { largest: false }).values, 'i64');
  let w = gather(s, 1, experts);
  if (cfg.scoreFunc === 'sigmoid') w = div(w, sum(w, -1, true));
  return { experts, weights: muls(w, cfg.routeScale) };
}

/**
 * MoE of x [T, dim]: y = Σ_j w_j · expert_{e_j}(x) + shared(x), added in ascending expert order as
 * the reference loops. Host read: the routes (T·k ids, also an output of the forward) come back to size
 * each expert's batch — which tokens an expert sees decides tensor shapes, so without a grouped GEMM
 * kernel the dispatch lists have to live on the host. Everything else stays on the device.
 */
export function deviceMoe(cfg: ModelConfig, dw: DeviceWeights, prefix: string, x: Tensor, ue8m0: boolean): { y: Tensor; routes: Int32Array } {
  const T = x.shape[0]!;
  const D = x.shape[1]!;
  const k = cfg.nActivatedExperts;
  const { experts, weights } = deviceGate(cfg, dw, `${prefix}.gate`, x);
  const routes = Int32Array.from(experts.toFloat64());
  const rows: number[][] = Array.from({ length: cfg.nRoutedExperts }, () => []);
  const slots: number[][] = Array.from({ length: cfg.nRoutedExperts }, () => []);
  for (let i = 0; i < T * k; i++) {
    rows[routes[i]!]!.push(Math.floor(i / k));
    slots[routes[i]!]!.push(i);
  }
  const wSlots = reshape(weights, [T * k, 1]);
  let y = full([T, D], 0, { dtype: 'f32', device: x.device });
  for (let e = 0; e < cfg.nRoutedExperts; e++) {
    if (rows[e]!.length === 0) continue;
    const ri = fromArray(Int32Array.from(rows[e]!), [rows[e]!.length], { dtype: 'i32', device: x.device });
    const si = fromArray(Int32Array.from(slots[e]!), [slots[e]!.length], { dtype: 'i32', device: x.device });
    const ye = deviceMlp(dw, `${prefix}.experts.${e}`, indexSelect(x, 0, ri), ue8m0);
    // one row per token in this call, so the in-place add has no colliding indices
    y = indexAdd(y, 0, ri, mul(ye, indexSelect(wSlots, 0, si)));
  }
  if (cfg.nSharedExperts > 0) y = add(y, deviceMlp(dw, `${prefix}.shared_experts`, x, ue8m0));
  return { y, routes };
}
