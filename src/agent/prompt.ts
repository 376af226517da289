// The DeepSeek-V3.2 prompt of an agent conversation: tools go on the first system message (as the
// official test and serving stacks place request-level tools), then our byte-exact encoder renders it.
import { encodeMessages } from '../chat/encode.js';
import type { ChatMessage, ThinkingMode, ToolDefinition } from '../chat/message.js';
import type { AgentMessage } from './messages.js';

export function withToolsOnSystem(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): ChatMessage[] {
  const out: ChatMessage[] = messages.map((m) => ({ ...m }) as ChatMessage);
  if (!tools.length) return out;
  const sys = out.findIndex((m) => m.role === 'system');
  if (sys >= 0) out[sys] = { ...(out[sys] as { role: 'system'; content: string }), tools: [...tools] };
  else out.unshift({ role: 'system', content: '', tools: [...tools] });
  return out;
}

/** Full prompt text, ending with the generation prefix (`<think>` or `</think>` per `mode`). */
export function deepseekPrompt(messages: readonly AgentMessage[], tools: readonly ToolDefinition[], mode: ThinkingMode): string {
  return encodeMessages(withToolsOnSystem(messages, tools), { mode, dropThinking: true, bos: true });
}

/**
 * A plain flattening of the conversation, for counting when the encoder rejects it (e.g. a
 * conversation shape that is valid for a generic OpenAI server but not for the V3.2 format).
 */
export function flattenForCount(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): string {
  const parts: string[] = tools.map((t) => JSON.stringify(t.function));
  for (const m of messages) {
    parts.push(m.role);
    if (m.role === 'assistant') {
      if (m.reasoning_content) parts.push(m.reasoning_content);
      if (m.content) parts.push(m.content);
      for (const c of m.tool_calls ?? []) parts.push(c.function.name, c.function.arguments);
    } else parts.push(m.content);
  }
  return parts.join('\n');
}
