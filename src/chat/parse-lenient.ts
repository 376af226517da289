// Lenient parser for real model output. DeepSeek-V3.2 does not always write the DSML grammar exactly;
// the failure modes seen in serving stacks (docs/chat-and-agents.md §2: vLLM, SGLang and user reports) are
// bare `<function_calls>/<invoke>/<parameter>` tags, doubled or variant markers (`｜｜DSML｜｜`, `‖DSML‖`,
// ASCII `|DSML|`), a JSON object as the invoke body, a spurious single `arguments`/`input` wrapper,
// `string="false"` on strings (or `"true"` on numbers), Python literals, missing `</think>`, and a
// truncated block. This parser recovers what it can, lists every repair, and reports a call it cannot
// recover in `errors` instead of dropping it. Markup never ends up in `content` or `reasoning_content`,
// but text that merely looks like the start of markup (`a <| b`, `<｜DSM text`) is content, as in the
// strict parser: only a tag cut off at the very end (`<｜DSML｜invo`, which has a whole marker) is removed.
//
// On every text the strict parser accepts it returns the strict parser's message, repairs nothing and
// gives the same `warnings`, with two exceptions by design: markup in another spelling (bare or variant
// tags, which strict reads as plain text) is recovered as markup, and a `string="false"` value that is
// not JSON (strict pastes it raw, making `arguments` invalid JSON) is repaired here; both are reported.
import { nonJsonValueWarning, type ParseWarning } from './dsml.js';
import { PyFloat, pyJsonDumps, pyJsonLoads, pyJsonString, type PyJson } from './pyjson.js';
import type { ParsedMessage, ParsedToolCall, ThinkingMode, ToolDefinition } from './message.js';
import { BOS, EOS, THINK_END, THINK_START } from './tokens.js';

export interface LenientOptions {
  /** Tool declarations; their JSON-schema property types steer value coercion. */
  tools?: readonly ToolDefinition[];
}

/** A tool call that could not be recovered. `raw` is the model's text for it. */
export interface ToolCallIssue {
  name?: string;
  reason: string;
  raw: string;
}

export interface LenientResult {
  message: ParsedMessage;
  /** Calls that could not be recovered; they are not in message.tool_calls. */
  errors: ToolCallIssue[];
  /** Human-readable notes of every deviation from the exact format that was repaired. */
  repairs: string[];
  /** What the strict parser warns about in the same text (a `string="false"` value that is not JSON). */
  warnings: ParseWarning[];
}

