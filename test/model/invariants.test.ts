// The invariants of model.md §15, each as its own test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, MoE, selectionIndices } from '../../src/model/index.js';
import { indexScores } from '../oracles/indexer.js';
import { sparseMhaAttention, sparseMqaAttention } from '../oracles/sparse-attention.js';
import { Rng } from '../../src/tensor/random.js';
import { backward } from '../../src/tensor/autograd.js';
import { fromArray, Tensor } from '../../src/tensor/tensor.js';
import { e4m3BitsToF32 } from '../../src/tensor/dtype.js';
import { actQuant, cast, mul, sum } from '../../src/tensor/index.js';
import { diff, fixtureDir } from './golden-data.js';

let tiny: DeepseekV32 | null = null;
function tinyModel(): DeepseekV32 {
  tiny ??= DeepseekV32.load(fixtureDir('tiny-f32'));
  return tiny;
}

function randomTokens(B: number, S: number, vocab: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: B }, () => [0, ...Array.from({ length: S - 1 }, () => 2 + rng.int(vocab - 2))]);
}

function relMax(a: Float32Array, b: Float32Array): number {
  const d = diff(a, b);
  return d.maxAbs / d.maxRef;
}

test('MHA mode (prefill) == absorbed MQA mode (decode) on the same inputs, f32', () => {
  const m = tinyModel();
  const toks = randomTokens(2, 24, m.cfg.vocabSize, 1);
  const a = m.forward(toks, { mode: 'mha' });
  const b = m.forward(toks, { mode: 'mqa' });
  assert.ok(relMax(a.logits!.toFloat32(), b.logits!.toFloat32()) < 1e-5);
  a.topk.forEach((s, l) => assert.deepEqual(Array.from(selectionIndices(s)), Array.from(selectionIndices(b.topk[l]!)), `layer ${l}`));
});

test('DSA == dense causal attention while end_pos ≤ index_topk; sparse differs beyond', () => {
  const m = tinyModel();
  const dense = new DeepseekV32({ ...m.cfg, indexTopk: 1 << 30 }, m.weights);
  const short = randomTokens(2, m.cfg.indexTopk, m.cfg.vocabSize, 2);
  assert.deepEqual(Array.from(m.forward(short).logits!.toFloat32()), Array.from(dense.forward(short).logits!.toFloat32()));
  const long = randomTokens(2, 40, m.cfg.vocabSize, 3);
  const d = diff(m.forward(long).logits!.toFloat32(), dense.forward(long).logits!.toFloat32());
  assert.ok(d.maxAbs > 1e-2, `sparse selection should matter at 40 > 16 tokens (max |Δ| ${d.maxAbs})`);
});

test('prefill of N then decode (and chunked prefill) == one prefill of everything', () => {
  const m = tinyModel();
  const V = m.cfg.vocabSize;
  const toks = randomTokens(2, 30, V, 4);
  const N = 20;
  const full = m.forward(toks);
  const fl = full.logits!.toFloat32();
  const pre = m.forward(toks.map((r) => r.slice(0, N)), { logits: 'none' });
  for (let p = N; p < 30; p++) {
    const d = m.forward(toks.map((r) => [r[p]!]), { cache: pre.cache });
    const v = d.logits!.toFloat32();
    for (let b = 0; b < 2; b++) {
      const want = fl.subarray((b * 30 + p) * V, (b * 30 + p + 1) * V);
      assert.ok(relMax(v.subarray(b * V, (b + 1) * V), want) < 1e-5, `decode position ${p} row ${b}`);
      d.topk.forEach((s, l) => {
        const fw = full.topk[l]!;
        assert.deepEqual(Array.from(selectionIndices(s).subarray(b * s.width, (b + 1) * s.width)), Array.from(selectionIndices(fw).subarray((b * 30 + p) * fw.width, (b * 30 + p + 1) * fw.width)));
      });
    }
  }
  // a second prefill chunk continues the cache in MHA mode with start_pos > 0
  const c1 = m.forward(toks.map((r) => r.slice(0, N)), { logits: 'none' });
  const c2 = m.forward(toks.map((r) => r.slice(N)), { cache: c1.cache }).logits!.toFloat32();
  for (let b = 0; b < 2; b++) {
    assert.ok(relMax(c2.subarray(b * 10 * V, (b + 1) * 10 * V), fl.subarray((b * 30 + N) * V, (b + 1) * 30 * V)) < 1e-5);
  }
});

