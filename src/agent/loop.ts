// The agent loop: call the model, run the tool calls it makes (in parallel by default), feed the
// results back, until it answers without tool calls, a step cap, cancellation, a model error, or a
// context overflow that the context strategy cannot resolve. The loop itself never throws for those:
// it returns a status, and every step is in the transcript.
import type { TokenCounter } from '../chat/tokenizer.js';
import { ApproximateTokenCounter } from '../chat/tokenizer.js';
import { type ContextOptions, type ContextStrategy, contextLimit, contextStrategy } from './context.js';
import { type AgentAssistantMessage, type AgentMessage, type AgentToolCall, type ModelClient, type ModelDelta, type ModelResponse, newToolCallId } from './messages.js';
import { ToolBox, type AgentTool, type ToolResult, toolErrorResult } from './tools.js';
import { type TokenCounts, type ToolResultRecord, Transcript } from './transcript.js';

export type AgentStatus = 'final' | 'max_steps' | 'aborted' | 'error' | 'context_overflow' | 'stopped';

export interface StepInfo {
  run: string;
  step: number;
  messages: readonly AgentMessage[];
  promptTokens: number;
}

export interface StepRecord {
  step: number;
  message: AgentAssistantMessage;
  toolResults: ToolResultRecord[];
  tokens: TokenCounts;
}

export interface AgentHooks {
  /** Before each model call. Return `{messages}` to replace the conversation, `{stop: true}` to end the run. */
  beforeStep?(info: StepInfo): void | { messages?: AgentMessage[]; stop?: boolean } | Promise<void | { messages?: AgentMessage[]; stop?: boolean }>;
  onDelta?(step: number, delta: ModelDelta): void;
  onModelResponse?(step: number, res: ModelResponse): void;
  onToolCall?(step: number, call: AgentToolCall): void;
  onToolResult?(step: number, call: AgentToolCall, result: ToolResult): void;
  onContext?(info: { step: number; strategy: string; action: 'compact' | 'abandon'; tokensBefore: number; tokensAfter?: number; dropped: number }): void;
  afterStep?(record: StepRecord): void | Promise<void>;
}

export interface AgentOptions {
  client: ModelClient;
  task: string;
  system?: string;
  /** Earlier turns of the conversation, placed before the task (after `system` unless they start with one). */
  history?: readonly AgentMessage[];
  tools?: ToolBox | readonly AgentTool[];
  /** Model calls at most (default 20). */
  maxSteps?: number;
  /** Run the tool calls of one response concurrently (default true); results keep call order either way. */
  parallelToolCalls?: boolean;
  signal?: AbortSignal;
  hooks?: AgentHooks;
  transcript?: Transcript;
  /** Counts context tokens; default the approximate heuristic (recorded as such). */
  counter?: TokenCounter;
  context?: ContextOptions;
  /** Name of this trajectory in the transcript (default `run0`). */
  runId?: string;
}

export interface AgentResult {
  run: string;
  status: AgentStatus;
  finalAnswer: string | null;
  /** Model calls made (not counting summary calls). */
  steps: number;
  messages: AgentMessage[];
  error?: string;
  totalTokens: { prompt: number; completion: number };
}

