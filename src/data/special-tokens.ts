// The added tokens of dsv32-mini's vocabulary. They take the first ids, in this order, so BOS = 0 and
// EOS = 1 as in DeepSeek's own vocabulary, and every later merge id is independent of how many markers
// we add at the end of the list.
//
// The six chat tokens must be single ids for the chat encoder and the token counters
// (src/chat/tokenizer.ts checks exactly that). The DSML markers are ordinary text in V3.2's own
// tokenizer; we make them single (non-special) added tokens because a small vocabulary would spend
// 5–8 tokens on each `<｜DSML｜parameter` and tool calls are a large share of the post-training data.
// Their strings can never occur inside parsed content (FORBIDDEN_IN_TEXT contains `｜DSML｜`), so
// matching them before the BPE cannot change how any legal content is split. Added tokens decode to
// their content, so the text still round-trips byte for byte.
import {
  ASSISTANT,
  BOS,
  DSML,
  EOS,
  FUNCTION_CALLS_CLOSE,
  FUNCTION_CALLS_OPEN,
  INVOKE_OPEN,
  PARAMETER_OPEN,
  THINK_END,
  THINK_START,
  USER,
} from '../chat/tokens.js';

export interface AddedTokenSpec {
  content: string;
  /** `special` tokens are dropped by decode(skipSpecialTokens); the chat markers stay (as in DeepSeek's file). */
  special: boolean;
}

/** DeepSeek's padding token string (id 2 in its vocabulary, as here). */
export const PAD = '<｜▁pad▁｜>';

export const ADDED_TOKENS: readonly AddedTokenSpec[] = [
  { content: BOS, special: true },
  { content: EOS, special: true },
  { content: PAD, special: true },
  { content: USER, special: false },
  { content: ASSISTANT, special: false },
  { content: THINK_START, special: true },
  { content: THINK_END, special: true },
  // Longest first is not required (the matcher takes the longest at each position), but keeps the
  // list readable: full markers, then the bare `｜DSML｜` for any other use of it.
  { content: FUNCTION_CALLS_OPEN, special: false },
  { content: FUNCTION_CALLS_CLOSE, special: false },
  { content: `${INVOKE_OPEN}`, special: false },
  { content: `</${DSML}invoke>`, special: false },
  { content: `${PARAMETER_OPEN}`, special: false },
  { content: `</${DSML}parameter>`, special: false },
  { content: DSML, special: false },
];

/** Cuts text into added tokens and the plain text between them (longest match at each position). */
export function segmentAddedTokens(text: string, tokens: readonly string[] = ADDED_TOKENS.map((t) => t.content)): { text: string; added: boolean }[] {
  const sorted = [...tokens].sort((a, b) => b.length - a.length);
  const out: { text: string; added: boolean }[] = [];
  let start = 0;
  let i = 0;
  // only positions holding a token's first character need the (short) list scan
  const first = new Set(sorted.map((t) => t.charCodeAt(0)));
  while (i < text.length) {
    if (first.has(text.charCodeAt(i))) {
      const hit = sorted.find((t) => text.startsWith(t, i));
      if (hit) {
        if (i > start) out.push({ text: text.slice(start, i), added: false });
        out.push({ text: hit, added: true });
        i += hit.length;
        start = i;
        continue;
      }
    }
    i++;
  }
  if (start < text.length) out.push({ text: text.slice(start), added: false });
  return out;
}

/** The plain-text pieces between added tokens (what BPE training sees; no merge spans a marker). */
export function splitOnAddedTokens(text: string, tokens: readonly string[] = ADDED_TOKENS.map((t) => t.content)): string[] {
  return segmentAddedTokens(text, tokens)
    .filter((s) => !s.added)
    .map((s) => s.text);
}