test('Hadamard invariance: with FP8 off, index scores with and without the rotation agree', () => {
  const m = tinyModel();
  const cfg = m.cfg;
  const S = 12;
  const rng = new Rng(5);
  const x = fromArray(Float32Array.from({ length: S * cfg.dim }, () => rng.normal()), [S, cfg.dim]);
  const qr = fromArray(Float32Array.from({ length: S * cfg.qLoraRank }, () => rng.normal()), [S, cfg.qLoraRank]);
  const ix = m.layers[1]!.attn.indexer;
  const rot = m.rotary.at(0, S);
  const scores = (o: { quantize: boolean; rotate: boolean }): Float32Array => {
    const p = ix.project(x, qr, 1, S, rot, 'f32', o);
    const host = (t: Tensor): Float32Array => cast(t, 'f32').toFloat32();
    return indexScores(host(p.q), host(p.w), host(p.k), host(p.ks), S, cfg.indexNHeads, cfg.indexHeadDim, S, 0);
  };
  const finite = (a: Float32Array): Float32Array => a.map((v) => (Number.isFinite(v) ? v : 0));
  const plain = finite(scores({ quantize: false, rotate: false }));
  const rotated = finite(scores({ quantize: false, rotate: true }));
  assert.ok(relMax(rotated, plain) < 1e-5, `rotation changed unquantised scores by ${relMax(rotated, plain)}`);
  // with FP8 on, the scores move by the e4m3 grid (a few %), so the switch really quantises
  const q = relMax(finite(scores({ quantize: true, rotate: true })), plain);
  assert.ok(q > 1e-4 && q < 0.2, `fp8 scores differ by ${q}`);
});

// ---- act_quant --------------------------------------------------------------------------------
/** Independent e4m3fn encoder: the nearest finite code (|y| ≤ 448), ties to the even code. */
const E4M3 = (() => {
  const v: number[] = [];
  for (let c = 0; c < 0x7f; c++) {
    const e = c >> 3;
    const mm = c & 7;
    v.push(e === 0 ? mm * 2 ** -9 : (1 + mm / 8) * 2 ** (e - 7));
  }
  return v;
})();
function refE4m3(y: number): number {
  const a = Math.abs(y);
  let best = 0;
  for (let c = 1; c < E4M3.length; c++) {
    const d = Math.abs(E4M3[c]! - a) - Math.abs(E4M3[best]! - a);
    if (d < 0 || (d === 0 && (c & 1) === 0)) best = c;
  }
  return Math.sign(y) * E4M3[best]!;
}
function refPow2Ceil(x: number): number {
  let s = 1;
  while (s < x) s *= 2;
  while (s / 2 >= x) s /= 2;
  return s;
}

