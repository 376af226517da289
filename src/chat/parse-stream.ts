// Streaming parser of a DeepSeek-V3.2 completion: fed the text in arbitrary chunks, it emits reasoning,
// content and tool-call events as soon as they are certain, and `finish()` returns the same message (or
// throws the same ChatParseError) as `parseCompletion` on the whole text.
//
// How it stays exact across chunk boundaries: in each state the parser looks for a fixed set of marker
// strings. Text is released only up to the start of the longest buffer suffix that is still a proper
// prefix of some marker (`holdFrom`), so a marker split over chunks (`</thi` + `nk>`) is never emitted as
// text. A complete marker is acted on only if it starts before that held suffix; otherwise a longer
// marker starting earlier may still complete (`\n\n<｜DSML｜fun…` contains the forbidden `｜DSML｜` but
// may become the tool-call opener). The buffer holds at most one marker's length of undecided text plus
// the current tag segment, and each search resumes where the previous one stopped, so the total work is
// linear in the text length. Tool calls stream too: the name when its invoke header is complete, then the
// arguments JSON text piece by piece, parameter values included as they arrive (string values escaped
// per character, so the pieces concatenate to exactly the strict parser's `arguments`).
import { ChatParseError } from './errors.js';
import { findParameterHeader, matchInvokeHeader, TAG_SEPARATOR, type RawParameter } from './dsml.js';
import { pyJsonString } from './pyjson.js';
import type { ParsedMessage, ParsedToolCall, ThinkingMode } from './message.js';
import {
  BOS,
  EOS,
  FUNCTION_CALLS_CLOSE,
  INVOKE_CLOSE,
  INVOKE_OPEN,
  PARAMETER_END,
  PARAMETER_OPEN,
  DSML,
  THINK_END,
  THINK_START,
  TOOL_CALLS_START,
} from './tokens.js';

export type StreamEvent =
  | { type: 'reasoning'; text: string }
  | { type: 'content'; text: string }
  | { type: 'tool_call_start'; index: number; name: string }
  /** A piece of the arguments JSON text; the pieces of one call concatenate to its `arguments`. */
  | { type: 'tool_call_arguments'; index: number; text: string }
  | { type: 'tool_call_end'; index: number };

type State =
  | 'reasoning'
  | 'content'
  | 'invoke-separator'
  | 'invoke-header'
  | 'parameter-header'
  | 'parameter-value'
  | 'parameter-separator'
  | 'after-tool-calls'
  | 'done';

// Markers searched in each state. Ordered as the strict parser's stop lists, so equal positions resolve
// the same way.
const REASONING_MARKS = [THINK_END, TOOL_CALLS_START, BOS, EOS, THINK_START, DSML];
const CONTENT_MARKS = [EOS, TOOL_CALLS_START, BOS, THINK_START, THINK_END, DSML];
const INVOKE_SEPARATOR_MARKS = [INVOKE_OPEN, FUNCTION_CALLS_CLOSE];
const INVOKE_BODY_MARKS = [PARAMETER_OPEN, INVOKE_CLOSE];
// A value ends at `/｜DSML｜parameter` preceded by `<` or `<\n` (Python's `<$` also matches before a final
// newline); a bare `/｜DSML｜parameter` ends the segment without the `<`, which makes it malformed.
const PARAMETER_VALUE_MARKS = [`<${PARAMETER_END}`, `<\n${PARAMETER_END}`, PARAMETER_END];
const AFTER_MARKS = [EOS];

const MARKS: Record<State, readonly string[]> = {
  reasoning: REASONING_MARKS,
  content: CONTENT_MARKS,
  'invoke-separator': INVOKE_SEPARATOR_MARKS,
  'invoke-header': INVOKE_BODY_MARKS,
  'parameter-header': [PARAMETER_END],
  'parameter-value': PARAMETER_VALUE_MARKS,
  'parameter-separator': INVOKE_BODY_MARKS,
  'after-tool-calls': AFTER_MARKS,
  done: [],
};

const MAX_MARK_LEN = Object.fromEntries(
  Object.entries(MARKS).map(([k, ms]) => [k, Math.max(1, ...ms.map((m) => m.length))]),
) as Record<State, number>;

interface Found {
  at: number;
  mark: string;
}

export class CompletionStreamParser {
  private buf = '';
  /** Offset of buf[0] in the whole completion, for error positions. */
  private base = 0;
  /** No marker starts in buf before this index (search resume point). */
  private searched = 0;
  private state: State;
  private failed: ChatParseError | undefined;
  private finished = false;

  private reasoning = '';
  private content = '';
  private readonly toolCalls: ParsedToolCall[] = [];
  private invokeName = '';
  private params: RawParameter[] = [];
  /** The parameter whose value is streaming, and where its segment started (for error offsets). */
  private param: RawParameter | undefined;
  private paramAt = 0;
  private headerFrom = 0;
  private args = '';

