// A scripted stand-in for a model, speaking the OpenAI HTTP API on 127.0.0.1: `/v1/chat/completions`
// (JSON or SSE streaming, with reasoning_content and tool-call deltas split into small pieces) and
// `/v1/completions` (raw text). Each request gets the next scripted reply (or the reply a function
// computes from the request); every request body is recorded for assertions. A reply can also fail
// (status, Retry-After) or stall mid-stream; startSilentServer accepts connections and never answers.
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { type AddressInfo, type Socket, createServer as createNetServer } from 'node:net';

export interface ScriptedToolCall {
  id?: string;
  name: string;
  arguments: string;
}

export interface ScriptedReply {
  content?: string;
  reasoning_content?: string;
  tool_calls?: ScriptedToolCall[];
  /** `/v1/completions`: the completion text. */
  text?: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
  finish_reason?: string;
  /** Answer with this HTTP status and `{error: {message}}` instead. */
  status?: number;
  error?: string;
  /** Wait this long before answering (for cancellation tests). */
  delayMs?: number;
  /** Extra response headers (e.g. Retry-After on a 429). */
  headers?: Record<string, string>;
  /** Streamed chat: send the headers and this many events, then go silent with the response open. */
  stallAfterEvents?: number;
}

export interface RecordedRequest {
  path: string;
  body: Record<string, any>;
  headers: IncomingMessage['headers'];
}

export type Script = ScriptedReply[] | ((req: RecordedRequest, index: number) => ScriptedReply | Promise<ScriptedReply>);

export interface FakeModelServer {
  /** Base URL with the `/v1` prefix. */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Splits `s` into pieces of `n` code points, so multi-byte characters stay whole per SSE event. */
function pieces(s: string, n: number): string[] {
  const cps = [...s];
  const out: string[] = [];
  for (let i = 0; i < cps.length; i += n) out.push(cps.slice(i, i + n).join(''));
  return out;
}

function sse(res: ServerResponse, obj: unknown): void {
  res.write(`data: ${JSON.stringify(obj)}\n\n`);
}

function sendChat(res: ServerResponse, req: RecordedRequest, r: ScriptedReply, index: number): void {
  const calls = (r.tool_calls ?? []).map((c, i) => ({ id: c.id ?? `call_fake_${index}_${i}`, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  const finish = r.finish_reason ?? (calls.length ? 'tool_calls' : 'stop');
  const model = req.body.model ?? 'fake';
  if (!req.body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: `chatcmpl-${index}`,
        object: 'chat.completion',
        model,
        choices: [{ index: 0, finish_reason: finish, message: { role: 'assistant', content: r.content ?? null, reasoning_content: r.reasoning_content ?? null, ...(calls.length ? { tool_calls: calls } : {}) } }],
        ...(r.usage ? { usage: r.usage } : {}),
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const base = { id: `chatcmpl-${index}`, object: 'chat.completion.chunk', model };
  res.write(': keep-alive comment, ignored by clients\n\n');
  if (r.stallAfterEvents !== undefined) {
    const events = [
      { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
      ...pieces(r.content ?? '', 3).map((p) => ({ ...base, choices: [{ index: 0, delta: { content: p }, finish_reason: null }] })),
    ];
    for (const e of events.slice(0, r.stallAfterEvents)) sse(res, e);
    return;
  }
  sse(res, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  for (const p of pieces(r.reasoning_content ?? '', 3)) sse(res, { ...base, choices: [{ index: 0, delta: { reasoning_content: p }, finish_reason: null }] });
  for (const p of pieces(r.content ?? '', 3)) sse(res, { ...base, choices: [{ index: 0, delta: { content: p }, finish_reason: null }] });
  calls.forEach((c, i) => {
    sse(res, { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: i, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] }, finish_reason: null }] });
    for (const p of pieces(c.function.arguments, 4)) sse(res, { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: i, function: { arguments: p } }] }, finish_reason: null }] });
  });
  sse(res, { ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  if (r.usage) sse(res, { ...base, choices: [], usage: r.usage });
  res.end('data: [DONE]\n\n');
}

function sendCompletion(res: ServerResponse, req: RecordedRequest, r: ScriptedReply, index: number): void {
  const text = r.text ?? '';
  const finish = r.finish_reason ?? 'stop';
  if (!req.body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: `cmpl-${index}`, object: 'text_completion', choices: [{ index: 0, text, finish_reason: finish }], ...(r.usage ? { usage: r.usage } : {}) }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const p of pieces(text, 2)) sse(res, { id: `cmpl-${index}`, object: 'text_completion', choices: [{ index: 0, text: p, finish_reason: null }] });
  sse(res, { id: `cmpl-${index}`, choices: [{ index: 0, text: '', finish_reason: finish }], ...(r.usage ? { usage: r.usage } : {}) });
  res.end('data: [DONE]\n\n');
}

export async function startFakeModelServer(script: Script): Promise<FakeModelServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const path = (req.url ?? '').split('?')[0]!;
      let body: Record<string, any>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'body is not JSON' } }));
        return;
      }
      const rec: RecordedRequest = { path, body, headers: req.headers };
      const index = requests.length;
      requests.push(rec);
      const reply = typeof script === 'function' ? await script(rec, index) : script[index];
      if (!reply) {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `fake model: script has no reply #${index}` } }));
        return;
      }
      if (reply.delayMs) {
        // Wait, but stop waiting when the client goes away so no timer outlives the test.
        await new Promise<void>((r) => {
          const timer = setTimeout(r, reply.delayMs);
          res.once('close', () => {
            clearTimeout(timer);
            r();
          });
        });
      }
      if (res.destroyed || req.socket.destroyed) return;
      if (reply.status) {
        res.writeHead(reply.status, { 'content-type': 'application/json', ...(reply.headers ?? {}) }).end(JSON.stringify({ error: { message: reply.error ?? 'scripted error' } }));
        return;
      }
      if (path === '/v1/chat/completions') sendChat(res, rec, reply, index);
      else if (path === '/v1/completions') sendCompletion(res, rec, reply, index);
      else res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface SilentServer {
  /** Base URL with the `/v1` prefix. */
  url: string;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that accepts every connection and never sends a byte. */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createNetServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    connections: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
