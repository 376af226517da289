// Model client for any OpenAI-compatible `/chat/completions` endpoint (DeepSeek API, vLLM, SGLang, our
// own server), streaming (SSE) or not. The request follows DeepSeek's thinking-with-tools semantics:
// reasoning_content of the current user turn is sent back, older reasoning is cleared.
import type { ThinkingMode, ToolDefinition } from '../chat/message.js';
import {
  type AgentAssistantMessage,
  type AgentMessage,
  type AgentToolCall,
  type ModelClient,
  ModelClientError,
  type ModelRequest,
  type ModelResponse,
  type ModelUsage,
  applyReasoningRetention,
  encodableCalls,
  newToolCallId,
} from './messages.js';
import { deepseekPrompt, flattenForCount } from './prompt.js';
import { parseCompletionLenient } from '../chat/parse-lenient.js';
import { type RetryPolicy, checkRetryPolicy, jsonEvents, postJson, retryPolicyOf, serverErrorText, usageOf } from './http.js';

export interface OpenAIChatClientOptions extends RetryPolicy {
  /** Base URL including the version prefix, e.g. `https://api.deepseek.com/v1` or `http://127.0.0.1:8000/v1`. */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** Stream with SSE (default true). */
  stream?: boolean;
  /** Extra request fields, e.g. `{thinking: {type: 'enabled'}}` or `{chat_template_kwargs: {thinking: true}}`. */
  extraBody?: Record<string, unknown>;
  maxTokens?: number;
  temperature?: number;
  /** How the server renders the conversation, for counting context tokens (default thinking). */
  mode?: ThinkingMode;
  headers?: Record<string, string>;
  /**
   * Servers whose tool parser misses a call leave its DSML (or bare `<function_calls>`) markup in
   * `content` with no `tool_calls` (vLLM #36654, SGLang #40236). When true (default), such content is
   * re-read with our lenient parser and the recovered calls are made.
   */
  recoverToolMarkup?: boolean;
}

interface WireToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}
interface WireMessage {
  content?: string | null;
  reasoning_content?: string | null;
  reasoning?: string | null;
  tool_calls?: WireToolCall[] | null;
}
interface WireChoice {
  message?: WireMessage;
  delta?: WireMessage;
  finish_reason?: string | null;
}
interface WireResponse {
  choices?: WireChoice[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string } | string;
}



/** The wire form of our messages (the reasoning rule applied; calls the format cannot encode as `{}`: messages.ts). */
export function toWireMessages(messages: readonly AgentMessage[]): Record<string, unknown>[] {
  return encodableCalls(applyReasoningRetention(messages)).map((m) => {
    if (m.role !== 'assistant') return { ...m };
    const out: Record<string, unknown> = { role: 'assistant', content: m.content ?? '' };
    if (m.reasoning_content) out.reasoning_content = m.reasoning_content;
    if (m.tool_calls?.length) out.tool_calls = m.tool_calls;
    return out;
  });
}

export class OpenAIChatClient implements ModelClient {
  readonly description: string;
  private readonly url: string;

