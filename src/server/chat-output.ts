// One chat choice's generated text → reasoning_content, content and tool_calls, incrementally.
//
// The exact streaming parser (src/chat/parse-stream.ts) releases reasoning, content and tool-call
// argument pieces as soon as they are certain and never lets a marker (`</think>`, the DSML block) reach
// content. Model output does not always follow the format, and the exact parser then throws. From that
// point the text is only collected, and at the end the whole completion is re-read by the lenient parser
// (src/chat/parse-lenient.ts), which recovers what it can and also keeps markup out of the text. What the
// lenient message adds beyond what was already streamed is sent then: the rest of the reasoning and
// content where they extend what was sent, the rest of a started call's arguments, and whole new calls.
// So the concatenated deltas equal the final message whenever the exact parse succeeds, and, after a
// failure, wherever the lenient reading extends the exact one (it does except when a markup repair
// changes text already sent; the non-streaming response is always the lenient message).
//
// Two kinds of markup the exact parser takes for text are caught here, so they never reach a client:
//  - a tag in another spelling (bare `<invoke …>`, `<｜｜DSML｜｜function_calls>`, …): the exact format
//    has no such tags, so its first complete appearance counts as a parse failure (lenient at the end);
//  - the `<` that starts any tag: the exact parser fails only at `｜DSML｜`, after releasing the `<` before
//    it. Reasoning and content are therefore released only up to an unclosed `<` near their end (at most
//    TAG_HOLD characters are held; "a < b" is merely delayed until more text or the end).
import { randomBytes } from 'node:crypto';
import { ChatParseError, CompletionStreamParser, parseCompletionLenient, type ParsedMessage, type StreamEvent, type ThinkingMode, type ToolDefinition } from '../chat/index.js';

export type ChatDelta =
  | { type: 'reasoning'; text: string }
  | { type: 'content'; text: string }
  | { type: 'tool_call_start'; index: number; id: string; name: string }
  | { type: 'tool_call_arguments'; index: number; text: string };

export interface ChatResult {
  reasoning: string;
  content: string;
  toolCalls: { id: string; name: string; arguments: string }[];
  /** the exact parse failed and the lenient parser's reading is returned */
  recovered: boolean;
  /** calls the lenient parser could not recover, with why */
  malformed: { name?: string; reason: string }[];
}

// A tool-call tag in any spelling the lenient parser recovers (bare, variant or doubled DSML markers).
const FOREIGN_TAG = /<\s*\/?\s*(?:[｜|‖]{1,2}\s*DSML\s*[｜|‖]{1,2}\s*)*\/?\s*(?:function_calls|invoke|parameter)\b/;
const TAG_HOLD = 48;

export function toolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

export class ChatOutput {
  private readonly strict: CompletionStreamParser;
  private text: string;
  private failed = false;
  private sentReasoning = '';
  private sentContent = '';
  /** released by the exact parser but held back here (a possible tag start), per kind */
  private held: { reasoning: string; content: string } = { reasoning: '', content: '' };
  private readonly sentCalls: { id: string; name: string; args: string }[] = [];

  /**
   * `prefix` is text the prompt already committed the model to (a forced tool-call opener); it is parsed
   * as part of the completion but was never generated, so nothing of it is sent as text.
   */
  constructor(
    private readonly mode: ThinkingMode,
    private readonly tools: readonly ToolDefinition[],
    prefix = '',
  ) {
    this.strict = new CompletionStreamParser(mode);
    this.text = prefix;
    if (prefix) this.pushStrict(prefix);
  }

  push(text: string): ChatDelta[] {
    this.text += text;
    return this.pushStrict(text);
  }

