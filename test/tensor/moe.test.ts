// MoE operations (src/tensor/ops/moe.ts): moeRoute, moeRouteWeights, moeDispatch, groupedMatmul, moeCombine.
//  - composed into one MoE layer (route → dispatch → grouped SwiGLU → combine + shared expert) on random
//    tiny configs (randomConfig variants: groups with and without the bias, softmax with one group, no
//    shared expert, k = 1), T = 1, 7, 33, f32 and bf16, with and without forced routes: the routes and y
//    equal today's MoE.forward (src/model/moe.ts) bit for bit on the CPU; on CUDA the routes are identical
//    and y agrees to f32 accumulation order (bf16: one ulp); the same with FP8 (e4m3, 128×128 scales) expert
//    weights through groupedMatmulFp8 against the host's applyLinear FP8 path;
//  - moeRoute against selectExperts (the former host gate, test/oracles/gate.ts) on scores full of ties;
//  - moeDispatch against a plain stable sort, groupedMatmul against f64 with empty segments and rows outside
//    every segment, moeCombine against f64;
//  - groupedMatmul backward (dx, dW on the device) against f64 on every backend;
//  - gradients of moeCombine (to w, ySlots, shared), groupedMatmul (to x and W) and moeRouteWeights by f64
//    finite differences (CPU);
//  - forced-route validation.
// One test body per backend; CUDA is skipped with the driver's reason where there is none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { eachDevice, onGpu } from '../cuda/common.js';
import { rng as mulberry32 } from '../chat/rng.js';
import { bitsEqual, normalsF32 as normals, on } from './helpers.js';
import { randomCheckpoint, randomConfig, type RandomConfigOverrides } from '../../src/model/random-weights.js';
import { ModelWeights, mapSource } from '../../src/model/weights.js';
import { MoE } from '../../src/model/moe.js';
import { selectExperts } from '../oracles/gate.js';
import { hostMoe } from '../oracles/moe.js';
import type { ModelConfig } from '../../src/model/config.js';
import { moeTune } from '../../src/backend/cuda/moe.js';

/**
 * fn() on each CUDA path of the bf16 grouped GEMM (the grouped GEMV for decode-sized row counts, the
 * tensor-core kernels with the dW one, then SIMT), once elsewhere; tag names the path.
 */
function eachMoePath(dev: string, fn: (tag: string) => void): void {
  if (dev !== 'cuda') return fn('');
  const keep = { ...moeTune };
  try {
    // the GEMV path with its bounds lifted (64 rows, any K), so every shape below reaches it
    for (const [gemv, tc, dwTc, tag] of [[true, true, false, ' (grouped GEMV to 64 rows)'], [false, true, true, ' (tensor cores, dW too)'], [false, false, false, ' (simt)']] as const) {
      Object.assign(moeTune, { gemv, tc, dwTc, gemvMaxRows: gemv ? 64 : keep.gemvMaxRows, gemvAnyWidth: gemv });
      fn(tag);
    }
  } finally {
    Object.assign(moeTune, keep);
  }
}

/** |a − e| ≤ atol + rtol·|e| everywhere. */
function close(a: ArrayLike<number>, e: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(a.length, e.length, `${what}: length`);
  for (let i = 0; i < e.length; i++) {
    assert.ok(Math.abs(a[i]! - e[i]!) <= atol + rtol * Math.abs(e[i]!), `${what}[${i}] = ${a[i]}, expected ${e[i]}`);
  }
}

/** Random distinct expert ids per token, in random order (forced routes as a trainer would replay them). */
function randomRoutes(Tn: number, E: number, k: number, rnd: () => number): Int32Array {
  const out = new Int32Array(Tn * k);
  const perm = Int32Array.from({ length: E }, (_, i) => i);
  for (let t = 0; t < Tn; t++) {
    for (let j = 0; j < k; j++) {
      const p = j + Math.floor(rnd() * (E - j));
      [perm[j], perm[p]] = [perm[p]!, perm[j]!];
      out[t * k + j] = perm[j]!;
    }
  }
  return out;
}

interface Variant {
  name: string;
  over: RandomConfigOverrides;
  noBias?: boolean;
}
const VARIANTS: Variant[] = [
  { name: 'sigmoid G4/2 k2 bias', over: {} },
  { name: 'sigmoid G4/3 E16 k6 bias', over: { n_routed_experts: 16, num_experts_per_tok: 6, n_group: 4, topk_group: 3 } },
  { name: 'sigmoid G4/2 no bias (group max)', over: { n_routed_experts: 12, num_experts_per_tok: 3 }, noBias: true },
  { name: 'softmax G1 E12 k3', over: { scoring_func: 'softmax', n_group: 1, topk_group: 1, n_routed_experts: 12, num_experts_per_tok: 3, routed_scaling_factor: 1 }, noBias: true },
  { name: 'sigmoid G1 E6 k1 no shared', over: { n_routed_experts: 6, num_experts_per_tok: 1, n_group: 1, topk_group: 1, n_shared_experts: 0 } },
];
const LAYER = 'model.layers.1.mlp'; // first_k_dense_replace = 1: layer 1 is the first MoE layer

