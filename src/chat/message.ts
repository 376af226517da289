// Message shapes of the chat format: what the encoder accepts (OpenAI-style chat messages) and what the
// parsers return. The zod schemas validate input only; the encoder renders from the caller's own
// objects because a zod parse rebuilds objects and would reorder keys, and tool schemas are rendered
// with their keys in the order given.
import { z } from 'zod';

export type ThinkingMode = 'thinking' | 'chat';

export interface TextPart {
  type: 'text';
  text: string;
}
/** A string, or OpenAI text parts (joined without separator when rendered). */
export type MessageContent = string | TextPart[];

/** OpenAI tool declaration; `function` is rendered into the prompt as Python JSON, keys in given order. */
export interface ToolDefinition {
  type?: 'function';
  function: { name: string; description?: string; parameters?: unknown; [key: string]: unknown };
}

/** OpenAI tool call; `arguments` is a JSON object text (OpenAI style) or an already parsed object. */
export interface ToolCallInput {
  id?: string | null;
  type?: 'function' | null;
  function: { name: string; arguments: string | Record<string, unknown> | Map<string, unknown> };
}

export interface SystemMessage {
  role: 'system';
  content?: MessageContent | null;
  tools?: ToolDefinition[] | null;
  response_format?: unknown;
}
/** The search-agent role: rendered like a user turn, may carry tools and response_format. */
export interface DeveloperMessage {
  role: 'developer';
  content: MessageContent;
  tools?: ToolDefinition[] | null;
  response_format?: unknown;
}
export interface UserMessage {
  role: 'user';
  content: MessageContent;
}
export interface AssistantMessage {
  role: 'assistant';
  content?: MessageContent | null;
  reasoning_content?: string | null;
  /** Alias of reasoning_content (vLLM); wins when both are non-empty, as in the official encoder. */
  reasoning?: string | null;
  tool_calls?: ToolCallInput[] | null;
}
/** A tool result. It answers the preceding assistant's tool calls by position; tool_call_id is not used. */
export interface ToolMessage {
  role: 'tool';
  content: MessageContent;
  tool_call_id?: string | null;
}
export type ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage;

/** A tool call as the parsers return it: arguments is a JSON object text. Ids are the caller's to add. */
export interface ParsedToolCall {
  type: 'function';
  function: { name: string; arguments: string };
}
/** A parsed completion; it is itself a valid AssistantMessage. */
export interface ParsedMessage {
  role: 'assistant';
  content: string;
  reasoning_content: string;
  tool_calls: ParsedToolCall[];
}

// ------------------------------------------------------------------------------------------ schemas

const textPart = z.object({ type: z.literal('text'), text: z.string() }).loose();
const content = z.union([z.string(), z.array(textPart)]);
const toolDefinition = z
  .object({
    type: z.literal('function').optional(),
    function: z.object({ name: z.string().min(1) }).loose(),
  })
  .loose();
const tools = z.array(toolDefinition).nullish();
const toolCall = z
  .object({
    id: z.string().nullish(),
    type: z.literal('function').nullish(),
    function: z
      .object({
        name: z.string().min(1),
        arguments: z.union([z.string(), z.record(z.string(), z.unknown()), z.instanceof(Map)]),
      })
      .loose(),
  })
  .loose();

export const chatMessageSchema = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: content.nullish(), tools, response_format: z.unknown().optional() }).loose(),
  z.object({ role: z.literal('developer'), content, tools, response_format: z.unknown().optional() }).loose(),
  z.object({ role: z.literal('user'), content }).loose(),
  z
    .object({
      role: z.literal('assistant'),
      content: content.nullish(),
      reasoning_content: z.string().nullish(),
      reasoning: z.string().nullish(),
      tool_calls: z.array(toolCall).nullish(),
    })
    .loose(),
  z.object({ role: z.literal('tool'), content, tool_call_id: z.string().nullish() }).loose(),
]);

/** Content as the prompt shows it: text parts are concatenated. */
export function contentText(c: MessageContent | null | undefined): string {
  if (c == null) return '';
  return typeof c === 'string' ? c : c.map((p) => p.text).join('');
}
