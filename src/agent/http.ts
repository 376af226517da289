// The one HTTP POST both model clients make (OpenAI chat and raw completions): JSON body, bearer key,
// a time limit on every silence of the server, bounded retries with backoff, and failures turned into
// ModelClientError naming the URL, what happened and how many tries were made.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ModelClientError, type ModelUsage } from './messages.js';
import { readSse } from './sse.js';

/** The server's error text from an OpenAI-style body `{error: string | {message}}`, else the body itself. */
export function serverErrorText(body: unknown): string {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const e = (body as { error?: unknown }).error;
    if (typeof e === 'string') return e;
    const m = (e as { message?: unknown } | null)?.message;
    return typeof m === 'string' ? m : JSON.stringify(e);
  }
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/**
 * Longest silence allowed on a streamed answer: before the response starts and between two chunks.
 * A live server streams a token every few tens of ms (and prefill of a long prompt takes seconds), so a
 * minute of nothing means it is stuck.
 */
export const DEFAULT_STREAM_TIMEOUT_MS = 60_000;
/**
 * Longest wait for a non-streamed answer to start. The server sends it only once the whole completion is
 * generated, which takes minutes for long reasoning; 300 s is also what Node's fetch allowed before
 * this client had its own limit, so generations that worked then still do.
 */
export const DEFAULT_RESPONSE_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_RETRIES = 2;
const DEFAULT_RETRY_BACKOFF_MS = 1000;
const DEFAULT_MAX_RETRY_WAIT_MS = 30_000;
/** setTimeout fires at once for longer delays, so no time limit may exceed it. */
export const MAX_TIMER_MS = 2_147_483_647;

/** How a model client waits and retries; the CLI's --request-timeout and --max-retries. */
export interface RetryPolicy {
  /**
   * Milliseconds of silence from the server before the try is given up: the wait for the response
   * and, while reading it, for each next chunk (never the whole answer). Default DEFAULT_STREAM_TIMEOUT_MS
   * when streaming, else DEFAULT_RESPONSE_TIMEOUT_MS.
   */
  requestTimeoutMs?: number;
  /** Further tries after a connection error, a time-out, HTTP 429 or 5xx (default DEFAULT_MAX_RETRIES). */
  maxRetries?: number;
  /** Wait before the first retry, doubled for each next one (default 1000; tests make it short). */
  retryBackoffMs?: number;
  /** Longest wait between tries, a server's Retry-After included (default 30000). */
  maxRetryWaitMs?: number;
}

/** Checks a policy given to a client constructor; messages name the CLI flag. */
export function checkRetryPolicy(p: RetryPolicy): void {
  const bad = (flag: string, v: unknown, want: string) => new ModelClientError(`${flag} must be ${want}, got ${JSON.stringify(v)}`);
  if (p.requestTimeoutMs !== undefined && !(Number.isInteger(p.requestTimeoutMs) && p.requestTimeoutMs >= 1 && p.requestTimeoutMs <= MAX_TIMER_MS)) {
    throw bad('--request-timeout', p.requestTimeoutMs, `an integer number of milliseconds from 1 to ${MAX_TIMER_MS}`);
  }
  if (p.maxRetries !== undefined && !(Number.isInteger(p.maxRetries) && p.maxRetries >= 0)) throw bad('--max-retries', p.maxRetries, 'an integer >= 0');
  for (const [k, v] of [['retryBackoffMs', p.retryBackoffMs], ['maxRetryWaitMs', p.maxRetryWaitMs]] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= MAX_TIMER_MS)) throw bad(k, v, `an integer number of milliseconds from 0 to ${MAX_TIMER_MS}`);
  }
}

/** Just the policy fields of a client's options (which hold other things besides). */
export function retryPolicyOf(o: RetryPolicy): RetryPolicy {
  const { requestTimeoutMs, maxRetries, retryBackoffMs, maxRetryWaitMs } = o;
  return {
    ...(requestTimeoutMs !== undefined ? { requestTimeoutMs } : {}),
    ...(maxRetries !== undefined ? { maxRetries } : {}),
    ...(retryBackoffMs !== undefined ? { retryBackoffMs } : {}),
    ...(maxRetryWaitMs !== undefined ? { maxRetryWaitMs } : {}),
  };
}

