// Server-sent events reader (the WHATWG event-stream format): yields the `data` of each event, with
// multi-line data joined by "\n". Comments (`:` lines) and other fields are skipped.
export async function* readSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      const { value, done } = await reader.read();
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // Lines end with \n, \r\n or \r; keep the last partial line (a lone trailing \r may still be \r\n).
      const lines = buf.split(/\r\n|\n|\r(?!$)/);
      buf = done ? '' : lines.pop()!;
      if (done && lines.at(-1) === '') lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
      if (done) {
        if (data.length) yield data.join('\n');
        return;
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}
