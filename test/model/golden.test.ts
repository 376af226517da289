// Golden parity with the official reference (fixtures/README.md).
//
// The golden `logits[b, i]` is the reference's forward of the fresh prefix tokens[:, :i+1]. We compute
// positions 1..S-1 from ONE causal prefill of all S tokens, which is the same computation: every op
// but attention and the indexer is per token; position i's attention and index scores read keys ≤ i
// only (later keys are −inf and add exact zeros); and its selection size min(index_topk, end_pos) picks
// the same set, because if i+1 ≤ index_topk both runs select every valid key, and otherwise both take
// the top index_topk of the same i+1 scores. Position 0 is a one-token prefix, which the reference runs
// through its decode (absorbed MQA) path, so we run it as its own one-token forward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeepseekV32, selectionIndices, type ForwardOptions, type Numerics } from '../../src/model/index.js';
import { runGolden } from '../../src/cli/golden.js';
import { MAX_FP8_TIE_FLIPS, resolveFp8Ties } from '../../src/model/fp8-ties.js';
import { type Golden, diff, fixtureDir, fixturesDir, layerBlock, loadGolden, type FixtureSet } from './golden-data.js';

const models = new Map<string, DeepseekV32>();
function model(set: FixtureSet): DeepseekV32 {
  let m = models.get(set);
  if (!m) {
    m = DeepseekV32.load(fixtureDir(set));
    models.set(set, m);
  }
  return m;
}

function forcedPrefill(m: DeepseekV32, g: Golden, upTo = g.S): Pick<ForwardOptions, 'forcedTopk' | 'forcedRoutes'> {
  const rows = (a: Int32Array, l: number, w: number): Int32Array => {
    const blk = layerBlock(a, l, g.B, g.S, w);
    const out = new Int32Array(g.B * upTo * w);
    for (let b = 0; b < g.B; b++) out.set(blk.subarray(b * g.S * w, (b * g.S + upTo) * w), b * upTo * w);
    return out;
  };
  return {
    forcedTopk: Array.from({ length: g.L }, (_, l) => rows(g.prefillTopk, l, g.k)),
    forcedRoutes: Array.from({ length: g.L }, (_, l) => (l < m.cfg.nDenseLayers ? null : rows(g.prefillRouting, l, g.nAct))),
  };
}

interface PrefixRun {
  logits: Float32Array;
  topk: Int32Array[]; // per layer [B, S, width]
  routes: (Int32Array | null)[];
}

/** Logits of every prefix (see the header), plus the full prefill's choices. */
function prefixLogits(m: DeepseekV32, g: Golden, numerics: Numerics, forced: boolean): PrefixRun {
  const V = g.vocab;
  const full = m.forward(g.tokens, { numerics, ...(forced ? forcedPrefill(m, g) : {}) });
  const one = m.forward(g.tokens.map((r) => r.slice(0, 1)), { numerics, ...(forced ? forcedPrefill(m, g, 1) : {}) });
  const lv = full.logits!.toFloat32();
  const l0 = one.logits!.toFloat32();
  for (let b = 0; b < g.B; b++) lv.set(l0.subarray(b * V, (b + 1) * V), b * g.S * V);
  for (const sel of full.topk) assert.equal(sel.width, g.k);
  return { logits: lv, topk: full.topk.map(selectionIndices), routes: full.routes.map((r) => (r ? (r.toHost() as Int32Array) : null)) };
}

// f32: every choice exact and every logit within 1e-4 (the README's noise floor is ~5e-6), up to FP8 rounding
// ties (src/model/fp8-ties.ts): runGolden is the `dsv32 golden` check, prefill and decode.
for (const set of ['tiny-f32', 'tiny-fp8'] as const) {
  test(`${set}, f32, unforced: every top-k set and route equal, logits within 1e-4, at most ${MAX_FP8_TIE_FLIPS} FP8 tie flips`, () => {
    const rows = runGolden(fixturesDir, set, 'f32');
    for (const r of rows) assert.ok(r.ok, `${r.what}: ${r.value} (${r.bound})`);
  });
}

/** A bf16 forced check, FP8-tie aware (src/model/fp8-ties.ts): `firstBad` is the earliest failing position. */
function tieAware<R>(run: () => R, firstBad: (r: R) => number): R {
  const res = resolveFp8Ties(run, firstBad);
  assert.ok(res.flips.length <= MAX_FP8_TIE_FLIPS, `${res.flips.length} FP8 tie flips`);
  return res.result;
}