export interface PostOptions extends RetryPolicy {
  apiKey?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /**
   * A streamed answer is handed over as soon as it starts, and never retried after that (its chunks
   * may already be shown). Otherwise the whole body is read within the try, so a stall or a reset
   * mid-body is retried like a failure before the answer.
   */
  stream?: boolean;
}

/** The server went quiet for longer than the request timeout (before the answer, or between chunks). */
class SilenceError extends Error {}

/** Milliseconds a `Retry-After` value asks for (delay-seconds or an HTTP date); undefined if unreadable. */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * One try over node:http(s) rather than fetch, whose own fixed 300 s header and body limits would
 * override a longer --request-timeout. Resolves with the response as soon as its headers arrive; an
 * idle timer, re-armed by every chunk, destroys the request (or the body) after `timeoutMs` of silence.
 */
/** A request body: text, or bytes in pieces (sent one after another, never joined into one buffer). */
export type Payload = string | readonly Uint8Array[];

function send(url: URL, payload: Payload, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal): Promise<Response> {
  return new Promise((resolve, reject) => {
    const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.reduce((a, p) => a + p.byteLength, 0);
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(length) },
      ...(signal ? { signal } : {}),
    });
    let timer: NodeJS.Timeout | undefined;
    const arm = (onSilence: () => void) => {
      clearTimeout(timer);
      // Unref'd: the socket keeps the process alive while it matters, a stray timer never should.
      timer = setTimeout(onSilence, timeoutMs).unref();
    };
    arm(() => req.destroy(new SilenceError(`no response within ${timeoutMs} ms`)));
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.once('response', (res) => {
      const stall = () => res.destroy(new SilenceError(`no data for ${timeoutMs} ms`));
      arm(stall);
      res.once('close', () => clearTimeout(timer));
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 599) {
        res.destroy();
        reject(new Error(`unexpected HTTP status ${status}`));
        return;
      }
      const h = new Headers();
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        try {
          h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        } catch {
          /* a header the Fetch API rejects is one we never read */
        }
      }
      const noBody = status === 204 || status === 205 || status === 304;
      const body = noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
      if (noBody) res.resume();
      else res.on('data', () => arm(stall));
      resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: h }));
    });
    if (typeof payload === 'string') req.end(payload);
    else {
      for (const p of payload) req.write(p);
      req.end();
    }
  });
}

/** What went wrong in one try, and whether another try may help. */
interface Failure {
  what: string;
  retry: boolean;
  status?: number;
  retryAfterMs?: number;
  cause?: unknown;
}

function networkFailure(e: unknown): Failure {
  const err = e as NodeJS.ErrnoException;
  if (e instanceof SilenceError) return { what: e.message, retry: true, cause: e };
  // A bad host name or a Node API misuse (ERR_*) will fail the same way again.
  const retry = err?.code !== 'ENOTFOUND' && !String(err?.code ?? '').startsWith('ERR_');
  return { what: `connection failed: ${err?.message ?? String(e)}`, retry, cause: e };
}

async function httpFailure(res: Response): Promise<Failure> {
  const text = await res.text().catch(() => '');
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  const status = res.status;
  const retry = status === 429 || status >= 500;
  const after = status === 429 || status === 503 ? retryAfterMs(res.headers.get('retry-after')) : undefined;
  return { what: `HTTP ${status}: ${serverErrorText(parsed).slice(0, 500)}`, retry, status, ...(after !== undefined ? { retryAfterMs: after } : {}) };
}

/**
 * POST `body` as JSON; resolves with a 2xx response, else throws ModelClientError naming the URL, what
 * happened and how many tries were made. Connection errors, silences, 429 and 5xx are retried with
 * exponential backoff (429/503 wait what Retry-After says, capped); other answers are not. An abort
 * rethrows the signal's reason.
 */
export async function postJson(url: string, body: unknown, opts: PostOptions = {}): Promise<Response> {
  return postBody(url, JSON.stringify(body), 'application/json', opts);
}

