// The pieces of the DSML tool-call grammar that the strict and the streaming parser share, so both apply
// exactly the same rules. Python `$` also matches before one final newline; the optional `\n` before `$`
// reproduces that in the official regexes.
import { pyJsonLoads, pyJsonString } from './pyjson.js';
import { FORBIDDEN_IN_TEXT } from './tokens.js';

/** Text between `<｜DSML｜invoke` and the first `<｜DSML｜parameter` / `</｜DSML｜invoke`. */
const INVOKE_HEADER = /^\s*name="([\s\S]*?)">\n\n?$/;
/**
 * Text between `<｜DSML｜parameter` and `/｜DSML｜parameter`; the value runs up to the final `<`. Python's
 * `<$` accepts `<` and (with `$` before a final newline) `<\n`.
 */
const PARAMETER = /^ name="([\s\S]*?)" string="(true|false)">([\s\S]*?)<\n?$/;
const PARAMETER_HEADER_PREFIX = ' name="';
const PARAMETER_HEADER_FLAG = '" string="';

/**
 * The header ` name="…" string="true|false">` at the start of a parameter segment, found the way the
 * lazy official regex finds it: at the first `" string="true">` or `" string="false">`. Returns undefined
 * when `buf` cannot start with a header, `{resume}` when there is none yet (a streaming caller searches
 * again from `resume` once more text has arrived).
 */
export function findParameterHeader(
  buf: string,
  from: number,
): { name: string; isString: boolean; end: number } | { resume: number } | undefined {
  if (!PARAMETER_HEADER_PREFIX.startsWith(buf.slice(0, PARAMETER_HEADER_PREFIX.length))) return undefined;
  let p = Math.max(from, PARAMETER_HEADER_PREFIX.length);
  for (;;) {
    p = buf.indexOf(PARAMETER_HEADER_FLAG, p);
    if (p < 0) return { resume: Math.max(PARAMETER_HEADER_PREFIX.length, buf.length - PARAMETER_HEADER_FLAG.length + 1) };
    const after = p + PARAMETER_HEADER_FLAG.length;
    for (const flag of ['true">', 'false">']) {
      if (buf.startsWith(flag, after)) return { name: buf.slice(PARAMETER_HEADER_PREFIX.length, p), isString: flag === 'true">', end: after + flag.length };
      // Could still become this flag: wait here.
      if (after + flag.length > buf.length && flag.startsWith(buf.slice(after))) return { resume: p };
    }
    p++;
  }
}

/** Separator the grammar requires between tags (`>` closing the previous tag, then a newline). */
export const TAG_SEPARATOR = '>\n';

export function matchInvokeHeader(segment: string): string | undefined {
  return INVOKE_HEADER.exec(segment)?.[1];
}

export interface RawParameter {
  name: string;
  isString: boolean;
  value: string;
}

export function matchParameter(segment: string): RawParameter | undefined {
  const m = PARAMETER.exec(segment);
  return m ? { name: m[1]!, isString: m[2] === 'true', value: m[3]! } : undefined;
}

/**
 * One `"key": value` pair of the arguments text, as the official decoder builds it: string values are
 * JSON-quoted, non-string values are copied raw (not validated, so the result may be invalid JSON).
 */
export function argumentPair(p: RawParameter): string {
  return `${pyJsonString(p.name)}: ${p.isString ? pyJsonString(p.value) : p.value}`;
}

export function buildArguments(params: readonly RawParameter[]): string {
  return `{${params.map(argumentPair).join(', ')}}`;
}

/**
 * Something a parser accepted as the official decoder does but that the caller should know about. The
 * one case: a `string="false"` value that is not JSON (Python `json.loads` rules), which the official
 * decoder pastes raw into `arguments`, leaving it invalid JSON (or with keys the model smuggled in).
 */
export interface ParseWarning {
  /** Position of the invoke among all invokes of the completion (= index in tool_calls for the strict parser). */
  tool_call: number;
  name: string;
  parameter: string;
  problem: string;
}

/** The warning for a parameter whose `string="false"` value is not JSON, if it is not. */
export function nonJsonValueWarning(toolCall: number, name: string, parameter: string, value: string): ParseWarning | undefined {
  const excerpt = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  try {
    pyJsonLoads(value, `the string="false" value ${JSON.stringify(excerpt)} is not valid JSON`);
    return undefined;
  } catch (e) {
    return { tool_call: toolCall, name, parameter, problem: (e as Error).message };
  }
}

/** Position and string of the first special token in `text`, if any. */
export function findForbidden(text: string): { at: number; token: string } | undefined {
  let best: { at: number; token: string } | undefined;
  for (const token of FORBIDDEN_IN_TEXT) {
    const at = text.indexOf(token);
    if (at >= 0 && (!best || at < best.at)) best = { at, token };
  }
  return best;
}
