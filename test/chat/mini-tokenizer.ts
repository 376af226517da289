// Generator of a small DeepSeek-V3-style tokenizer.json for tests (no real DeepSeek tokenizer is
// available offline). Same shape as the real file: the pre-tokenizer is a Sequence of three regex
// Splits (digits in groups of up to 3, a CJK run, the letter/punctuation/whitespace pattern) followed
// by ByteLevel without its own regex; a byte-level BPE model; a ByteLevel decoder; the chat special
// tokens as added tokens. The BPE is trained here, deterministically, with a few hundred merges over a
// small corpus, so encodings are multi-byte tokens and not just bytes.
//
// Run `node dist/test/chat/mini-tokenizer.js OUTDIR` to write tokenizer.json and tokenizer_config.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const DIGITS = '\\p{N}{1,3}';
const CJK = '[一-龥぀-ゟ゠-ヿ]+';
const MAIN =
  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's reversible byte → printable-character map used by ByteLevel. */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = keep.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return out;
}

/** Splits `text` as the Sequence pre-tokenizer does: each Split isolates matches and keeps the gaps. */
function preTokenize(text: string): string[] {
  let pieces = [text];
  for (const src of [DIGITS, CJK, MAIN]) {
    const re = new RegExp(src, 'gu');
    const next: string[] = [];
    for (const p of pieces) {
      let last = 0;
      for (const m of p.matchAll(re)) {
        if (m.index! > last) next.push(p.slice(last, m.index));
        if (m[0].length) next.push(m[0]);
        last = m.index! + m[0].length;
      }
      if (last < p.length) next.push(p.slice(last));
    }
    pieces = next;
  }
  return pieces;
}

const CORPUS = `
The quick brown fox jumps over the lazy dog. What's the weather tomorrow in New York?
You are a helpful assistant. Use the tools when you need them, then answer the user's question.
function get_weather(location, date) { return fetch("https://api.example.com/weather?q=" + location); }
{"name": "get_weather", "description": "Get the weather for a location", "parameters": {"type": "object"}}
<function_calls> <invoke name="search"> <parameter name="query" string="true">deepseek sparse attention</parameter>
</invoke> </function_calls> <function_results> <result>the answer is 42</result> </function_results>
Here are the functions available in JSONSchema format. The string attribute should be set to true.
import { readFileSync } from 'node:fs'; export const value = 12345; const items = [1, 2, 3];
Thinking about the results, the temperature is 15 degrees and it will rain in the afternoon.
`.repeat(3);

export interface MiniTokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

export function buildMiniDeepSeekTokenizer(numMerges = 300): MiniTokenizerFiles {
  const byteChar = bytesToUnicode();
  const enc = new TextEncoder();
  // word (as byte-level symbols) → frequency
  const words = new Map<string, { syms: string[]; n: number }>();
  for (const piece of preTokenize(CORPUS)) {
    const syms = [...enc.encode(piece)].map((b) => byteChar[b]!);
    const key = syms.join('\u0001');
    const w = words.get(key);
    if (w) w.n++;
    else words.set(key, { syms, n: 1 });
  }
  const vocab: Record<string, number> = {};
  let nextId = 3; // 0..2 are BOS, EOS and PAD, as in DeepSeek-V3's file
  for (const c of byteChar) vocab[c] = nextId++;
  const merges: [string, string][] = [];
  for (let m = 0; m < numMerges; m++) {
    const counts = new Map<string, number>();
    for (const { syms, n } of words.values()) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = syms[i] + '\u0001' + syms[i + 1];
        counts.set(k, (counts.get(k) ?? 0) + n);
      }
    }
    let best: string | undefined;
    let bestN = 1; // a pair seen once is not worth a merge
    for (const [k, n] of counts) {
      if (n > bestN || (n === bestN && best !== undefined && k < best)) {
        best = k;
        bestN = n;
      }
    }
    if (!best) break;
    const [a, b] = best.split('\u0001') as [string, string];
    merges.push([a, b]);
    if (!(a + b in vocab)) vocab[a + b] = nextId++;
    for (const w of words.values()) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.syms[i]!);
      }
      w.syms = out;
    }
  }
  const added = (id: number, content: string, special: boolean) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special,
  });
  const BOS = '<｜begin▁of▁sentence｜>';
  const EOS = '<｜end▁of▁sentence｜>';
  const addedTokens = [added(0, BOS, true), added(1, EOS, true), added(2, '<｜▁pad▁｜>', true)];
  for (const t of ['<think>', '</think>', '<｜User｜>', '<｜Assistant｜>']) addedTokens.push(added(nextId++, t, false));
  for (const t of addedTokens) vocab[t.content] = t.id;

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: { type: 'Sequence', normalizers: [] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: DIGITS }, behavior: 'Isolated', invert: false },
        { type: 'Split', pattern: { Regex: CJK }, behavior: 'Isolated', invert: false },
        { type: 'Split', pattern: { Regex: MAIN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: BOS, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: BOS, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [BOS]: { id: BOS, ids: [0], tokens: [BOS] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: { __type: 'AddedToken', content: BOS, lstrip: false, normalized: true, rstrip: false, single_word: false },
    eos_token: { __type: 'AddedToken', content: EOS, lstrip: false, normalized: true, rstrip: false, single_word: false },
    pad_token: { __type: 'AddedToken', content: EOS, lstrip: false, normalized: true, rstrip: false, single_word: false },
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: 131072,
    tokenizer_class: 'LlamaTokenizerFast',
  };
  return { tokenizerJson, tokenizerConfig };
}

export function writeMiniDeepSeekTokenizer(dir: string): void {
  const { tokenizerJson, tokenizerConfig } = buildMiniDeepSeekTokenizer();
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node dist/test/chat/mini-tokenizer.js OUTDIR\n');
    process.exit(2);
  }
  writeMiniDeepSeekTokenizer(dir);
}