interface Layer {
  cfg: ModelConfig;
  moe: MoE;
  weights: ModelWeights;
  gateW: T.Tensor;
  bias: T.Tensor | null;
  /** [E, F, D], [E, F, D], [E, D, F] stacks of the experts' weights (f32 values of the bf16 checkpoint) */
  wg: T.Tensor;
  wu: T.Tensor;
  wd: T.Tensor;
  shared: { wg: T.Tensor; wu: T.Tensor; wd: T.Tensor } | null;
  /** FP8 layers: the experts' e4m3 codes [E, N, K] and 128×128 scales [E, ⌈N/128⌉, ⌈K/128⌉] */
  fp8: Record<'wg' | 'wu' | 'wd' | 'sg' | 'su' | 'sd', Fp8Stack> | null;
}
interface Fp8Stack {
  w8: T.Tensor;
  scale: T.Tensor;
}

/** A weight [N, K] quantised as the checkpoints are: per 128×128 tile s = amax/448, codes e4m3(w/s). */
function quantizeFp8(w: Float32Array, N: number, K: number): { w8: T.Tensor; scale: T.Tensor } {
  const nbN = Math.ceil(N / 128);
  const nbK = Math.ceil(K / 128);
  const scale = new Float32Array(nbN * nbK);
  const y = new Float32Array(N * K);
  for (let bn = 0; bn < nbN; bn++) for (let bk = 0; bk < nbK; bk++) {
    let amax = 1e-8;
    for (let n = bn * 128; n < Math.min(N, bn * 128 + 128); n++) for (let k = bk * 128; k < Math.min(K, bk * 128 + 128); k++) amax = Math.max(amax, Math.abs(w[n * K + k]!));
    const sc = Math.fround(amax / 448);
    scale[bn * nbK + bk] = sc;
    for (let n = bn * 128; n < Math.min(N, bn * 128 + 128); n++) for (let k = bk * 128; k < Math.min(K, bk * 128 + 128); k++) y[n * K + k] = w[n * K + k]! / sc;
  }
  return { w8: T.cast(T.fromArray(y, [N, K]), 'f8e4m3'), scale: T.fromArray(scale, [nbN, nbK]) };
}

function makeLayer(v: Variant, seed: number, fp8 = false): Layer {
  const cfg = { ...randomConfig({ num_hidden_layers: 2, ...v.over }), fp8Weights: fp8 };
  const ck = randomCheckpoint(cfg, seed);
  if (v.noBias) ck.delete(`${LAYER}.gate.e_score_correction_bias`);
  const names = (p: string, n: number): string[] => Array.from({ length: n }, (_, e) => (p.endsWith('shared_experts') ? p : `${p}.${e}`));
  const ex = `${LAYER}.experts`;
  const sp = `${LAYER}.shared_experts`;
  const E = cfg.nRoutedExperts;
  if (fp8) {
    // every expert projection (routed and shared) becomes e4m3 codes with their block scales
    for (const p of [...names(ex, E), ...(cfg.nSharedExperts > 0 ? [sp] : [])]) {
      for (const proj of ['gate_proj', 'up_proj', 'down_proj']) {
        const n = `${p}.${proj}.weight`;
        const t = ck.get(n)!;
        const q = quantizeFp8(t.toFloat32(), t.shape[0]!, t.shape[1]!);
        ck.set(n, q.w8);
        ck.set(`${n}_scale_inv`, q.scale);
      }
    }
  }
  const weights = ModelWeights.open(cfg, mapSource(ck));
  const moe = new MoE(cfg, weights, LAYER, true);
  const dense = (n: string): T.Tensor => {
    const lw = weights.linear(n);
    return lw.kind === 'dense' ? lw.w : T.zeros([lw.out, lw.in]);
  };
  const stack = (p: string, proj: string, n: number): T.Tensor => T.stack(names(p, n).map((q) => dense(`${q}.${proj}.weight`)), 0);
  const stack8 = (p: string, proj: string, n: number): Fp8Stack => ({
    w8: T.stack(names(p, n).map((q) => ck.get(`${q}.${proj}.weight`)!), 0),
    scale: T.stack(names(p, n).map((q) => ck.get(`${q}.${proj}.weight_scale_inv`)!), 0),
  });
  void stack8;
  return {
    cfg,
    moe,
    weights,
    gateW: weights.float(`${LAYER}.gate.weight`),
    bias: weights.has(`${LAYER}.gate.e_score_correction_bias`) ? weights.float(`${LAYER}.gate.e_score_correction_bias`) : null,
    wg: stack(ex, 'gate_proj', E),
    wu: stack(ex, 'up_proj', E),
    wd: stack(ex, 'down_proj', E),
    shared: cfg.nSharedExperts > 0 ? { wg: stack(sp, 'gate_proj', 1), wu: stack(sp, 'up_proj', 1), wd: stack(sp, 'down_proj', 1) } : null,
    fp8: fp8 ? {
      wg: stack8(ex, 'gate_proj', E), wu: stack8(ex, 'up_proj', E), wd: stack8(ex, 'down_proj', E),
      sg: cfg.nSharedExperts > 0 ? stack8(sp, 'gate_proj', 1) : stack8(ex, 'gate_proj', 1),
      su: cfg.nSharedExperts > 0 ? stack8(sp, 'up_proj', 1) : stack8(ex, 'up_proj', 1),
      sd: cfg.nSharedExperts > 0 ? stack8(sp, 'down_proj', 1) : stack8(ex, 'down_proj', 1),
    } : null,
  };
}