test('act_quant is bit-exact: ue8m0 scales, clamp ±448, e4m3 RNE (ties, subnormals), 1e-4 floor, trailing partial block', () => {
  const rng = new Rng(6);
  const N = 320; // blocks of 128, 128 and a trailing 64
  const rows = 3;
  const x = new Float32Array(rows * N);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(rng.normal() * 3);
  // row 0 edge values (block amax 800 → 800·fp32(1/448) = 1.79 → scale 2): 400 ties between the codes
  // 384 and 416, exact ties between normal codes and between subnormals
  const edges = [800, -800, 2 * 1.0625, 2 * 1.1875, 2 * 3 * 2 ** -10, 2 * 5 * 2 ** -10, 2 * 2 ** -10, 2 * 2 ** -11, 2 * 447.9, -2 * 0.0137];
  edges.forEach((v, i) => (x[i] = Math.fround(v)));
  // row 1, block 1: all zeros → amax clamps to 1e-4
  for (let j = 128; j < 256; j++) x[N + j] = 0;
  // row 2, trailing block: small values, so its scale must come from its own 64 values only
  for (let j = 256; j < N; j++) x[2 * N + j] = Math.fround(x[2 * N + j]! * 1e-3);
  const { q, s } = actQuant(fromArray(x, [rows, N]), 128, { ue8m0: true });
  const qb = q.toHost() as Uint8Array;
  const sv = s.toFloat32();
  assert.deepEqual(s.shape, [rows, 3]);
  const inv448 = Math.fround(1 / 448);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < 3; b++) {
      const lo = b * 128;
      const hi = Math.min(N, lo + 128);
      let amax = 0;
      for (let j = lo; j < hi; j++) amax = Math.max(amax, Math.abs(x[r * N + j]!));
      const sc = refPow2Ceil(Math.fround(Math.max(amax, 1e-4) * inv448));
      assert.equal(sv[r * 3 + b], sc, `scale of row ${r} block ${b}`);
      for (let j = lo; j < hi; j++) {
        const y = Math.min(448, Math.max(-448, Math.fround(x[r * N + j]! / sc)));
        const want = refE4m3(y);
        const got = e4m3BitsToF32(qb[r * N + j]!);
        assert.ok(Object.is(got, want) || (got === 0 && want === 0), `row ${r} col ${j}: x=${x[r * N + j]} → ${got}, expected ${want}`);
      }
    }
  }
  // spot checks of the edge semantics themselves (scale 2 in row 0 block 0)
  assert.equal(sv[0], 2);
  assert.equal(e4m3BitsToF32(qb[0]!), 384); // 400 ties to the even code 384
  assert.equal(e4m3BitsToF32(qb[8]!), 448); // 447.9 rounds to the top code
  assert.equal(e4m3BitsToF32(qb[2]!), 1); // 1.0625 ties to the even code 1.0
  assert.equal(e4m3BitsToF32(qb[3]!), 1.25); // 1.1875 ties to the even code 1.25
  assert.equal(e4m3BitsToF32(qb[4]!), 2 * 2 ** -9); // subnormal tie 1.5·2^-9 → 2·2^-9
  assert.equal(sv[4], refPow2Ceil(Math.fround(1e-4 * inv448)));
});

// ---- gate --------------------------------------------------------------------------------------
function gateModel(logits: number[], bias: number[]): DeepseekV32 {
  const cfg = randomConfig();
  const map = randomCheckpoint(cfg, 7);
  const E = cfg.nRoutedExperts;
  const w = new Float32Array(E * cfg.dim);
  for (let e = 0; e < E; e++) w[e * cfg.dim] = logits[e]!;
  map.set('model.layers.1.mlp.gate.weight', fromArray(w, [E, cfg.dim], { dtype: 'bf16' }));
  map.set('model.layers.1.mlp.gate.e_score_correction_bias', fromArray(Float32Array.from(bias), [E], { dtype: 'f32' }));
  return DeepseekV32.fromSource(cfg, mapSource(map));
}
const sig = (z: number): number => 1 / (1 + Math.exp(-z));

test('MoE gate: sigmoid scores, bias only selects, top-2 group sums limit groups, weights normalised × 2.5', () => {
  // 8 experts in 4 groups of 2, keep 2 groups, 2 experts per token; x = e_0 makes logits = W[:, 0]
  const L = [3, -3, 1, 1, 0.5, 0.5, -2, -2];
  const x = fromArray(Float32Array.from({ length: 256 }, (_, i) => (i === 0 ? 1 : 0)), [1, 256]);
  const noBias = gateModel(L, [0, 0, 0, 0, 0, 0, 0, 0]).layers[1]!.ffn as MoE;
  // expert 0 has the best score, but its group's top-2 sum (0.95 + 0.05) loses to groups 1 and 2
  let r = noBias.gate.route(x);
  assert.deepEqual(Array.from(r.experts.toHost() as Int32Array), [2, 3]); // tie 0.731 = 0.731 → both; lowest indices win
  const biased = gateModel(L, [0, 0, 0, 0, 0.5, 0, 0, 0]).layers[1]!.ffn as MoE;
  r = biased.gate.route(x);
  assert.deepEqual(Array.from(r.experts.toHost() as Int32Array), [2, 4]);
  // weights from the UNBIASED sigmoid scores
  const s2 = sig(1);
  const s4 = sig(0.5);
  const w = r.weights.toFloat32();
  assert.ok(Math.abs(w[0]! - (2.5 * s2) / (s2 + s4)) < 1e-6);
  assert.ok(Math.abs(w[1]! - (2.5 * s4) / (s2 + s4)) < 1e-6);
  assert.ok(Math.abs(w[0]! + w[1]! - 2.5) < 1e-6);
});

