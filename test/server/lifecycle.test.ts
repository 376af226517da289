// Lifecycle: a client that disconnects aborts its sequence in the engine (streamed and not); drain()
// (what SIGTERM calls) refuses new requests, lets in-flight streams finish complete, then drains and
// closes the engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScriptedEngine } from './scripted-engine.js';
import { post, serve, sse, tokenizer } from './helpers.js';

const long = 'word '.repeat(400);
const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('a streaming client that disconnects aborts its request in the engine', async () => {
  const engine = new ScriptedEngine({ tokenizer: tokenizer(), script: () => long, delayMs: 5 });
  const s = await serve(engine);
  try {
    const ctl = new AbortController();
    const res = await fetch(s.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'go' }], stream: true, max_tokens: 1000 }), signal: ctl.signal });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    ctl.abort();
    await until(() => engine.aborted.length === 1 && engine.stats().running === 0);
    assert.equal(engine.finished.length, 0);
  } finally {
    await s.close();
  }
});

test('a non-streaming client that disconnects aborts its request in the engine', async () => {
  const engine = new ScriptedEngine({ tokenizer: tokenizer(), script: () => long, delayMs: 5 });
  const s = await serve(engine);
  try {
    const ctl = new AbortController();
    const pending = fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'go', max_tokens: 1000 }), signal: ctl.signal }).catch((e: Error) => e);
    await until(() => engine.stats().running === 1);
    ctl.abort();
    assert.ok((await pending) instanceof Error);
    await until(() => engine.aborted.length === 1);
    assert.equal(engine.finished.length, 0);
  } finally {
    await s.close();
  }
});

test('drain: new requests are refused, in-flight streams complete with [DONE], then the engine is drained and closed', async () => {
  const engine = new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'one two three four five six seven eight nine ten', delayMs: 20 });
  const s = await serve(engine);
  const inflight = [sse(s.url + '/v1/completions', { prompt: 'a', stream: true, max_tokens: 100 }), sse(s.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'b' }], stream: true })];
  await until(() => engine.stats().running === 2);
  let closed = false;
  const origClose = engine.close.bind(engine);
  engine.close = () => {
    closed = true;
    origClose();
  };
  const drained = s.server.drain();
  const refused = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"c"}' }).then(
    async (r) => `${r.status} ${((await r.json()) as { error: { code: string } }).error.code}`,
    () => 'connection refused',
  );
  assert.ok(refused === '503 draining' || refused === 'connection refused', refused);
  const [a, b] = await Promise.all(inflight);
  assert.ok(a.done && b.done);
  assert.equal(a.events.map((e) => e.choices[0]?.text ?? '').join(''), 'one two three four five six seven eight nine ten');
  assert.equal(b.events.at(-1).choices[0].finish_reason, 'stop');
  await drained;
  assert.ok(closed);
  assert.equal(engine.finished.length, 2);
});

test('an engine fault in one prompt of a batch: a 500 with error JSON, the other prompt aborted, the server still serves', async () => {
  const engine = new ScriptedEngine({
    tokenizer: tokenizer(), script: () => long, delayMs: 5,
    failAfter: (ids) => (tokenizer().decode(ids) === 'boom' ? 3 : undefined),
  });
  const s = await serve(engine);
  try {
    const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: ['fine', 'boom'], max_tokens: 300 }) });
    assert.equal(r.status, 500);
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'internal_error');
    await until(() => engine.aborted.length === 1 && engine.stats().running === 0);
    const ok = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'fine', max_tokens: 3 }) });
    assert.equal(ok.status, 200);
  } finally {
    await s.close();
  }
});

test('POST /update_weights_from_disk: off unless enabled; a bad model_path leaves the old engine serving; an update waits for in-flight requests, then swaps', async () => {
  const off = await serve(new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'old' }));
  try {
    const r = await post(`${off.url}/update_weights_from_disk`, { model_path: '/tmp' });
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /--enable-weight-updates/);
  } finally {
    await off.close();
  }
  const old = new ScriptedEngine({ tokenizer: tokenizer(), script: () => long, delayMs: 2 });
  const fresh = new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'new weights' });
  const s = await serve(old, {
    reloadWeights: async (dir) => {
      if (dir !== '/ckpt/step-1') throw new Error('no config.json there');
      return fresh;
    },
  });
  try {
    const bad = await post(`${s.url}/update_weights_from_disk`, { model_path: '/nope' });
    assert.deepEqual([bad.status, bad.json.error.param], [400, 'model_path']);
    assert.match(bad.json.error.message, /cannot load \/nope: no config.json there/);
    assert.equal((await post(`${s.url}/update_weights_from_disk`, {})).status, 400);
    // a request in flight on the old engine finishes there, whole; the update returns after it
    const inflight = post(`${s.url}/v1/completions`, { model: 'dsv32-test', prompt: 'x', max_tokens: 400 });
    await until(() => old.stats().running > 0);
    const up = await post(`${s.url}/update_weights_from_disk`, { model_path: '/ckpt/step-1' });
    assert.equal(up.status, 200, up.text);
    assert.equal(up.json.success, true);
    const done = await inflight;
    assert.equal(done.status, 200);
    assert.ok(done.json.choices[0].text.startsWith('word word'), 'the old engine answered it');
    const after = await post(`${s.url}/v1/completions`, { model: 'dsv32-test', prompt: 'x', max_tokens: 5 });
    assert.match(after.json.choices[0].text, /new/);
  } finally {
    await s.close();
  }
});
