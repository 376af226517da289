// POST /v1/chat/completions. The conversation is rendered by the V3.2 encoder (src/chat/encode.ts):
//  - thinking mode per request, as vLLM switches it: chat_template_kwargs.thinking (or enable_thinking),
//    or the DeepSeek API's `thinking: {type: "enabled"}`; default chat mode;
//  - request-level `tools` go on the first system message (one is added at the front if there is none),
//    where the official format renders them as the DSML tools block; tool_choice "none" leaves them out;
//  - tool_choice "required" or a named function cannot be enforced by constrained decoding here, so the
//    prompt itself commits the model: the generation prompt is followed by the DSML block opener (and,
//    for a named function, its invoke header), and the parser reads that prefix as the start of the
//    completion. In thinking mode the reasoning comes first and no prefix can be placed, so those
//    choices are a 400 there.
//  - `response_format: json_schema` is rendered on the system message (the format's Response Format
//    section); decoding is not constrained.
// The completion is parsed by ChatOutput (exact streaming parser, lenient recovery) into
// reasoning_content, content and tool_calls.
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ChatEncodeError, chatMessageSchema, encodeMessages, tokens, type ChatMessage, type ThinkingMode, type ToolDefinition } from '../chat/index.js';
import { ChatOutput, type ChatDelta, type ChatResult } from './chat-output.js';
import { checkModel, disconnectSignal, engineError, type ServerContext } from './context.js';
import { ApiError, badField } from './errors.js';
import { startGeneration, type ChoiceStep } from './generation.js';
import { outputOptions, samplingParams, wantsTokenData } from './sampling.js';
import { chatRequestSchema, fieldPath, parseRequest, type ChatRequest } from './schemas.js';
import { SseWriter, guardStream } from './sse.js';
import { TokenData } from './token-data.js';

interface Prepared {
  req: ChatRequest;
  mode: ThinkingMode;
  tools: ToolDefinition[];
  prefix: string;
  promptIds: number[];
}

function prepare(ctx: ServerContext, body: unknown): Prepared {
  const req = parseRequest(chatRequestSchema, body);
  checkModel(ctx, req.model);
  if (!ctx.codec) {
    throw new ApiError(400, 'messages: chat completions need the tokenizer, and this server was started with --skip-tokenizer-init; send token ids to /v1/completions', 'messages', 'tokenizer_unavailable');
  }
  const messages = req.messages.map((m, i) => {
    const r = chatMessageSchema.safeParse(m);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw badField(fieldPath(issue.path, `messages[${i}]`), issue.code === 'invalid_union' ? 'role must be one of system, developer, user, assistant, tool' : issue.message);
    }
    return m as ChatMessage;
  });
  const kw = req.chat_template_kwargs;
  const thinking = kw?.thinking ?? kw?.enable_thinking ?? (req.thinking ? req.thinking.type === 'enabled' : false);
  const mode: ThinkingMode = thinking ? 'thinking' : 'chat';

  const tools = (req.tools ?? []) as ToolDefinition[];
  const choice = req.tool_choice ?? (tools.length ? 'auto' : 'none');
  let prefix = '';
  if (choice !== 'none' && choice !== 'auto') {
    if (!tools.length) throw badField('tool_choice', 'needs `tools`');
    if (typeof choice === 'object' && !tools.some((t) => t.function.name === choice.function.name)) {
      throw badField('tool_choice', `names function "${choice.function.name}", which is not among tools`);
    }
    if (mode === 'thinking') throw badField('tool_choice', `"required" or a named function cannot be enforced in thinking mode (the reasoning comes first); use "auto"`, 'unsupported_value');
    prefix = `\n\n${tokens.FUNCTION_CALLS_OPEN}\n${tokens.INVOKE_OPEN} name="` + (typeof choice === 'object' ? `${choice.function.name}">\n` : '');
  }
  const rendered = choice === 'none' ? [] : tools;
  let responseFormat: unknown;
  if (req.response_format?.type === 'json_object') {
    throw badField('response_format', 'type "json_object" is not supported (no constrained decoding); use "json_schema" with a schema, which is rendered into the prompt', 'unsupported_value');
  }
  if (req.response_format?.type === 'json_schema') responseFormat = req.response_format.json_schema.schema ?? req.response_format.json_schema;

  let msgs = messages;
  let shift = 0;
  if (rendered.length || responseFormat !== undefined) {
    const sys = msgs.findIndex((m) => m.role === 'system');
    const add = (m: ChatMessage & { role: 'system' }) => ({
      ...m,
      ...(rendered.length ? { tools: [...(m.tools ?? []), ...rendered] } : {}),
      ...(responseFormat !== undefined ? { response_format: responseFormat } : {}),
    });
    if (sys >= 0) msgs = msgs.map((m, i) => (i === sys ? add(m as ChatMessage & { role: 'system' }) : m));
    else {
      msgs = [add({ role: 'system', content: '' }), ...msgs];
      shift = 1;
    }
  }
  let prompt: string;
  try {
    prompt = encodeMessages(msgs, { mode, dropThinking: true, bos: true });
  } catch (e) {
    if (e instanceof ChatEncodeError) {
      const i = Math.max(0, e.index - shift);
      throw badField(`messages[${i}]`, e.message.replace(/^message \d+: /, ''), e.rule);
    }
    throw e;
  }
  return { req, mode, tools, prefix, promptIds: ctx.codec.encode(prompt + prefix) };
}