/** Device copies of host weights, made once (so a graph capture meets no host→device copy). */
const uploads = new WeakMap<T.Tensor, Map<string, T.Tensor>>();
function up(t: T.Tensor, dev: string, dtype: T.DType = t.dtype): T.Tensor {
  let m = uploads.get(t);
  if (!m) uploads.set(t, (m = new Map()));
  const key = `${dev}/${dtype}`;
  let u = m.get(key);
  if (!u) m.set(key, (u = on(T.cast(t, dtype), dev)));
  return u;
}
const segmentOffsets = new Map<string, T.Tensor>();

/** One MoE layer composed from the ops, on the device of x. */
function composedMoe(L: Layer, x: T.Tensor, dt: T.DType, wdt: T.DType, forced?: Int32Array | T.Tensor | null): { y: T.Tensor; experts: T.Tensor } {
  const dev = x.device;
  const cfg = L.cfg;
  const W = (t: T.Tensor): T.Tensor => up(t, dev, wdt);
  const logits = T.linear(T.cast(x, 'f32'), up(L.gateW, dev));
  const s = cfg.scoreFunc === 'sigmoid' ? T.sigmoid(logits) : T.softmax(logits, -1);
  const experts = T.moeRoute(s, { bias: L.bias ? up(L.bias, dev) : null, groups: cfg.nExpertGroups, topkGroups: cfg.nLimitedGroups, k: cfg.nActivatedExperts, forced });
  const w = T.moeRouteWeights(s, experts, { normalize: cfg.scoreFunc === 'sigmoid', scale: cfg.routeScale });
  const d = T.moeDispatch(experts, cfg.nRoutedExperts);
  type Wt = T.Tensor | Fp8Stack;
  const gemm = (a: T.Tensor, w: Wt, off: T.Tensor): T.Tensor =>
    w instanceof T.Tensor ? T.groupedMatmul(a, W(w), off) : T.groupedMatmulFp8(a, up(w.w8, dev), up(w.scale, dev), off, { ue8m0: true });
  const swiglu = (xs: T.Tensor, wg: Wt, wu: Wt, wd: Wt, off: T.Tensor): T.Tensor => {
    const g = gemm(xs, wg, off);
    const u = gemm(xs, wu, off);
    const h = T.cast(T.mul(T.silu(T.cast(g, 'f32')), T.cast(u, 'f32')), dt);
    return gemm(h, wd, off);
  };
  const f8 = L.fp8;
  const ys = f8 ? swiglu(T.indexSelect(x, 0, d.tokens), f8.wg, f8.wu, f8.wd, d.offsets) : swiglu(T.indexSelect(x, 0, d.tokens), L.wg, L.wu, L.wd, d.offsets);
  // the shared expert: one segment holding every token
  const Tn = x.shape[0]!;
  let all = segmentOffsets.get(`${dev}/${Tn}`);
  if (!all) segmentOffsets.set(`${dev}/${Tn}`, (all = T.fromArray(Int32Array.from([0, Tn]), [2], { dtype: 'i32', device: dev })));
  const shared = L.shared ? (f8 ? swiglu(x, f8.sg, f8.su, f8.sd, all) : swiglu(x, L.shared.wg, L.shared.wu, L.shared.wd, all)) : null;
  return { y: T.moeCombine(ys, w, d.rows, { shared, dtype: dt }), experts };
}

