// Access to the golden fixtures of ../shared/fixtures (read-only): configs, checkpoints and the
// reference outputs of fixtures/README.md.
import path from 'node:path';
import '../../src/tensor/index.js';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/tensor/safetensors.js';

// dist/test/model/ → repository root is three levels up
const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
/** ../shared/fixtures beside the repository, or $DSV32_FIXTURES (GPU machines carry a copy). */
export const fixturesDir = process.env.DSV32_FIXTURES ? path.resolve(process.env.DSV32_FIXTURES) : path.resolve(repoRoot, '..', 'shared', 'fixtures');

export type FixtureSet = 'tiny-f32' | 'tiny-bf16' | 'tiny-fp8';

export function fixtureDir(set: FixtureSet): string {
  return path.join(fixturesDir, set);
}

export interface Golden {
  tokens: number[][];
  decodeTokens: number[][];
  /** [B, S, V] */
  logits: Float32Array;
  decodeLogits: Float32Array;
  prefillLogitsExt: Float32Array;
  /** [L, B, S, k] */
  prefillTopk: Int32Array;
  decodeTopk: Int32Array;
  /** [L, B, S, n_act] */
  prefillRouting: Int32Array;
  decodeRouting: Int32Array;
  B: number;
  S: number;
  steps: number;
  L: number;
  k: number;
  nAct: number;
  vocab: number;
}

const cache = new Map<string, Golden>();

export function loadGolden(set: FixtureSet, file = 'golden.safetensors'): Golden {
  const key = `${set}/${file}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const f = SafetensorsFile.open(path.join(fixtureDir(set), file));
  const i64 = (n: string): Int32Array => Int32Array.from(f.tensor(n).toFloat64());
  const rows = (n: string): number[][] => {
    const t = f.tensor(n);
    const v = t.toFloat64();
    const [B, S] = t.shape as [number, number];
    return Array.from({ length: B }, (_, b) => Array.from(v.subarray(b * S, (b + 1) * S)));
  };
  const logitsT = f.tensor('logits');
  const [B, S, V] = logitsT.shape as [number, number, number];
  const topkT = f.info('prefill_topk');
  const routeT = f.info('prefill_routing');
  const g: Golden = {
    tokens: rows('tokens'),
    decodeTokens: rows('decode_tokens'),
    logits: logitsT.toFloat32(),
    decodeLogits: f.tensor('decode_logits').toFloat32(),
    prefillLogitsExt: f.tensor('prefill_logits_ext').toFloat32(),
    prefillTopk: i64('prefill_topk'),
    decodeTopk: i64('decode_topk'),
    prefillRouting: i64('prefill_routing'),
    decodeRouting: i64('decode_routing'),
    B,
    S,
    steps: f.info('decode_tokens').shape[1]!,
    L: topkT.shape[0]!,
    k: topkT.shape[3]!,
    nAct: routeT.shape[3]!,
    vocab: V,
  };
  f.close();
  cache.set(key, g);
  return g;
}

/** Layer l's [B, S, w] block of a [L, B, S, w] array. */
export function layerBlock(a: Int32Array, l: number, B: number, S: number, w: number): Int32Array {
  return a.subarray(l * B * S * w, (l + 1) * B * S * w);
}

export interface Diff {
  maxAbs: number;
  maxRef: number;
  meanAbs: number;
}

export function diff(a: Float32Array, ref: Float32Array): Diff {
  let maxAbs = 0;
  let maxRef = 0;
  let sum = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(a[i]! - ref[i]!);
    if (!(d <= maxAbs)) maxAbs = d;
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    sum += d;
  }
  return { maxAbs, maxRef, meanAbs: sum / ref.length };
}
