// Model client for a raw completion endpoint (`/v1/completions`), the way our own engine serves the
// model: we render the DeepSeek-V3.2 prompt with our encoder and parse the completion text with our
// parser (the streaming parser when streaming), so tool calls never depend on a server-side parser.
import { encodeMessages } from '../chat/encode.js';
import { ChatParseError } from '../chat/errors.js';
import type { ParsedMessage, ThinkingMode, ToolDefinition } from '../chat/message.js';
import { CompletionStreamParser, type StreamEvent } from '../chat/parse-stream.js';
import { parseCompletion } from '../chat/parse-strict.js';
import { type LenientResult, parseCompletionLenient } from '../chat/parse-lenient.js';
import {
  type AgentAssistantMessage,
  type AgentMessage,
  type ModelClient,
  ModelClientError,
  type ModelDelta,
  type ModelRequest,
  type ModelResponse,
  type ModelUsage,
  newToolCallId,
  encodableCalls,
} from './messages.js';
import { withToolsOnSystem } from './prompt.js';
import { type RetryPolicy, checkRetryPolicy, jsonEvents, postJson, retryPolicyOf, usageOf } from './http.js';

export interface CompletionClientOptions extends RetryPolicy {
  /** Base URL including the version prefix, e.g. `http://127.0.0.1:8000/v1`. */
  baseUrl: string;
  model: string;
  /** Thinking mode (prompt ends in `<think>`) or chat mode; default thinking. */
  mode?: ThinkingMode;
  stream?: boolean;
  /**
   * `lenient` (default): when the exact parse fails, recover with the lenient parser (bare or variant
   * tags, JSON bodies, wrappers, schema-typed coercion) and report what was repaired as warnings and
   * what could not be recovered as malformed calls. `strict`: a malformed completion ends the run.
   */
  parser?: 'strict' | 'lenient';
  /** Default 8192. */
  maxTokens?: number;
  temperature?: number;
  apiKey?: string;
  /**
   * Extra request fields. By default `skip_special_tokens: false` is sent (vLLM/SGLang), because the
   * parser needs `</think>` and the end-of-sentence token in the text.
   */
  extraBody?: Record<string, unknown>;
}

interface WireCompletion {
  choices?: { text?: string; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string } | string;
}



function toAssistant(p: ParsedMessage): AgentAssistantMessage {
  const m: AgentAssistantMessage = { role: 'assistant', content: p.content };
  if (p.reasoning_content) m.reasoning_content = p.reasoning_content;
  if (p.tool_calls.length) m.tool_calls = p.tool_calls.map((c) => ({ id: newToolCallId(), type: 'function', function: { ...c.function } }));
  return m;
}

export class CompletionClient implements ModelClient {
  readonly description: string;
  private readonly url: string;
  private readonly mode: ThinkingMode;