for (const v of VARIANTS) {
  eachDevice(`composed MoE == MoE.forward: ${v.name}`, (dev) => {
    const L = makeLayer(v, 7 + VARIANTS.indexOf(v));
    const cfg = L.cfg;
    const rnd = mulberry32(99 + VARIANTS.indexOf(v));
    for (const dt of ['f32', 'bf16'] as const) {
      for (const Tn of [1, 7, 33]) {
        const x = T.fromArray(normals(Tn * cfg.dim, rnd), [Tn, cfg.dim], { dtype: dt });
        const routes = randomRoutes(Tn, cfg.nRoutedExperts, cfg.nActivatedExperts, rnd);
        const cases: [string, Int32Array | null, 'host' | 'tensor'][] = [['chosen', null, 'host'], ['forced (host)', routes, 'host'], ['forced (tensor)', routes, 'tensor']];
        for (const [what, forced, kind] of cases) {
          const tag = `${v.name} ${dt} T=${Tn} ${what}`;
          const ref = T.noGrad(() => hostMoe(L.cfg, L.weights, LAYER, true, x, dt, forced));
          const f = forced && kind === 'tensor' ? T.fromArray(forced, [Tn, cfg.nActivatedExperts], { dtype: 'i32', device: dev }) : forced;
          // bf16 weights hold the checkpoint's exact values: the same products as the f32 stacks
          for (const wdt of ['f32', 'bf16'] as const) {
            const got = T.noGrad(() => composedMoe(L, on(x, dev), dt, wdt, f));
            assert.deepEqual(Array.from(got.experts.toHost() as Int32Array), Array.from(ref.experts), `${tag}: routes`);
            if (dev === 'cpu') bitsEqual(got.y, ref.y, `${tag} W ${wdt}: y`);
            else close(got.y.toFloat32(), ref.y.toFloat32(), dt === 'f32' ? 1e-5 : 2e-2, dt === 'f32' ? 1e-4 : 1e-2, `${tag} W ${wdt}: y`);
            if (dev === 'cpu' && wdt === 'f32') {
              // the model's MoE is this composition: the same bits as the former host loop
              const m = T.noGrad(() => L.moe.forward(x, dt, forced));
              assert.deepEqual(Array.from(m.routing.experts.toHost() as Int32Array), Array.from(ref.experts), `${tag}: model routes`);
              bitsEqual(m.y, ref.y, `${tag}: model y`);
            }
          }
        }
      }
    }
  });
}

for (const v of [VARIANTS[0]!, VARIANTS[3]!]) {
  eachDevice(`composed MoE == MoE.forward with FP8 expert weights: ${v.name}`, (dev) => {
    const L = makeLayer(v, 50 + VARIANTS.indexOf(v), true);
    const cfg = L.cfg;
    const rnd = mulberry32(77);
    for (const dt of ['f32', 'bf16'] as const) {
      for (const Tn of [1, 7, 33]) {
        const x = T.fromArray(normals(Tn * cfg.dim, rnd), [Tn, cfg.dim], { dtype: dt });
        const routes = randomRoutes(Tn, cfg.nRoutedExperts, cfg.nActivatedExperts, rnd);
        for (const forced of [null, routes]) {
          const tag = `FP8 ${v.name} ${dt} T=${Tn} ${forced ? 'forced' : 'chosen'}`;
          const ref = T.noGrad(() => hostMoe(L.cfg, L.weights, LAYER, true, x, dt, forced));
          const got = T.noGrad(() => composedMoe(L, on(x, dev), dt, 'f32', forced));
          assert.deepEqual(Array.from(got.experts.toHost() as Int32Array), Array.from(ref.experts), `${tag}: routes`);
          if (dev === 'cpu') bitsEqual(got.y, ref.y, `${tag}: y`);
          else close(got.y.toFloat32(), ref.y.toFloat32(), dt === 'f32' ? 1e-5 : 2e-2, dt === 'f32' ? 1e-4 : 1e-2, `${tag}: y`);
        }
      }
    }
  });
}

