// DSA indexer ops (issue 11): indexerLogits (dense and paged), the paged indexer-key cache writer,
// topkSelect, and dense attention's causalSelect (topkSelect on rows of equal logits).
//  - CPU vs the host oracle: the model's indexer (which runs on these ops) reproduces indexScores (the
//    host loop it replaced, kept as the oracle) and selectTopkRow's selections bit for bit, prefill and
//    decode, on a random tiny model, with Hi = 16 and 64.
//  - One body per backend (cpu, and cuda where a driver exists, else skipped with the reason): each op at
//    awkward shapes (Tk not a multiple of 64, k not a multiple of 64, −1 padding, empty ranges, ties,
//    NaN, ±0) against the CPU reference; logits within 1e-5 relative (the GPU's dot-product order may
//    differ from the GEMM path's; 1e-3 on the FP8 tensor-core path, see relBound) with −inf at exactly
//    the same places, everything else bit for bit.
//  - The CPU reference against independent naive definitions (exact f64 dots; a sort for the top-k).
//  - The paged layout round-trips and matches DeepGEMM's byte layout.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { e4m3BitsToF32, f32ToE4m3Bits } from '../../src/tensor/dtype.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, selectionIndices } from '../../src/model/index.js';
import { indexScores } from '../oracles/indexer.js';
import { stepLayout } from '../../src/model/cache.js';
import { ropeTables } from '../../src/tensor/ops/rope.js';
import { DEVICES, assertRel } from '../cuda/common.js';
import { indexerTune } from '../../src/backend/cuda/dsa-indexer.js';
import { on } from './helpers.js';

function randE4m3(n: number, rng: T.Rng, scale = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = f32ToE4m3Bits(Math.max(-448, Math.min(448, rng.normal() * 64 * scale)));
  return b;
}
function randF32(n: number, rng: T.Rng, s = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * s);
}
const bits = (b: Uint8Array, shape: number[], dev = 'cpu'): T.Tensor => T.fromBits(b, 'f8e4m3', shape, { device: dev });
const i32 = (a: number[] | Int32Array, shape = [a.length], dev = 'cpu'): T.Tensor => T.fromBits(Int32Array.from(a), 'i32', shape, { device: dev });

function sameBits(a: Float32Array | Int32Array, b: Float32Array | Int32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
}

// ---- the host model ----------------------------------------------------------------------------------

