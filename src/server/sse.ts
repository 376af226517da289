// Server-sent events on a raw Node response, as the OpenAI streaming API frames them: `data: <json>\n\n`
// per chunk and `data: [DONE]\n\n` at the end. Writes respect backpressure (a slow reader makes the
// writer wait for 'drain' rather than buffer without bound), and a closed connection turns every later
// write into a no-op, so the generation loop only has to check `closed` to stop.
import type { ServerResponse } from 'node:http';
import { ApiError } from './errors.js';

export class SseWriter {
  private ended = false;

  constructor(private readonly res: ServerResponse) {
    // A write racing a closing connection fails with an 'error' event; the 'close' path already stops
    // the generation, so the error itself needs no handling (unhandled, it would crash the process).
    res.on('error', () => undefined);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
  }

  get closed(): boolean {
    return this.ended || this.res.destroyed || this.res.writableEnded;
  }

  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.res.writableEnded) this.res.end();
  }

  private async write(s: string): Promise<void> {
    if (this.closed) return;
    if (this.res.write(s)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}

/**
 * Run a stream's body: a failure after the headers went out becomes an error event in the stream (the
 * status line is already 200), the stream is always ended, and `cleanup` (returning the engine request's
 * iterator, which aborts whatever is still generating) always runs.
 */
export async function guardStream(sse: SseWriter, log: { error(e: unknown): void }, body: () => Promise<void>, cleanup: () => Promise<unknown>): Promise<void> {
  try {
    await body();
  } catch (e) {
    await sse.send(new ApiError(500, `generation failed: ${(e as Error).message}`, null, 'internal_error').body());
    log.error(e);
  } finally {
    if (!sse.closed) sse.end();
    await cleanup();
  }
}