eachDevice('groupedMatmulFp8 == fp8Linear per segment', (dev) => eachMoePath(dev, (path) => {
  const rnd = mulberry32(61);
  for (const [M, K, N, offs] of [[37, 200, 136, [2, 2, 9, 9, 30, 35]], [1, 128, 64, [0, 1]], [70, 300, 24, [0, 0, 64, 65, 70]],
    [37, 256, 136, [2, 2, 9, 9, 30, 35]], [12, 272, 40, [0, 0, 3, 3, 3, 4, 4, 10, 12, 12]]] as const) {
    const E = offs.length - 1;
    const q = Array.from({ length: E }, () => quantizeFp8(normals(N * K, rnd, K ** -0.5), N, K));
    const w8 = T.stack(q.map((z) => z.w8), 0);
    const sw = T.stack(q.map((z) => z.scale), 0);
    for (const xdt of ['f32', 'bf16'] as const) {
      const x = T.cast(T.fromArray(normals(M * K, rnd), [M, K]), xdt);
      const y = T.groupedMatmulFp8(on(x, dev), on(w8, dev), on(sw, dev), T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32', device: dev }));
      assert.equal(y.dtype, xdt);
      const yv = y.toFloat32();
      // the CPU widens FP8 codes: the experts' decoded f32 values (the model's fp8Codes) give the same bits
      if (dev === 'cpu') bitsEqual(T.groupedMatmulFp8(x, T.cast(w8, 'f32'), sw, T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32' })), y, `decoded experts M ${M} K ${K} ${xdt}`);
      for (let i = 0; i < offs[0]! * N; i++) assert.equal(yv[i], 0, 'rows before the first segment are zero');
      for (let i = offs[E]! * N; i < M * N; i++) assert.equal(yv[i], 0, 'rows after the last segment are zero');
      for (let e = 0; e < E; e++) {
        const m = offs[e + 1]! - offs[e]!;
        if (!m) continue;
        const ref = T.fp8Linear(T.narrow(x, 0, offs[e]!, m), q[e]!.w8, q[e]!.scale, { ue8m0: true });
        const seg = T.contiguous(T.narrow(y, 0, offs[e]!, m));
        const tag = `M ${M} K ${K} N ${N} ${xdt} segment ${e}${path}`;
        if (dev === 'cpu') bitsEqual(seg, ref, tag);
        else close(seg.toFloat32(), ref.toFloat32(), xdt === 'f32' ? 1e-5 : 2e-2, xdt === 'f32' ? 1e-4 : 1e-2, tag);
      }
    }
  }
}));

// No host read inside the step: route → dispatch → grouped SwiGLU → combine is captured into a CUDA graph and
// replayed on new inputs (copied into the captured input buffers) with the eager results, routes included.
test('the composed MoE step captures into a CUDA graph and replays [cuda]', onGpu, () => {
  const b = T.getBackend('cuda') as unknown as { captureGraph(fn: () => void): { replay(): void; destroy(): void } };
  const L = makeLayer(VARIANTS[1]!, 91);
  const cfg = L.cfg;
  const rnd = mulberry32(93);
  for (const [dt, Tn, replay] of [['bf16', 7, false], ['f32', 33, false], ['bf16', 7, true]] as const) {
    const x = on(T.fromArray(normals(Tn * cfg.dim, rnd), [Tn, cfg.dim], { dtype: dt }), 'cuda');
    const forced = replay ? on(T.fromArray(randomRoutes(Tn, cfg.nRoutedExperts, cfg.nActivatedExperts, rnd), [Tn, cfg.nActivatedExperts], { dtype: 'i32' }), 'cuda') : null;
    T.noGrad(() => composedMoe(L, x, dt, 'bf16', forced)); // warm: uploads and kernel modules outside the capture
    let got: { y: T.Tensor; experts: T.Tensor } | null = null;
    const g = b.captureGraph(() => {
      got = T.noGrad(() => composedMoe(L, x, dt, 'bf16', forced));
    });
    for (let rep = 0; rep < 2; rep++) {
      const fresh = T.fromArray(normals(Tn * cfg.dim, rnd), [Tn, cfg.dim], { dtype: dt });
      x.backend.copy(x, on(fresh, 'cuda'));
      g.replay();
      const want = T.noGrad(() => composedMoe(L, on(fresh, 'cuda'), dt, 'bf16', forced));
      const tag = `${dt} T=${Tn}${replay ? ' forced' : ''} replay ${rep}`;
      assert.deepEqual(Array.from(got!.experts.toHost() as Int32Array), Array.from(want.experts.toHost() as Int32Array), `${tag}: routes`);
      bitsEqual(got!.y, want.y, `${tag}: y`);
    }
    g.destroy();
  }
});

eachDevice('moeRoute == selectExperts on scores with ties', (dev) => {
  const rnd = mulberry32(5);
  for (const [E, G, TG, k, withBias] of [[8, 4, 2, 2, true], [16, 4, 3, 6, true], [16, 8, 3, 4, false], [12, 1, 1, 3, true], [64, 8, 4, 8, true], [256, 8, 4, 8, true], [33, 1, 1, 5, false]] as const) {
    const Tn = 19;
    // few levels: many exact ties among scores, group scores and biased scores
    const s = Float32Array.from({ length: Tn * E }, () => Math.round(rnd() * 6) / 8);
    const bias = withBias ? Float32Array.from({ length: E }, () => Math.round(rnd() * 2) / 8) : null;
    const cfg = { nRoutedExperts: E, nExpertGroups: G, nLimitedGroups: TG, nActivatedExperts: k } as ModelConfig;
    const want = selectExperts(s, bias, Tn, cfg);
    const got = T.moeRoute(T.fromArray(s, [Tn, E], { device: dev }), { bias: bias ? T.fromArray(bias, [E], { device: dev }) : null, groups: G, topkGroups: TG, k });
    assert.deepEqual(Array.from(got.toHost() as Int32Array), Array.from(want), `E ${E} G ${G}/${TG} k ${k} bias ${withBias}`);
  }
});

eachDevice('moeDispatch: stable counting sort by expert', (dev) => {
  const rnd = mulberry32(11);
  for (const [Tn, k, E] of [[1, 1, 1], [1, 8, 256], [7, 2, 8], [33, 6, 16], [300, 8, 256], [1100, 3, 5], [4000, 8, 256], [500, 4, 1000]] as const) {
    // a skewed draw so some experts get nothing and some get many
    const ex = new Int32Array(Tn * k);
    for (let t = 0; t < Tn; t++) ex.set(randomRoutes(1, E, k, () => rnd() ** 2).sort(), t * k);
    const d = T.moeDispatch(T.fromArray(ex, [Tn, k], { dtype: 'i32', device: dev }), E);
    const order = Array.from({ length: Tn * k }, (_, i) => i).sort((a, b) => ex[a]! - ex[b]! || a - b);
    const offs = new Int32Array(E + 1);
    for (const e of ex) offs[e + 1]!++;
    for (let e = 0; e < E; e++) offs[e + 1] = offs[e + 1]! + offs[e]!;
    const tag = `T ${Tn} k ${k} E ${E}`;
    assert.deepEqual(Array.from(d.pairs.toHost() as Int32Array), order, `${tag}: pairs`);
    assert.deepEqual(Array.from(d.tokens.toHost() as Int32Array), order.map((i) => Math.floor(i / k)), `${tag}: tokens`);
    const rows = new Array<number>(Tn * k);
    order.forEach((i, p) => { rows[i] = p; });
    assert.deepEqual(Array.from(d.rows.toHost() as Int32Array), rows, `${tag}: rows`);
    assert.deepEqual(Array.from(d.offsets.toHost() as Int32Array), Array.from(offs), `${tag}: offsets`);
  }
  const empty = T.moeDispatch(T.fromArray(new Int32Array(0), [0, 4], { dtype: 'i32', device: dev }), 3);
  assert.deepEqual(Array.from(empty.offsets.toHost() as Int32Array), [0, 0, 0, 0]);
});

// Shapes: all but the 3-wide K ones fit the tensor-core kernel's limits (K, N multiples of 8); the 300-row
// case has segments across its 128-row tiles, a K tail of 8 past its 32-wide steps, N past one 128-column
// tile, and uncovered rows at both ends.
const GMM_SHAPES = [[37, 40, 24, [2, 2, 9, 9, 30, 35]], [1, 16, 8, [0, 1]], [130, 72, 136, [0, 0, 64, 65, 129, 130, 130]], [5, 3, 2, [0, 5]],
  [300, 264, 200, [3, 3, 150, 151, 290, 297]], [12, 264, 56, [0, 0, 3, 3, 3, 4, 4, 10, 12, 12]]] as const;

eachDevice('groupedMatmul: empty segments, uncovered rows, f32/bf16, against f64', (dev) => eachMoePath(dev, (path) => {
  const rnd = mulberry32(21);
  for (const [M, K, N, offs] of GMM_SHAPES) {
    const E = offs.length - 1;
    for (const [xdt, wdt] of [['f32', 'f32'], ['bf16', 'bf16'], ['bf16', 'f32']] as const) {
      const x = T.cast(T.fromArray(normals(M * K, rnd), [M, K]), xdt);
      const w = T.cast(T.fromArray(normals(E * N * K, rnd, K ** -0.5), [E, N, K]), wdt);
      const xv = x.toFloat64();
      const wv = w.toFloat64();
      const want = new Float64Array(M * N);
      for (let e = 0; e < E; e++) for (let m = offs[e]!; m < offs[e + 1]!; m++) for (let n = 0; n < N; n++) {
        let a = 0;
        for (let c = 0; c < K; c++) a += xv[m * K + c]! * wv[(e * N + n) * K + c]!;
        want[m * N + n] = a;
      }
      const y = T.groupedMatmul(on(x, dev), on(w, dev), T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32', device: dev }));
      assert.equal(y.dtype, xdt);
      const tag = `M ${M} K ${K} N ${N} ${xdt}·${wdt}${path}`;
      close(y.toFloat64(), want, xdt === 'f32' ? 1e-5 : 1e-2, xdt === 'f32' ? 1e-5 : 8e-3, tag);
      if (dev === 'cpu') {
        // per segment the same call as F.linear on the segment's rows
        for (let e = 0; e < E; e++) {
          const m = offs[e + 1]! - offs[e]!;
          if (!m) continue;
          const ref = T.cast(T.linear(T.narrow(x, 0, offs[e]!, m), T.reshape(T.narrow(w, 0, e, 1), [N, K])), xdt);
          bitsEqual(T.contiguous(T.narrow(y, 0, offs[e]!, m)), ref, `${tag} segment ${e}`);
        }
      }
    }
  }
}));

eachDevice('groupedMatmul backward: dx and dW on the device, against f64', (dev) => eachMoePath(dev, (path) => {
  const rnd = mulberry32(71);
  for (const [M, K, N, offs] of [[37, 40, 24, [2, 2, 9, 9, 30, 35]], [130, 72, 136, [0, 0, 64, 65, 129, 130, 130]], [3, 5, 70, [0, 3]],
    [300, 264, 200, [3, 3, 150, 151, 290, 297]]] as const) {
    const E = offs.length - 1;
    for (const [xdt, wdt] of [['f32', 'f32'], ['bf16', 'bf16'], ['bf16', 'f32']] as const) {
      const x = T.cast(T.fromArray(normals(M * K, rnd), [M, K]), xdt);
      const w = T.cast(T.fromArray(normals(E * N * K, rnd, K ** -0.5), [E, N, K]), wdt);
      const g = T.cast(T.fromArray(normals(M * N, rnd), [M, N]), xdt);
      const xd = on(x, dev);
      const wd = on(w, dev);
      xd.requiresGrad = true;
      wd.requiresGrad = true;
      const y = T.groupedMatmul(xd, wd, T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32', device: dev }));
      T.backward(y, on(g, dev));
      assert.equal(xd.grad!.dtype, xdt);
      assert.equal(wd.grad!.dtype, wdt);
      const xv = x.toFloat64();
      const wv = w.toFloat64();
      const gv = g.toFloat64();
      const dx = new Float64Array(M * K);
      const dw = new Float64Array(E * N * K);
      for (let e = 0; e < E; e++) for (let p = offs[e]!; p < offs[e + 1]!; p++) for (let n = 0; n < N; n++) for (let c = 0; c < K; c++) {
        dx[p * K + c] += gv[p * N + n]! * wv[(e * N + n) * K + c]!;
        dw[(e * N + n) * K + c] += gv[p * N + n]! * xv[p * K + c]!;
      }
      const tag = `M ${M} K ${K} N ${N} ${xdt}·${wdt}${path}`;
      close(xd.grad!.toFloat64(), dx, xdt === 'f32' ? 1e-5 : 3e-2, xdt === 'f32' ? 1e-5 : 8e-3, `${tag}: dx`);
      close(wd.grad!.toFloat64(), dw, wdt === 'f32' ? 1e-4 : 3e-2, wdt === 'f32' ? 1e-5 : 8e-3, `${tag}: dW`);
    }
  }
}));

eachDevice('moeCombine: f32 slot-order accumulation, shared expert, output dtype', (dev) => {
  const rnd = mulberry32(31);
  for (const [Tn, k, D] of [[1, 1, 8], [7, 2, 33], [33, 6, 64]] as const) {
    for (const ydt of ['f32', 'bf16'] as const) {
      const ex = randomRoutes(Tn, 8, k, rnd);
      for (let t = 0; t < Tn; t++) ex.subarray(t * k, (t + 1) * k).sort();
      const d = T.moeDispatch(T.fromArray(ex, [Tn, k], { dtype: 'i32', device: dev }), Math.max(8, k));
      const ys = T.cast(T.fromArray(normals(Tn * k * D, rnd), [Tn * k, D]), ydt);
      const w = T.fromArray(Float32Array.from({ length: Tn * k }, () => rnd()), [Tn, k]);
      const sh = T.cast(T.fromArray(normals(Tn * D, rnd), [Tn, D]), ydt);
      const rows = d.rows.toHost() as Int32Array;
      const yv = ys.toFloat32();
      const wv = w.toFloat32();
      const sv = sh.toFloat32();
      const want = new Float32Array(Tn * D);
      for (let t = 0; t < Tn; t++) for (let j = 0; j < k; j++) for (let c = 0; c < D; c++) {
        want[t * D + c] = Math.fround(want[t * D + c]! + Math.fround(yv[rows[t * k + j]! * D + c]! * wv[t * k + j]!));
      }
      for (let i = 0; i < want.length; i++) want[i] = Math.fround(want[i]! + sv[i]!);
      const y = T.moeCombine(on(ys, dev), on(w, dev), d.rows, { shared: on(sh, dev), dtype: 'f32' });
      // the kernel rounds the product and the sum separately (no FMA contraction): identical on every device
      assert.deepEqual(Array.from(y.toFloat32()), Array.from(want), `T ${Tn} k ${k} D ${D} ${ydt}`);
      const yb = T.moeCombine(on(ys, dev), on(w, dev), d.rows);
      assert.equal(yb.dtype, ydt);
    }
  }
});

test('gradients: moeCombine, groupedMatmul, moeRouteWeights (f64 finite differences)', () => {
  const rnd = mulberry32(41);
  const Tn = 5;
  const k = 2;
  const E = 4;
  const D = 3;
  const ex = randomRoutes(Tn, E, k, rnd);
  for (let t = 0; t < Tn; t++) ex.subarray(t * k, (t + 1) * k).sort();
  const experts = T.fromArray(ex, [Tn, k], { dtype: 'i32' });
  const d = T.moeDispatch(experts, E);
  const f64 = (n: number, shape: number[]): T.Tensor => T.fromArray(Float64Array.from(normals(n, rnd)), shape, { dtype: 'f64' });
  const ys = f64(Tn * k * D, [Tn * k, D]);
  const w = f64(Tn * k, [Tn, k]);
  const sh = f64(Tn * D, [Tn, D]);
  const wt = f64(Tn * D, [Tn, D]);
  for (const x of [ys, w, sh]) x.requiresGrad = true;
  let r = T.gradcheck((a, b, c) => T.sum(T.mul(T.moeCombine(a!, b!, d.rows, { shared: c! }), wt)), [ys, w, sh]);
  assert.ok(r.ok, `moeCombine: ${r.detail}`);
  const K = 3;
  const N = 2;
  const xs = f64(Tn * k * K, [Tn * k, K]);
  const W = f64(E * N * K, [E, N, K]);
  const wo = f64(Tn * k * N, [Tn * k, N]);
  xs.requiresGrad = true;
  W.requiresGrad = true;
  r = T.gradcheck((a, b) => T.sum(T.mul(T.groupedMatmul(a!, b!, d.offsets), wo)), [xs, W]);
  assert.ok(r.ok, `groupedMatmul: ${r.detail}`);
  // with rows outside every segment
  const off2 = T.fromArray(Int32Array.from([1, 3, 3, 6, 8]), [5], { dtype: 'i32' });
  r = T.gradcheck((a, b) => T.sum(T.mul(T.groupedMatmul(a!, b!, off2), wo)), [xs, W]);
  assert.ok(r.ok, `groupedMatmul (uncovered rows): ${r.detail}`);
  const s = T.fromArray(Float64Array.from({ length: Tn * E }, () => 0.1 + rnd()), [Tn, E], { dtype: 'f64' });
  s.requiresGrad = true;
  r = T.gradcheck((a) => T.sum(T.mul(T.moeRouteWeights(a!, experts, { normalize: true, scale: 2.5 }), w)), [s]);
  assert.ok(r.ok, `moeRouteWeights: ${r.detail}`);
});

eachDevice('moeRoute: forced routes are sorted and validated', (dev) => {
  const s = T.fromArray(Float32Array.from({ length: 2 * 8 }, (_, i) => (i * 7) % 5), [2, 8], { device: dev });
  const got = T.moeRoute(s, { groups: 4, topkGroups: 2, k: 3, forced: Int32Array.from([5, 1, 3, 0, 7, 2]) });
  assert.deepEqual(Array.from(got.toHost() as Int32Array), [1, 3, 5, 0, 2, 7]);
  const asTensor = T.moeRoute(s, { groups: 4, topkGroups: 2, k: 3, forced: T.fromArray(Int32Array.from([5, 1, 3, 0, 7, 2]), [2, 3], { dtype: 'i32', device: dev }) });
  assert.deepEqual(Array.from(asTensor.toHost() as Int32Array), [1, 3, 5, 0, 2, 7]);
  assert.throws(() => T.moeRoute(s, { k: 3, forced: Int32Array.from([5, 1, 8, 0, 7, 2]) }), /token 0 has expert id 8/);
  assert.throws(() => T.moeRoute(s, { k: 3, forced: Int32Array.from([5, 1, 3, 0, 7, 0]) }), /token 1 repeats expert 0/);
  const bad = (ids: number[]): T.Tensor => T.fromArray(Int32Array.from(ids), [2, 3], { dtype: 'i32', device: dev });
  assert.throws(() => T.moeRoute(s, { k: 3, forced: bad([5, 1, -1, 0, 7, 2]) }), /expert/);
  assert.throws(() => T.moeRoute(s, { k: 3, forced: bad([5, 5, 3, 0, 7, 2]) }), /expert/);
  assert.throws(() => T.moeRoute(s, { groups: 3, k: 2 }), /cannot be split/);
});