for (const Hi of [16, 64]) {
  test(`CPU ops == host indexer (indexScores and its selections), prefill then decode with MTP, Hi=${Hi}`, () => {
    const cfg = randomConfig({ index_n_heads: Hi, index_topk: 24 });
    const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, 3)));
    const ix = m.layers[1]!.attn.indexer;
    const Dh = cfg.indexHeadDim;
    const B = 2;
    const rng = new T.Rng(17 + Hi);
    const cache = m.newCache(B);
    // the host copies of every key written so far, per sequence: e4m3 bits and scales
    const k8: Uint8Array[] = [new Uint8Array(0), new Uint8Array(0)];
    const ksAll: Float32Array[] = [new Float32Array(0), new Float32Array(0)];
    const append = <A extends Uint8Array | Float32Array>(a: A, more: A, mk: (n: number) => A): A => {
      const o = mk(a.length + more.length);
      o.set(a);
      o.set(more, a.length);
      return o;
    };
    const step = (S: number, start: number) => {
      const x2 = T.fromArray(randF32(B * S * cfg.dim, rng), [B * S, cfg.dim]);
      const qr = T.fromArray(randF32(B * S * cfg.qLoraRank, rng), [B * S, cfg.qLoraRank]);
      const rot = m.rotary.at(start, S);
      cache.reserve(start + S);
      const batch = cache.batchOf(new Int32Array(B * S), S);
      const layout = stepLayout(batch, cache.pool, cfg.indexTopk);
      const rotT = ropeTables(Array.from(layout.positions), m.rotary.freqs);
      const groups = ix.forward(x2, qr, rotT, cache.layers[1]!, layout, (s) => batch.seqs[s]!.blocks, 'f32', null, () => ({ positions: true, slots: false }));
      const sel = { width: layout.width, idx: groups[0]!.positions! };
      cache.length = start + S;
      const t = ix.project(x2, qr, B, S, rot, 'f32');
      const kb = t.k.toHost() as Uint8Array;
      const kst = t.ks.toFloat32();
      for (let b = 0; b < B; b++) {
        k8[b] = append(k8[b]!, kb.subarray(b * S * Dh, (b + 1) * S * Dh), (n) => new Uint8Array(n));
        ksAll[b] = append(ksAll[b]!, kst.subarray(b * S, (b + 1) * S), (n) => new Float32Array(n));
      }
      const qk = { q: T.cast(t.q, 'f32').toFloat32(), w: t.w.toFloat32() };
      return { sel, qk };
    };
    const S0 = 77; // prefill: 77 keys (not a multiple of 64), k = 24 (not a multiple of 64): rows < k padded
    const p = step(S0, 0);
    const width = Math.min(cfg.indexTopk, S0);
    for (let b = 0; b < B; b++) {
      const q = p.qk.q.subarray(b * S0 * Hi * Dh, (b + 1) * S0 * Hi * Dh);
      const w = p.qk.w.subarray(b * S0 * Hi, (b + 1) * S0 * Hi);
      const kb = k8[b]!.subarray(0, S0 * Dh);
      const ks = ksAll[b]!.subarray(0, S0);
      const keys = Float32Array.from(kb, (v) => e4m3BitsToF32(v));
      const host = indexScores(q, w, keys, ks, S0, Hi, Dh, S0, 0);
      const logits = T.indexerLogits(bits(Uint8Array.from(q, (v) => f32ToE4m3Bits(v)), [S0, Hi, Dh]), bits(kb.slice(), [S0, Dh]),
        T.fromArray(ks.slice(), [S0]), T.fromArray(w.slice(), [S0, Hi]), i32(new Array(S0).fill(0)), i32(Array.from({ length: S0 }, (_, i) => i + 1)));
      sameBits(logits.toFloat32(), host, `prefill logits b=${b}`);
      const idx = T.topkSelect(logits, width, { end: i32(Array.from({ length: S0 }, (_, i) => i + 1)) });
      sameBits(idx.toHost() as Int32Array, selectionIndices(p.sel).subarray(b * S0 * width, (b + 1) * S0 * width), `prefill selection b=${b}`);
    }
    // decode of 2 tokens (MTP, next_n = 2) through the paged cache, pages scattered over a larger pool
    const N = 2;
    const d = step(N, S0);
    const ctx = S0 + N;
    const maxBlocks = Math.ceil(ctx / 64) + 1;
    const pool = 7;
    const table = [[5, 2, 0], [1, 6, 3]].map((r) => r.slice(0, maxBlocks));
    const cacheT = T.indexerCache(pool, Dh, T.getBackend('cpu'));
    for (let b = 0; b < B; b++) {
      const slots = Array.from({ length: ctx }, (_, p2) => table[b]![p2 >> 6]! * 64 + (p2 & 63));
      T.indexerCacheWrite(cacheT, bits(k8[b]!.slice(0, ctx * Dh), [ctx, Dh]), T.fromArray(ksAll[b]!.slice(0, ctx), [ctx]), i32(slots));
    }
    const width2 = Math.min(cfg.indexTopk, ctx);
    const maxCtx = ctx + 5;
    const bt = i32(table.flat(), [B, maxBlocks]);
    const logits = T.indexerLogitsPaged(bits(Uint8Array.from(d.qk.q, (v) => f32ToE4m3Bits(v)), [B, N, Hi, Dh]), cacheT, T.fromArray(d.qk.w.slice(), [B, N, Hi]),
      bt, i32([ctx, ctx]), maxCtx);
    const lg = logits.toFloat32();
    for (let b = 0; b < B; b++) {
      const keys = Float32Array.from(k8[b]!.subarray(0, ctx * Dh), (v) => e4m3BitsToF32(v));
      const host = indexScores(d.qk.q.subarray(b * N * Hi * Dh), d.qk.w.subarray(b * N * Hi), keys, ksAll[b]!.subarray(0, ctx), N, Hi, Dh, ctx, S0);
      for (let j = 0; j < N; j++) {
        sameBits(lg.subarray((b * N + j) * maxCtx, (b * N + j) * maxCtx + ctx), host.subarray(j * ctx, (j + 1) * ctx), `decode logits b=${b} j=${j}`);
        for (let t = ctx; t < maxCtx; t++) assert.equal(lg[(b * N + j) * maxCtx + t], -Infinity);
      }
    }
    const ends = i32([S0 + 1, S0 + 2, S0 + 1, S0 + 2]);
    const pos = T.topkSelect(logits, width2, { end: ends }).toHost() as Int32Array;
    sameBits(pos, selectionIndices(d.sel), 'decode selection');
    // the same selection as paged-cache slots: each slot maps back to its position through the table
    const slots = T.topkSelect(logits, width2, { end: ends, blockTable: bt, rowsPerSeq: N }).toHost() as Int32Array;
    for (let r = 0; r < B * N; r++) {
      for (let j = 0; j < width2; j++) {
        const p2 = pos[r * width2 + j]!;
        const s = slots[r * width2 + j]!;
        assert.equal(s, p2 < 0 ? -1 : table[r >> 1]![p2 >> 6]! * 64 + (p2 & 63), `slot ${r},${j}`);
      }
    }
  });
}

