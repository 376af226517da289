// Reading a conversation file for the CLI: a JSON array of messages, or {"messages": [...], "tools": [...]}
// whose top-level tools go onto the first system message (as the official test puts them on messages[0]).
// Parsed with pyJsonLoads so integral floats in tool schemas keep their Python spelling (1.0).
import { readFileSync } from 'node:fs';
import { DsvError } from '../errors.js';
import { pyJsonLoads } from './pyjson.js';
import type { ChatMessage, ToolDefinition } from './message.js';

export class ConversationFileError extends DsvError {}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConversationFileError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return pyJsonLoads(text, file);
  } catch (e) {
    throw new ConversationFileError((e as Error).message);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map);
}

/** Messages of a conversation file, with top-level tools placed on the first system message. */
export function loadConversation(file: string): ChatMessage[] {
  const data = readJson(file);
  if (Array.isArray(data)) return data as ChatMessage[];
  if (!isPlainObject(data) || !Array.isArray(data.messages)) {
    throw new ConversationFileError(`${file}: expected a JSON array of messages or an object {"messages": [...], "tools": [...]}`);
  }
  const messages = data.messages as ChatMessage[];
  if (data.tools !== undefined) {
    if (!Array.isArray(data.tools)) throw new ConversationFileError(`${file}: "tools" must be an array of OpenAI tool declarations`);
    const sys = messages.find((m) => isPlainObject(m) && m.role === 'system');
    // Without a system message a leading empty one carries the tools (what serving stacks do).
    if (sys) (sys as { tools?: unknown }).tools = data.tools;
    else messages.unshift({ role: 'system', content: '', tools: data.tools as ToolDefinition[] });
  }
  return messages;
}

/** Tool declarations from a file: a JSON array of tools, or an object with a "tools" array. */
export function loadTools(file: string): ToolDefinition[] {
  const data = readJson(file);
  const tools = Array.isArray(data) ? data : isPlainObject(data) ? data.tools : undefined;
  if (!Array.isArray(tools)) throw new ConversationFileError(`${file}: expected a JSON array of tools or an object with a "tools" array`);
  tools.forEach((t, i) => {
    if (!isPlainObject(t) || !isPlainObject(t.function) || typeof t.function.name !== 'string') {
      throw new ConversationFileError(`${file}: tools[${i}] must be {"type": "function", "function": {"name": ..., "parameters": ...}}`);
    }
  });
  return tools as ToolDefinition[];
}
