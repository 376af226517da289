// Test-time context management for long agent runs, after the DeepSeek-V3.2 paper §4.4 (BrowseComp).
// When the context passes a fraction (default 0.8) of the window, one of:
//   summary              — the model summarises the trajectory so far; the run restarts from
//                          system + task + that summary;
//   discard-75           — the earliest 75 % of the tool-call rounds are dropped;
//   discard-all          — every tool-call round is dropped (cf. a "new context" tool);
//   parallel-fewest-step — the trajectory is abandoned; N independent trajectories run and the
//                          finished one with the fewest steps wins (see parallel.ts).
// Every strategy keeps the head — the system prompt(s) and the task (the first user message) — and
// messages that are not part of a tool-call round (e.g. an earlier summary). A tool-call round is an
// assistant message with tool_calls plus the tool results that answer it; rounds are dropped whole, so
// every remaining tool result still follows its call (the V3.2 format matches results by position).
import type { ToolDefinition } from '../chat/message.js';
import type { TokenCounter } from '../chat/tokenizer.js';
import { DsvError } from '../errors.js';
import type { AgentMessage, ModelClient } from './messages.js';
import type { DroppedRecord, TokenCounts } from './transcript.js';

export const CONTEXT_STRATEGIES = ['summary', 'discard-75', 'discard-all', 'parallel-fewest-step'] as const;
export type ContextStrategyName = (typeof CONTEXT_STRATEGIES)[number];

export class ContextConfigError extends DsvError {}

export interface ContextOptions {
  strategy: ContextStrategyName | ContextStrategy;
  /** The model's context window in tokens. */
  windowTokens: number;
  /** Fraction of the window at which the strategy fires (default 0.8, as in the paper). */
  threshold?: number;
}

export interface CompactionInput {
  messages: readonly AgentMessage[];
  /** Messages that are always kept: system prompt, earlier turns, and the task (default: up to the first user message). */
  headLength?: number;
  tools: readonly ToolDefinition[];
  client: ModelClient;
  counter: TokenCounter;
  signal?: AbortSignal;
}

export interface Compaction {
  messages: AgentMessage[];
  dropped: DroppedRecord[];
  summary?: string;
  summaryTokens?: TokenCounts;
}

export interface ContextStrategy {
  readonly name: string;
  /** The shortened conversation, or null to abandon the trajectory. */
  compact(input: CompactionInput): Promise<Compaction | null>;
}

export function contextLimit(opts: ContextOptions): number {
  const threshold = opts.threshold ?? 0.8;
  if (!(threshold > 0 && threshold <= 1)) throw new ContextConfigError(`context threshold ${threshold}: expected a fraction in (0, 1]`);
  if (!(Number.isInteger(opts.windowTokens) && opts.windowTokens > 0)) throw new ContextConfigError(`context window ${opts.windowTokens}: expected a positive integer number of tokens`);
  return Math.floor(opts.windowTokens * threshold);
}

/** Default head: every message up to and including the first user message (the task). */
export function headLength(messages: readonly AgentMessage[]): number {
  const i = messages.findIndex((m) => m.role === 'user');
  return i < 0 ? messages.length : i + 1;
}

interface Round {
  messages: AgentMessage[];
  isToolRound: boolean;
}

/** The messages after the head, grouped: each assistant message starts a group that takes its tool results. */
export function rounds(messages: readonly AgentMessage[], headLen = headLength(messages)): Round[] {
  const out: Round[] = [];
  for (const m of messages.slice(headLen)) {
    const last = out.at(-1);
    if (m.role === 'tool' && last?.isToolRound) last.messages.push(m);
    else out.push({ messages: [m], isToolRound: m.role === 'assistant' && !!m.tool_calls?.length });
  }
  return out;
}

