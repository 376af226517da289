// One policy attempt at one task: the agent runtime drives a model over an Episode, with the
// environment's tools (submit tool included) offered as agent tools. The episode ends when the agent
// submits (the loop is stopped before the next model call) or stops on its own; the verifier then
// scores the submitted answer against the final state. In environments whose manifest sets
// `finalAnswer`, a final reply without a submit call is taken as the submission (Episode.submitFinalText). Used by evaluation and by the synthesis
// pipeline's pass@k filter.
import { runAgent } from '../../agent/loop.js';
import type { ModelClient } from '../../agent/messages.js';
import { OpenAIChatClient } from '../../agent/openai-client.js';
import { toolErrorResult, type AgentTool } from '../../agent/tools.js';
import { Episode } from '../episode.js';
import type { Environment } from '../load.js';

export interface ModelConfig {
  baseUrl: string;
  model: string;
  temperature?: number;
  /** Ask for thinking mode (true) or chat mode (false) with chat_template_kwargs.thinking; unset: the server's default. */
  thinking?: boolean;
  maxTokens?: number;
  stream?: boolean;
  /** The client's RetryPolicy fields (src/agent/http.ts); the client's defaults when absent. */
  requestTimeoutMs?: number;
  maxRetries?: number;
}

/** API keys never travel in job payloads: each process reads its own $DSV32_API_KEY. */
export function clientFor(m: ModelConfig): ModelClient {
  return new OpenAIChatClient({
    baseUrl: m.baseUrl,
    model: m.model,
    ...(process.env.DSV32_API_KEY ? { apiKey: process.env.DSV32_API_KEY } : {}),
    stream: m.stream ?? false,
    ...(m.temperature !== undefined ? { temperature: m.temperature } : {}),
    ...(m.thinking !== undefined ? { mode: m.thinking ? ('thinking' as const) : ('chat' as const), extraBody: { chat_template_kwargs: { thinking: m.thinking } } } : {}),
    ...(m.maxTokens !== undefined ? { maxTokens: m.maxTokens } : {}),
    ...(m.requestTimeoutMs !== undefined ? { requestTimeoutMs: m.requestTimeoutMs } : {}),
    ...(m.maxRetries !== undefined ? { maxRetries: m.maxRetries } : {}),
  });
}

export interface AttemptResult {
  score: number;
  reason: string;
  verifierError?: string;
  submitted: boolean;
  /** Agent loop status: final, max_steps, error, ... */
  status: string;
  agentError?: string;
  steps: number;
  toolCalls: number;
  tokens: { prompt: number; completion: number };
  durationMs: number;
}

export function policySystemPrompt(env: Environment): string {
  return (
    `You are an agent working in the "${env.manifest.id}" environment (${env.manifest.description}). ` +
    `Use the tools to gather what you need. When you have the answer, call ${env.manifest.submitTool} ` +
    'exactly once with it; that ends the task.' +
    (env.manifest.finalAnswer === 'last-integer' ? ' You may instead end with a reply: its last integer is taken as your answer.' : '')
  );
}

/** Environment tools as agent tools bound to one episode. */
export function episodeTools(ep: Episode): AgentTool[] {
  return ep.tools().map((info) => {
    const loaded = ep.env.tools.get(info.name)!;
    return {
      name: info.name,
      description: info.description,
      parameters: info.parameters,
      source: `env:${ep.env.manifest.id}`,
      validate(args: unknown) {
        if (loaded.validateArgs(args ?? {})) return { ok: true as const, value: args ?? {} };
        const errs = (loaded.validateArgs.errors ?? []).map((e) => `- ${e.instancePath || '(arguments)'} ${e.message}`).join('\n');
        return { ok: false as const, error: errs };
      },
      async run(args: unknown) {
        const r = await ep.callTool(info.name, args);
        if (!r.ok) return toolErrorResult('tool_exception', r.error ?? `tool ${info.name} failed`);
        return { content: JSON.stringify(r.result), ok: true };
      },
    };
  });
}

export async function runPolicyAttempt(
  env: Environment,
  taskId: string,
  client: ModelClient,
  opts: { maxSteps?: number; signal?: AbortSignal; runId?: string } = {},
): Promise<AttemptResult> {
  const t0 = performance.now();
  const ep = Episode.open(env, taskId);
  try {
    const res = await runAgent({
      client,
      system: policySystemPrompt(env),
      task: ep.task!.prompt,
      tools: episodeTools(ep),
      maxSteps: opts.maxSteps ?? 30,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.runId ? { runId: opts.runId } : {}),
      hooks: { beforeStep: () => (ep.submitted ? { stop: true } : undefined) },
    });
    await ep.submitFinalText(res.finalAnswer); // only for manifests with finalAnswer
    const verdict = await ep.verify();
    return {
      score: verdict.score,
      reason: verdict.reason,
      ...(verdict.error ? { verifierError: verdict.error } : {}),
      submitted: ep.submitted,
      status: res.status,
      ...(res.error ? { agentError: res.error } : {}),
      steps: res.steps,
      toolCalls: ep.trace.length,
      tokens: res.totalTokens,
      durationMs: Math.round(performance.now() - t0),
    };
  } finally {
    ep.close();
  }
}