// One tag in any of the seen spellings: `<｜DSML｜invoke name="x">`, `</｜DSML｜invoke>`, `<invoke …>`,
// `<｜｜DSML｜｜parameter …>`, `<｜DSML｜｜DSML｜function_calls>`, `<‖DSML‖/invoke>`.
const MARKER = String.raw`[｜|‖]{1,2}\s*DSML\s*[｜|‖]{1,2}`;
const TAG_NAMES = ['function_calls', 'invoke', 'parameter'];
const TAG = new RegExp(String.raw`<\s*(\/?)\s*(?:${MARKER}\s*)*(\/?)\s*(${TAG_NAMES.join('|')})\b([^<>]*)>`, 'g');
const ATTR = /([A-Za-z_][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/g;
// Marker text that is not a whole tag: a stray DSML token.
const STRAY_MARKER = new RegExp(MARKER, 'g');
// A tag cut off by the end of the text: `<`, at least one whole marker, then a proper prefix of a tag
// name, or a whole name and attributes without the closing `>`, or a second marker cut short. A whole
// marker is required because `<｜DSM`, `<|`, `<‖ …` are also ordinary text (the strict parser keeps them).
const NAME_PREFIXES = TAG_NAMES.flatMap((n) => [...n].map((_, i) => n.slice(0, i)).filter(Boolean));
const CUT_TAG = new RegExp(String.raw`^<\s*\/?\s*(?:${MARKER}\s*)+(?:\/?\s*(?:(?:${TAG_NAMES.join('|')})\b[^<>]*|${NAME_PREFIXES.join('|')})?|[｜|‖]{1,2}\s*(?:D|DS|DSM|DSML\s*[｜|‖]?)?)$`);

interface Tag {
  start: number;
  end: number;
  close: boolean;
  kind: 'function_calls' | 'invoke' | 'parameter';
  attrs: Record<string, string>;
  canonical: boolean;
}

function tagsOf(text: string): Tag[] {
  const out: Tag[] = [];
  for (const m of text.matchAll(TAG)) {
    const attrs: Record<string, string> = {};
    for (const a of m[4]!.matchAll(ATTR)) attrs[a[1]!] = a[2] ?? a[3] ?? a[4] ?? '';
    const close = Boolean(m[1] || m[2]);
    const canonical = m[0].startsWith(close ? '</｜DSML｜' : '<｜DSML｜') && !m[0].includes('｜DSML｜｜');
    out.push({ start: m.index, end: m.index + m[0].length, close, kind: m[3] as Tag['kind'], attrs, canonical });
  }
  return out;
}

/**
 * The text before a tool-call tag without the blank line that the format puts before the block; other
 * trailing whitespace is the model's text (`Sure! \n\n<｜DSML｜function_calls>` has content `Sure! `).
 */
function beforeTag(text: string): string {
  return text.endsWith('\n\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** `text` (which runs to the end of the completion) without a tag cut off at its end. */
function withoutCutTag(text: string, repairs: string[], what: string): string {
  const lt = text.lastIndexOf('<');
  if (lt < 0 || !CUT_TAG.test(text.slice(lt))) return text;
  repairs.push(`removed a cut-off tag at the end of the ${what}`);
  return beforeTag(text.slice(0, lt));
}

/** Remove special tokens and marker debris so that no markup reaches content or reasoning. */
function clean(text: string, repairs: string[], what: string): string {
  let t = text;
  for (const tok of [BOS, EOS, THINK_START, THINK_END]) {
    if (t.includes(tok)) {
      t = t.split(tok).join('');
      repairs.push(`removed ${tok} from the ${what}`);
    }
  }
  const noTags = t.replace(TAG, '');
  const noStray = noTags.replace(STRAY_MARKER, '');
  if (noStray !== t) repairs.push(`removed tool-call markup from the ${what}`);
  return noStray;
}

type SchemaType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

function schemaTypes(schema: unknown): Set<SchemaType> | undefined {
  if (!schema || typeof schema !== 'object') return undefined;
  const s = schema as { type?: unknown; anyOf?: unknown; oneOf?: unknown; enum?: unknown; const?: unknown };
  const out = new Set<SchemaType>();
  const add = (t: unknown) => {
    if (typeof t === 'string') out.add(t as SchemaType);
  };
  if (Array.isArray(s.type)) s.type.forEach(add);
  else add(s.type);
  for (const alt of [s.anyOf, s.oneOf]) {
    if (Array.isArray(alt)) for (const a of alt) schemaTypes(a)?.forEach((t) => out.add(t));
  }
  if (Array.isArray(s.enum)) for (const v of s.enum) out.add(jsonType(v as PyJson));
  return out.size ? out : undefined;
}

function jsonType(v: PyJson): SchemaType {
  if (v === null) return 'null';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))) return 'integer';
  if (typeof v === 'number' || v instanceof PyFloat) return 'number';
  return Array.isArray(v) ? 'array' : 'object';
}

function fits(v: PyJson, types: Set<SchemaType>): boolean {
  const t = jsonType(v);
  return types.has(t) || (t === 'integer' && types.has('number'));
}

const PYTHON_LITERALS: Record<string, PyJson> = { True: true, False: false, None: null };

/** JSON, or one of the Python literals the model sometimes writes for non-string values (`literal`). */
function tryJson(text: string): { ok: true; value: PyJson; literal: boolean } | { ok: false } {
  try {
    return { ok: true, value: pyJsonLoads(text), literal: false };
  } catch {
    const py = text.trim();
    if (Object.hasOwn(PYTHON_LITERALS, py)) return { ok: true, value: PYTHON_LITERALS[py]!, literal: true };
    return { ok: false };
  }
}

interface Param {
  name: string;
  value: PyJson;
  /** Raw JSON text kept verbatim (as the strict parser does) when it was valid and not coerced. */
  raw?: string;
}

function toolSchema(tools: readonly ToolDefinition[] | undefined, name: string): { properties?: Record<string, unknown> } | undefined {
  const t = tools?.find((d) => d.function.name === name);
  const p = t?.function.parameters;
  return p && typeof p === 'object' ? (p as { properties?: Record<string, unknown> }) : undefined;
}

/** Turn one parameter's text into a value, following the string flag and the schema type. */
function convert(tool: string, name: string, text: string, flag: string | undefined, types: Set<SchemaType> | undefined, repairs: string[]): Param | string {
  const where = `${tool}.${name}`;
  if (flag === 'true' || (flag === undefined && types?.has('string') && !(types.size > 1))) {
    if (types && !types.has('string')) {
      const j = tryJson(text);
      if (j.ok && fits(j.value, types)) {
        repairs.push(`${where}: string="true" value coerced to ${[...types].join('|')} by the tool schema`);
        return { name, value: j.value };
      }
    }
    return { name, value: text };
  }
  const j = tryJson(text);
  if (j.ok) {
    if (types && !fits(j.value, types) && types.has('string')) {
      repairs.push(`${where}: non-string value kept as the string the tool schema asks for`);
      return { name, value: text };
    }
    if (j.literal) {
      repairs.push(`${where}: Python literal ${text.trim()} read as JSON`);
      return { name, value: j.value };
    }
    return { name, value: j.value, raw: text };
  }
  if (!types || types.has('string')) {
    if (flag !== undefined) repairs.push(`${where}: string="${flag}" value is not JSON; kept as a string`);
    return { name, value: text };
  }
  return `parameter "${name}" is not valid JSON for schema type ${[...types].join('|')}: ${JSON.stringify(text.slice(0, 80))}`;
}

interface OpenInvoke {
  /** Position among all invokes of the text, as warnings count them. */
  index: number;
  start: number;
  name?: string;
  params: Param[];
  body: string;
  issues: string[];
}

/** Parse model output leniently. `mode` is the mode of the prompt it continues. */
export function parseCompletionLenient(text: string, mode: ThinkingMode, options: LenientOptions = {}): LenientResult {
  const repairs: string[] = [];
  const errors: ToolCallIssue[] = [];
  const warnings: ParseWarning[] = [];
  let invokes = 0;
  let t = text;
  const eos = t.indexOf(EOS);
  if (eos >= 0) {
    if (t.slice(eos + EOS.length).trim()) repairs.push(`dropped text after ${EOS}`);
    t = t.slice(0, eos);
  }
  const tags = tagsOf(t);
  const firstBlockTag = tags.find((g) => !g.close && (g.kind === 'function_calls' || g.kind === 'invoke'));

  let reasoning = '';
  let restStart = 0;
  if (mode === 'thinking') {
    const end = t.indexOf(THINK_END);
    if (end >= 0 && (!firstBlockTag || end < firstBlockTag.start)) {
      reasoning = t.slice(0, end);
      restStart = end + THINK_END.length;
    } else {
      // No `</think>` before the tool calls (or at all): the model's text up to the block is reasoning.
      repairs.push(`no ${THINK_END} before ${firstBlockTag ? 'the tool calls' : 'the end'}; text before it taken as reasoning`);
      reasoning = firstBlockTag ? t.slice(0, firstBlockTag.start) : withoutCutTag(t, repairs, 'reasoning');
      restStart = firstBlockTag ? firstBlockTag.start : t.length;
    }
    if (reasoning.startsWith(THINK_START)) reasoning = reasoning.slice(THINK_START.length);
  }

  const blockTags = tags.filter((g) => g.start >= restStart);
  const calls: ParsedToolCall[] = [];
  const contentParts: string[] = [];
  let textFrom = restStart; // start of text not yet assigned (content, or debris inside a block)
  let inBlock = false;
  let invoke: OpenInvoke | undefined;
  let param: { name?: string; flag?: string; from: number } | undefined;
  let sawBlock = false;

  const finishParam = (to: number, closed: boolean) => {
    if (!param || !invoke) return;
    const value = t.slice(param.from, to);
    if (!closed) repairs.push(`parameter "${param.name ?? '?'}" had no closing tag`);
    if (!param.name) invoke.issues.push('a parameter without a name');
    else {
      const w = param.flag === 'false' ? nonJsonValueWarning(invoke.index, invoke.name ?? '', param.name, value) : undefined;
      if (w) warnings.push(w);
      const types = schemaTypes(toolSchema(options.tools, invoke.name ?? '')?.properties?.[param.name]);
      const p = convert(invoke.name ?? '?', param.name, value, param.flag, types, repairs);
      if (typeof p === 'string') invoke.issues.push(p);
      else {
        const dup = invoke.params.findIndex((q) => q.name === p.name);
        if (dup >= 0) {
          repairs.push(`${invoke.name}.${p.name}: given twice, the last value kept`);
          invoke.params.splice(dup, 1);
        }
        invoke.params.push(p);
      }
    }
    param = undefined;
  };

  const finishInvoke = (end: number, closed: boolean) => {
    if (!invoke) return;
    const raw = t.slice(invoke.start, end);
    if (!closed) invoke.issues.push('the invoke is not closed (truncated output?)');
    const name = invoke.name;
    if (!name) invoke.issues.push('the invoke has no name');
    let args: string | undefined;
    if (!invoke.issues.length) {
      const body = invoke.body.trim();
      if (invoke.params.length === 0 && body) {
        const j = tryJson(body.replace(/^```(?:json)?\s*|\s*```$/g, ''));
        if (j.ok && j.value !== null && typeof j.value === 'object' && !Array.isArray(j.value) && jsonType(j.value) === 'object') {
          repairs.push(`${name}: arguments given as a JSON object body`);
          args = unwrap(name!, j.value, options, repairs) ?? pyJsonDumps(j.value);
        } else invoke.issues.push(`the invoke body is neither parameters nor a JSON object: ${JSON.stringify(body.slice(0, 80))}`);
      } else {
        const obj = Object.fromEntries(invoke.params.map((p) => [p.name, p.value])) as Record<string, PyJson>;
        args = unwrap(name!, obj, options, repairs) ?? `{${invoke.params.map((p) => `${pyJsonString(p.name)}: ${p.raw ?? pyJsonDumps(p.value)}`).join(', ')}}`;
      }
    }
    if (invoke.issues.length || args === undefined) errors.push({ ...(name ? { name } : {}), reason: invoke.issues.join('; '), raw });
    else calls.push({ type: 'function', function: { name: name!, arguments: args } });
    invoke = undefined;
  };

  for (const g of blockTags) {
    if (g.start < textFrom) continue;
    if (!g.canonical) repairs.push(`non-canonical ${g.close ? 'closing ' : ''}${g.kind} tag: ${JSON.stringify(t.slice(g.start, g.end).replace(/\s.*$/s, '').replace(/>?$/, '>'))}`);
    const inParam = param !== undefined;
    if (param && !(g.kind === 'parameter' && g.close)) {
      if (g.kind === 'parameter' || g.kind === 'invoke' || g.kind === 'function_calls') finishParam(g.start, false);
    }
    const between = t.slice(textFrom, g.start);
    if (!inBlock && !invoke) {
      if (!(g.kind === 'function_calls' && g.close)) {
        if (g.kind === 'function_calls' || g.kind === 'invoke') {
          // Text before a block is content; the block opener's leading blank line is format, not content.
          contentParts.push(sawBlock ? between.trim() : beforeTag(between));
        }
      }
    } else if (invoke && !inParam) invoke.body += between;
    if (g.kind === 'function_calls') {
      if (!g.close) {
        if (invoke) finishInvoke(g.start, false);
        inBlock = true;
        sawBlock = true;
      } else {
        if (invoke) {
          repairs.push(`invoke "${invoke.name ?? '?'}" closed by the end of the block`);
          finishInvoke(g.start, true);
        }
        inBlock = false;
      }
    } else if (g.kind === 'invoke') {
      if (!g.close) {
        if (invoke) {
          repairs.push(`invoke "${invoke.name ?? '?'}" closed by the next invoke`);
          finishInvoke(g.start, true);
        }
        if (!inBlock) repairs.push('invoke outside a function_calls block');
        sawBlock = true;
        invoke = { index: invokes++, start: g.start, params: [], body: '', issues: [], ...(g.attrs.name !== undefined ? { name: g.attrs.name } : {}) };
      } else if (invoke) {
        finishInvoke(g.end, true);
      } else repairs.push('stray invoke close tag');
    } else if (g.kind === 'parameter') {
      if (!g.close) {
        if (!invoke) {
          errors.push({ reason: 'a parameter outside any invoke', raw: t.slice(g.start, g.end) });
        } else {
          param = { from: g.end, ...(g.attrs.name !== undefined ? { name: g.attrs.name } : {}), ...(g.attrs.string !== undefined ? { flag: g.attrs.string } : {}) };
        }
      } else if (param) finishParam(g.start, true);
      else repairs.push('stray parameter close tag');
    }
    textFrom = g.end;
  }
  // Text after the last tag belongs to an invoke left open (truncated output), not to the content.
  const openAtEnd = invoke !== undefined;
  if (param) {
    finishParam(t.length, false);
    if (invoke) invoke.issues.push('the text ends inside a parameter');
  }
  if (invoke) finishInvoke(t.length, false);
  const tail = t.slice(textFrom);
  if (!inBlock && !openAtEnd) {
    const kept = withoutCutTag(tail, repairs, 'content');
    contentParts.push(sawBlock ? kept.trim() : kept);
  } else if (tail.trim()) repairs.push('tool-call block not closed');
  const content = contentParts.filter((p, i) => p || i === 0).join('\n\n');
  return {
    message: { role: 'assistant', content: clean(content, repairs, 'content'), reasoning_content: clean(reasoning, repairs, 'reasoning'), tool_calls: calls },
    errors,
    repairs: [...new Set(repairs)],
    warnings,
  };
}

/** A lone `arguments`/`input` key that the tool does not declare wraps the real arguments object. */
function unwrap(name: string, obj: PyJson, options: LenientOptions, repairs: string[]): string | undefined {
  const entries = obj instanceof Map ? [...obj.entries()] : Object.entries(obj as Record<string, PyJson>);
  if (entries.length !== 1) return undefined;
  const [key, value] = entries[0]!;
  if (key !== 'arguments' && key !== 'input') return undefined;
  if (toolSchema(options.tools, name)?.properties?.[key] !== undefined) return undefined;
  let inner: PyJson = value;
  if (typeof inner === 'string') {
    const j = tryJson(inner);
    if (!j.ok) return undefined;
    inner = j.value;
  }
  if (inner === null || typeof inner !== 'object' || Array.isArray(inner) || jsonType(inner) !== 'object') return undefined;
  repairs.push(`${name}: unwrapped a lone "${key}" wrapper`);
  return pyJsonDumps(inner);
}
