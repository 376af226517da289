// How the queue side talks to Redis when Redis is not there. BullMQ's default is to reconnect forever
// (ioredis retryStrategy), so a command started against a dead Redis waited silently and a worker
// printed an error line per connection per second. Instead: a short check before anything starts,
// and, once connected, a bounded reconnect window that is reported once when it opens and once when
// it closes (Redis back, or given up).
import { Redis } from 'ioredis';
import { QueueConnectionLostError, QueueUnreachableError } from './errors.js';
import { parseRedisUrl, type RedisConnection } from './redis-url.js';

export const DEFAULT_PROBE_TIMEOUT_MS = 5000;
/** Long enough for a Redis restart or failover, short enough that a dead queue is noticed. */
export const DEFAULT_RECONNECT_WINDOW_MS = 120_000;
const MAX_RECONNECT_DELAY_MS = 5000;

/** The URL for messages and logs, its password masked. */
export function shownRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.href;
  } catch {
    return url;
  }
}

/**
 * Connects once, without retries, and PINGs (ioredis sends AUTH and SELECT from the URL first); throws
 * QueueUnreachableError ("cannot reach Redis at URL: why") unless Redis answers within `timeoutMs`. A
 * throwaway ioredis client with retries and the offline queue off, dropped at once either way.
 */
export async function probeRedis(url: string, timeoutMs = DEFAULT_PROBE_TIMEOUT_MS): Promise<void> {
  const client = new Redis({
    ...parseRedisUrl(url),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // with retries off, connect() rejects with a bare "Connection is closed"; the cause comes as an event
  let cause: Error | undefined;
  client.on('error', (e: Error) => {
    cause ??= e;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([
      (async () => {
        await client.connect();
        const pong = await client.ping();
        if (pong !== 'PONG') throw new Error(`not a Redis server (it answered ${JSON.stringify(String(pong).slice(0, 60))})`);
      })(),
      deadline,
    ]);
  } catch (e) {
    const msg = (cause ?? (e as Error)).message;
    throw new QueueUnreachableError(`cannot reach Redis at ${shownRedisUrl(url)}: ${msg}`, { cause: e });
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** An error that only says the connection is down (each reconnect attempt raises one). */
export function isConnectionError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException | undefined;
  return CONNECTION_CODES.has(String(err?.code)) || /Connection is closed|connect ETIMEDOUT|Stream isn't writeable/i.test(err?.message ?? '');
}

export interface ReconnectOptions {
  /** How long to keep reconnecting after the connection drops (default DEFAULT_RECONNECT_WINDOW_MS). */
  windowMs?: number;
  log?: (e: Record<string, unknown>) => void;
}

/**
 * One reconnect policy shared by all connections of a worker or submitter: an outage opens when the
 * first connection drops and closes when a connection is ready again (`up()`); during it connection
 * errors are kept, not printed, and reconnects back off up to 5 s. If the outage lasts longer than the
 * window, every connection stops retrying and `lost` rejects with QueueConnectionLostError.
 */
export class ReconnectWindow {
  readonly connection: RedisConnection & { retryStrategy: (times: number) => number | null };
  /** Rejects once when the window runs out. */
  readonly lost: Promise<never>;
  private downSince: number | null = null;
  private lastError: Error | undefined;
  private gaveUp = false;
  private rejectLost!: (e: Error) => void;
  private readonly url: string;
  private readonly windowMs: number;
  private readonly log: (e: Record<string, unknown>) => void;

  constructor(
    url: string,
    opts: ReconnectOptions = {},
  ) {
    this.url = shownRedisUrl(url);
    this.windowMs = opts.windowMs ?? DEFAULT_RECONNECT_WINDOW_MS;
    this.log = opts.log ?? (() => {});
    this.lost = new Promise<never>((_, reject) => (this.rejectLost = reject));
    this.lost.catch(() => {}); // observed by whoever races it; never an unhandled rejection
    this.connection = { ...parseRedisUrl(url), retryStrategy: (times) => this.retry(times) };
  }

  /** For the 'error' events of the BullMQ objects: true when the error was a connection error (kept). */
  noteError(e: unknown): boolean {
    if (!isConnectionError(e)) return false;
    this.lastError = e as Error;
    return true;
  }

  /** A connection is ready (again). */
  up(): void {
    if (this.downSince === null || this.gaveUp) return;
    this.log({ event: 'redis_reconnected', url: this.url, down_ms: Date.now() - this.downSince });
    this.downSince = null;
  }

  private retry(times: number): number | null {
    if (this.gaveUp) return null;
    const now = Date.now();
    if (this.downSince === null) {
      this.downSince = now;
      this.log({ event: 'redis_disconnected', url: this.url, error: this.lastError?.message ?? 'connection closed', retrying_for_ms: this.windowMs });
    }
    if (now - this.downSince >= this.windowMs) {
      this.gaveUp = true;
      const why = this.lastError ? ` (last error: ${this.lastError.message})` : '';
      this.rejectLost(new QueueConnectionLostError(`lost the connection to Redis at ${this.url} and could not reconnect within ${this.windowMs} ms${why}`));
      return null;
    }
    return Math.min(MAX_RECONNECT_DELAY_MS, 250 * 2 ** Math.min(times - 1, 5));
  }
}
