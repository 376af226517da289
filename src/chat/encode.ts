// DeepSeek-V3.2 prompt encoder, byte-exact with the official `encoding_dsv32.py` (HF deepseek-ai/DeepSeek-V3.2,
// checked against its four gold fixtures). There is no Jinja template: each message renders to a string
// that depends on its role, its own fields and two facts about the whole conversation: the index of the
// last user/developer message, and (for tool results) the assistant turn they answer.
//
// Deliberate differences from the Python, all where it would otherwise produce a broken prompt or crash:
//  - invalid input is a ChatEncodeError naming the message and rule instead of an assert or a literal
//    "None" in the prompt (a user/tool message without content);
//  - a tool result at index 0 is an error (Python reads messages[-1] there);
//  - a tool-result run that stops before answering every call and is followed by another message is an
//    error (Python silently leaves `<function_results>` unclosed);
//  - drop-thinking keeps developer messages (Python's drop_thinking_messages loses a developer message
//    that precedes the last user message, which shifts every later index);
//  - tools / response_format on a user, assistant or tool message are an error (Python ignores them).
import { PyFloat, pyJsonDumps, pyJsonLoads, type PyJson } from './pyjson.js';
import { ChatEncodeError } from './errors.js';
import {
  chatMessageSchema,
  contentText,
  type ChatMessage,
  type ThinkingMode,
  type ToolCallInput,
  type ToolDefinition,
} from './message.js';
import {
  ASSISTANT,
  BOS,
  DSML,
  EOS,
  FUNCTION_CALLS_CLOSE,
  FUNCTION_CALLS_OPEN,
  THINK_END,
  THINK_START,
  USER,
} from './tokens.js';

export interface EncodeOptions {
  mode: ThinkingMode;
  /**
   * Drop reasoning of assistant turns before the last user/developer message (thinking mode only).
   * Under the official rules reasoning is only ever rendered for assistant turns after that message, so
   * this cannot change the prompt; it is kept for parity with the official signature.
   */
  dropThinking?: boolean;
  /** Messages already encoded earlier; only `messages` are rendered, but indices count over both. */
  context?: readonly ChatMessage[];
  /** Prepend BOS (only when `context` is empty, as the official encoder does). */
  bos?: boolean;
}

/**
 * The tool block appended to the system (or developer) message. The blank lines follow the gold fixture;
 * the copies of this template in vLLM and SGLang lack them.
 */
export function renderTools(functions: readonly unknown[]): string {
  return `## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<${DSML}function_calls>" block like the following as part of your reply to the user:
<${DSML}function_calls>
<${DSML}invoke name="$FUNCTION_NAME">
<${DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</${DSML}parameter>
...
</${DSML}invoke>
<${DSML}invoke name="$FUNCTION_NAME2">
...
</${DSML}invoke>
</${DSML}function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<${DSML}function_calls>
...
</${DSML}function_calls>

<function_results>
...
</function_results>

${THINK_START}...thinking about results${THINK_END}

Here are the functions available in JSONSchema format:
<functions>
${functions.map((f) => pyJsonDumps(f)).join('\n')}
</functions>
`;
}

function renderResponseFormat(format: unknown): string {
  return `## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n${pyJsonDumps(format)}`;
}

/** Python truthiness, which the official encoder uses for optional fields (`if tools:`). */
function truthy(v: unknown): boolean {
  if (v == null || v === false || v === 0 || v === '' || v === 0n) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  if (v instanceof PyFloat) return v.value !== 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function entriesOf(v: unknown): [string, unknown][] | undefined {
  if (v instanceof Map) return [...v.entries()].map(([k, x]) => [String(k), x]);
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return Object.entries(v);
  return undefined;
}

/** One parameter per argument: strings raw with string="true", everything else Python JSON. */
export function renderToolCall(call: ToolCallInput['function'], index: number): string {
  let args: unknown = call.arguments;
  if (typeof args === 'string') {
    try {
      args = pyJsonLoads(args, `tool call "${call.name}" arguments`);
    } catch (e) {
      throw new ChatEncodeError(index, 'invalid-tool-arguments', (e as Error).message);
    }
  }
  const entries = entriesOf(args);
  if (!entries) {
    throw new ChatEncodeError(index, 'invalid-tool-arguments', `tool call "${call.name}" arguments must be a JSON object, got ${pyJsonDumps(args as PyJson)}`);
  }
  const params = entries.map(([k, v]) =>
    typeof v === 'string'
      ? `<${DSML}parameter name="${k}" string="true">${v}</${DSML}parameter>`
      : `<${DSML}parameter name="${k}" string="false">${pyJsonDumps(v)}</${DSML}parameter>`,
  );
  return `<${DSML}invoke name="${call.name}">\n${params.join('\n')}\n</${DSML}invoke>`;
}

function validate(msg: unknown, index: number): ChatMessage {
  const r = chatMessageSchema.safeParse(msg);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.length ? `field ${issue.path.join('.')}` : 'message';
    const role = msg !== null && typeof msg === 'object' && 'role' in msg ? ` (${String((msg as { role: unknown }).role)})` : '';
    throw new ChatEncodeError(index, 'invalid-message', `${where}${role}: ${issue.message}`);
  }
  const m = msg as ChatMessage & { tools?: unknown; response_format?: unknown };
  if (m.role !== 'system' && m.role !== 'developer') {
    for (const f of ['tools', 'response_format'] as const) {
      if (truthy(m[f])) throw new ChatEncodeError(index, 'misplaced-field', `a ${m.role} message carries ${f}; only system and developer messages render it`);
    }
  }
  return m;
}

