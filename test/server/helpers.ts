// Shared setup of the server tests: the real tokenizer (loaded once), a server on an ephemeral port
// around any Engine, and raw HTTP helpers for what the openai client hides (status codes, SSE frames).
import { loadDeepSeekV32Tokenizer, type DeepSeekTokenizer } from '../../src/chat/tokenizer.js';
import type { Engine } from '../../src/engine/types.js';
import { createServer, type DsvServer, type ServerOptions } from '../../src/server/index.js';

let tok: DeepSeekTokenizer | undefined;
export function tokenizer(): DeepSeekTokenizer {
  tok ??= loadDeepSeekV32Tokenizer();
  return tok;
}

export interface Running {
  server: DsvServer;
  url: string;
  close(): Promise<void>;
}

export async function serve(engine: Engine, opts: Partial<ServerOptions> = {}): Promise<Running> {
  const server = createServer({ engine, codec: tokenizer(), servedModelName: 'dsv32-test', ...opts });
  const url = await server.listen(0, '127.0.0.1');
  return { server, url, close: () => server.app.close() };
}

/** POST `body`: JSON unless it is a string or bytes, which go as they are. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; text: string }> {
  const payload = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** The JSON payloads of an SSE response ([DONE] excluded), and whether [DONE] ended it. */
export async function sse(url: string, body: unknown): Promise<{ status: number; events: any[]; done: boolean }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  const events: any[] = [];
  let done = false;
  for (const frame of text.split('\n\n')) {
    const line = frame.trim();
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6);
    if (data === '[DONE]') done = true;
    else events.push(JSON.parse(data));
  }
  return { status: res.status, events, done };
}
