// MCP servers as tool sources (@modelcontextprotocol/sdk client): stdio (a child process) or
// Streamable HTTP. Tools are discovered with listTools (all pages) and wrapped as AgentTools.
//
// Arguments are validated locally before the call, from the tool's own inputSchema via
// z.fromJSONSchema, so a bad call is reported to the model the same way as for a local tool. A schema
// zod cannot convert is left to the server (which validates too) and noted in `warnings`.
import { z } from 'zod';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { DsvError } from '../errors.js';
import { type AgentTool, type JsonSchema, type ToolResult, formatZodIssues, toolErrorResult } from './tools.js';

export type McpServerSpec =
  | { kind: 'stdio'; command: string; args?: string[]; env?: Record<string, string>; cwd?: string; name?: string }
  | { kind: 'http'; url: string; headers?: Record<string, string>; name?: string };

export class McpConnectError extends DsvError {}

export interface McpConnection {
  /** The server's self-reported name, or the spec's `name`. */
  readonly name: string;
  readonly tools: AgentTool[];
  /** Tools whose input schema could not be converted for local validation. */
  readonly warnings: string[];
  close(): Promise<void>;
}

/**
 * Parses a `--mcp` command-line value: an http(s) URL → Streamable HTTP; anything else is a command
 * line split like a POSIX shell would for plain words, single and double quotes (no expansions).
 */
export function parseMcpSpec(text: string): McpServerSpec {
  const t = text.trim();
  if (/^https?:\/\//i.test(t)) {
    try {
      new URL(t);
    } catch {
      throw new McpConnectError(`--mcp ${JSON.stringify(text)}: not a valid URL`);
    }
    return { kind: 'http', url: t };
  }
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < t.length; i++) {
    const c = t[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && (t[i + 1] === '"' || t[i + 1] === '\\')) cur += t[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else if (c === '\\' && i + 1 < t.length) {
      cur += t[++i];
      inWord = true;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new McpConnectError(`--mcp ${JSON.stringify(text)}: unterminated ${quote} quote`);
  if (inWord) words.push(cur);
  if (!words.length) throw new McpConnectError('--mcp: empty command; expected a command line or an http(s) URL');
  return { kind: 'stdio', command: words[0]!, args: words.slice(1) };
}

function describe(spec: McpServerSpec): string {
  return spec.kind === 'http' ? spec.url : [spec.command, ...(spec.args ?? [])].join(' ');
}

type McpContent = { type: string; text?: string; mimeType?: string; uri?: string; resource?: { uri?: string; text?: string } };

/** MCP tool-call result → the text the model sees. Non-text parts become short placeholders. */
function resultText(res: { content?: unknown; structuredContent?: unknown; toolResult?: unknown }): string {
  const parts = Array.isArray(res.content) ? (res.content as McpContent[]) : [];
  const texts = parts.map((p) => {
    if (p.type === 'text') return p.text ?? '';
    if (p.type === 'resource') return p.resource?.text ?? `[resource ${p.resource?.uri ?? ''}]`;
    if (p.type === 'resource_link') return `[resource link ${p.uri ?? ''}]`;
    return `[${p.type}${p.mimeType ? ` ${p.mimeType}` : ''} content omitted]`;
  });
  if (texts.length) return texts.join('\n');
  if (res.structuredContent !== undefined) return JSON.stringify(res.structuredContent);
  if (res.toolResult !== undefined) return JSON.stringify(res.toolResult);
  return '';
}

export interface McpConnectOptions {
  /** Milliseconds for connect + listTools; default 20 s. */
  connectTimeoutMs?: number;
  /** Per tools/call request timeout in ms; default the SDK's 60 s. */
  callTimeoutMs?: number;
  /** Where a stdio server's stderr goes; default inherit (shown to the user). */
  stderr?: 'inherit' | 'ignore' | 'pipe';
}

export async function connectMcp(spec: McpServerSpec, opts: McpConnectOptions = {}): Promise<McpConnection> {
  const where = describe(spec);
  const transport: Transport =
    spec.kind === 'stdio'
      ? new StdioClientTransport({
          command: spec.command,
          args: spec.args ?? [],
          env: { ...getDefaultEnvironment(), ...(spec.env ?? {}) },
          cwd: spec.cwd,
          stderr: opts.stderr ?? 'inherit',
        })
      : new StreamableHTTPClientTransport(new URL(spec.url), { requestInit: { headers: spec.headers ?? {} } });
  const client = new Client({ name: 'dsv32-agent', version: '0.1.0' });
  const timeout = opts.connectTimeoutMs ?? 20_000;
  const listed: { name: string; description?: string; inputSchema: unknown }[] = [];
  try {
    await client.connect(transport, { timeout });
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : undefined, { timeout });
      listed.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
  } catch (e) {
    await client.close().catch(() => {});
    throw new McpConnectError(`MCP server ${where}: ${(e as Error).message}`, { cause: e });
  }
  const name = spec.name ?? client.getServerVersion()?.name ?? where;
  const warnings: string[] = [];
  const tools = listed.map((t): AgentTool => {
    const parameters = (t.inputSchema ?? { type: 'object' }) as JsonSchema;
    let validator: z.ZodType | undefined;
    try {
      validator = z.fromJSONSchema(parameters as Parameters<typeof z.fromJSONSchema>[0]);
    } catch (e) {
      warnings.push(`MCP tool "${t.name}" (${name}): input schema not checked locally (${(e as Error).message})`);
    }
    return {
      name: t.name,
      description: t.description ?? '',
      parameters,
      source: `mcp:${name}`,
      validate(args) {
        if (!validator) return { ok: true, value: args };
        const r = validator.safeParse(args);
        // Send the arguments as the model wrote them (zod may strip or coerce); validation only gates.
        return r.success ? { ok: true, value: args } : { ok: false, error: formatZodIssues(r.error) };
      },
      async run(args, ctx): Promise<ToolResult> {
        const res = await client.callTool({ name: t.name, arguments: args as Record<string, unknown> }, undefined, {
          signal: ctx.signal,
          ...(opts.callTimeoutMs ? { timeout: opts.callTimeoutMs } : {}),
        });
        const text = resultText(res);
        return res.isError ? toolErrorResult('tool_exception', `Tool "${t.name}" (MCP server ${name}) reported an error: ${text}`) : { content: text, ok: true };
      },
    };
  });
  return {
    name,
    tools,
    warnings,
    close: async () => {
      await client.close();
    },
  };
}
