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
    reloadWeights: async (from) => {
      if (!('modelPath' in from) || from.modelPath !== '/ckpt/step-1') throw new Error('no config.json there');
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

test('POST /update_weights_from_tensor: off unless enabled; the body reaches the loader byte for byte, past the JSON body limit; bad weights leave the old engine serving', async () => {
  const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
  const octet = { 'content-type': 'application/octet-stream' };
  const off = await serve(new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'old' }));
  try {
    const r = await post(`${off.url}/update_weights_from_tensor`, bytes(64, 1), octet);
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /--enable-weight-updates/);
    // with updates off the route keeps the server's body limit
    assert.equal((await post(`${off.url}/update_weights_from_tensor`, bytes(9 << 20, 1), octet)).status, 413);
  } finally {
    await off.close();
  }
  const got: Uint8Array[] = [];
  const fresh = new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'new weights' });
  const s = await serve(new ScriptedEngine({ tokenizer: tokenizer(), script: () => 'old' }), {
    reloadWeights: async (from) => {
      if (!('safetensors' in from)) throw new Error('expected bytes');
      got.push(from.safetensors);
      if (from.safetensors.byteLength < 100) throw new Error('header length 7 is larger than the file');
      return fresh;
    },
  });
  try {
    const bad = await post(`${s.url}/update_weights_from_tensor`, bytes(64, 2), octet);
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /cannot load the request body \(64 bytes\): header length 7/);
    assert.match((await post(`${s.url}/v1/completions`, { model: 'dsv32-test', prompt: 'x', max_tokens: 3 })).json.choices[0].text, /old/);
    // JSON is not a weight file
    const json = await post(`${s.url}/update_weights_from_tensor`, { model_path: '/x' });
    assert.equal(json.status, 400);
    assert.match(json.json.error.message, /application\/octet-stream/);
    // 9 MiB: over the 8 MiB that JSON routes take
    const big = bytes(9 << 20, 3);
    const up = await post(`${s.url}/update_weights_from_tensor`, big, octet);
    assert.equal(up.status, 200, up.text);
    assert.ok(Buffer.from(got.at(-1)!).equals(Buffer.from(big)), 'the loader got the body byte for byte');
    assert.match((await post(`${s.url}/v1/completions`, { model: 'dsv32-test', prompt: 'x', max_tokens: 5 })).json.choices[0].text, /new/);
    // elsewhere an octet-stream body is still read as JSON, under the usual limit
    const asJson = await post(`${s.url}/v1/completions`, JSON.stringify({ model: 'dsv32-test', prompt: 'x', max_tokens: 2 }), octet);
    assert.equal(asJson.status, 200, asJson.text);
    assert.equal((await post(`${s.url}/v1/completions`, bytes(9 << 20, 4), octet)).status, 413);
  } finally {
    await s.close();
  }
});