test('CPU indexerLogits == host indexScores when the host splits the queries into several GEMM blocks', () => {
  // indexScores blocks ⌊2^22 / (H·T)⌋ = 87 queries at H 16, T 3000: blocks of 87 and 13 queries, each its own
  // sgemm over the keys the block's last query sees; the op must issue the same calls to match bit for bit
  const rng = new T.Rng(44);
  const H = 16;
  const D = 128;
  const Tn = 3000;
  const nq = 100;
  const pos0 = Tn - nq;
  const q8 = randE4m3(nq * H * D, rng, 0.05);
  const k8 = randE4m3(Tn * D, rng, 0.05);
  const ks = randF32(Tn, rng).map((v) => Math.abs(v) + 0.01);
  const w = randF32(nq * H, rng);
  const host = indexScores(Float32Array.from(q8, (v) => e4m3BitsToF32(v)), w, Float32Array.from(k8, (v) => e4m3BitsToF32(v)), ks, nq, H, D, Tn, pos0);
  const got = T.indexerLogits(bits(q8, [nq, H, D]), bits(k8, [Tn, D]), T.fromArray(ks, [Tn]), T.fromArray(w, [nq, H]),
    i32(new Array(nq).fill(0)), i32(Array.from({ length: nq }, (_, i) => pos0 + i + 1)));
  sameBits(got.toFloat32(), host, 'blocked logits');
});

// ---- independent definitions ----------------------------------------------------------------------------

/** Exact dot products (f64 holds every e4m3·e4m3 sum of 128 terms), then the op's head sum and scale. */
function naiveLogits(q: Uint8Array, k: Uint8Array, ks: Float32Array, w: Float32Array, Tq: number, H: number, D: number, Tk: number, s: number[], e: number[]): Float64Array {
  const out = new Float64Array(Tq * Tk).fill(-Infinity);
  for (let i = 0; i < Tq; i++) {
    for (let t = Math.max(0, s[i]!); t < Math.min(Tk, e[i]!); t++) {
      let acc = 0;
      for (let h = 0; h < H; h++) {
        let dot = 0;
        for (let c = 0; c < D; c++) dot += e4m3BitsToF32(q[(i * H + h) * D + c]!) * e4m3BitsToF32(k[t * D + c]!);
        if (dot > 0) acc += dot * w[i * H + h]!;
      }
      out[i * Tk + t] = acc * ks[t]!;
    }
  }
  return out;
}

/** k largest of row[s:e] (NaN = +inf, −0 = +0, ties → lowest column) by a full sort; ascending, −1 padded. */
function naiveSelect(row: Float32Array, s: number, e: number, k: number): number[] {
  const key = (v: number): number => (v !== v ? Infinity : v === 0 ? 0 : v);
  const cols = Array.from({ length: Math.max(0, e - s) }, (_, j) => s + j);
  cols.sort((a, b) => {
    const ka = key(row[a]!);
    const kb = key(row[b]!);
    return ka !== kb ? (kb > ka ? 1 : -1) : a - b;
  });
  const top = cols.slice(0, k).sort((a, b) => a - b);
  return [...top, ...new Array(k - top.length).fill(-1)];
}

