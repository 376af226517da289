// Writes a trained byte-level BPE as a Hugging Face tokenizer.json with the same pipeline as
// DeepSeek-V3's file (no normalizer, its pre-tokenizer, ByteLevel post-processor and decoder), so
// @huggingface/tokenizers and src/chat/tokenizer.ts load it like the real one. Added tokens take ids
// 0 … K−1 and also appear in model.vocab under the same ids, as BOS/EOS do in DeepSeek's vocabulary.
import type { BpeModel } from './bpe-trainer.js';
import { TokenizerTrainError } from './errors.js';
import { PRE_TOKENIZER_CONFIG } from './pretokenizer.js';
import type { AddedTokenSpec } from './special-tokens.js';

export interface TokenizerJson {
  version: '1.0';
  truncation: null;
  padding: null;
  added_tokens: {
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

export function buildTokenizerJson(model: BpeModel, added: readonly AddedTokenSpec[]): TokenizerJson {
  const vocab: Record<string, number> = {};
  added.forEach((t, id) => (vocab[t.content] = id));
  // The trainer's token strings are unique (a merge that respells a token reuses its id). One equal to
  // an added token cannot arise from the pre-tokenizer's pieces (none holds letters between two
  // punctuation marks, as `<think>` does), but a JSON object would silently keep one id, so check.
  model.tokens.forEach((t, i) => {
    if (t in vocab) throw new TokenizerTrainError(`learned token ${JSON.stringify(t)} (id ${added.length + i}) spells an added token; expected added tokens to be cut out of the training text`);
    vocab[t] = added.length + i;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added.map((t, id) => ({
      id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      // not normalized: the match is on the raw text, before any normalizer could touch the full-width bars
      normalized: false,
      special: t.special,
    })),
    normalizer: { type: 'Sequence', normalizers: [] },
    pre_tokenizer: PRE_TOKENIZER_CONFIG,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
