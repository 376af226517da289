// Byte-level BPE training (Sennrich et al.'s merge loop on the byte alphabet), with incremental pair
// counts so that a merge costs time proportional to the words that contain the merged pair, not to the
// corpus.
//
// State, for W distinct pre-tokenized words with frequencies f_w and current symbol sequences s_w:
//   count(a,b) = Σ_w f_w · #{i : s_w[i] = a, s_w[i+1] = b}          (overlaps counted, as HF does)
//   where(a,b) ⊇ {w : (a,b) occurs in s_w}                          (a superset: entries go stale)
// A merge (a,b) → c rewrites only the words in where(a,b). For each such word we subtract the pair
// counts of its old sequence and add those of its new one; words are short (≈ 5–10 symbols), so this
// exact recount is as cheap as patching the neighbours one by one and cannot get overlaps like
// "a b a b" wrong. The best pair comes from a max-heap with lazy deletion: every pair whose count
// changed is pushed again with its new count, and a popped entry whose count differs from the live
// one is dropped. Total work ≈ Σ_merges Σ_{w ∈ where} |s_w| + heap pushes · log(heap), versus
// O(V · N) for rescanning the corpus at every merge.
//
// Determinism: ties on count are broken by the smaller (a, b) id pair, ids are assigned in merge
// order, and words are visited in first-occurrence order, so the same corpus gives the same merges on
// every run and platform.
import { TokenizerTrainError } from './errors.js';
import { BYTE_CHARS } from './byte-level.js';

export interface BpeTrainOptions {
  /** Total vocabulary: added tokens + 256 bytes + merges. */
  vocabSize: number;
  /** Number of ids reserved before the byte alphabet (the added tokens). */
  reservedIds: number;
  /** Pairs seen fewer times than this are never merged (training stops early instead). */
  minFrequency?: number;
  /** Called every `progressEvery` merges with (merges done, merges wanted). */
  onProgress?: (done: number, total: number) => void;
  progressEvery?: number;
}

export interface BpeModel {
  /** Token strings in the byte-level alphabet, indexed by id − reservedIds (bytes first, then merges). */
  tokens: string[];
  /** Merges in order, as pairs of token strings (a few more than new tokens when two merges spell one string). */
  merges: [string, string][];
  /** Tokens requested but not made because no pair reached minFrequency. */
  shortfall: number;
}

// (a, b) packed into one number: ids stay below 2^21 (2M tokens), so a·2^21 + b < 2^42 is exact.
const SHIFT = 2 ** 21;
const pairKey = (a: number, b: number): number => a * SHIFT + b;

/** Binary max-heap on (count desc, key asc) of [count, key] entries. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top; returns [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastC = this.counts.pop()!;
    const lastK = this.keys.pop()!;
    if (this.counts.length) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      const n = this.counts.length;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n && this.above(l, m)) m = l;
        if (r < n && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/**
 * Learns merges from `wordCounts` (pre-tokenized pieces in the byte-level alphabet → frequency).
 * Ids: 0 … reservedIds−1 are the caller's added tokens, then the 256 bytes in byte order, then merges.
 */
export function trainBpe(wordCounts: ReadonlyMap<string, number>, opts: BpeTrainOptions): BpeModel {
  const { vocabSize, reservedIds, minFrequency = 2, onProgress, progressEvery = 256 } = opts;
  const base = reservedIds + 256;
  if (!Number.isInteger(vocabSize) || vocabSize < base) {
    throw new TokenizerTrainError(`vocabulary size ${vocabSize} is below ${base} (${reservedIds} added tokens + 256 bytes); expected an integer ≥ ${base}`);
  }
  if (vocabSize >= SHIFT) throw new TokenizerTrainError(`vocabulary size ${vocabSize} is above the trainer's limit of ${SHIFT - 1}`);
  if (wordCounts.size === 0) throw new TokenizerTrainError('the training text is empty: no words to learn merges from');

  const tokens: string[] = [...BYTE_CHARS];
  const byteId = new Map<string, number>(BYTE_CHARS.map((c, b) => [c, reservedIds + b]));
  const tokenOf = (id: number): string => tokens[id - reservedIds]!;

  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, f] of wordCounts) {
    const syms: number[] = [];
    for (const ch of w) {
      const id = byteId.get(ch);
      if (id === undefined) throw new TokenizerTrainError(`pre-tokenized piece ${JSON.stringify(w)} has ${JSON.stringify(ch)}, which is not in the byte-level alphabet`);
      syms.push(id);
    }
    words.push(syms);
    freq.push(f);
  }

  const count = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const add = (w: number, syms: readonly number[], sign: 1 | -1, touched: Set<number> | null): void => {
    const f = freq[w]! * sign;
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = pairKey(syms[i]!, syms[i + 1]!);
      const c = (count.get(k) ?? 0) + f;
      if (c === 0) count.delete(k);
      else count.set(k, c);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(w);
      }
      touched?.add(k);
    }
  };
  for (let w = 0; w < words.length; w++) add(w, words[w]!, 1, null);

  const heap = new PairHeap();
  for (const [k, c] of count) heap.push(c, k);

  const merges: [string, string][] = [];
  const idOfToken = new Map<string, number>(byteId);
  const wanted = vocabSize - base;
  const made = (): number => tokens.length - 256;
  while (made() < wanted && heap.size) {
    const [c, k] = heap.pop();
    if (count.get(k) !== c) continue; // stale entry; the live count was pushed when it changed
    if (c < minFrequency) break;
    const a = Math.floor(k / SHIFT);
    const b = k - a * SHIFT;
    // Two merge paths can spell one string ("ab"+"c", "a"+"bc"): the later merge reuses the id, so the
    // vocabulary has no holes and every id decodes.
    const joined = tokenOf(a) + tokenOf(b);
    let id = idOfToken.get(joined);
    if (id === undefined) {
      id = reservedIds + tokens.length;
      tokens.push(joined);
      idOfToken.set(joined, id);
    }
    merges.push([tokenOf(a), tokenOf(b)]);

    const touched = new Set<number>();
    const holders = where.get(k)!;
    where.delete(k);
    for (const w of holders) {
      const syms = words[w]!;
      let hit = false;
      for (let i = 0; i + 1 < syms.length; i++) {
        if (syms[i] === a && syms[i + 1] === b) {
          hit = true;
          break;
        }
      }
      if (!hit) continue; // stale membership: an earlier merge already consumed this pair here
      add(w, syms, -1, touched);
      const next: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(id);
          i++;
        } else next.push(syms[i]!);
      }
      words[w] = next;
      add(w, next, 1, touched);
    }
    for (const t of touched) {
      const live = count.get(t);
      if (live !== undefined && t !== k) heap.push(live, t);
    }
    if (onProgress && merges.length % progressEvery === 0) onProgress(made(), wanted);
  }
  onProgress?.(made(), wanted);
  return { tokens, merges, shortfall: wanted - made() };
}
