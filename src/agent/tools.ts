// Tools the agent can call: declared with zod (local functions) or discovered from MCP servers, all
// behind one interface. The JSON Schema that goes into the prompt / OpenAI `tools` and the validator
// that checks arguments come from the same zod schema, so they cannot disagree.
//
// Nothing a tool call does may crash the agent: unknown tool, arguments that are not JSON or do not
// match the schema, an exception inside the tool, a timeout — each becomes a tool result whose text
// starts with a marker `[tool_error:<kind>]`, which the model sees and can react to.
import { z } from 'zod';
import type { ToolDefinition } from '../chat/message.js';
import { DsvError } from '../errors.js';
import type { AgentToolCall } from './messages.js';

export type ToolErrorKind = 'unknown_tool' | 'invalid_arguments' | 'malformed_call' | 'tool_exception' | 'tool_timeout' | 'aborted';

export interface ToolResult {
  /** What the model sees as the tool message content. */
  content: string;
  ok: boolean;
  errorKind?: ToolErrorKind;
}

export const TOOL_ERROR_MARK = '[tool_error:';

/** The marked text of a failed call, e.g. `[tool_error:invalid_arguments] Tool "x": …`. */
export function toolErrorResult(kind: ToolErrorKind, message: string): ToolResult {
  return { content: `${TOOL_ERROR_MARK}${kind}] ${message}`, ok: false, errorKind: kind };
}

export interface ToolContext {
  signal: AbortSignal;
  callId: string;
}

export type JsonSchema = Record<string, unknown>;

export interface AgentTool {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments object. */
  readonly parameters: JsonSchema;
  /** `local` or `mcp:<server>`; for error messages and transcripts. */
  readonly source: string;
  /** Checks parsed arguments; returns the value to run with, or a human-readable list of problems. */
  validate(args: unknown): { ok: true; value: unknown } | { ok: false; error: string };
  /** Runs with validated arguments; returns text or a JSON-able value. May throw; the ToolBox catches. */
  run(args: unknown, ctx: ToolContext): Promise<ToolResult | string | unknown>;
}

export class ToolDefinitionError extends DsvError {}

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** JSON Schema of a zod schema as it goes into prompts: draft 2020-12 without the `$schema` noise. */
export function zodToParameters(schema: z.ZodType, toolName: string): JsonSchema {
  let js: JsonSchema;
  try {
    js = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'throw' }) as JsonSchema;
  } catch (e) {
    throw new ToolDefinitionError(`tool "${toolName}": its zod schema has no JSON Schema form (${(e as Error).message})`, { cause: e });
  }
  delete js.$schema;
  if (js.type !== 'object') throw new ToolDefinitionError(`tool "${toolName}": arguments schema must be a z.object(...), got JSON Schema type ${JSON.stringify(js.type)}`);
  return js;
}