  constructor(private readonly opts: OpenAIChatClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      throw new ModelClientError(`--base-url ${JSON.stringify(opts.baseUrl)}: not a valid URL (expected e.g. http://127.0.0.1:8000/v1)`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ModelClientError(`--base-url ${JSON.stringify(opts.baseUrl)}: must be an http:// or https:// URL`);
    checkRetryPolicy(opts);
    this.url = base.href.replace(/\/+$/, '') + '/chat/completions';
    this.description = `openai-chat ${this.url} model=${opts.model}${opts.stream === false ? '' : ' (streaming)'}`;
  }

  promptText(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): string {
    try {
      return deepseekPrompt(encodableCalls(messages), tools, this.opts.mode ?? 'thinking');
    } catch {
      return flattenForCount(applyReasoningRetention(messages), tools);
    }
  }

  async complete(req: ModelRequest): Promise<ModelResponse> {
    const stream = this.opts.stream ?? true;
    const body: Record<string, unknown> = {
      model: this.opts.model,
      messages: toWireMessages(req.messages),
      stream,
      ...(req.tools.length ? { tools: req.tools } : {}),
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...(this.opts.maxTokens ? { max_tokens: this.opts.maxTokens } : {}),
      ...(this.opts.temperature !== undefined ? { temperature: this.opts.temperature } : {}),
      ...(this.opts.extraBody ?? {}),
    };
    const res = await postJson(this.url, body, {
      ...retryPolicyOf(this.opts),
      stream,
      apiKey: this.opts.apiKey,
      headers: { accept: stream ? 'text/event-stream' : 'application/json', ...(this.opts.headers ?? {}) },
      signal: req.signal,
    });
    const out = await (stream ? this.readStream(res, req) : this.readJson(res));
    return this.recoverMarkup(out, req);
  }

  private recoverMarkup(res: ModelResponse, req: ModelRequest): ModelResponse {
    const m = res.message;
    if (this.opts.recoverToolMarkup === false || m.tool_calls?.length || !m.content || !/function_calls|<\s*\/?\s*invoke\b|DSML/.test(m.content)) return res;
    const r = parseCompletionLenient(m.content, 'chat', { tools: req.tools });
    if (!r.message.tool_calls.length && !r.errors.length) return res;
    const message: AgentAssistantMessage = { ...m, content: r.message.content };
    if (r.message.tool_calls.length) message.tool_calls = r.message.tool_calls.map((c) => ({ id: newToolCallId(), type: 'function', function: { ...c.function } }));
    return {
      ...res,
      message,
      finishReason: 'tool_calls',
      warnings: [...(res.warnings ?? []), 'tool-call markup in the content with no tool_calls; recovered with the lenient parser', ...r.repairs],
      ...(r.errors.length ? { malformedToolCalls: r.errors.map((x) => ({ ...(x.name ? { name: x.name } : {}), reason: x.reason, raw: x.raw })) } : {}),
    };
  }

  private async readJson(res: Response): Promise<ModelResponse> {
    let data: WireResponse;
    try {
      data = (await res.json()) as WireResponse;
    } catch (e) {
      throw new ModelClientError(`POST ${this.url}: response is not JSON (${(e as Error).message})`, res.status);
    }
    const choice = data.choices?.[0];
    if (!choice?.message) throw new ModelClientError(`POST ${this.url}: response has no choices[0].message (${serverErrorText(data).slice(0, 300)})`, res.status);
    const m = choice.message;
    const toolCalls: AgentToolCall[] = (m.tool_calls ?? []).map((c) => ({
      id: c.id || newToolCallId(),
      type: 'function',
      function: { name: c.function?.name ?? '', arguments: c.function?.arguments ?? '' },
    }));
    return {
      message: assistant(m.content ?? '', m.reasoning_content ?? m.reasoning ?? '', toolCalls),
      finishReason: choice.finish_reason ?? 'unknown',
      usage: usageOf(data.usage),
    };
  }

  private async readStream(res: Response, req: ModelRequest): Promise<ModelResponse> {
    if (!res.body) throw new ModelClientError(`POST ${this.url}: streaming response has no body`, res.status);
    let content = '';
    let reasoning = '';
    let finishReason = 'unknown';
    let usage: ModelUsage | undefined;
    const calls: { id?: string; name: string; args: string }[] = [];
    for await (const chunk of jsonEvents<WireResponse>(res, this.url, req.signal)) {
      usage = usageOf(chunk.usage) ?? usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      if (choice.finish_reason) finishReason = choice.finish_reason;
      const d = choice.delta ?? {};
      const r = d.reasoning_content ?? d.reasoning;
      if (r) {
        reasoning += r;
        req.onDelta?.({ type: 'reasoning', text: r });
      }
      if (d.content) {
        content += d.content;
        req.onDelta?.({ type: 'content', text: d.content });
      }
      for (const tc of d.tool_calls ?? []) {
        // OpenAI streams each call's id/name once and its arguments in pieces, keyed by `index`.
        const index = tc.index ?? calls.length - 1;
        if (index < 0) continue;
        const slot = (calls[index] ??= { name: '', args: '' });
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.args += tc.function.arguments;
        req.onDelta?.({ type: 'tool_call', index, id: tc.id, name: tc.function?.name, arguments: tc.function?.arguments });
      }
    }
    const toolCalls: AgentToolCall[] = calls
      .filter((c) => c !== undefined)
      .map((c) => ({ id: c.id || newToolCallId(), type: 'function', function: { name: c.name, arguments: c.args } }));
    return { message: assistant(content, reasoning, toolCalls), finishReason, usage };
  }
}

function assistant(content: string, reasoning: string, toolCalls: AgentToolCall[]): AgentAssistantMessage {
  const m: AgentAssistantMessage = { role: 'assistant', content };
  if (reasoning) m.reasoning_content = reasoning;
  if (toolCalls.length) m.tool_calls = toolCalls;
  return m;
}