  constructor(mode: ThinkingMode) {
    this.state = mode === 'thinking' ? 'reasoning' : 'content';
  }

  /** Feed the next piece of the completion; returns the events it made certain. */
  push(chunk: string): StreamEvent[] {
    if (this.failed) throw this.failed;
    if (this.finished) throw new Error('CompletionStreamParser.push after finish()');
    this.buf += chunk;
    return this.run(false);
  }

  /** End of the completion: flush what was held back and return the whole message. */
  finish(): { events: StreamEvent[]; message: ParsedMessage } {
    if (this.failed) throw this.failed;
    if (this.finished) throw new Error('CompletionStreamParser.finish called twice');
    const events = this.run(true);
    this.finished = true;
    const end = this.base + this.buf.length;
    switch (this.state) {
      case 'reasoning':
        return this.fail(end, 'missing-think-end', `thinking-mode completion has no ${THINK_END}`);
      case 'invoke-separator':
      case 'parameter-separator':
      case 'invoke-header':
      case 'parameter-header':
      case 'parameter-value':
        return this.fail(end, 'unterminated-tool-calls', `the tool-call block is not closed by ${FUNCTION_CALLS_CLOSE}`);
      default:
        break;
    }
    return {
      events,
      message: { role: 'assistant', content: this.content, reasoning_content: this.reasoning, tool_calls: this.toolCalls.map((c) => ({ ...c, function: { ...c.function } })) },
    };
  }

  private fail(offset: number, rule: ChatParseError['rule'], detail: string): never {
    this.failed = new ChatParseError(offset, rule, detail);
    throw this.failed;
  }

  /** Earliest complete marker that starts before any possibly-partial marker at the buffer end. */
  private scan(final: boolean): { found?: Found; holdFrom: number } {
    const marks = MARKS[this.state];
    const buf = this.buf;
    let holdFrom = buf.length;
    if (!final) {
      // The smallest i whose suffix buf[i:] is a proper prefix of a marker; only the last
      // (longest marker - 1) positions can qualify, and only where a marker's first character sits.
      const maxLen = MAX_MARK_LEN[this.state];
      for (let i = Math.max(0, buf.length - maxLen + 1); i < buf.length && holdFrom === buf.length; i++) {
        const c = buf[i];
        for (const m of marks) {
          if (m[0] === c && m.length > buf.length - i && m.startsWith(buf.slice(i))) {
            holdFrom = i;
            break;
          }
        }
      }
    }
    let found: Found | undefined;
    for (const m of marks) {
      const at = buf.indexOf(m, this.searched);
      if (at >= 0 && (!found || at < found.at)) found = { at, mark: m };
    }
    if (found && found.at < holdFrom) return { found, holdFrom };
    // Every marker occurrence found lies inside the held suffix; resume searching from there next time.
    this.searched = Math.max(0, Math.min(holdFrom, found ? found.at : holdFrom));
    return { holdFrom };
  }

  private consume(n: number): void {
    this.buf = this.buf.slice(n);
    this.base += n;
    this.searched = 0;
  }

  private run(final: boolean): StreamEvent[] {
    const events: StreamEvent[] = [];
    for (;;) {
      if (this.state === 'done') {
        if (this.buf.length) this.fail(this.base, 'text-after-eos', `text after ${EOS}: ${JSON.stringify(this.buf.slice(0, 40))}`);
        return events;
      }
      const { found, holdFrom } = this.scan(final);
      if (!this.step(found, holdFrom, events)) return events;
    }
  }

