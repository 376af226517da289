// The one HTTP POST both model clients make (OpenAI chat and raw completions): JSON body, bearer key,
// network failures and non-2xx answers turned into ModelClientError naming the URL and the server's text.
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

export interface PostOptions {
  apiKey?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** POST `body` as JSON; resolves with a 2xx response, else throws ModelClientError (an abort rethrows as is). */
export async function postJson(url: string, body: unknown, opts: PostOptions = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
        ...(opts.headers ?? {}),
      },
      body: JSON.stringify(body),
      signal: opts.signal,
    });
  } catch (e) {
    if (opts.signal?.aborted) throw e;
    const cause = (e as { cause?: Error }).cause;
    throw new ModelClientError(`POST ${url}: ${(e as Error).message}${cause ? ` (${cause.message})` : ''}`, undefined, { cause: e });
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    throw new ModelClientError(`POST ${url}: HTTP ${res.status}: ${serverErrorText(parsed).slice(0, 500)}`, res.status);
  }
  return res;
}

/** OpenAI-style `usage` → ours; undefined when the server sent none (or not both counts). */
export function usageOf(u: { prompt_tokens?: unknown; completion_tokens?: unknown } | undefined | null): ModelUsage | undefined {
  if (!u || typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number') return undefined;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
}

/** The JSON events of a streamed (SSE) answer up to `[DONE]`; a non-JSON event or an `error` event throws. */
export async function* jsonEvents<T extends { error?: unknown }>(res: Response, url: string, signal?: AbortSignal): AsyncGenerator<T> {
  if (!res.body) throw new ModelClientError(`POST ${url}: streamed response has no body`);
  for await (const data of readSse(res.body, signal)) {
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
