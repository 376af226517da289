// YaRN rotary frequencies (model.md §7) and the per-position cos/sin tables shared by MLA (interleaved)
// and the indexer (half-split). The reference computes in f32:
//   freqs_i = 1 / base^(2i/d)
//   if YaRN: low = floor(d·ln(L0/(2π·β_fast))/(2 ln base)), high = ceil(same with β_slow), clamped to
//            [0, d-1]; ramp_i = clamp((i − low)/(high − low), 0, 1); smooth = 1 − ramp;
//            freqs_i ← freqs_i/factor·(1 − smooth) + freqs_i·smooth
// Each f32 step is reproduced with Math.fround so the tables match the reference's to the ulp.
import type { Tensor } from '../tensor/tensor.js';
import { indexSelect } from '../tensor/ops/indexing.js';
import { ropeTables } from '../tensor/ops/rope.js';
import type { ModelConfig } from './config.js';

const f = Math.fround;

export function yarnFrequencies(cfg: ModelConfig): Float64Array {
  const d = cfg.qkRopeHeadDim;
  const base = cfg.ropeTheta;
  const half = d / 2;
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f(1 / f(base ** f((2 * i) / d)));
  const y = cfg.yarn;
  if (!y) return freqs;
  const corr = (rot: number): number => (d * Math.log(y.originalMaxPositions / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(corr(y.betaFast)), 0);
  let high = Math.min(Math.ceil(corr(y.betaSlow)), d - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(1, Math.max(0, f(f(i - low) / f(high - low))));
    const smooth = f(1 - ramp);
    const fi = freqs[i]!;
    freqs[i] = f(f(f(fi / y.factor) * f(1 - smooth)) + f(fi * smooth));
  }
  return freqs;
}

/**
 * cos/sin [S, d/2] for positions start..start+S-1 (`at`), or gathered on the device by a positions tensor
 * from a table precomputed there (`gather`): an engine step reads its tables without host work, so a
 * decode step needs nothing computed on the host but its positions. The table covers positions up to the
 * largest asked for, rounded up to a power of two (and capped at max_position_embeddings), built once per
 * device and rebuilt only when a longer context arrives.
 */
export class RotaryTables {
  readonly freqs: Float64Array;
  private readonly tables = new Map<string, { cos: Tensor; sin: Tensor; len: number }>();
  constructor(private readonly cfg: ModelConfig) {
    this.freqs = yarnFrequencies(cfg);
  }

  gather(positions: Tensor, maxPosition: number): { cos: Tensor; sin: Tensor } {
    const dev = positions.device;
    let t = this.tables.get(dev);
    if (!t || t.len <= maxPosition) {
      const len = Math.min(Math.max(this.cfg.maxPositions, maxPosition + 1), 2 ** Math.ceil(Math.log2(Math.max(64, maxPosition + 1))));
      t = { ...this.at(0, len, dev), len };
      this.tables.set(dev, t);
    }
    return { cos: indexSelect(t.cos, 0, positions), sin: indexSelect(t.sin, 0, positions) };
  }
  at(start: number, length: number, device?: string): { cos: Tensor; sin: Tensor } {
    const pos = Array.from({ length }, (_, i) => start + i);
    return ropeTables(pos, this.freqs, device);
  }
}