export function droppedRecord(m: AgentMessage): DroppedRecord {
  const chars =
    m.role === 'assistant'
      ? (m.content?.length ?? 0) + (m.reasoning_content?.length ?? 0) + (m.tool_calls ?? []).reduce((n, c) => n + c.function.arguments.length, 0)
      : m.content.length;
  const r: DroppedRecord = { role: m.role, chars };
  if (m.role === 'assistant' && m.tool_calls?.length) r.tool_calls = m.tool_calls.map((c) => ({ id: c.id, name: c.function.name }));
  if (m.role === 'tool') r.tool_call_id = m.tool_call_id;
  return r;
}

/** Drops the first `count(n)` tool-call rounds of n; keeps the head and non-tool messages. */
function discardRounds(name: string, count: (n: number) => number): ContextStrategy {
  return {
    name,
    async compact({ messages, headLength: hl }) {
      const headLen = Math.min(hl ?? headLength(messages), messages.length);
      const head = messages.slice(0, headLen);
      const rs = rounds(messages, headLen);
      const toolRounds = rs.filter((r) => r.isToolRound).length;
      const drop = Math.min(toolRounds, count(toolRounds));
      if (drop === 0) return null; // nothing left to discard: the head alone is over the limit
      let seen = 0;
      const kept: AgentMessage[] = [...head];
      const dropped: DroppedRecord[] = [];
      for (const r of rs) {
        if (r.isToolRound && seen < drop) {
          seen++;
          dropped.push(...r.messages.map(droppedRecord));
        } else kept.push(...r.messages);
      }
      return { messages: kept, dropped };
    },
  };
}

/** Paper: "discard the first 75% of tool-call history". At least one round, so it always makes progress. */
export const discard75: ContextStrategy = discardRounds('discard-75', (n) => Math.max(1, Math.floor(0.75 * n)));
export const discardAll: ContextStrategy = discardRounds('discard-all', (n) => n);

export const SUMMARY_REQUEST =
  'Your context is nearly full, so the conversation will be restarted from the task and your summary. ' +
  'Write a summary of your progress on the task so far: what you did, what you found (keep exact values, names, ' +
  'URLs and partial answers), what failed, and what remains to do. Do not call tools; reply with the summary only.';
export const SUMMARY_HEADER = 'Summary of your earlier progress on this task (earlier steps were removed to free context):';

/** Paper's "Summary": summarise the overflowed trajectory, then re-initiate the rollout from it. */
export const summaryStrategy: ContextStrategy = {
  name: 'summary',
  async compact({ messages, headLength: hl, client, counter, signal }) {
    const headLen = Math.min(hl ?? headLength(messages), messages.length);
    if (headLen === messages.length) return null;
    const req: AgentMessage[] = [...messages, { role: 'user', content: SUMMARY_REQUEST }];
    const prompt = counter.count(client.promptText(req, []));
    const res = await client.complete({ messages: req, tools: [], signal });
    const summary = (res.message.content ?? '').trim() || (res.message.reasoning_content ?? '').trim();
    if (!summary) return null;
    const m = res.message;
    const completion = counter.count((m.reasoning_content ?? '') + (m.content ?? ''));
    return {
      messages: [...messages.slice(0, headLen), { role: 'user', content: `${SUMMARY_HEADER}\n\n${summary}` }],
      dropped: messages.slice(headLen).map(droppedRecord),
      summary,
      summaryTokens: { prompt, completion, exact: counter.exact, ...(res.usage ? { server: res.usage } : {}) },
    };
  },
};

/** Parallel-fewest-step abandons an overflowing trajectory; the selection happens across trajectories. */
export const abandonStrategy: ContextStrategy = {
  name: 'parallel-fewest-step',
  async compact() {
    return null;
  },
};

export function contextStrategy(name: string): ContextStrategy {
  switch (name) {
    case 'summary':
      return summaryStrategy;
    case 'discard-75':
      return discard75;
    case 'discard-all':
      return discardAll;
    case 'parallel-fewest-step':
      return abandonStrategy;
    default:
      throw new ContextConfigError(`--context-strategy ${JSON.stringify(name)}: expected one of ${CONTEXT_STRATEGIES.join(', ')}`);
  }
}
