// `dsv32 agent`: run the agent loop against an OpenAI-compatible chat endpoint (or a raw completion
// endpoint through our encoder/parser), with local MCP servers as tool sources, streaming each step to
// the terminal. The final answer goes to stdout; steps, notices and errors go to stderr.
import { Command, Option } from 'commander';
import { intArg, fractionArg, jsonObjectArg } from './args.js';
import { maxRetriesOption, requestTimeoutOption, requestPolicy, type RequestCliOptions } from './http-options.js';
import { DsvError } from '../errors.js';
import { tokenCounterFor } from '../chat/tokenizer.js';
import { CompletionClient } from '../agent/completion-client.js';
import { CONTEXT_STRATEGIES, type ContextOptions } from '../agent/context.js';
import { type AgentResult, runAgent } from '../agent/loop.js';
import { type McpConnection, connectMcp, parseMcpSpec } from '../agent/mcp.js';
import type { ModelClient } from '../agent/messages.js';
import { OpenAIChatClient } from '../agent/openai-client.js';
import { runParallelFewestStep } from '../agent/parallel.js';
import { TerminalRenderer } from '../agent/terminal.js';
import { ToolBox } from '../agent/tools.js';
import { Transcript } from '../agent/transcript.js';




interface AgentCliOptions extends RequestCliOptions {
  baseUrl: string;
  model: string;
  apiKey?: string;
  endpoint: 'chat' | 'completion';
  mode: 'thinking' | 'chat';
  stream: boolean;
  mcp: string[];
  contextStrategy?: string;
  contextWindow: number;
  contextThreshold: number;
  parallel: number;
  tokenizer?: string;
  maxSteps: number;
  system?: string;
  transcript?: string;
  toolTimeout?: number;
  extraBody?: Record<string, unknown>;
  color?: boolean;
}

export function register(program: Command): void {
  program
    .command('agent')
    .description('run the agent loop on a task against a model endpoint, with MCP servers as tools')
    .argument('<task>', 'the task for the agent')
    .requiredOption('--base-url <url>', 'model endpoint base URL including /v1, e.g. http://127.0.0.1:8000/v1')
    .requiredOption('--model <name>', 'model name sent to the endpoint')
    .option('--api-key <key>', 'bearer token (default: $DSV32_API_KEY)')
    .addOption(new Option('--endpoint <kind>', 'chat: /chat/completions; completion: /completions through our encoder and parser').choices(['chat', 'completion']).default('chat'))
    .addOption(new Option('--mode <mode>', 'thinking or chat mode (prompt rendering and token counting)').choices(['thinking', 'chat']).default('thinking'))
    .option('--no-stream', 'do not stream responses')
    .option('--mcp <cmd>', 'MCP server: a command line (stdio) or an http(s) URL (Streamable HTTP); repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addOption(new Option('--context-strategy <name>', 'context management when the context passes the threshold').choices([...CONTEXT_STRATEGIES]))
    .option('--context-window <tokens>', 'model context window in tokens', intArg('--context-window', 1), 131072)
    .option('--context-threshold <fraction>', 'fraction of the window at which the strategy fires', fractionArg, 0.8)
    .option('--parallel <n>', 'trajectories for parallel-fewest-step', intArg('--parallel', 1), 4)
    .option('--tokenizer <path>', 'tokenizer.json or model directory for exact token counts (default: approximate)')
    .option('--max-steps <n>', 'model calls at most', intArg('--max-steps', 1), 20)
    .option('--system <text>', 'system prompt')
    .option('--transcript <file>', 'write the JSONL transcript of every step here')
    .option('--tool-timeout <ms>', 'per tool call time limit', intArg('--tool-timeout', 1))
    .option('--extra-body <json>', 'extra request fields as a JSON object, e.g. \'{"thinking":{"type":"enabled"}}\'', jsonObjectArg)
    .option('--color', 'force ANSI styling (default: when stderr is a terminal)')
    .addOption(requestTimeoutOption())
    .addOption(maxRetriesOption())
    .action(async (task: string, opts: AgentCliOptions) => {
      process.exitCode = await agentCommand(task, opts);
    });
}

async function agentCommand(task: string, opts: AgentCliOptions): Promise<number> {
  const err = process.stderr;
  const counter = tokenCounterFor(opts.tokenizer);
  if (!counter.exact) err.write(`note: token counts are ${counter.description}\n`);
  const apiKey = opts.apiKey ?? process.env.DSV32_API_KEY;
  const common = { baseUrl: opts.baseUrl, model: opts.model, mode: opts.mode, stream: opts.stream, apiKey, extraBody: opts.extraBody, ...requestPolicy(opts) };
  const client: ModelClient = opts.endpoint === 'completion' ? new CompletionClient(common) : new OpenAIChatClient(common);
  const context: ContextOptions | undefined = opts.contextStrategy
    ? { strategy: opts.contextStrategy as ContextOptions['strategy'], windowTokens: opts.contextWindow, threshold: opts.contextThreshold }
    : undefined;

  const connections: McpConnection[] = [];
  const ctl = new AbortController();
  const onSigint = () => {
    err.write('\ninterrupted: cancelling the run\n');
    ctl.abort(new DsvError('interrupted'));
  };
  process.once('SIGINT', onSigint);
  const transcript = new Transcript(opts.transcript);
  try {
    const toolbox = new ToolBox([], { timeoutMs: opts.toolTimeout });
    for (const spec of opts.mcp) {
      const conn = await connectMcp(parseMcpSpec(spec));
      connections.push(conn);
      for (const t of conn.tools) toolbox.add(t);
      for (const w of conn.warnings) err.write(`warning: ${w}\n`);
      err.write(`mcp: ${conn.name}: ${conn.tools.map((t) => t.name).join(', ') || '(no tools)'}\n`);
    }
    const renderer = new TerminalRenderer(err, { color: opts.color ?? err.isTTY });
    const base = {
      client,
      task,
      system: opts.system,
      tools: toolbox,
      maxSteps: opts.maxSteps,
      counter,
      context,
      transcript,
      signal: ctl.signal,
    };
    let result: AgentResult | null;
    if (opts.contextStrategy === 'parallel-fewest-step') {
      // N trajectories interleave, so only the chosen one's answer is shown, not their streams.
      err.write(`running ${opts.parallel} trajectories (parallel-fewest-step)\n`);
      const { chosen, runs } = await runParallelFewestStep(base, opts.parallel);
      for (const r of runs) err.write(`  ${r.run}: ${r.status} after ${r.steps} steps${r.run === chosen?.run ? ' (chosen)' : ''}\n`);
      result = chosen ?? runs[0] ?? null;
    } else {
      result = await runAgent({ ...base, hooks: renderer.hooks() });
    }
    if (!result) return 1;
    err.write(`\n[${result.status} after ${result.steps} steps; tokens prompt ${result.totalTokens.prompt}, completion ${result.totalTokens.completion}${counter.exact ? '' : ' (approximate)'}]\n`);
    if (result.status === 'final') {
      process.stdout.write((result.finalAnswer ?? '') + '\n');
      return 0;
    }
    if (result.error) err.write(`dsv32 agent: ${result.error}\n`);
    return result.status === 'aborted' ? 130 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    transcript.close();
    await Promise.all(connections.map((c) => c.close().catch(() => {})));
  }
}
