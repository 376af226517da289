// Public API of the OpenAI-compatible server (README.md in this folder documents the wire format).
export { createServer, type DsvServer, type ServerOptions, type WeightUpdate } from './app.js';
export { ApiError } from './errors.js';
export type { TextCodec } from './codec.js';
export type { RouteShape } from './token-data.js';
export { startGeneration, type ChoiceStep } from './generation.js';
export { ChatOutput, type ChatDelta, type ChatResult } from './chat-output.js';
