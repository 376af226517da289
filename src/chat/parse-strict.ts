// Strict parser of a DeepSeek-V3.2 completion (the text the model writes after the prompt), with the
// semantics of the official `parse_message_from_completion_text`: it accepts only well-formed output and
// reports anything else as a ChatParseError naming the offset and the rule.
//
// Differences from the Python, chosen so that the result never silently loses or invents data:
//  - a completion may end without EOS after plain content too (serving stacks strip EOS; Python accepts
//    that only after a tool-call block);
//  - a tool-call block must be closed by `</｜DSML｜function_calls>`; Python accepts some truncated
//    blocks (text ending inside an invoke) because its loop stops at the end of the text;
//  - special tokens are checked as soon as the reasoning or content is read (Python checks at the end),
//    so the first error found is the one the streaming parser finds too.
// Kept as in Python although it can yield bad data: a `string="false"` value is pasted raw into
// `arguments` without validation, so a value that is not JSON (`not json`, `True`, `1, "x": 2`) makes
// `arguments` invalid JSON or adds keys. `parseCompletionChecked` reports each such parameter in
// `warnings` (tool-call index, tool name, parameter name, the JSON error); `dsv32 parse` prints them.
import { ChatParseError } from './errors.js';
import { buildArguments, findForbidden, matchInvokeHeader, matchParameter, nonJsonValueWarning, TAG_SEPARATOR, type ParseWarning, type RawParameter } from './dsml.js';
import type { ParsedMessage, ParsedToolCall, ThinkingMode } from './message.js';
import {
  EOS,
  FUNCTION_CALLS_CLOSE,
  INVOKE_CLOSE,
  INVOKE_OPEN,
  PARAMETER_END,
  PARAMETER_OPEN,
  THINK_END,
  TOOL_CALLS_START,
} from './tokens.js';

interface Read {
  /** Position after the stop string (or the end of the text). */
  next: number;
  content: string;
  stop: string | null;
}

/** The official `_read_until_stop`: the earliest stop wins, ties go to the earlier entry of `stops`. */
function readUntil(text: string, index: number, stops: readonly string[]): Read {
  let best = -1;
  let stop: string | null = null;
  for (const s of stops) {
    const p = text.indexOf(s, index);
    if (p >= 0 && (best < 0 || p < best)) {
      best = p;
      stop = s;
    }
  }
  if (stop === null) return { next: text.length, content: text.slice(index), stop: null };
  return { next: best + stop.length, content: text.slice(index, best), stop };
}

function checkText(text: string, start: number, segment: string, what: string): void {
  const f = findForbidden(segment);
  if (f) throw new ChatParseError(start + f.at, 'special-token-in-text', `special token ${f.token} inside the ${what}`);
}

/** A `>\n` separator segment: wrong text is malformed, a missing stop means the block was cut off. */
function checkSeparator(text: string, start: number, r: Read, where: string): void {
  if (!TAG_SEPARATOR.startsWith(r.content) || (r.stop !== null && r.content !== TAG_SEPARATOR)) {
    throw new ChatParseError(start, where === 'parameter' ? 'malformed-parameter' : 'malformed-tool-calls', `expected ">\\n" ${where === 'parameter' ? 'after a parameter' : 'between invokes'}, got ${JSON.stringify(r.content.slice(0, 40))}`);
  }
  if (r.stop === null) throw new ChatParseError(text.length, 'unterminated-tool-calls', `the tool-call block is not closed by ${FUNCTION_CALLS_CLOSE}`);
}