function isAbort(e: unknown, signal?: AbortSignal): boolean {
  return !!signal?.aborted || (e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError'));
}

function completionText(m: AgentAssistantMessage): string {
  return (m.reasoning_content ?? '') + (m.content ?? '') + (m.tool_calls ?? []).map((c) => c.function.name + c.function.arguments).join('');
}

export async function runAgent(opts: AgentOptions): Promise<AgentResult> {
  const run = opts.runId ?? 'run0';
  const client = opts.client;
  const toolbox = opts.tools instanceof ToolBox ? opts.tools : new ToolBox(opts.tools ?? []);
  const defs = toolbox.definitions();
  const counter = opts.counter ?? new ApproximateTokenCounter();
  const maxSteps = opts.maxSteps ?? 20;
  const parallel = opts.parallelToolCalls ?? true;
  const transcript = opts.transcript ?? new Transcript();
  const hooks = opts.hooks ?? {};
  const strategy: ContextStrategy | undefined =
    opts.context && (typeof opts.context.strategy === 'string' ? contextStrategy(opts.context.strategy) : opts.context.strategy);
  const limit = opts.context ? contextLimit(opts.context) : Infinity;

  let messages: AgentMessage[] = [];
  const history = opts.history ?? [];
  if (opts.system && history[0]?.role !== 'system') messages.push({ role: 'system', content: opts.system });
  messages.push(...history, { role: 'user', content: opts.task });
  // System prompt, earlier turns and the task: context strategies never drop these.
  const headLen = messages.length;

  transcript.write({
    type: 'run_start',
    run,
    model: client.description,
    task: opts.task,
    ...(opts.system ? { system: opts.system } : {}),
    tools: toolbox.tools.map((t) => `${t.name} (${t.source})`),
    maxSteps,
    counter: counter.description,
    ...(opts.context && strategy ? { context: { strategy: strategy.name, windowTokens: opts.context.windowTokens, threshold: opts.context.threshold ?? 0.8 } } : {}),
  });

  const total = { prompt: 0, completion: 0 };
  let steps = 0;
  let status: AgentStatus = 'max_steps';
  let finalAnswer: string | null = null;
  let error: string | undefined;
  const count = (ms: readonly AgentMessage[]) => counter.count(client.promptText(ms, defs));

  try {
    while (steps < maxSteps) {
      if (opts.signal?.aborted) {
        status = 'aborted';
        break;
      }
      const step = steps + 1;
      let promptTokens = count(messages);
      const prep = await hooks.beforeStep?.({ run, step, messages, promptTokens });
      if (prep && prep.stop) {
        status = 'stopped';
        break;
      }
      if (prep && prep.messages) {
        messages = [...prep.messages];
        promptTokens = count(messages);
      }

      if (strategy && promptTokens > limit) {
        const comp = await strategy.compact({ messages, headLength: headLen, tools: defs, client, counter, signal: opts.signal });
        const keptInfo = (ms: readonly AgentMessage[]) => ms.map((m) => ({ role: m.role, chars: m.role === 'assistant' ? (m.content?.length ?? 0) : m.content.length }));
        if (!comp) {
          transcript.write({ type: 'context', run, step, strategy: strategy.name, action: 'abandon', tokensBefore: promptTokens, limit, kept: [], dropped: [] });
          hooks.onContext?.({ step, strategy: strategy.name, action: 'abandon', tokensBefore: promptTokens, dropped: 0 });
          status = 'context_overflow';
          error = `context of ${promptTokens} tokens passed the limit of ${limit} and strategy ${strategy.name} could not reduce it`;
          break;
        }
        const after = count(comp.messages);
        transcript.write({
          type: 'context',
          run,
          step,
          strategy: strategy.name,
          action: 'compact',
          tokensBefore: promptTokens,
          tokensAfter: after,
          limit,
          kept: keptInfo(comp.messages),
          dropped: comp.dropped,
          ...(comp.summary !== undefined ? { summary: comp.summary, summaryTokens: comp.summaryTokens } : {}),
        });
        hooks.onContext?.({ step, strategy: strategy.name, action: 'compact', tokensBefore: promptTokens, tokensAfter: after, dropped: comp.dropped.length });
        if (comp.summaryTokens) {
          total.prompt += comp.summaryTokens.prompt;
          total.completion += comp.summaryTokens.completion;
        }
        messages = comp.messages;
        promptTokens = after;
        if (promptTokens > limit) {
          status = 'context_overflow';
          error = `after ${strategy.name} the context is still ${promptTokens} tokens, over the limit of ${limit}`;
          break;
        }
      }

      const t0 = Date.now();
      const res = await client.complete({
        messages,
        tools: defs,
        signal: opts.signal,
        onDelta: hooks.onDelta ? (d) => hooks.onDelta!(step, d) : undefined,
      });
      steps = step;
      hooks.onModelResponse?.(step, res);
      const msg = res.message;
      // Unparseable calls become calls with no arguments whose result says why they were not run; the
      // V3.2 format pairs results with calls by position, so each needs a call entry.
      const malformed = (res.malformedToolCalls ?? []).map((m) => ({
        call: { id: newToolCallId(), type: 'function' as const, function: { name: m.name ?? 'unparsed_tool_call', arguments: '{}' } },
        result: toolErrorResult(
          'malformed_call',
          `Your call${m.name ? ` to "${m.name}"` : ''} could not be parsed (${m.reason}); it was not run. Write the call again in the exact tool-call format.`,
        ),
      }));
      if (malformed.length) msg.tool_calls = [...(msg.tool_calls ?? []), ...malformed.map((m) => m.call)];
      messages.push(msg);
      const calls = (msg.tool_calls ?? []).slice(0, (msg.tool_calls?.length ?? 0) - malformed.length);

      const runOne = async (call: AgentToolCall): Promise<ToolResultRecord> => {
        hooks.onToolCall?.(step, call);
        const c0 = Date.now();
        const r = await toolbox.call(call, opts.signal);
        hooks.onToolResult?.(step, call, r);
        return { id: call.id, name: call.function.name, ok: r.ok, ...(r.errorKind ? { errorKind: r.errorKind } : {}), content: r.content, ms: Date.now() - c0 };
      };
      let results: ToolResultRecord[] = [];
      if (parallel) results = await Promise.all(calls.map(runOne));
      else for (const c of calls) results.push(await runOne(c));
      for (const { call, result } of malformed) {
        hooks.onToolCall?.(step, call);
        hooks.onToolResult?.(step, call, result);
        results.push({ id: call.id, name: call.function.name, ok: false, errorKind: 'malformed_call', content: result.content, ms: 0 });
      }
      for (const r of results) messages.push({ role: 'tool', tool_call_id: r.id, content: r.content });

      const tokens: TokenCounts = {
        prompt: promptTokens,
        completion: counter.count(completionText(msg)),
        exact: counter.exact,
        ...(res.usage ? { server: res.usage } : {}),
      };
      total.prompt += tokens.prompt;
      total.completion += tokens.completion;
      transcript.write({
        type: 'step',
        run,
        step,
        reasoning: msg.reasoning_content ?? '',
        content: msg.content ?? '',
        tool_calls: msg.tool_calls ?? [],
        tool_results: results,
        finish_reason: res.finishReason,
        tokens,
        ...(res.warnings?.length ? { warnings: res.warnings } : {}),
        ms: Date.now() - t0,
      });
      await hooks.afterStep?.({ step, message: msg, toolResults: results, tokens });

      if (!results.length) {
        status = 'final';
        finalAnswer = msg.content ?? '';
        break;
      }
      if (opts.signal?.aborted) {
        status = 'aborted';
        break;
      }
    }
  } catch (e) {
    if (isAbort(e, opts.signal)) status = 'aborted';
    else {
      status = 'error';
      error = e instanceof Error ? e.message : String(e);
    }
  }
  if (status === 'max_steps') error = `stopped after ${maxSteps} steps without a final answer`;
  transcript.write({ type: 'run_end', run, status, steps, finalAnswer, ...(error ? { error } : {}), totalTokens: total });
  return { run, status, finalAnswer, steps, messages, ...(error ? { error } : {}), totalTokens: total };
}
