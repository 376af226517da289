import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSse } from '../../src/agent/sse.js';

function streamOf(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    parts.push(bytes.slice(at, c));
    at = c;
  }
  return new ReadableStream({
    pull(ctl) {
      const p = parts.shift();
      if (p) ctl.enqueue(p);
      else ctl.close();
    },
  });
}

async function collect(s: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const d of readSse(s)) out.push(d);
  return out;
}

test('SSE events survive every split point, CRLF/CR/LF endings, comments, multi-line data and a missing final blank line', async () => {
  const text = ': comment\r\ndata: {"a":"é杭"}\r\n\r\nevent: x\ndata:no-space\ndata: line2\n\nid: 3\rdata: cr only\r\rdata: [DONE]';
  const bytes = new TextEncoder().encode(text);
  const expected = ['{"a":"é杭"}', 'no-space\nline2', 'cr only', '[DONE]'];
  assert.deepEqual(await collect(streamOf(bytes, [])), expected);
  // every single split point, including inside the multi-byte characters and between \r and \n
  for (let i = 1; i < bytes.length; i++) assert.deepEqual(await collect(streamOf(bytes, [i])), expected, `split at ${i}`);
  // byte by byte
  assert.deepEqual(await collect(streamOf(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1))), expected);
});

test('an aborted signal stops the reader', async () => {
  const ctl = new AbortController();
  const never = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(new TextEncoder().encode('data: 1\n\n')); } });
  const seen: string[] = [];
  const p = (async () => {
    for await (const d of readSse(never, ctl.signal)) {
      seen.push(d);
      setTimeout(() => ctl.abort(new Error('stop')), 5);
    }
  })();
  await assert.rejects(p, /stop/);
  assert.deepEqual(seen, ['1']);
});