/** postJson's tries, retries and errors for any body: `payload` sent as `contentType`. */
export async function postBody(url: string, payload: Payload, contentType: string, opts: PostOptions = {}): Promise<Response> {
  checkRetryPolicy(opts);
  const stream = opts.stream ?? false;
  const timeoutMs = opts.requestTimeoutMs ?? (stream ? DEFAULT_STREAM_TIMEOUT_MS : DEFAULT_RESPONSE_TIMEOUT_MS);
  const maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
  const backoff = opts.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  const maxWait = opts.maxRetryWaitMs ?? DEFAULT_MAX_RETRY_WAIT_MS;
  const target = new URL(url);
  const headers = {
    'content-type': contentType,
    ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
    ...(opts.headers ?? {}),
  };
  for (let attempt = 1; ; attempt++) {
    let failure: Failure;
    try {
      const res = await send(target, payload, headers, timeoutMs, opts.signal);
      if (res.ok) {
        if (stream) return res;
        // Read whole here, so a body that stalls or breaks off counts as a failed try.
        const whole = await res.arrayBuffer();
        return new Response(whole, { status: res.status, statusText: res.statusText, headers: res.headers });
      }
      failure = await httpFailure(res);
    } catch (e) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? e;
      failure = networkFailure(e);
    }
    if (!failure.retry || attempt > maxRetries) {
      const tries = attempt > 1 ? ` (${attempt} attempts)` : '';
      throw new ModelClientError(`POST ${url}: ${failure.what}${tries}`, failure.status, failure.cause !== undefined ? { cause: failure.cause } : undefined);
    }
    // Half fixed, half random, so clients that failed together do not all come back together.
    const exp = Math.min(maxWait, backoff * 2 ** (attempt - 1));
    const wait = failure.retryAfterMs !== undefined ? Math.min(maxWait, failure.retryAfterMs) : Math.round(exp / 2 + (Math.random() * exp) / 2);
    try {
      await sleep(wait, undefined, opts.signal ? { signal: opts.signal } : {});
    } catch (e) {
      throw opts.signal?.reason ?? e;
    }
  }
}

/** OpenAI-style `usage` → ours; undefined when the server sent none (or not both counts). */
export function usageOf(u: { prompt_tokens?: unknown; completion_tokens?: unknown } | undefined | null): ModelUsage | undefined {
  if (!u || typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number') return undefined;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
}

/** The JSON events of a streamed (SSE) answer up to `[DONE]`; a non-JSON event or an `error` event throws. */
export async function* jsonEvents<T extends { error?: unknown }>(res: Response, url: string, signal?: AbortSignal): AsyncGenerator<T> {
  if (!res.body) throw new ModelClientError(`POST ${url}: streamed response has no body`);
  const body = res.body;
  const events = readSse(body, signal);
  try {
    yield* chunksOf<T>(events, url, signal);
  } finally {
    await events.return(undefined);
    // An answer left unread (the caller stopped early) must not hold its socket and idle timer.
    await body.cancel().catch(() => {});
  }
}

async function* chunksOf<T extends { error?: unknown }>(events: AsyncGenerator<string>, url: string, signal?: AbortSignal): AsyncGenerator<T> {
  for (;;) {
    let next: IteratorResult<string>;
    try {
      next = await events.next();
    } catch (e) {
      if (signal?.aborted || e instanceof ModelClientError) throw e;
      // Not retried: the caller may already have shown what the stream gave so far.
      const why = e instanceof SilenceError ? `stream stalled: ${e.message}` : `stream broke off: ${(e as Error)?.message ?? String(e)}`;
      throw new ModelClientError(`POST ${url}: ${why}`, undefined, { cause: e });
    }
    if (next.done) return;
    const data = next.value;
    if (data === '[DONE]') return;
    let chunk: T;
    try {
      chunk = JSON.parse(data) as T;
    } catch {
      throw new ModelClientError(`POST ${url}: stream event is not JSON: ${data.slice(0, 200)}`);
    }
    if (chunk.error) throw new ModelClientError(`POST ${url}: error in stream: ${serverErrorText(chunk).slice(0, 500)}`);
    yield chunk;
  }
}
