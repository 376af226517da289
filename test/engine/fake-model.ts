// A test double of the model's ragged step (tests only): the "cache" is the token id at every slot of
// the paged pool, and a row's logits are a pseudo-random function of the whole prefix it can see
// through its block table. So a scheduler or prefix-cache bug that lists a wrong block, skips a
// position or reads a stale slot changes the logits, exactly as it would with the real model.
// Its MTP is an oracle (optionally noisy): at position i with next token t_{i+1} it returns the main
// model's logits of the prefix extended by t_{i+1}.
import { checkBatch, type RaggedBatch } from '../../src/model/batch.js';
import { randomConfig } from '../../src/model/random-weights.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Rng } from '../../src/tensor/random.js';
import { fromArray, type Tensor } from '../../src/tensor/tensor.js';
import '../../src/tensor/index.js';

export class FakePool {
  readonly slots: Int32Array;
  /** the MTP layer's own cache, as the real pool has one per MTP layer */
  readonly mtpSlots: Int32Array;
  constructor(readonly blocks: number) {
    this.slots = new Int32Array(blocks * 64).fill(-1);
    this.mtpSlots = new Int32Array(blocks * 64).fill(-1);
  }
}

function hashTokens(ids: ArrayLike<number>): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < ids.length; i++) {
    h = Math.imul(h ^ (ids[i]! + 1), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  }
  return h;
}

export class FakeModel {
  readonly cfg: ModelConfig;
  steps: RaggedBatch[] = [];
  mtpNoise = 0;

  constructor(readonly vocab = 48, readonly sharp = 3, opts: { mtp?: boolean } = {}) {
    this.cfg = randomConfig({ vocab_size: vocab, num_hidden_layers: 3, first_k_dense_replace: 1, n_routed_experts: 8, num_experts_per_tok: 2, eos_token_id: 1, num_nextn_predict_layers: opts.mtp ? 1 : 0 });
  }

  /** the logits after the prefix `ids` (the next token's distribution) */
  logitsOf(ids: ArrayLike<number>): Float32Array {
    const r = new Rng(hashTokens(ids));
    return Float32Array.from({ length: this.vocab }, () => this.sharp * r.normal());
  }

  /** routes of the row at the end of `ids`: per MoE layer 2 distinct ascending experts */
  routesOf(ids: ArrayLike<number>, layer: number): [number, number] {
    const h = hashTokens([...Array.from(ids), 1000 + layer]);
    const a = h % 8;
    const b = (a + 1 + ((h >>> 8) % 7)) % 8;
    return a < b ? [a, b] : [b, a];
  }

  newPool(opts: { blocks: number }): FakePool {
    return new FakePool(opts.blocks);
  }

  private prefixes(batch: RaggedBatch, pool: FakePool, slots: Int32Array): number[][] {
    checkBatch(batch, 64, pool.blocks, this.vocab, this.cfg.maxPositions);
    const out: number[][] = [];
    for (const s of batch.seqs) {
      for (let i = 0; i < s.len; i++) {
        const pos = s.start + i;
        const slot = s.blocks[Math.floor(pos / 64)]! * 64 + (pos % 64);
        slots[slot] = batch.ids[s.offset + i]!;
        const seen: number[] = [];
        for (let p = 0; p <= pos; p++) {
          const v = p === pos ? batch.ids[s.offset + i]! : slots[s.blocks[Math.floor(p / 64)]! * 64 + (p % 64)]!;
          if (v < 0) throw new Error(`fake model: position ${p} was never written`);
          seen.push(v);
        }
        out.push(seen);
      }
    }
    return out;
  }

  /** a token id whose presence in a step makes the step throw (a model failure) */
  poison = -1;

  step(batch: RaggedBatch, pool: FakePool): { logits: Tensor; hidden: Tensor; topk: { width: number; idx: Tensor }[]; routes: (Tensor | null)[] } {
    this.steps.push(batch);
    if (batch.ids.includes(this.poison)) throw new Error(`fake model: poisoned token ${this.poison} in the step`);
    const pre = this.prefixes(batch, pool, pool.slots);
    const rows = batch.logitRows ?? Int32Array.from(batch.seqs, (s) => s.offset + s.len - 1);
    const V = this.vocab;
    const logits = new Float32Array(rows.length * V);
    rows.forEach((r, j) => logits.set(this.logitsOf(pre[r]!), j * V));
    const T = batch.ids.length;
    const routes = Array.from({ length: this.cfg.nLayers }, (_, l) => {
      if (l < this.cfg.nDenseLayers) return null;
      const d = new Int32Array(T * 2);
      pre.forEach((p, t) => d.set(this.routesOf(p, l), t * 2));
      return fromArray(d, [T, 2], { dtype: 'i32' });
    });
    const hidden = fromArray(Float32Array.from(pre, (p) => p.length), [T, 1]);
    const topk = Array.from({ length: this.cfg.nLayers }, () => ({ width: 2, idx: fromArray(Int32Array.from({ length: T * 2 }, (_, i) => (i % 2 === 0 ? 0 : -1)), [T, 2], { dtype: 'i32' }) }));
    return { logits: fromArray(logits, [rows.length, V]), hidden, topk, routes };
  }

  mtpStep(batch: RaggedBatch, _hidden: Tensor, nextIds: Int32Array, pool: FakePool): { logits: Tensor; hidden: Tensor } {
    const pre = this.prefixes(batch, pool, pool.mtpSlots);
    const rows = batch.logitRows ?? Int32Array.from(batch.seqs, (s) => s.offset + s.len - 1);
    const V = this.vocab;
    const logits = new Float32Array(rows.length * V);
    rows.forEach((r, j) => {
      const l = this.logitsOf([...pre[r]!, nextIds[r]!]);
      if (this.mtpNoise) {
        const g = new Rng(hashTokens([...pre[r]!, 7777]));
        for (let v = 0; v < V; v++) l[v] = l[v]! + this.mtpNoise * g.normal();
      }
      logits.set(l, j * V);
    });
    return { logits: fromArray(logits, [rows.length, V]), hidden: fromArray(new Float32Array(batch.ids.length), [batch.ids.length, 1]) };
  }
}
