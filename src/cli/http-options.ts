// --request-timeout and --max-retries, shared by every command that builds a model client (agent, eval,
// synth), so each offers the same flags with the same checks and help text.
import { Option } from 'commander';
import { intArg } from './args.js';
import { DEFAULT_MAX_RETRIES, DEFAULT_RESPONSE_TIMEOUT_MS, DEFAULT_STREAM_TIMEOUT_MS, MAX_TIMER_MS, type RetryPolicy } from '../agent/http.js';

export interface RequestCliOptions {
  requestTimeout?: number;
  maxRetries: number;
}

export function requestTimeoutOption(): Option {
  return new Option(
    '--request-timeout <ms>',
    `longest silence of the model server: the wait for its answer, then for each next chunk (default ${DEFAULT_STREAM_TIMEOUT_MS} when streaming, ${DEFAULT_RESPONSE_TIMEOUT_MS} when not)`,
  ).argParser(intArg('--request-timeout', 1, MAX_TIMER_MS));
}

export function maxRetriesOption(): Option {
  return new Option('--max-retries <n>', 'retries of a model request after a connection error, time-out, HTTP 429 or 5xx, with backoff')
    .argParser(intArg('--max-retries', 0))
    .default(DEFAULT_MAX_RETRIES);
}

/** The client fields for the flags the user gave. */
export function requestPolicy(o: RequestCliOptions): RetryPolicy {
  return { ...(o.requestTimeout !== undefined ? { requestTimeoutMs: o.requestTimeout } : {}), maxRetries: o.maxRetries };
}
