// Public API of the agent runtime.
export { runAgent, type AgentOptions, type AgentResult, type AgentStatus, type AgentHooks, type StepInfo, type StepRecord } from './loop.js';
export { runParallelFewestStep, type ParallelResult } from './parallel.js';
export {
  CONTEXT_STRATEGIES,
  contextStrategy,
  contextLimit,
  discard75,
  discardAll,
  summaryStrategy,
  abandonStrategy,
  ContextConfigError,
  SUMMARY_HEADER,
  SUMMARY_REQUEST,
  type ContextOptions,
  type ContextStrategy,
  type ContextStrategyName,
  type Compaction,
  type CompactionInput,
} from './context.js';
export {
  defineTool,
  ToolBox,
  toolErrorResult,
  zodToParameters,
  TOOL_ERROR_MARK,
  ToolDefinitionError,
  type AgentTool,
  type ToolResult,
  type ToolErrorKind,
  type ToolContext,
  type LocalToolSpec,
} from './tools.js';
export { connectMcp, parseMcpSpec, McpConnectError, type McpConnection, type McpServerSpec, type McpConnectOptions } from './mcp.js';
export { OpenAIChatClient, toWireMessages, type OpenAIChatClientOptions } from './openai-client.js';
export { CompletionClient, type CompletionClientOptions } from './completion-client.js';
export {
  applyReasoningRetention,
  newToolCallId,
  ModelClientError,
  type AgentMessage,
  type AgentAssistantMessage,
  type AgentToolCall,
  type ModelClient,
  type ModelDelta,
  type ModelRequest,
  type ModelResponse,
  type ModelUsage,
} from './messages.js';
export { Transcript, type TranscriptEvent, type TimedEvent, type TokenCounts, type DroppedRecord, type ToolResultRecord } from './transcript.js';
export { TerminalRenderer, type TerminalOptions } from './terminal.js';
export { deepseekPrompt, withToolsOnSystem } from './prompt.js';
