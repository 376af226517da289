// A fast encoder for packing whole corpora with a trained tokenizer.json. It produces the same ids as
// @huggingface/tokenizers (the tests check that on every validation document) but memoises BPE per
// distinct pre-tokenized word: natural text repeats its words, so after the first few MB almost every
// word is a cache hit and the cost is the pre-tokenizer's (about 10× the library's throughput on a
// whole corpus, which re-runs the merge loop for every occurrence).
//
// Per word, BPE applies merges by rank: repeatedly take the adjacent pair of lowest rank and merge its
// occurrences left to right. That is the library's order too (a priority queue on (rank, position)),
// including overlaps: "a a a" with the merge (a, a) becomes "aa a".
import { TokenizerTrainError } from './errors.js';
import { makePreTokenizer, type PreTokenize } from './pretokenizer.js';
import { segmentAddedTokens } from './special-tokens.js';
import type { TokenizerJson } from './tokenizer-json.js';

export class BpeEncoder {
  private readonly vocab: Map<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly added: Map<string, number>;
  private readonly pre: PreTokenize = makePreTokenizer();
  private readonly cache = new Map<string, number[]>();
  readonly vocabSize: number;

  constructor(json: TokenizerJson, source = 'tokenizer.json') {
    if (json.model?.type !== 'BPE' || !json.model.vocab || !Array.isArray(json.model.merges)) {
      throw new TokenizerTrainError(`${source}: expected a byte-level BPE tokenizer.json (model.type "BPE" with vocab and merges)`);
    }
    this.vocab = new Map(Object.entries(json.model.vocab));
    json.model.merges.forEach((m, i) => this.ranks.set(m, i));
    this.added = new Map(json.added_tokens.map((t) => [t.content, t.id]));
    this.vocabSize = Math.max(...this.vocab.values(), ...this.added.values()) + 1;
  }

  private word(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    let syms = [...piece];
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.ranks.get(`${syms[i]} ${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const a = syms[best]!;
      const b = syms[best + 1]!;
      const next: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i >= best && i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(syms[i]!);
      }
      syms = next;
    }
    const ids = syms.map((s) => {
      const id = this.vocab.get(s);
      if (id === undefined) throw new TokenizerTrainError(`BPE produced ${JSON.stringify(s)}, which is not in the vocabulary (is the tokenizer.json byte-level?)`);
      return id;
    });
    // bound the memo: a corpus has ~10^5–10^6 distinct words; past 2M entries start afresh
    if (this.cache.size > 2_000_000) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  private readonly addedList: string[] = [];

  encode(text: string): number[] {
    if (!this.addedList.length) this.addedList.push(...this.added.keys());
    const out: number[] = [];
    for (const seg of segmentAddedTokens(text, this.addedList)) {
      if (seg.added) out.push(this.added.get(seg.text)!);
      else for (const piece of this.pre(seg.text)) for (const id of this.word(piece)) out.push(id);
    }
    return out;
  }
}