test('route replay: forced experts keep the choice, weights come from the current gate and are differentiable', () => {
  const L = [3, -3, 1, 1, 0.5, 0.5, -2, -2];
  const m = gateModel(L, [0, 0, 0, 0, 0, 0, 0, 0]);
  const moe = m.layers[1]!.ffn as MoE;
  const x = fromArray(Float32Array.from({ length: 256 }, (_, i) => (i === 0 ? 1 : 0)), [1, 256]);
  const gw = moe.gate.weight;
  gw.requiresGrad = true;
  try {
    const r = moe.gate.route(x, Int32Array.from([7, 0]));
    assert.deepEqual(Array.from(r.experts.toHost() as Int32Array), [0, 7]);
    const s0 = sig(3);
    const s7 = sig(-2);
    const w = r.weights.toFloat32();
    assert.ok(Math.abs(w[0]! - (2.5 * s0) / (s0 + s7)) < 1e-6);
    // loss = w0 − 2·w1 = 3·w0 − 5 ⇒ ∂loss/∂W[0,0] = 7.5·s0(1−s0)·s7/(s0+s7)², ∂/∂W[7,0] = −7.5·s7(1−s7)·s0/(s0+s7)²
    const loss = sum(mul(r.weights, fromArray(Float32Array.from([1, -2]), [1, 2])));
    backward(loss);
    const g = gw.grad!.toFloat32();
    const den = (s0 + s7) ** 2;
    assert.ok(Math.abs(g[0]! - (7.5 * s0 * (1 - s0) * s7) / den) < 1e-5, `dW[0,0] = ${g[0]}`);
    assert.ok(Math.abs(g[7 * 256]! + (7.5 * s7 * (1 - s7) * s0) / den) < 1e-5, `dW[7,0] = ${g[7 * 256]}`);
    for (const e of [1, 2, 3, 4, 5, 6]) assert.equal(g[e * 256], 0);
    // the MoE output through the differentiable combine equals the plain combine (2 experts: exact)
    const xs = fromArray(Float32Array.from({ length: 3 * 256 }, (_, i) => Math.sin(i)), [3, 256]);
    const withGrad = moe.forward(xs, 'f32').y.toFloat32();
    gw.requiresGrad = false;
    gw.grad = null;
    const plain = moe.forward(xs, 'f32').y.toFloat32();
    assert.deepEqual(Array.from(withGrad), Array.from(plain));
  } finally {
    gw.requiresGrad = false;
    gw.grad = null;
  }
});

// ---- masks -------------------------------------------------------------------------------------
/** Dense attention with −inf outside (causal ∧ selected), in f64; a row with no key gives zeros. */
function denseMasked(q: Float32Array, k: Float32Array, v: Float32Array, S: number, T: number, d: number, dv: number, pos0: number, allowed: (i: number, t: number) => boolean, scale: number): Float64Array {
  const out = new Float64Array(S * dv);
  for (let i = 0; i < S; i++) {
    const sc = new Float64Array(T).fill(-Infinity);
    for (let t = 0; t < T; t++) {
      if (t > pos0 + i || !allowed(i, t)) continue;
      let s = 0;
      for (let c = 0; c < d; c++) s += q[i * d + c]! * k[t * d + c]!;
      sc[t] = s * scale;
    }
    const m = Math.max(...sc);
    if (m === -Infinity) continue;
    let z = 0;
    for (let t = 0; t < T; t++) z += Math.exp(sc[t]! - m);
    for (let t = 0; t < T; t++) {
      const p = Math.exp(sc[t]! - m) / z;
      for (let c = 0; c < dv; c++) out[i * dv + c] += p * v[t * dv + c]!;
    }
  }
  return out;
}