export async function chatCompletions(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const arrivedAt = performance.now();
  const { req, mode, tools, prefix, promptIds } = prepare(ctx, request.body);
  if (req.top_logprobs != null && !req.logprobs) throw badField('top_logprobs', 'needs `logprobs: true`');
  const logprobs = req.logprobs ? (req.top_logprobs ?? 0) : -1;
  const maxField = req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const params = samplingParams(req, ctx.engine.info, promptIds.length, maxField, req.max_completion_tokens ?? req.max_tokens, logprobs);
  const out = outputOptions(req, logprobs);
  const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  const created = Math.floor(Date.now() / 1000);
  const signal = disconnectSignal(reply);
  const leave = ctx.admission.enter();
  let gen;
  try {
    gen = await startGeneration({ engine: ctx.engine, codec: ctx.codec, metrics: ctx.metrics, requestId: id, promptIds, params, skipSpecialTokens: false, signal, arrivedAt });
  } catch (e) {
    throw engineError(e, 'messages');
  } finally {
    leave();
  }
  const n = params.n ?? 1;
  const choices = Array.from({ length: n }, () => ({ parser: new ChatOutput(mode, tools, prefix), data: new TokenData(ctx.codec, out, ctx.routeShape, 0, ctx.engine.info.indexTopk), finish: null as string | null, result: null as ChatResult | null }));
  const base = { id, created, model: ctx.modelName };

  // `data` collects the step's token data: the choice's whole record, or a per-chunk one when streaming.
  const advance = (step: ChoiceStep, data: TokenData): ChatDelta[] => {
    const c = choices[step.index]!;
    for (const t of step.tokens) data.add(t, false);
    const deltas = step.text ? c.parser.push(step.text) : [];
    if (step.finish) {
      const f = c.parser.finish();
      deltas.push(...f.deltas);
      c.result = f.result;
      c.finish = step.finish.reason === 'stop' && f.result.toolCalls.length ? 'tool_calls' : step.finish.reason;
    }
    return deltas;
  };

  if (!req.stream) {
    let r;
    for (;;) {
      r = await gen.steps.next();
      if (r.done) break;
      advance(r.value, choices[r.value.index]!.data);
    }
    const usage = { prompt_tokens: r.value.promptTokens, completion_tokens: r.value.completionTokens, total_tokens: r.value.promptTokens + r.value.completionTokens };
    ctx.metrics.promptTokens.inc(r.value.promptTokens);
    const body = {
      ...base,
      object: 'chat.completion',
      choices: choices.map((c, index) => {
        const res = c.result ?? { reasoning: '', content: '', toolCalls: [], recovered: false, malformed: [] };
        return {
          index,
          message: {
            role: 'assistant',
            content: res.content === '' && res.toolCalls.length ? null : res.content,
            reasoning_content: mode === 'thinking' ? res.reasoning : null,
            tool_calls: res.toolCalls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } })),
          },
          logprobs: c.data.chatLogprobsField(),
          finish_reason: c.finish ?? 'abort',
          ...c.data.extensionFields(),
        };
      }),
      usage,
      ...(out.returnTokenIds ? { prompt_token_ids: promptIds } : {}),
    };
    ctx.metrics.e2e.observe((performance.now() - arrivedAt) / 1000);
    await reply.send(body);
    return;
  }

  reply.hijack();
  const sse = new SseWriter(reply.raw);
  const includeUsage = req.stream_options?.include_usage ?? false;
  const continuous = req.stream_options?.continuous_usage_stats ?? false;
  const generated = new Array<number>(n).fill(0);
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    ...base,
    object: 'chat.completion.chunk',
    choices: [choice],
    ...(includeUsage ? { usage: continuous ? usageSoFar() : null } : {}),
    ...extra,
  });
  const usageSoFar = () => {
    const c = generated.reduce((a, b) => a + b, 0);
    return { prompt_tokens: promptIds.length, completion_tokens: c, total_tokens: promptIds.length + c };
  };
  await guardStream(sse, request.log, async () => {
    // The role comes first, one chunk per choice, as OpenAI streams it.
    for (let i = 0; i < n; i++) {
      await sse.send(chunk({ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }, i === 0 && out.returnTokenIds ? { prompt_token_ids: promptIds } : {}));
    }
    let r;
    for (;;) {
      r = await gen.steps.next();
      if (r.done || sse.closed) break;
      const step = r.value;
      const c = choices[step.index]!;
      const fresh = new TokenData(ctx.codec, out, ctx.routeShape, 0, ctx.engine.info.indexTopk);
      const delta = mergeDeltas(advance(step, fresh));
      generated[step.index]! += step.tokens.length;
      const hasTokenData = wantsTokenData(out, step.tokens.length);
      if (!Object.keys(delta).length && !step.finish && !hasTokenData) continue;
      await sse.send(chunk({ index: step.index, delta, logprobs: fresh.chatLogprobsField(), finish_reason: step.finish ? c.finish : null, ...fresh.extensionFields() }));
    }
    if (r.done && !sse.closed) {
      ctx.metrics.promptTokens.inc(r.value.promptTokens);
      if (includeUsage) {
        const usage = { prompt_tokens: r.value.promptTokens, completion_tokens: r.value.completionTokens, total_tokens: r.value.promptTokens + r.value.completionTokens };
        await sse.send({ ...base, object: 'chat.completion.chunk', choices: [], usage });
      }
      await sse.done();
      ctx.metrics.e2e.observe((performance.now() - arrivedAt) / 1000);
    }
  }, () => gen.steps.return({ promptTokens: 0, completionTokens: 0 }));
}

/** One OpenAI delta object from this step's parser events (pieces of one kind concatenated). */
function mergeDeltas(deltas: readonly ChatDelta[]): Record<string, unknown> {
  const d: { reasoning_content?: string; content?: string; tool_calls?: Record<string, unknown>[] } = {};
  const calls = new Map<number, { index: number; id?: string; type?: string; function: { name?: string; arguments: string } }>();
  for (const x of deltas) {
    if (x.type === 'reasoning') d.reasoning_content = (d.reasoning_content ?? '') + x.text;
    else if (x.type === 'content') d.content = (d.content ?? '') + x.text;
    else {
      let c = calls.get(x.index);
      if (!c) calls.set(x.index, (c = { index: x.index, function: { arguments: '' } }));
      if (x.type === 'tool_call_start') {
        c.id = x.id;
        c.type = 'function';
        c.function.name = x.name;
      } else c.function.arguments += x.text;
    }
  }
  if (calls.size) d.tool_calls = [...calls.values()];
  return d;
}
