// The pieces of the DSML tool-call grammar that the strict and the streaming parser share, so both apply
// exactly the same rules. Python `$` also matches before one final newline; the optional `\n` before `$`
// reproduces that in the official regexes.
import { pyJsonString } from './pyjson.js';
import { FORBIDDEN_IN_TEXT } from './tokens.js';

/** Text between `<｜DSML｜invoke` and the first `<｜DSML｜parameter` / `</｜DSML｜invoke`. */
const INVOKE_HEADER = /^\s*name="([\s\S]*?)">\n\n?$/;
/** Text between `<｜DSML｜parameter` and `/｜DSML｜parameter`; the value runs up to the final `<`. */
const PARAMETER = /^ name="([\s\S]*?)" string="(true|false)">([\s\S]*?)<\n?$/;

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

/** Position and string of the first special token in `text`, if any. */
export function findForbidden(text: string): { at: number; token: string } | undefined {
  let best: { at: number; token: string } | undefined;
  for (const token of FORBIDDEN_IN_TEXT) {
    const at = text.indexOf(token);
    if (at >= 0 && (!best || at < best.at)) best = { at, token };
  }
  return best;
}