/** Zod issues as short lines: `- path.to.field: message`. */
export function formatZodIssues(err: z.ZodError): string {
  return err.issues.map((i) => `- ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('\n');
}

export interface LocalToolSpec<S extends z.ZodType> {
  name: string;
  description: string;
  input: S;
  execute: (args: z.output<S>, ctx: ToolContext) => unknown;
}

/** A tool implemented by a local function; `input` is a zod object schema. */
export function defineTool<S extends z.ZodType>(spec: LocalToolSpec<S>): AgentTool {
  if (!NAME_RE.test(spec.name)) throw new ToolDefinitionError(`tool name ${JSON.stringify(spec.name)}: expected 1-64 chars of [A-Za-z0-9_.-]`);
  const parameters = zodToParameters(spec.input, spec.name);
  return {
    name: spec.name,
    description: spec.description,
    parameters,
    source: 'local',
    validate(args) {
      const r = spec.input.safeParse(args);
      return r.success ? { ok: true, value: r.data } : { ok: false, error: formatZodIssues(r.error) };
    },
    async run(args, ctx) {
      return spec.execute(args as z.output<S>, ctx);
    },
  };
}

function stringifyOutput(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined) return '';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function isToolResult(v: unknown): v is ToolResult {
  return typeof v === 'object' && v !== null && typeof (v as ToolResult).content === 'string' && typeof (v as ToolResult).ok === 'boolean';
}

export interface ToolBoxOptions {
  /** Per-call wall-clock limit in ms; a call that takes longer gets a `tool_timeout` result. */
  timeoutMs?: number;
}

/** The set of tools of one agent run: OpenAI/prompt declarations and guarded execution. */
export class ToolBox {
  private readonly byName = new Map<string, AgentTool>();

  constructor(
    tools: readonly AgentTool[] = [],
    private readonly opts: ToolBoxOptions = {},
  ) {
    for (const t of tools) this.add(t);
  }

  add(tool: AgentTool): void {
    const prev = this.byName.get(tool.name);
    if (prev) throw new ToolDefinitionError(`tool "${tool.name}" is declared twice (by ${prev.source} and by ${tool.source}); tool names must be unique`);
    this.byName.set(tool.name, tool);
  }

  get tools(): AgentTool[] {
    return [...this.byName.values()];
  }

  get size(): number {
    return this.byName.size;
  }

  /** OpenAI `tools` array; the same objects go on the system message for our encoder's prompt. */
  definitions(): ToolDefinition[] {
    return this.tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
  }

  /** Runs one call. Never throws: every failure is a marked ToolResult. */
  async call(call: AgentToolCall, signal: AbortSignal = new AbortController().signal): Promise<ToolResult> {
    const name = call.function.name;
    const tool = this.byName.get(name);
    if (!tool) {
      const known = this.tools.map((t) => t.name).join(', ') || '(none)';
      return toolErrorResult('unknown_tool', `There is no tool named ${JSON.stringify(name)}. Available tools: ${known}.`);
    }
    let args: unknown;
    const raw = call.function.arguments.trim();
    try {
      args = raw === '' ? {} : JSON.parse(raw);
    } catch (e) {
      const shown = raw.length > 500 ? `${raw.slice(0, 500)}…` : raw;
      return toolErrorResult('invalid_arguments', `Tool "${name}": arguments are not valid JSON (${(e as Error).message}): ${shown}. Send a JSON object matching the tool's schema.`);
    }
    const checked = tool.validate(args);
    if (!checked.ok) {
      return toolErrorResult('invalid_arguments', `Tool "${name}" rejected its arguments; the tool did not run:\n${checked.error}`);
    }
    if (signal.aborted) return toolErrorResult('aborted', `Tool "${name}" was not run: the agent run was cancelled.`);
    // The tool gets its own signal, aborted by the run's signal or by the timeout.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const guards: Promise<ToolResult>[] = [
      new Promise((res) => ctl.signal.addEventListener('abort', () => res(
        signal.aborted
          ? toolErrorResult('aborted', `Tool "${name}" was cancelled with the agent run.`)
          : toolErrorResult('tool_timeout', `Tool "${name}" did not finish within ${this.opts.timeoutMs} ms and was abandoned.`),
      ), { once: true })),
    ];
    if (this.opts.timeoutMs) timer = setTimeout(() => ctl.abort(new Error('timeout')), this.opts.timeoutMs);
    const running = (async (): Promise<ToolResult> => {
      try {
        const out = await tool.run(checked.value, { signal: ctl.signal, callId: call.id });
        return isToolResult(out) ? out : { content: stringifyOutput(out), ok: true };
      } catch (e) {
        const msg = e instanceof Error ? `${e.name}: ${e.message}` : stringifyOutput(e);
        return toolErrorResult('tool_exception', `Tool "${name}" failed: ${msg}`);
      }
    })();
    try {
      return await Promise.race([running, ...guards]);
    } finally {
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (!ctl.signal.aborted) ctl.abort(); // release the guard listener
    }
  }
}