test('CPU indexerLogits == exact-dot definition (ranges with start > 0, empty, clamped; H 16/64; Tk 1, 63, 130)', () => {
  const rng = new T.Rng(5);
  for (const [Tq, H, Tk] of [[5, 16, 130], [3, 64, 63], [4, 16, 1]] as const) {
    const D = 128;
    const q = randE4m3(Tq * H * D, rng, 0.05);
    const k = randE4m3(Tk * D, rng, 0.05);
    const ks = randF32(Tk, rng).map((v) => Math.abs(v) + 0.01);
    const w = randF32(Tq * H, rng);
    const s = Array.from({ length: Tq }, (_, i) => [0, 7, 50, -3, 2][i % 5]!);
    const e = Array.from({ length: Tq }, (_, i) => [Tk, 7, 129, 5, 999][i % 5]!);
    const got = T.indexerLogits(bits(q, [Tq, H, D]), bits(k, [Tk, D]), T.fromArray(ks, [Tk]), T.fromArray(w, [Tq, H]), i32(s), i32(e)).toFloat32();
    const want = naiveLogits(q, k, ks, w, Tq, H, D, Tk, s, e);
    for (let i = 0; i < got.length; i++) {
      if (!Number.isFinite(want[i]!)) assert.equal(got[i], want[i], `element ${i}`);
      else assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (Math.abs(want[i]!) + 1e-3), `element ${i}: ${got[i]} vs ${want[i]}`);
    }
  }
});

test('CPU topkSelect == sort definition: ties, NaN, ±0, −inf, rows shorter than k, empty ranges', () => {
  const rng = new T.Rng(9);
  const R = 9;
  const N = 203;
  const x = Float32Array.from({ length: R * N }, () => Math.floor(rng.normal() * 3) / 2);
  x[5] = NaN; x[17] = Infinity; x[18] = NaN; x[N + 3] = -0; x[N + 4] = 0; x[2 * N + 1] = -Infinity;
  for (let j = 0; j < N; j++) x[3 * N + j] = j % 7 === 0 ? -0 : 0; // a row of zeros of both signs
  const s = [0, 0, 10, 0, 100, 5, 0, 30, 200];
  const e = [N, 150, 11, N, 100, 60, 300, 29, N];
  for (const k of [1, 24, 50, 77]) {
    const got = T.topkSelect(T.fromArray(x, [R, N]), k, { start: i32(s), end: i32(e) }).toHost() as Int32Array;
    for (let r = 0; r < R; r++) {
      const want = naiveSelect(x.subarray(r * N, (r + 1) * N), Math.max(0, s[r]!), Math.min(N, e[r]!), k);
      assert.deepEqual(Array.from(got.subarray(r * k, (r + 1) * k)), want, `k=${k} row ${r}`);
    }
  }
});

test('paged indexer cache: DeepGEMM byte layout (64·D e4m3 then 64 f32 per page), −1 slots skipped, round trip', () => {
  const rng = new T.Rng(2);
  const D = 128;
  const Tn = 150;
  const k = randE4m3(Tn * D, rng);
  const ks = randF32(Tn, rng);
  const slots = Array.from({ length: Tn }, (_, i) => (i % 11 === 10 ? -1 : (i * 37) % 320)); // unique, scattered over 5 pages
  const cache = T.indexerCache(5, D, T.getBackend('cpu'));
  assert.deepEqual([...cache.shape], [5, 64 * 132]);
  T.indexerCacheWrite(cache, bits(k, [Tn, D]), T.fromArray(ks, [Tn]), i32(slots));
  const raw = cache.toHost() as Uint8Array;
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const written = new Set<number>();
  for (let i = 0; i < Tn; i++) {
    const sl = slots[i]!;
    if (sl < 0) continue;
    written.add(sl);
    const page = Math.floor(sl / 64) * 8448;
    const off = sl % 64;
    assert.deepEqual(Array.from(raw.subarray(page + off * 128, page + off * 128 + 128)), Array.from(k.subarray(i * D, (i + 1) * D)), `key ${i}`);
    assert.equal(dv.getFloat32(page + 8192 + off * 4, true), ks[i], `scale ${i}`);
  }
  for (let sl = 0; sl < 5 * 64; sl++) {
    if (written.has(sl)) continue;
    const page = Math.floor(sl / 64) * 8448;
    assert.ok(raw.subarray(page + (sl % 64) * 128, page + (sl % 64) * 128 + 128).every((v) => v === 0), `untouched slot ${sl}`);
  }
  assert.throws(() => T.indexerCacheWrite(cache, bits(k.subarray(0, D), [1, D]), T.fromArray(ks.subarray(0, 1), [1]), i32([5 * 64])), /beyond the cache/);
});