  finish(): { deltas: ChatDelta[]; result: ChatResult } {
    if (!this.failed) {
      try {
        const { events, message } = this.strict.finish();
        const deltas = this.translate(events, true);
        if (!this.failed) return { deltas, result: this.resultOf(message, false, []) };
      } catch (e) {
        if (!(e instanceof ChatParseError)) throw e;
        this.failed = true;
      }
    }
    const r = parseCompletionLenient(this.text, this.mode, { tools: this.tools });
    const m = r.message;
    const deltas: ChatDelta[] = [];
    const extend = (type: 'reasoning' | 'content', sent: string, full: string): void => {
      if (full.length > sent.length && full.startsWith(sent)) deltas.push({ type, text: full.slice(sent.length) });
    };
    extend('reasoning', this.sentReasoning, m.reasoning_content);
    extend('content', this.sentContent, m.content);
    m.tool_calls.forEach((c, index) => {
      const sent = this.sentCalls[index];
      if (!sent) {
        const id = toolCallId();
        this.sentCalls[index] = { id, name: c.function.name, args: c.function.arguments };
        deltas.push({ type: 'tool_call_start', index, id, name: c.function.name });
        deltas.push({ type: 'tool_call_arguments', index, text: c.function.arguments });
      } else if (sent.name === c.function.name && c.function.arguments.startsWith(sent.args) && c.function.arguments.length > sent.args.length) {
        deltas.push({ type: 'tool_call_arguments', index, text: c.function.arguments.slice(sent.args.length) });
      }
    });
    return { deltas, result: this.resultOf(m, true, r.errors.map((x) => ({ ...(x.name ? { name: x.name } : {}), reason: x.reason }))) };
  }

  private resultOf(m: ParsedMessage, recovered: boolean, malformed: ChatResult['malformed']): ChatResult {
    return {
      reasoning: m.reasoning_content,
      content: m.content,
      toolCalls: m.tool_calls.map((c, i) => ({ id: this.sentCalls[i]?.id ?? toolCallId(), name: c.function.name, arguments: c.function.arguments })),
      recovered,
      malformed,
    };
  }

  private pushStrict(text: string): ChatDelta[] {
    if (this.failed) return [];
    try {
      return this.translate(this.strict.push(text));
    } catch (e) {
      if (!(e instanceof ChatParseError)) throw e;
      this.failed = true;
      return [];
    }
  }

  /** Release text of one kind, holding back a possible tag start; a foreign tag fails the exact parse. */
  private release(type: 'reasoning' | 'content', text: string, final: boolean, out: ChatDelta[]): void {
    const pending = this.held[type] + text;
    if (FOREIGN_TAG.test(pending)) {
      this.failed = true;
      this.held = { reasoning: '', content: '' };
      return;
    }
    let cut = pending.length;
    const lt = pending.lastIndexOf('<');
    if (!final && lt >= 0 && pending.length - lt <= TAG_HOLD && !pending.includes('>', lt)) cut = lt;
    this.held[type] = pending.slice(cut);
    if (cut === 0) return;
    const piece = pending.slice(0, cut);
    if (type === 'reasoning') this.sentReasoning += piece;
    else this.sentContent += piece;
    out.push({ type, text: piece });
  }

  /** Everything held is text after all (another kind of output follows, or the completion ended). */
  private flushHeld(out: ChatDelta[]): void {
    for (const type of ['reasoning', 'content'] as const) if (this.held[type] && !this.failed) this.release(type, '', true, out);
  }

  private translate(events: StreamEvent[], final = false): ChatDelta[] {
    const out: ChatDelta[] = [];
    for (const ev of events) {
      // after a failure, what was released before it stands; the rest is the lenient parser's
      if (this.failed) return out;
      switch (ev.type) {
        case 'reasoning':
        case 'content':
          if (ev.type === 'content' && this.held.reasoning) this.flushHeld(out);
          this.release(ev.type, ev.text, false, out);
          break;
        case 'tool_call_start': {
          this.flushHeld(out);
          const id = toolCallId();
          this.sentCalls[ev.index] = { id, name: ev.name, args: '' };
          out.push({ type: 'tool_call_start', index: ev.index, id, name: ev.name });
          break;
        }
        case 'tool_call_arguments':
          this.sentCalls[ev.index]!.args += ev.text;
          out.push(ev);
          break;
        case 'tool_call_end':
          break;
      }
    }
    if (final) this.flushHeld(out);
    return out;
  }
}
