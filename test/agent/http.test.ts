// The model clients' HTTP behaviour when the server misbehaves: a server that never answers or stalls
// mid-stream is given up after the request timeout (not Node's 300 s), failures that may pass (connection
// errors, time-outs, 429, 5xx) are retried a bounded number of times, and the final error names the URL,
// what happened and how many tries were made. Timeouts are short here and the limits asserted wide.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { CompletionClient } from '../../src/agent/completion-client.js';
import { retryAfterMs } from '../../src/agent/http.js';
import { ModelClientError, type ModelDelta } from '../../src/agent/messages.js';
import { OpenAIChatClient } from '../../src/agent/openai-client.js';
import { startFakeModelServer, startSilentServer } from './fake-model-server.js';

const ask = { messages: [{ role: 'user' as const, content: 'hi' }], tools: [] };
const fast = { retryBackoffMs: 5 };

async function failure(p: Promise<unknown>): Promise<ModelClientError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ModelClientError, `a ModelClientError, got ${String(e)}`);
    return e;
  }
  assert.fail('the request succeeded');
}

for (const stream of [true, false]) {
  test(`a server that accepts and never answers fails after the request timeout, each try (${stream ? 'streaming' : 'not streaming'})`, async (t) => {
    const silent = await startSilentServer();
    t.after(() => silent.close());
    const client = new OpenAIChatClient({ baseUrl: silent.url, model: 'm', stream, requestTimeoutMs: 300, maxRetries: 2, ...fast });
    const t0 = Date.now();
    const e = await failure(client.complete(ask));
    const ms = Date.now() - t0;
    assert.equal(e.message, `POST ${silent.url}/chat/completions: no response within 300 ms (3 attempts)`);
    assert.equal(silent.connections(), 3);
    assert.ok(ms >= 800 && ms < 10_000, `took ${ms} ms`);
  });
}

test('the completion client has the same limit', async (t) => {
  const silent = await startSilentServer();
  t.after(() => silent.close());
  const e = await failure(new CompletionClient({ baseUrl: silent.url, model: 'm', requestTimeoutMs: 300, maxRetries: 0 }).complete(ask));
  assert.equal(e.message, `POST ${silent.url}/completions: no response within 300 ms`);
});

test('a stream that stalls after it started fails on the per-chunk timeout and is not retried', async (t) => {
  const server = await startFakeModelServer([{ content: 'hello world', stallAfterEvents: 2 }, { content: 'second try' }]);
  t.after(() => server.close());
  const deltas: ModelDelta[] = [];
  const client = new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: true, requestTimeoutMs: 300, ...fast });
  const t0 = Date.now();
  const e = await failure(client.complete({ ...ask, onDelta: (d) => deltas.push(d) }));
  const ms = Date.now() - t0;
  assert.equal(e.message, `POST ${server.url}/chat/completions: stream stalled: no data for 300 ms`);
  assert.deepEqual(deltas, [{ type: 'content', text: 'hel' }], 'the first chunk arrived before the stall');
  assert.equal(server.requests.length, 1);
  assert.ok(ms < 10_000, `took ${ms} ms`);
});

