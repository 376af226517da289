// Indexer replay: the sparse-attention analogue of Keep Routing (keep-routing.ts). DSA's attention at
// query t reads only the keys S_t the lightning indexer selected (top-index_topk of I[t, ·]); the engine's
// S_t comes from its FP8 paged cache, and the trainer's forward, recomputing the indexer, can pick a
// different S_t wherever two scores are near-tied: a different attention support, hence a π_θ that differs
// from π_old by more than numerics at θ = θ_old. Replaying the engine's S_t at every recorded position
// (prompt rows via promptIndexerTopk, sampled tokens via indexerTopk; rollout.ts) makes the training
// forward attend exactly where the sampling forward did.
//
// Layout (RecordedSelections): i32 [tokens, layers, topk] over input positions; per (position, layer) the
// selected key positions then −1 holes (position p sees p + 1 keys). Unrecorded positions (padding, a
// sequence's last position) take the trainer's own selection, as unrecorded routes do (batch.ts).
import { DsvError } from '../errors.js';

export class IndexerReplayError extends DsvError {}

/** layers with an indexer (every layer) × index_topk */
export interface IndexerShape {
  layers: number;
  topk: number;
}

export interface RecordedSelections {
  data: Int32Array;
  tokens: number;
  layers: number;
  topk: number;
}

/** One position's selections from per-layer lists of key positions (−1 entries dropped), packed with −1 holes. */
export function packSelection(perLayer: readonly ArrayLike<number>[], shape: IndexerShape, what: string): Int32Array {
  if (perLayer.length !== shape.layers) throw new IndexerReplayError(`${what}: ${perLayer.length} layers of indexer selections, expected ${shape.layers}`);
  const out = new Int32Array(shape.layers * shape.topk).fill(-1);
  perLayer.forEach((row, l) => {
    let j = 0;
    for (let i = 0; i < row.length; i++) {
      const x = row[i]!;
      if (x < 0) continue;
      if (!Number.isInteger(x)) throw new IndexerReplayError(`${what}: layer ${l} selects ${x}, not a key position`);
      if (j >= shape.topk) throw new IndexerReplayError(`${what}: layer ${l} selects more than index_topk = ${shape.topk} keys`);
      out[l * shape.topk + j++] = x;
    }
  });
  return out;
}

/** A trainer forward's selection of one layer: [B·S, width] key positions, −1 = none (model Selection on the host). */
export interface HostSelection {
  width: number;
  idx: Int32Array;
}

function check(recorded: readonly RecordedSelections[], selected: Uint8Array, own: readonly HostSelection[], T: number, where: string): void {
  const S = recorded.length;
  if (selected.length !== S * T) throw new IndexerReplayError(`${where}: selected has ${selected.length} entries, expected S·T = ${S}·${T}`);
  for (const [s, r] of recorded.entries()) {
    if (r.tokens !== T || r.data.length !== T * r.layers * r.topk) throw new IndexerReplayError(`${where}: recording ${s} is not [${T}, layers, topk]`);
    if (r.layers !== own.length) throw new IndexerReplayError(`${where}: recording ${s} has ${r.layers} layers, the forward ${own.length}`);
  }
  for (const [l, o] of own.entries()) if (o.idx.length !== S * T * o.width) throw new IndexerReplayError(`${where}: own selection of layer ${l} holds ${o.idx.length} entries, expected [${S}·${T}, ${o.width}]`);
}

/**
 * trainForward's forcedTopk (per layer [S·T, topk], −1 holes): the recording where `selected[s·T + j]`, the
 * trainer's own selection (`own`, an unforced forward of the same rows) elsewhere.
 */
export function forcedTopkFromRecorded(recorded: readonly RecordedSelections[], selected: Uint8Array, own: readonly HostSelection[], T: number): Int32Array[] {
  if (!recorded.length) throw new IndexerReplayError('forcedTopkFromRecorded: no recordings');
  check(recorded, selected, own, T, 'forcedTopkFromRecorded');
  const { layers, topk } = recorded[0]!;
  const S = recorded.length;
  return Array.from({ length: layers }, (_, l) => {
    const out = new Int32Array(S * T * topk).fill(-1);
    const o = own[l]!;
    for (let s = 0; s < S; s++) {
      const r = recorded[s]!;
      for (let j = 0; j < T; j++) {
        const row = s * T + j;
        if (selected[row]) out.set(r.data.subarray((j * layers + l) * topk, (j * layers + l + 1) * topk), row * topk);
        else {
          let q = 0;
          for (let i = row * o.width; i < (row + 1) * o.width && q < topk; i++) if (o.idx[i]! >= 0) out[row * topk + q++] = o.idx[i]!;
        }
      }
    }
    return out;
  });
}

/**
 * indexer_disagreement: over recorded positions and every layer, the fraction of the recording's selected
 * keys the trainer's own (unforced) selection does not select: Σ |R \ O| / Σ |R|. 0 = the trainer would have
 * chosen what the engine chose; it measures what replay corrects (or, without replay, the support mismatch).
 */
export function indexerDisagreement(recorded: readonly RecordedSelections[], selected: Uint8Array, own: readonly HostSelection[], T: number): number {
  if (!recorded.length) return 0;
  check(recorded, selected, own, T, 'indexerDisagreement');
  let differ = 0;
  let total = 0;
  recorded.forEach((r, s) => {
    for (let j = 0; j < T; j++) {
      const row = s * T + j;
      if (!selected[row]) continue;
      for (let l = 0; l < r.layers; l++) {
        const o = own[l]!;
        const mine = new Set(o.idx.subarray(row * o.width, (row + 1) * o.width));
        for (const x of r.data.subarray((j * r.layers + l) * r.topk, (j * r.layers + l + 1) * r.topk)) {
          if (x < 0) continue;
          total++;
          if (!mine.has(x)) differ++;
        }
      }
    }
  });
  return total ? differ / total : 0;
}
