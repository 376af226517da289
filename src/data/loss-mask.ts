// Which tokens of a document are training targets. Plain text: all of it. A chat document: the
// assistant turns of its last exchange (every assistant message after the last user message), each
// from the first token the model writes (after the prompt's `<think>` or `</think>`) through its EOS.
// Earlier exchanges are context only: the V3.2 encoder renders them without their reasoning, i.e. not
// as the model produced them, so a loss on them would teach thinking-mode turns without thinking.
//
// Spans come from the encoder itself: turn i's completion is encode(messages[..i]) minus
// encode(messages[..i)), which holds for every turn after the last user message (tested). Each span
// starts right after an added token (`<think>`/`</think>`) and ends with one (EOS), and added tokens
// cut the text before BPE, so encoding the pieces separately gives the same ids as encoding the
// whole — which `maskedIds` checks rather than assumes.
import { encodeMessages } from '../chat/encode.js';
import type { ChatMessage, ThinkingMode } from '../chat/message.js';
import { CorpusError } from './errors.js';

/** [start, end) character offsets of the target spans of a chat document's text. */
export function completionSpans(messages: readonly ChatMessage[], mode: ThinkingMode): [number, number][] {
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === 'user' || m.role === 'developer') lastUser = i;
  });
  const spans: [number, number][] = [];
  for (let i = lastUser + 1; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const start = encodeMessages(messages.slice(0, i), { mode }).length;
    const end = encodeMessages(messages.slice(0, i + 1), { mode }).length;
    spans.push([start, end]);
  }
  return spans;
}

/** Token ids of `text` with a 0/1 target mask, encoding span by span. */
export function maskedIds(id: string, text: string, spans: readonly [number, number][], encode: (s: string) => number[]): { ids: number[]; mask: number[] } {
  const ids: number[] = [];
  const mask: number[] = [];
  let at = 0;
  const piece = (from: number, to: number, m: number): void => {
    if (to <= from) return;
    for (const t of encode(text.slice(from, to))) {
      ids.push(t);
      mask.push(m);
    }
  };
  for (const [s, e] of spans) {
    if (s < at || e > text.length) throw new CorpusError(`document ${id}: completion span [${s}, ${e}) is out of order or past the text (${text.length} chars)`);
    piece(at, s, 0);
    piece(s, e, 1);
    at = e;
  }
  piece(at, text.length, 0);
  const whole = encode(text);
  if (whole.length !== ids.length || whole.some((t, i) => t !== ids[i])) {
    throw new CorpusError(`document ${id}: encoding the completion spans separately changes the ids; a span boundary is not at an added token`);
  }
  return { ids, mask };
}