// ---- every backend against the CPU reference ----------------------------------------------------------
// On CUDA the logits run on the fused wgmma kernels (indexerTune.mma), the FP8-GEMM path (indexerTune.gemm) or the
// CUDA-core kernels: each is tested.
type Path = 'mma' | 'gemm' | 'cores' | null;
const paths = (dev: string): Path[] => (dev === 'cpu' ? [null] : ['mma', 'gemm', 'cores']);
// The tensor-core paths accumulate e4m3 products with ~14 mantissa bits (Hopper's FP8 MMA, as the
// DeepSeek-V3 report measured; DeepGEMM's fp8_mqa_logits, the official kernel, shares it and promotes
// only every 128 products, i.e. once per key here): measured 1.1e-4 and 2.7e-4 relative on an H100
// (2026-12-05) against the exact f32 reference, where the CUDA-core kernels stay within 1e-5.
const relBound = (p: Path): number => (p === 'mma' || p === 'gemm' ? 1e-3 : 1e-5);
const tag = (p: Path): string => (p === null ? '' : ` [${p} path]`);
function withPath(p: Path, body: () => void, scoreBytes?: number): void {
  const keep = { ...indexerTune };
  if (p !== null) {
    indexerTune.mma = p === 'mma';
    indexerTune.gemm = p === 'gemm';
  }
  if (scoreBytes !== undefined) indexerTune.scoreBytes = scoreBytes;
  try {
    body();
  } finally {
    Object.assign(indexerTune, keep);
  }
}