  /** Act on the scan result in the current state; true if the state advanced and scanning should go on. */
  private step(found: Found | undefined, holdFrom: number, events: StreamEvent[]): boolean {
    const at = this.base;
    switch (this.state) {
      case 'reasoning':
      case 'content': {
        const isReasoning = this.state === 'reasoning';
        const end = found ? found.at : holdFrom;
        if (end > 0) {
          const text = this.buf.slice(0, end);
          if (isReasoning) this.reasoning += text;
          else this.content += text;
          events.push({ type: isReasoning ? 'reasoning' : 'content', text });
          this.consume(end);
        }
        if (!found) return false;
        const mark = found.mark;
        if (isReasoning && mark === THINK_END) this.state = 'content';
        else if (!isReasoning && mark === EOS) this.state = 'done';
        else if (mark === TOOL_CALLS_START) {
          if (isReasoning) this.fail(this.base, 'tool-calls-in-reasoning', `a tool-call block starts before ${THINK_END}`);
          this.state = 'invoke-separator';
        } else this.fail(this.base, 'special-token-in-text', `special token ${mark} inside the ${isReasoning ? 'reasoning' : 'content'}`);
        this.consume(mark.length);
        return true;
      }
      case 'invoke-separator':
      case 'parameter-separator': {
        const seg = this.buf.slice(0, found ? found.at : holdFrom);
        if (!TAG_SEPARATOR.startsWith(seg) || (found && seg !== TAG_SEPARATOR)) {
          const inParams = this.state === 'parameter-separator';
          this.fail(at, inParams ? 'malformed-parameter' : 'malformed-tool-calls', `expected ">\\n" ${inParams ? 'after a parameter' : 'between invokes'}, got ${JSON.stringify(seg.slice(0, 40))}`);
        }
        if (!found) return false;
        this.consume(found.at + found.mark.length);
        if (found.mark === FUNCTION_CALLS_CLOSE) this.state = 'after-tool-calls';
        else if (found.mark === INVOKE_OPEN) this.state = 'invoke-header';
        else if (found.mark === PARAMETER_OPEN) this.startParameter();
        else this.endInvoke(events); // INVOKE_CLOSE
        return true;
      }
      case 'invoke-header': {
        if (!found) return false;
        const seg = this.buf.slice(0, found.at);
        const name = matchInvokeHeader(seg);
        if (name === undefined) this.fail(at, 'malformed-invoke', `invoke header must be name="...">\\n, got ${JSON.stringify(seg.slice(0, 60))}`);
        this.invokeName = name;
        this.params = [];
        this.args = '';
        events.push({ type: 'tool_call_start', index: this.toolCalls.length, name });
        this.consume(found.at + found.mark.length);
        if (found.mark === PARAMETER_OPEN) this.startParameter();
        else this.endInvoke(events);
        return true;
      }
      case 'parameter-header': {
        // The header is decided as soon as it is complete, so the value can stream; it must end before
        // the segment does (the first `/｜DSML｜parameter`).
        const h = findParameterHeader(this.buf, this.headerFrom);
        if (h && 'name' in h && (!found || h.end <= found.at)) {
          this.param = { name: h.name, isString: h.isString, value: '' };
          const piece = `${this.params.length ? ', ' : '{'}${pyJsonString(h.name)}: ${h.isString ? '"' : ''}`;
          this.args += piece;
          events.push({ type: 'tool_call_arguments', index: this.toolCalls.length, text: piece });
          this.consume(h.end);
          this.state = 'parameter-value';
          return true;
        }
        if (found) {
          const seg = this.buf.slice(0, found.at);
          this.fail(at, 'malformed-parameter', `parameter must be name="..." string="true|false">value<, got ${JSON.stringify(seg.slice(0, 60))}`);
        }
        if (h && 'resume' in h) this.headerFrom = h.resume;
        return false;
      }
      case 'parameter-value': {
        const p = this.param!;
        const end = found ? found.at : holdFrom;
        if (end > 0) {
          const text = this.buf.slice(0, end);
          p.value += text;
          // Escaping is per character, so escaped pieces concatenate to the escaped whole.
          const piece = p.isString ? pyJsonString(text).slice(1, -1) : text;
          this.args += piece;
          events.push({ type: 'tool_call_arguments', index: this.toolCalls.length, text: piece });
          this.consume(end);
        }
        if (!found) return false;
        if (found.mark === PARAMETER_END) {
          this.fail(this.paramAt, 'malformed-parameter', `parameter value must end with "<" before ${PARAMETER_END}`);
        }
        if (this.params.some((q) => q.name === p.name)) this.fail(this.paramAt, 'duplicate-parameter', `parameter "${p.name}" given twice in invoke "${this.invokeName}"`);
        this.params.push(p);
        this.param = undefined;
        if (p.isString) {
          this.args += '"';
          events.push({ type: 'tool_call_arguments', index: this.toolCalls.length, text: '"' });
        }
        this.consume(found.mark.length);
        this.state = 'parameter-separator';
        return true;
      }
      case 'after-tool-calls': {
        const end = found ? found.at : holdFrom;
        if (end > 0) this.fail(at, 'text-after-tool-calls', `only ${EOS} may follow the tool-call block, got ${JSON.stringify(this.buf.slice(0, 40))}`);
        if (!found) return false;
        this.consume(found.mark.length);
        this.state = 'done';
        return true;
      }
      case 'done':
        return false;
    }
  }

  private startParameter(): void {
    this.state = 'parameter-header';
    this.paramAt = this.base;
    this.headerFrom = 0;
  }

  private endInvoke(events: StreamEvent[]): void {
    const index = this.toolCalls.length;
    const piece = this.params.length ? '}' : '{}';
    this.args += piece;
    events.push({ type: 'tool_call_arguments', index, text: piece });
    events.push({ type: 'tool_call_end', index });
    this.toolCalls.push({ type: 'function', function: { name: this.invokeName, arguments: this.args } });
    this.state = 'invoke-separator';
  }
}
