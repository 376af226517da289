// The pre-tokenizer of dsv32-mini's tokenizer.json: DeepSeek-V3's, except that every digit is its own
// piece (V3 isolates runs of at most three). CJK runs isolated, then a GPT-4-like
// word/punctuation/whitespace split, then the bytes of each piece mapped to the byte-level alphabet.
// Why single digits: with V3's runs, "38" can be one token of up to 1,110 number tokens, and the column
// arithmetic the mini model is trained on ("ones: 8 + 6 = 14") first has to learn the digits inside
// each of them. The 2026-12-05 mini model, trained on that tokenizer, got 0 of 20 held-out two-digit
// additions right and copied an operand instead; single digits (as LLaMA and PaLM split them) leave
// only the ten digit tokens and the 100 one-digit sums to learn. The trainer runs this very configuration through
// @huggingface/tokenizers, so the words counted at training time are exactly the pieces the library
// hands to the BPE model at encode time (a hand-written copy of the regexes could drift from the
// library's Oniguruma-to-JS rewrite, and every mismatch would cost merges that are never used).
import { Tokenizer } from '@huggingface/tokenizers';
import { TokenizerTrainError } from './errors.js';

export const PRE_TOKENIZER_CONFIG = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Split', pattern: { Regex: '\\p{N}' }, behavior: 'Isolated', invert: false },
    { type: 'Split', pattern: { Regex: '[一-龥぀-ゟ゠-ヿ]+' }, behavior: 'Isolated', invert: false },
    {
      type: 'Split',
      pattern: {
        Regex:
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
      },
      behavior: 'Isolated',
      invert: false,
    },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
} as const;

export type PreTokenize = (text: string) => string[];

/** The library's pre-tokenizer built from PRE_TOKENIZER_CONFIG: text → byte-level pieces. */
export function makePreTokenizer(): PreTokenize {
  // The package's type declarations do not re-export the pre-tokenizer classes, so build a tokenizer
  // with an empty BPE around the configuration and use its pre-tokenizer.
  const tok = new Tokenizer(
    { model: { type: 'BPE', vocab: {}, merges: [] }, pre_tokenizer: PRE_TOKENIZER_CONFIG, normalizer: null, post_processor: null, decoder: null, added_tokens: [] },
    {},
  );
  const pre = tok.pre_tokenizer;
  if (!pre) throw new TokenizerTrainError('@huggingface/tokenizers built no pre-tokenizer from PRE_TOKENIZER_CONFIG; expected a Sequence pre-tokenizer');
  return (text) => pre.pre_tokenize_text(text);
}
