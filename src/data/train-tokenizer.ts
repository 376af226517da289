// Trains dsv32-mini's tokenizer: count the pre-tokenized words of the training text (added tokens cut
// out first, so no merge ever spans `<｜User｜>` or a DSML marker), learn byte-level BPE merges, and
// emit tokenizer.json.
//
// Vocabulary size for a 10–50M-parameter model: DeepSeek's model has an untied embedding and output
// head, so the vocabulary costs 2·V·d parameters. At d = 512, V = 8192 is 8.4M (17–80% of the budget
// across 50M…10M, already heavy at the small end), V = 16384 is 16.8M, and V = 128K (DeepSeek's own)
// would be 131M — more than the whole model. Larger V also spreads a ~30 MB corpus thinner: with
// 8K merges the rarest learned token still occurs hundreds of times, so its embedding gets trained;
// at 32K the tail tokens occur a handful of times. Measured on the full 64 MiB corpus (seed 0, all
// sources): V = 8192 gives 3.63 UTF-8 bytes per token on the validation split, V = 16384 gives 3.94 —
// 8% fewer tokens for twice the embedding and head. 8192 is the default (a multiple of 128, so the
// head GEMM tiles evenly); 16384 fits a model near the top of the range.
import { trainBpe, type BpeModel } from './bpe-trainer.js';
import { makePreTokenizer } from './pretokenizer.js';
import { ADDED_TOKENS, splitOnAddedTokens, type AddedTokenSpec } from './special-tokens.js';
import { buildTokenizerJson, type TokenizerJson } from './tokenizer-json.js';

export const DEFAULT_VOCAB_SIZE = 8192;

export interface TrainTokenizerOptions {
  vocabSize?: number;
  added?: readonly AddedTokenSpec[];
  minFrequency?: number;
  onProgress?: (phase: 'count' | 'merge', done: number, total: number) => void;
}

export interface TrainTokenizerResult {
  json: TokenizerJson;
  model: BpeModel;
  stats: {
    documents: number;
    bytes: number;
    distinctWords: number;
    words: number;
    vocabSize: number;
    merges: number;
    countMs: number;
    mergeMs: number;
  };
}

/** Counts pre-tokenized pieces of `texts` (in the byte-level alphabet) for the trainer. */
export class WordCounter {
  readonly counts = new Map<string, number>();
  documents = 0;
  bytes = 0;
  words = 0;
  private readonly pre = makePreTokenizer();
  private readonly addedContents: string[];

  constructor(added: readonly AddedTokenSpec[] = ADDED_TOKENS) {
    this.addedContents = added.map((t) => t.content);
  }

  add(text: string): void {
    this.documents++;
    this.bytes += Buffer.byteLength(text);
    for (const part of splitOnAddedTokens(text, this.addedContents)) {
      for (const piece of this.pre(part)) {
        this.counts.set(piece, (this.counts.get(piece) ?? 0) + 1);
        this.words++;
      }
    }
  }
}

export function trainTokenizerFromCounts(counter: WordCounter, opts: TrainTokenizerOptions & { countMs?: number } = {}): TrainTokenizerResult {
  const added = opts.added ?? ADDED_TOKENS;
  const vocabSize = opts.vocabSize ?? DEFAULT_VOCAB_SIZE;
  const t0 = performance.now();
  const model = trainBpe(counter.counts, {
    vocabSize,
    reservedIds: added.length,
    minFrequency: opts.minFrequency,
    onProgress: opts.onProgress ? (d, t) => opts.onProgress!('merge', d, t) : undefined,
  });
  const mergeMs = performance.now() - t0;
  return {
    json: buildTokenizerJson(model, added),
    model,
    stats: {
      documents: counter.documents,
      bytes: counter.bytes,
      distinctWords: counter.counts.size,
      words: counter.words,
      vocabSize: added.length + model.tokens.length,
      merges: model.merges.length,
      countMs: opts.countMs ?? 0,
      mergeMs,
    },
  };
}

/** Counts and trains in one go, for texts already in memory. */
export function trainTokenizer(texts: Iterable<string>, opts: TrainTokenizerOptions = {}): TrainTokenizerResult {
  const counter = new WordCounter(opts.added);
  const t0 = performance.now();
  for (const t of texts) counter.add(t);
  return trainTokenizerFromCounts(counter, { ...opts, countMs: performance.now() - t0 });
}
