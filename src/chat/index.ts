// Public API of the DeepSeek-V3.2 chat format: prompt encoder, completion parsers, Python-compatible JSON.
export { encodeMessages, renderTools, renderToolCall, type EncodeOptions } from './encode.js';
export { parseCompletion, parseCompletionChecked, type StrictResult } from './parse-strict.js';
export type { ParseWarning } from './dsml.js';
export { parseCompletionLenient, type LenientOptions, type LenientResult, type ToolCallIssue } from './parse-lenient.js';
export { CompletionStreamParser, type StreamEvent } from './parse-stream.js';
export {
  chatMessageSchema,
  contentText,
  type AssistantMessage,
  type ChatMessage,
  type DeveloperMessage,
  type MessageContent,
  type ParsedMessage,
  type ParsedToolCall,
  type SystemMessage,
  type TextPart,
  type ThinkingMode,
  type ToolCallInput,
  type ToolDefinition,
  type ToolMessage,
  type UserMessage,
} from './message.js';
export { ChatEncodeError, ChatParseError, type EncodeRule, type ParseRule } from './errors.js';
export { PyFloat, pyFloat, pyFloatRepr, pyJsonDumps, pyJsonLoads, pyJsonString, PyJsonError, type PyJson, type PyJsonObject } from './pyjson.js';
export { loadConversation, loadTools, ConversationFileError } from './load.js';
export * as tokens from './tokens.js';
export { DeepSeekTokenizer, loadTokenizer, loadDeepSeekV32Tokenizer, TokenizerLoadError, type TokenCounter } from './tokenizer.js';
