// The conversation the agent keeps, in OpenAI chat shape (what DeepSeek's API and our encoder both
// accept), and the model-client contract the loop drives.
import type { ToolDefinition } from '../chat/message.js';
import { DsvError } from '../errors.js';

export interface AgentToolCall {
  id: string;
  type: 'function';
  /** `arguments` is the model's JSON text, kept verbatim (it may be invalid; the tool layer reports that). */
  function: { name: string; arguments: string };
}

export interface AgentSystemMessage {
  role: 'system';
  content: string;
}
export interface AgentUserMessage {
  role: 'user';
  content: string;
}
export interface AgentAssistantMessage {
  role: 'assistant';
  content: string | null;
  reasoning_content?: string | null;
  tool_calls?: AgentToolCall[];
}
export interface AgentToolMessage {
  role: 'tool';
  tool_call_id: string;
  content: string;
}
export type AgentMessage = AgentSystemMessage | AgentUserMessage | AgentAssistantMessage | AgentToolMessage;

/**
 * DeepSeek thinking-with-tools rule (paper §3.2, API guide "thinking mode / tool calls"): within the
 * current user turn every assistant message is sent back *with* its reasoning_content (the API answers
 * 400 otherwise); reasoning of assistant messages before the last user message is cleared, since the
 * model ignores it and it only costs tokens. Tool calls and results are kept either way. Returns new
 * objects; the input is not modified.
 */
export function applyReasoningRetention(messages: readonly AgentMessage[]): AgentMessage[] {
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === 'user') lastUser = i;
  });
  return messages.map((m, i) => {
    if (m.role !== 'assistant') return m;
    const { reasoning_content, ...rest } = m;
    if (i < lastUser || !reasoning_content) return rest;
    return { ...rest, reasoning_content };
  });
}

/** A streamed piece of a model response. `index` is the tool call's position in the response. */
export type ModelDelta =
  | { type: 'reasoning'; text: string }
  | { type: 'content'; text: string }
  | { type: 'tool_call'; index: number; id?: string; name?: string; arguments?: string };

export interface ModelUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface ModelRequest {
  messages: readonly AgentMessage[];
  tools: readonly ToolDefinition[];
  signal?: AbortSignal;
  onDelta?: (d: ModelDelta) => void;
}

export interface ModelResponse {
  message: AgentAssistantMessage;
  /** `stop`, `tool_calls`, `length`, … as the server said; `unknown` when it said nothing. */
  finishReason: string;
  /** Token usage as the server reported it, if it did. */
  usage?: ModelUsage;
  /** Problems the client recovered from (e.g. a lenient parse); recorded in the transcript. */
  warnings?: string[];
  /**
   * Tool calls the model attempted but that could not be parsed. The loop answers each with a marked
   * error result (without running anything), so the model learns its call was not made.
   */
  malformedToolCalls?: { name?: string; reason: string; raw: string }[];
}

export interface ModelClient {
  /** e.g. `openai-chat http://127.0.0.1:8000/v1 model=x`, for transcripts. */
  readonly description: string;
  complete(req: ModelRequest): Promise<ModelResponse>;
  /**
   * The text whose token count is the context size of `messages`: the DeepSeek-V3.2 prompt for the
   * completion client, a faithful flattening for the chat client (whose server does the encoding).
   */
  promptText(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): string;
}

/** A model endpoint failed or answered something we cannot use. */
export class ModelClientError extends DsvError {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

let callCounter = 0;
/** Tool-call id in OpenAI's `call_…` form, for servers (and our parser) that return none. */
export function newToolCallId(): string {
  callCounter = (callCounter + 1) % 1e6;
  return `call_${Date.now().toString(36)}${callCounter.toString(36).padStart(4, '0')}${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The history as the V3.2 chat format can encode it: a call whose arguments are not a JSON object (a
 * model can emit one: a DSML `string="false"` value that is not JSON is pasted raw, as the official
 * parser does) goes as `{}`; servers answer such a history with 400 (ours: `invalid-tool-arguments`), so
 * one malformed call would end the run. Nothing is lost to the model: the tool's error result quotes the
 * raw text (tools.ts), and the transcript keeps the call verbatim. Returns new objects where it changes one.
 */
export function encodableCalls(messages: readonly AgentMessage[]): AgentMessage[] {
  return messages.map((m) => {
    if (m.role !== 'assistant' || !m.tool_calls?.some((c) => !isJsonObjectText(c.function.arguments))) return m;
    return { ...m, tool_calls: m.tool_calls.map((c) => (isJsonObjectText(c.function.arguments) ? c : { ...c, function: { ...c.function, arguments: '{}' } })) };
  });
}

function isJsonObjectText(s: string): boolean {
  if (s.trim() === '') return true;
  try {
    const v: unknown = JSON.parse(s);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}