/** First position p (causal order p·B + b over [B, n, V] logits) whose max |Δ| exceeds tol. */
function firstBeyond(mine: Float32Array, ref: Float32Array, B: number, n: number, V: number, tol: number): number {
  let first = Infinity;
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < n; p++) {
      const d = diff(mine.subarray((b * n + p) * V, (b * n + p + 1) * V), ref.subarray((b * n + p) * V, (b * n + p + 1) * V));
      if (!(d.maxAbs <= tol)) first = Math.min(first, p * B + b);
    }
  }
  return first;
}

test('tiny-bf16 golden, bf16 mode, forced choices: within 2× the README forced tolerance (0.043)', () => {
  const m = model('tiny-bf16');
  const g = loadGolden('tiny-bf16');
  const run = tieAware(() => prefixLogits(m, g, 'bf16', true), (r) => firstBeyond(r.logits, g.logits, g.B, g.S, g.vocab, 2 * 0.043));
  const d = diff(run.logits, g.logits);
  assert.ok(d.maxAbs <= 2 * 0.043, `max |Δ| ${d.maxAbs}`);
  assert.ok(d.meanAbs <= 2 * 0.0038, `mean |Δ| ${d.meanAbs}`);
});

test('tiny-fp8 golden, bf16 mode, forced choices: every position within 2× the README CPU-replay bound (4.4e-4)', () => {
  // README: the reference's own CPU replay differs from this golden by max 4.4e-4, mean 1.1e-6, argmax
  // 100%. We match 93 of 96 positions to ~1e-6 and the rest by ≤ 4.5e-4 (one of them is the replay's
  // own 4.42e-4). Any rounding placement that differs from the reference's shows up far above this: an
  // FP8 act_quant downstream turns one bf16 ulp into 6–12% of an e4m3 value (a correctly rounded rsqrt
  // in RMSNorm instead of torch's 1/sqrt moved positions 45–47 of row 0 by 0.24).
  const m = model('tiny-fp8');
  const g = loadGolden('tiny-fp8');
  const run = tieAware(() => prefixLogits(m, g, 'bf16', true), (r) => firstBeyond(r.logits, g.logits, g.B, g.S, g.vocab, 2 * 4.4e-4));
  const V = g.vocab;
  for (let p = 0; p < g.B * g.S; p++) {
    const mine = run.logits.subarray(p * V, (p + 1) * V);
    const ref = g.logits.subarray(p * V, (p + 1) * V);
    const d = diff(mine, ref);
    assert.ok(d.maxAbs <= 2 * 4.4e-4, `row ${Math.floor(p / g.S)} position ${p % g.S}: max |Δ| ${d.maxAbs}`);
    const arg = (a: Float32Array): number => a.reduce((bi, v, i) => (v > a[bi]! ? i : bi), 0);
    assert.equal(arg(mine), arg(ref), `row ${Math.floor(p / g.S)} position ${p % g.S}: argmax`);
  }
});

test('tiny-bf16 decode, bf16 mode, forced with the decode choices: within 2× the forced tolerance', () => {
  const m = model('tiny-bf16');
  const g = loadGolden('tiny-bf16');
  const V = g.vocab;
  const decodeAll = (): Float32Array => {
    const pre = m.forward(g.tokens, { numerics: 'bf16', logits: 'none', ...forcedPrefill(m, g) });
    const dec = new Float32Array(g.B * g.steps * V);
    for (let j = 0; j < g.steps; j++) {
      const pick = (a: Int32Array, l: number, w: number): Int32Array => {
        const out = new Int32Array(g.B * w);
        for (let b = 0; b < g.B; b++) out.set(a.subarray(((l * g.B + b) * g.steps + j) * w, ((l * g.B + b) * g.steps + j + 1) * w), b * w);
        return out;
      };
      const d = m.forward(g.decodeTokens.map((r) => [r[j]!]), {
        cache: pre.cache,
        numerics: 'bf16',
        forcedTopk: Array.from({ length: g.L }, (_, l) => pick(g.decodeTopk, l, g.k)),
        forcedRoutes: Array.from({ length: g.L }, (_, l) => (l < m.cfg.nDenseLayers ? null : pick(g.decodeRouting, l, g.nAct))),
      });
      const v = d.logits!.toFloat32();
      for (let b = 0; b < g.B; b++) dec.set(v.subarray(b * V, (b + 1) * V), (b * g.steps + j) * V);
    }
    return dec;
  };
  const dec = tieAware(decodeAll, (r) => firstBeyond(r, g.decodeLogits, g.B, g.steps, V, 2 * 0.043));
  const d = diff(dec, g.decodeLogits);
  assert.ok(d.maxAbs <= 2 * 0.043, `max |Δ| ${d.maxAbs}`);
});