test('masks: prefill = causal ∧ top-k membership (future picks and −1 ignored), decode = membership; empty set → 0', () => {
  const rng = new Rng(8);
  const S = 5;
  const T = 8;
  const pos0 = 3; // queries at positions 3..7 over keys 0..7
  const dn = 4;
  const dr = 2;
  const dv = 3;
  const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.fround(rng.normal()));
  const qn = rnd(S * dn);
  const qp = rnd(S * dr);
  const kn = rnd(T * dn);
  const kp = rnd(T * dr);
  const v = rnd(T * dv);
  const width = 4;
  // query 0 (pos 3) picks only future keys → nothing visible; others mix past, future and padding
  const rows = [[4, 5, 6, 7], [0, 2, 6, -1], [1, 3, 5, -1], [0, 1, 2, 3], [7, -1, -1, -1]];
  const sel = { idx: Int32Array.from(rows.flat()), off: 0, width };
  const out = sparseMhaAttention({ S, H: 1, T, dNope: dn, dRope: dr, dV: dv, qPos0: pos0, qNope: qn, qPe: qp, kNope: kn, kPe: kp, v, sel, scale: 0.3, rnd: (z) => z });
  const qf = new Float32Array(S * (dn + dr));
  const kf = new Float32Array(T * (dn + dr));
  for (let i = 0; i < S; i++) qf.set([...qn.subarray(i * dn, (i + 1) * dn), ...qp.subarray(i * dr, (i + 1) * dr)], i * (dn + dr));
  for (let t = 0; t < T; t++) kf.set([...kn.subarray(t * dn, (t + 1) * dn), ...kp.subarray(t * dr, (t + 1) * dr)], t * (dn + dr));
  const want = denseMasked(qf, kf, v, S, T, dn + dr, dv, pos0, (i, t) => rows[i]!.includes(t), 0.3);
  for (let i = 0; i < S * dv; i++) assert.ok(Math.abs(out[i]! - want[i]!) < 1e-6, `mha ${i}: ${out[i]} vs ${want[i]}`);
  assert.deepEqual(Array.from(out.subarray(0, dv)), [0, 0, 0]);
  // decode: one query at the last position, membership over [0, T)
  const dsel = { idx: Int32Array.from([6, 1, 4, -1]), off: 0, width };
  const lat = sparseMqaAttention({ S: 1, H: 1, T, dC: dn, dRope: dr, qPos0: T - 1, qAbs: qn.subarray(0, dn), qPe: qp.subarray(0, dr), kv: kn, pe: kp, sel: dsel, scale: 0.3, rnd: (z) => z });
  const wantD = denseMasked(qf.subarray(0, dn + dr), kf, kn, 1, T, dn + dr, dn, T - 1, (_, t) => [6, 1, 4].includes(t), 0.3);
  for (let c = 0; c < dn; c++) assert.ok(Math.abs(lat[c]! - wantD[c]!) < 1e-6);
});

test('gate weights are a tensor on the gate parameter (sanity of the graph used by Keep Routing)', () => {
  const m = gateModel([3, -3, 1, 1, 0.5, 0.5, -2, -2], [0, 0, 0, 0, 0, 0, 0, 0]);
  const moe = m.layers[1]!.ffn as MoE;
  const r = moe.gate.route(fromArray(new Float32Array(256).fill(0.01), [1, 256]));
  assert.ok(r.weights instanceof Tensor);
  assert.equal(r.weights.requiresGrad, false, 'no graph unless the gate weight asks for one');
});