export function parseToolCallBlock(text: string, index: number): { next: number; toolCalls: ParsedToolCall[]; warnings: ParseWarning[] } {
  const toolCalls: ParsedToolCall[] = [];
  const warnings: ParseWarning[] = [];
  for (;;) {
    const sep = readUntil(text, index, [INVOKE_OPEN, FUNCTION_CALLS_CLOSE]);
    checkSeparator(text, index, sep, 'invoke');
    if (sep.stop === FUNCTION_CALLS_CLOSE) return { next: sep.next, toolCalls, warnings };
    const headerAt = sep.next;
    let r = readUntil(text, headerAt, [PARAMETER_OPEN, INVOKE_CLOSE]);
    if (r.stop === null) throw new ChatParseError(text.length, 'unterminated-tool-calls', 'the text ends inside an invoke');
    const name = matchInvokeHeader(r.content);
    if (name === undefined) throw new ChatParseError(headerAt, 'malformed-invoke', `invoke header must be name="...">\\n, got ${JSON.stringify(r.content.slice(0, 60))}`);
    const params: RawParameter[] = [];
    while (r.stop === PARAMETER_OPEN) {
      const paramAt = r.next;
      const body = readUntil(text, paramAt, [PARAMETER_END]);
      if (body.stop === null) throw new ChatParseError(text.length, 'unterminated-tool-calls', 'the text ends inside a parameter');
      const p = matchParameter(body.content);
      if (!p) throw new ChatParseError(paramAt, 'malformed-parameter', `parameter must be name="..." string="true|false">value<, got ${JSON.stringify(body.content.slice(0, 60))}`);
      if (params.some((q) => q.name === p.name)) throw new ChatParseError(paramAt, 'duplicate-parameter', `parameter "${p.name}" given twice in invoke "${name}"`);
      params.push(p);
      const w = p.isString ? undefined : nonJsonValueWarning(toolCalls.length, name, p.name, p.value);
      if (w) warnings.push(w);
      const sepAt = body.next;
      r = readUntil(text, sepAt, [PARAMETER_OPEN, INVOKE_CLOSE]);
      checkSeparator(text, sepAt, r, 'parameter');
    }
    toolCalls.push({ type: 'function', function: { name, arguments: buildArguments(params) } });
    index = r.next;
  }
}

export interface StrictResult {
  message: ParsedMessage;
  warnings: ParseWarning[];
}

/** Parse a completion. `mode` is the mode of the prompt it continues (thinking prompts end in `<think>`). */
export function parseCompletion(text: string, mode: ThinkingMode): ParsedMessage {
  return parseCompletionChecked(text, mode).message;
}

/** `parseCompletion`, plus warnings about what it accepted that may hurt the caller (see the header). */
export function parseCompletionChecked(text: string, mode: ThinkingMode): StrictResult {
  let index = 0;
  let reasoning = '';
  if (mode === 'thinking') {
    const r = readUntil(text, 0, [THINK_END, TOOL_CALLS_START]);
    checkText(text, 0, r.content, 'reasoning');
    if (r.stop === TOOL_CALLS_START) throw new ChatParseError(r.next - r.stop.length, 'tool-calls-in-reasoning', `a tool-call block starts before ${THINK_END}`);
    if (r.stop === null) throw new ChatParseError(text.length, 'missing-think-end', `thinking-mode completion has no ${THINK_END}`);
    reasoning = r.content;
    index = r.next;
  }
  const contentAt = index;
  const c = readUntil(text, index, [EOS, TOOL_CALLS_START]);
  checkText(text, contentAt, c.content, 'content');
  index = c.next;
  let toolCalls: ParsedToolCall[] = [];
  let warnings: ParseWarning[] = [];
  if (c.stop === TOOL_CALLS_START) {
    const block = parseToolCallBlock(text, index);
    toolCalls = block.toolCalls;
    warnings = block.warnings;
    const rest = readUntil(text, block.next, [EOS]);
    if (rest.content) throw new ChatParseError(block.next, 'text-after-tool-calls', `only ${EOS} may follow the tool-call block, got ${JSON.stringify(rest.content.slice(0, 40))}`);
    index = rest.next;
  }
  if (index < text.length) throw new ChatParseError(index, 'text-after-eos', `text after ${EOS}: ${JSON.stringify(text.slice(index, index + 40))}`);
  return { message: { role: 'assistant', content: c.content, reasoning_content: reasoning, tool_calls: toolCalls }, warnings };
}