test('a slow stream whose chunks keep coming is not cut by the timeout', async (t) => {
  // Each chunk arrives within the limit though the whole answer takes several times longer.
  const srv = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const tick = setInterval(() => {
      if (i < 8) res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: String(i++) } }] })}\n\n`);
      else {
        clearInterval(tick);
        res.end('data: [DONE]\n\n');
      }
    }, 100);
    res.on('close', () => clearInterval(tick));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const { port } = srv.address() as { port: number };
  const r = await new OpenAIChatClient({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'm', stream: true, requestTimeoutMs: 400, maxRetries: 0 }).complete(ask);
  assert.equal(r.message.content, '01234567');
});

test('503 twice, then 200: succeeds on the third request', async (t) => {
  for (const stream of [true, false]) {
    const server = await startFakeModelServer([{ status: 503, error: 'overloaded' }, { status: 503, error: 'overloaded' }, { content: 'ok' }]);
    t.after(() => server.close());
    const r = await new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream, ...fast }).complete(ask);
    assert.equal(r.message.content, 'ok');
    assert.equal(server.requests.length, 3);
  }
});

test('5xx until the retries run out: the error says how many tries were made', async (t) => {
  const server = await startFakeModelServer(() => ({ status: 502, error: 'bad gateway' }));
  t.after(() => server.close());
  const e = await failure(new OpenAIChatClient({ baseUrl: server.url, model: 'm', maxRetries: 3, ...fast }).complete(ask));
  assert.equal(e.message, `POST ${server.url}/chat/completions: HTTP 502: bad gateway (4 attempts)`);
  assert.equal(e.status, 502);
  assert.equal(server.requests.length, 4);
});

test('429 is retried after what Retry-After says, capped by maxRetryWaitMs', { timeout: 30_000 }, async (t) => {
  const server = await startFakeModelServer([
    { status: 429, error: 'slow down', headers: { 'retry-after': '0' } },
    { status: 429, error: 'slow down', headers: { 'retry-after': '1' } },
    { content: 'done' },
  ]);
  t.after(() => server.close());
  // A backoff of 60 s would end the test by its timeout: the waits must come from Retry-After.
  const t0 = Date.now();
  const r = await new OpenAIChatClient({ baseUrl: server.url, model: 'm', retryBackoffMs: 60_000, maxRetryWaitMs: 60_000 }).complete(ask);
  const ms = Date.now() - t0;
  assert.equal(r.message.content, 'done');
  assert.equal(server.requests.length, 3);
  assert.ok(ms >= 900 && ms < 10_000, `Retry-After: 1 honoured (took ${ms} ms)`);

  const capped = await startFakeModelServer([{ status: 429, error: 'come back in an hour', headers: { 'retry-after': '3600' } }, { content: 'done' }]);
  t.after(() => capped.close());
  const t1 = Date.now();
  await new OpenAIChatClient({ baseUrl: capped.url, model: 'm', maxRetryWaitMs: 50 }).complete(ask);
  assert.ok(Date.now() - t1 < 10_000, `an hour's Retry-After was capped (took ${Date.now() - t1} ms)`);
  assert.equal(capped.requests.length, 2);
});

test('Retry-After: delay-seconds or an HTTP date', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  assert.equal(retryAfterMs('2', now), 2000);
  assert.equal(retryAfterMs(' 0 ', now), 0);
  assert.equal(retryAfterMs('Wed, 01 Jan 2025 00:00:30 GMT', now), 30_000);
  assert.equal(retryAfterMs('Tue, 31 Dec 2024 23:00:00 GMT', now), 0, 'a date in the past: retry now');
  assert.equal(retryAfterMs('soon', now), undefined);
  assert.equal(retryAfterMs(null, now), undefined);
});

test('other 4xx answers are not retried', async (t) => {
  for (const status of [400, 401, 404, 422]) {
    const server = await startFakeModelServer(() => ({ status, error: 'no' }));
    t.after(() => server.close());
    const e = await failure(new OpenAIChatClient({ baseUrl: server.url, model: 'm', ...fast }).complete(ask));
    assert.equal(e.message, `POST ${server.url}/chat/completions: HTTP ${status}: no`);
    assert.equal(server.requests.length, 1, `HTTP ${status} sent once`);
  }
});

test('connection refused is retried, then reported with the number of tries', async () => {
  const gone = await startFakeModelServer([]);
  await gone.close();
  const e = await failure(new OpenAIChatClient({ baseUrl: gone.url, model: 'm', maxRetries: 2, ...fast }).complete(ask));
  assert.match(e.message, /^POST http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions: connection failed: connect ECONNREFUSED 127\.0\.0\.1:\d+ \(3 attempts\)$/);
});

test('an abort during the backoff ends the request at once with the abort reason', async (t) => {
  const server = await startFakeModelServer(() => ({ status: 503, error: 'down' }));
  t.after(() => server.close());
  const ctl = new AbortController();
  setTimeout(() => ctl.abort(new Error('stop')), 200);
  const t0 = Date.now();
  await assert.rejects(new OpenAIChatClient({ baseUrl: server.url, model: 'm', retryBackoffMs: 60_000 }).complete({ ...ask, signal: ctl.signal }), /^Error: stop$/);
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(server.requests.length, 1);
});

test('bad retry settings are refused by name', () => {
  const mk = (o: object) => () => new OpenAIChatClient({ baseUrl: 'http://127.0.0.1:1/v1', model: 'm', ...o });
  assert.throws(mk({ requestTimeoutMs: 0 }), /--request-timeout must be an integer number of milliseconds from 1 to 2147483647, got 0/);
  assert.throws(mk({ requestTimeoutMs: 2 ** 31 }), /--request-timeout must be .* got 2147483648/);
  assert.throws(mk({ requestTimeoutMs: 1.5 }), /--request-timeout/);
  assert.throws(mk({ maxRetries: -1 }), /--max-retries must be an integer >= 0, got -1/);
  assert.throws(() => new CompletionClient({ baseUrl: 'ftp://h/v1', model: 'm' }), /--base-url "ftp:\/\/h\/v1": must be an http:\/\/ or https:\/\/ URL/);
});