function reasoningOf(m: ChatMessage): string {
  if (m.role !== 'assistant') return '';
  // Python: msg.get("reasoning") or msg.get("reasoning_content")
  return m.reasoning || m.reasoning_content || '';
}

/**
 * Encode a conversation into the prompt text. In thinking mode the prompt ends with `<think>` after the
 * last user/developer message or tool-result block, so the model starts with its reasoning.
 */
export function encodeMessages(messages: readonly ChatMessage[], options: EncodeOptions): string {
  const { mode, dropThinking = true, context = [], bos = true } = options;
  if (mode !== 'thinking' && mode !== 'chat') throw new ChatEncodeError(0, 'invalid-message', `mode must be "thinking" or "chat", got ${String(mode)}`);
  let full = [...context, ...messages].map((m, i) => validate(m, i));
  let lastUser = -1;
  for (let i = full.length - 1; i >= 0; i--) {
    if (full[i]!.role === 'user' || full[i]!.role === 'developer') {
      lastUser = i;
      break;
    }
  }
  if (mode === 'thinking' && dropThinking) {
    full = full.map((m, i) => {
      if (m.role !== 'assistant' || i >= lastUser) return m;
      const { reasoning: _r, reasoning_content: _rc, ...rest } = m;
      return rest;
    });
  }
  let prompt = bos && context.length === 0 ? BOS : '';
  for (let i = context.length; i < full.length; i++) prompt += renderMessage(i, full, mode, lastUser);
  return prompt;
}

function renderMessage(index: number, msgs: readonly ChatMessage[], mode: ThinkingMode, lastUser: number): string {
  const msg = msgs[index]!;
  const thinking = mode === 'thinking';
  // A tool-result run must answer every call before anything else follows it.
  if (msg.role !== 'tool' && index > 0 && msgs[index - 1]!.role === 'tool') {
    const { calls, order } = toolRun(index - 1, msgs);
    if (order < calls) {
      throw new ChatEncodeError(index, 'missing-tool-results', `the assistant turn before made ${calls} tool calls but only ${order} results follow it`);
    }
  }
  switch (msg.role) {
    case 'system': {
      let p = contentText(msg.content);
      if (truthy(msg.tools)) p += '\n\n' + renderTools(toolFunctions(msg.tools!));
      if (truthy(msg.response_format)) p += '\n\n' + renderResponseFormat(msg.response_format);
      return p;
    }
    case 'developer': {
      const content = contentText(msg.content);
      if (!content) throw new ChatEncodeError(index, 'empty-developer-content', 'a developer message needs non-empty content');
      let inner = '';
      if (truthy(msg.tools)) inner += '\n\n' + renderTools(toolFunctions(msg.tools!));
      if (truthy(msg.response_format)) inner += '\n\n' + renderResponseFormat(msg.response_format);
      inner += "\n\n# The user's message is: " + content;
      return USER + inner + ASSISTANT + (index === lastUser && thinking ? THINK_START : THINK_END);
    }
    case 'user':
      return USER + contentText(msg.content) + ASSISTANT + (index === lastUser && thinking ? THINK_START : THINK_END);
    case 'tool': {
      const { calls, order, assistantIndex } = toolRun(index, msgs);
      if (assistantIndex < 0) throw new ChatEncodeError(index, 'tool-result-without-call', 'a tool result must follow an assistant message with tool_calls');
      if (order > calls) {
        throw new ChatEncodeError(index, 'too-many-tool-results', `tool result ${order} answers an assistant turn (message ${assistantIndex}) that made ${calls} tool calls`);
      }
      let p = order === 1 ? '\n\n<function_results>' : '';
      p += `\n<result>${contentText(msg.content)}</result>`;
      if (order === calls) p += '\n</function_results>' + '\n\n' + (index >= lastUser && thinking ? THINK_START : THINK_END);
      return p;
    }
    case 'assistant': {
      const calls = msg.tool_calls ?? [];
      let toolPart = '';
      if (calls.length) {
        toolPart = `\n\n${FUNCTION_CALLS_OPEN}\n${calls.map((c) => renderToolCall(c.function, index)).join('\n')}\n${FUNCTION_CALLS_CLOSE}`;
      }
      let reasoningPart = '';
      if (thinking && index > lastUser) {
        const reasoning = reasoningOf(msg);
        if (!reasoning && !calls.length) {
          throw new ChatEncodeError(index, 'missing-reasoning', 'in thinking mode an assistant turn after the last user message needs reasoning_content or tool_calls');
        }
        reasoningPart = reasoning + THINK_END;
      }
      return reasoningPart + contentText(msg.content) + toolPart + EOS;
    }
  }
}

function toolFunctions(tools: readonly ToolDefinition[]): unknown[] {
  return tools.map((t) => t.function);
}

/**
 * For the tool message at `index`: the assistant message its run answers (-1 if none), that message's
 * number of tool calls, and this result's 1-based position in the run (results match calls by position).
 */
function toolRun(index: number, msgs: readonly ChatMessage[]): { assistantIndex: number; calls: number; order: number } {
  let a = index - 1;
  while (a >= 0 && msgs[a]!.role === 'tool') a--;
  const prev = a >= 0 ? msgs[a]! : undefined;
  if (!prev || prev.role !== 'assistant' || !prev.tool_calls?.length) return { assistantIndex: -1, calls: 0, order: index - a };
  return { assistantIndex: a, calls: prev.tool_calls.length, order: index - a };
}