  constructor(private readonly opts: CompletionClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      throw new ModelClientError(`--base-url ${JSON.stringify(opts.baseUrl)}: not a valid URL (expected e.g. http://127.0.0.1:8000/v1)`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ModelClientError(`--base-url ${JSON.stringify(opts.baseUrl)}: must be an http:// or https:// URL`);
    checkRetryPolicy(opts);
    this.mode = opts.mode ?? 'thinking';
    this.url = base.href.replace(/\/+$/, '') + '/completions';
    this.description = `completion ${this.url} model=${opts.model} mode=${this.mode}${opts.stream === false ? '' : ' (streaming)'}`;
  }

  /** The exact prompt sent: our encoder's rendering, tools on the system message. */
  promptText(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): string {
    return encodeMessages(withToolsOnSystem(encodableCalls(messages), tools), { mode: this.mode, dropThinking: true, bos: true });
  }

  async complete(req: ModelRequest): Promise<ModelResponse> {
    const stream = this.opts.stream ?? true;
    const prompt = this.promptText(req.messages, req.tools);
    const body = {
      model: this.opts.model,
      prompt,
      max_tokens: this.opts.maxTokens ?? 8192,
      stream,
      skip_special_tokens: false,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...(this.opts.temperature !== undefined ? { temperature: this.opts.temperature } : {}),
      ...(this.opts.extraBody ?? {}),
    };
    const res = await postJson(this.url, body, { ...retryPolicyOf(this.opts), stream, apiKey: this.opts.apiKey, signal: req.signal });
    return stream ? this.readStream(res, req) : this.readJson(res, req);
  }

  private parseError(e: unknown, finishReason: string, text: string): never {
    if (e instanceof ChatParseError) {
      const why = finishReason === 'length' ? ' (the completion was cut off by max_tokens)' : '';
      throw new ModelClientError(`completion from ${this.url} is not a valid DeepSeek-V3.2 message${why}: ${e.message}; text starts ${JSON.stringify(text.slice(0, 200))}`, undefined, { cause: e });
    }
    throw e;
  }

  private async readJson(res: Response, req: ModelRequest): Promise<ModelResponse> {
    let data: WireCompletion;
    try {
      data = (await res.json()) as WireCompletion;
    } catch (e) {
      throw new ModelClientError(`POST ${this.url}: response is not JSON (${(e as Error).message})`, res.status);
    }
    const choice = data.choices?.[0];
    if (!choice || typeof choice.text !== 'string') throw new ModelClientError(`POST ${this.url}: response has no choices[0].text`);
    const finishReason = choice.finish_reason ?? 'unknown';
    let parsed: ParsedMessage;
    try {
      parsed = parseCompletion(choice.text, this.mode);
    } catch (e) {
      return this.recover(e, choice.text, finishReason, usageOf(data.usage), req);
    }
    return this.accept(parsed, choice.text, finishReason, usageOf(data.usage), req);
  }

  /**
   * An exact parse that succeeded can still hide tool calls: the strict format only knows DSML, so bare
   * `<function_calls>`/`<invoke>` tags or variant markers end up as text. In lenient mode such text is
   * re-read by the lenient parser, which is kept if it finds calls (or broken calls) there.
   */
  private accept(parsed: ParsedMessage, text: string, finishReason: string, usage: ModelUsage | undefined, req: ModelRequest): ModelResponse {
    const suspicious = /function_calls|<\s*\/?\s*invoke\b|DSML/;
    if ((this.opts.parser ?? 'lenient') === 'lenient' && !parsed.tool_calls.length && (suspicious.test(parsed.content) || suspicious.test(parsed.reasoning_content))) {
      const r = parseCompletionLenient(text, this.mode, { tools: req.tools });
      if (r.message.tool_calls.length || r.errors.length) return this.lenientResponse(r, 'tool-call markup outside the exact format', finishReason, usage);
    }
    const message = toAssistant(parsed);
    return { message, finishReason: message.tool_calls ? 'tool_calls' : finishReason, usage };
  }

  private lenientResponse(r: LenientResult, why: string, finishReason: string, usage: ModelUsage | undefined): ModelResponse {
    const message = toAssistant(r.message);
    return {
      message,
      finishReason: message.tool_calls || r.errors.length ? 'tool_calls' : finishReason,
      usage,
      warnings: [`${why}; used the lenient parser`, ...r.repairs],
      ...(r.errors.length ? { malformedToolCalls: r.errors.map((x) => ({ ...(x.name ? { name: x.name } : {}), reason: x.reason, raw: x.raw })) } : {}),
    };
  }

  /** After a failed exact parse: the lenient parse, or (strict mode) an error. */
  private recover(e: unknown, text: string, finishReason: string, usage: ModelUsage | undefined, req: ModelRequest): ModelResponse {
    if ((this.opts.parser ?? 'lenient') === 'strict' || !(e instanceof ChatParseError)) this.parseError(e, finishReason, text);
    return this.lenientResponse(parseCompletionLenient(text, this.mode, { tools: req.tools }), `exact parse failed (${e.message})`, finishReason, usage);
  }

  private async readStream(res: Response, req: ModelRequest): Promise<ModelResponse> {
    if (!res.body) throw new ModelClientError(`POST ${this.url}: streaming response has no body`, res.status);
    const parser = new CompletionStreamParser(this.mode);
    let text = '';
    let finishReason = 'unknown';
    let usage: ModelUsage | undefined;
    const emit = (evs: StreamEvent[]) => {
      if (!req.onDelta) return;
      for (const ev of evs) {
        let d: ModelDelta;
        if (ev.type === 'reasoning' || ev.type === 'content') d = ev;
        else if (ev.type === 'tool_call_start') d = { type: 'tool_call', index: ev.index, name: ev.name };
        else if (ev.type === 'tool_call_arguments') d = { type: 'tool_call', index: ev.index, arguments: ev.text };
        else continue;
        req.onDelta(d);
      }
    };
    // The streaming parser gives live deltas; if it rejects the text, the rest is only accumulated and
    // the whole completion is re-parsed at the end (exact parse error → lenient recovery).
    let parseFailure: unknown;
    for await (const chunk of jsonEvents<WireCompletion>(res, this.url, req.signal)) {
      usage = usageOf(chunk.usage) ?? usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      if (choice.finish_reason) finishReason = choice.finish_reason;
      if (choice.text) {
        text += choice.text;
        if (parseFailure === undefined) {
          try {
            emit(parser.push(choice.text));
          } catch (e) {
            parseFailure = e;
          }
        }
      }
    }
    let parsed: ParsedMessage;
    try {
      if (parseFailure !== undefined) throw parseFailure;
      const done = parser.finish();
      emit(done.events);
      parsed = done.message;
    } catch (e) {
      return this.recover(e, text, finishReason, usage, req);
    }
    return this.accept(parsed, text, finishReason, usage, req);
  }
}