for (const [dev, opts] of DEVICES) {
  describe(`DSA indexer ops on ${dev} vs the CPU reference`, opts, () => {
    // on the GPU also every head count of the fused kernels (4 … 128: both B-tile widths, 1 to 16 queries a
    // tile) and keys over several 2048-key chunks with causal ranges (tiles past every range skip the MMA)
    // ([Tq, H, Tk, causal]: causal rows see [0, 45·i + 1), so early query blocks skip the later chunks and tiles)
    const shapes: (readonly [number, number, number, boolean?])[] = [[7, 16, 77], [9, 64, 333], [3, 16, 1], [70, 64, 130], [5, 16, 128], [33, 64, 336]];
    if (dev !== 'cpu') shapes.push([37, 4, 200], [19, 8, 65], [11, 32, 130], [5, 128, 333], [21, 64, 4500], [45, 16, 2100], [96, 64, 4300, true]);
    for (const path of paths(dev)) test(`indexerLogits: H 4…128, Tk 1…4500, start > 0, empty and clamped ranges${tag(path)}`, () => withPath(path, () => {
      const rng = new T.Rng(101);
      for (const [Tq, H, Tk, causal] of shapes) {
        const D = 128;
        const q = bits(randE4m3(Tq * H * D, rng, 0.05), [Tq, H, D]);
        const k = bits(randE4m3(Tk * D, rng, 0.05), [Tk, D]);
        const ks = T.fromArray(randF32(Tk, rng).map((v) => Math.abs(v) + 0.01), [Tk]);
        const w = T.fromArray(randF32(Tq * H, rng), [Tq, H]);
        const s = i32(Array.from({ length: Tq }, (_, i) => (causal ? 0 : [0, 3, Tk, 40, -5, 0][i % 6]!)));
        const e = i32(Array.from({ length: Tq }, (_, i) => (causal ? 45 * i + 1 : [Tk, 3, Tk + 9, 39, 64, i + 1][i % 6]!)));
        const ins = [q, k, ks, w, s, e];
        const want = T.indexerLogits(...(ins as [T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor]));
        const got = T.indexerLogits(...(ins.map((t) => on(t, dev)) as [T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor]));
        assertRel(got, want, relBound(path), `indexerLogits Tq=${Tq} H=${H} Tk=${Tk}`);
      }
    }));

    // a 70-query prefill chunk too; on the GEMM path with a score budget of 8 queries of 16 heads a GEMM, so its
    // chunks each multiply only the keys their causal rows reach (the bound in dsa-indexer.ts)
    const pagedCases: (readonly [number, number])[] = [[16, 1], [64, 2], [16, 70]];
    if (dev !== 'cpu') pagedCases.push([64, 1], [4, 3], [128, 1], [32, 2], [8, 9], [16, 37]);
    for (const path of paths(dev)) test(`paged cache write + paged logits (H 4…128, next_n 1…70, a 70-query prefill, contexts 1/64/65/200, scattered pages) == dense logits${tag(path)}`, () => withPath(path, () => {
      const rng = new T.Rng(202);
      const D = 128;
      for (const [H, N] of pagedCases) {
        const ctx = N === 1 ? [1, 64, 200] : N === 2 ? [65, 2, 130] : [70, 150];
        const B = ctx.length;
        const maxBlocks = 4;
        const pool = 13;
        const perm = Array.from({ length: pool }, (_, i) => (i * 5 + 3) % pool);
        const table = Array.from({ length: B * maxBlocks }, (_, i) => perm[i % pool]!);
        const maxCtx = 203;
        const cache = on(T.indexerCache(pool, D, T.getBackend('cpu')), dev);
        const keysAll: T.Tensor[] = [];
        const scalesAll: T.Tensor[] = [];
        for (let b = 0; b < B; b++) {
          const kb = bits(randE4m3(ctx[b]! * D, rng, 0.05), [ctx[b]!, D]);
          const sb = T.fromArray(randF32(ctx[b]!, rng).map((v) => Math.abs(v) + 0.01), [ctx[b]!]);
          keysAll.push(kb);
          scalesAll.push(sb);
          const slots = Array.from({ length: ctx[b]! }, (_, p) => table[b * maxBlocks + (p >> 6)]! * 64 + (p & 63));
          T.indexerCacheWrite(cache, on(kb, dev), on(sb, dev), i32(slots, [slots.length], dev));
        }
        const q = bits(randE4m3(B * N * H * D, rng, 0.05), [B, N, H, D]);
        const w = T.fromArray(randF32(B * N * H, rng), [B, N, H]);
        const got = T.indexerLogitsPaged(on(q, dev), cache, on(w, dev), i32(table, [B, maxBlocks], dev), i32(ctx, [B], dev), maxCtx).toFloat32();
        // the dense op on each sequence's own keys (CPU): same numbers, −inf beyond the context
        for (let b = 0; b < B; b++) {
          const qb = T.reshape(T.narrow(q, 0, b, 1), [N, H, D]);
          const wb = T.reshape(T.narrow(w, 0, b, 1), [N, H]);
          const ends = Array.from({ length: N }, (_, j) => ctx[b]! - N + j + 1);
          const dense = T.indexerLogits(T.contiguous(qb), keysAll[b]!, scalesAll[b]!, T.contiguous(wb), i32(new Array(N).fill(0)), i32(ends)).toFloat32();
          for (let j = 0; j < N; j++) {
            const row = got.subarray((b * N + j) * maxCtx, (b * N + j + 1) * maxCtx);
            const ref = new Float32Array(maxCtx).fill(-Infinity);
            ref.set(dense.subarray(j * ctx[b]!, (j + 1) * ctx[b]!));
            if (dev === 'cpu') sameBits(row, ref, `paged b=${b} j=${j}`);
            else assertRel(T.fromArray(row, [maxCtx]), T.fromArray(ref, [maxCtx]), relBound(path), `paged H=${H} N=${N} b=${b} j=${j}`);
          }
        }
        // the raw cache bytes are the same on every backend
        if (dev !== 'cpu') {
          const ref = T.indexerCache(pool, D, T.getBackend('cpu'));
          for (let b = 0; b < B; b++) {
            const slots = Array.from({ length: ctx[b]! }, (_, p) => table[b * maxBlocks + (p >> 6)]! * 64 + (p & 63));
            T.indexerCacheWrite(ref, keysAll[b]!, scalesAll[b]!, i32(slots));
          }
          assert.deepEqual(Buffer.from(cache.toHost() as Uint8Array).equals(Buffer.from(ref.toHost() as Uint8Array)), true, 'cache bytes');
        }
      }
    }, 4 * 16 * 208 * 8));

    test('topkSelect: ties, NaN, ±0, k 1/100/2048 over rows of 2047..9295 columns, ranges, −1 padding, slots', () => {
      const rng = new T.Rng(303);
      for (const [R, Ncol] of [[6, 2047], [5, 9295], [3, 70000]] as const) {
        const x = Float32Array.from({ length: R * Ncol }, () => Math.floor(rng.normal() * 8) / 4);
        x[3] = NaN; x[4] = Infinity; x[Ncol + 7] = -0; x[Ncol + 9] = -Infinity;
        const s = Array.from({ length: R }, (_, r) => [0, 100, 0, 5, Ncol, 0][r % 6]!);
        const e = Array.from({ length: R }, (_, r) => [Ncol, Ncol - 1, 1500, 2100, Ncol, 0][r % 6]!);
        const xt = T.fromArray(x, [R, Ncol]);
        const maxBlocks = Math.ceil(Ncol / 64);
        const table = Array.from({ length: Math.ceil(R / 2) * maxBlocks }, (_, i) => (i * 7 + 1) % 5000);
        for (const k of [1, 100, 2048]) {
          const want = T.topkSelect(xt, k, { start: i32(s), end: i32(e) });
          const got = T.topkSelect(on(xt, dev), k, { start: i32(s, [R], dev), end: i32(e, [R], dev) });
          sameBits(got.toHost() as Int32Array, want.toHost() as Int32Array, `topkSelect R=${R} N=${Ncol} k=${k}`);
          const whole = T.topkSelect(on(xt, dev), k).toHost() as Int32Array;
          sameBits(whole, T.topkSelect(xt, k).toHost() as Int32Array, `topkSelect full rows R=${R} N=${Ncol} k=${k}`);
          const bt = i32(table, [Math.ceil(R / 2), maxBlocks]);
          const wantS = T.topkSelect(xt, k, { start: i32(s), end: i32(e), blockTable: bt, rowsPerSeq: 2 });
          const gotS = T.topkSelect(on(xt, dev), k, { start: i32(s, [R], dev), end: i32(e, [R], dev), blockTable: on(bt, dev), rowsPerSeq: 2 });
          sameBits(gotS.toHost() as Int32Array, wantS.toHost() as Int32Array, `topkSelect slots R=${R} N=${Ncol} k=${k}`);
        }
      }
    });

    test('causalSelect: topkSelect on rows of equal logits — ends 0, 1, k − 1, k, past k; widths 1, 63, 65, 2049; slots, −1 blocks', () => {
      // the definition (file header of src/tensor/ops/dsa-indexer.ts): every causal key, lowest first —
      // what the top-k's tie rule picks from a row of equal values, computed here by the CPU's top-k
      for (const [R, k, N, rowsPerSeq] of [[5, 1, 3, 1], [7, 63, 130, 2], [9, 65, 200, 3], [4, 2049, 2100, 1]] as const) {
        const ends = Array.from({ length: R }, (_, r) => [0, 1, k - 1, k, N, Math.floor(k / 2) + 1, 3][r % 7]!);
        const maxBlocks = Math.ceil(N / 64);
        const S = Math.ceil(R / rowsPerSeq);
        // sequence 1 has its second block missing (−1): its positions there are −1 slots
        const table = Array.from({ length: S * maxBlocks }, (_, i) => (i === maxBlocks + 1 ? -1 : (i * 5 + 2) % 97));
        const flat = T.fromArray(new Float32Array(R * N), [R, N]);
        const bt = i32(table, [S, maxBlocks]);
        const want = T.topkSelect(flat, k, { end: i32(ends) }).toHost() as Int32Array;
        const wantS = T.topkSelect(flat, k, { end: i32(ends), blockTable: bt, rowsPerSeq }).toHost() as Int32Array;
        for (let r = 0; r < R; r++) {
          // the oracle itself: positions 0 .. min(end, k) − 1, then −1
          const n = Math.min(k, ends[r]!);
          assert.deepEqual(Array.from(want.subarray(r * k, (r + 1) * k)), Array.from({ length: k }, (_, j) => (j < n ? j : -1)), `oracle R=${R} k=${k} row ${r}`);
        }
        sameBits(T.causalSelect(i32(ends, [R], dev), k).toHost() as Int32Array, want, `causalSelect R=${R} k=${k}`);
        sameBits(T.causalSelect(i32(ends, [R], dev), k, { blockTable: on(bt, dev), rowsPerSeq }).toHost() as Int32Array, wantS, `causalSelect slots R=${R} k=${k}`);
      }
      assert.throws(() => T.causalSelect(i32([1, 2], [2], dev), 4, { blockTable: on(i32([0], [1, 1]), dev) }), /blockTable must be \[≥ 2, maxBlocks\]/);
    });
  });
}
