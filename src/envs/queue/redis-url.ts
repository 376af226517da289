// Parses `redis://[user:password@]host:port[/db]` into ioredis connection options (what BullMQ takes).
import { QueueConfigError } from './errors.js';

export interface RedisConnection {
  host: string;
  port: number;
  db?: number;
  username?: string;
  password?: string;
  /** BullMQ requires null for workers (blocking commands must not be retried by ioredis itself). */
  maxRetriesPerRequest: null;
}

export function parseRedisUrl(url: string): RedisConnection {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new QueueConfigError(`--queue: "${url}" is not a URL; expected redis://host:port[/db]`);
  }
  if (u.protocol !== 'redis:') throw new QueueConfigError(`--queue: "${url}" must start with redis:// (got ${u.protocol})`);
  if (!u.hostname) throw new QueueConfigError(`--queue: "${url}" has no host; expected redis://host:port[/db]`);
  const port = u.port ? Number(u.port) : 6379;
  const path = u.pathname.replace(/^\//, '');
  let db: number | undefined;
  if (path) {
    db = Number(path);
    if (!Number.isInteger(db) || db < 0) throw new QueueConfigError(`--queue: database "${path}" in "${url}" must be a non-negative integer`);
  }
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    ...(db !== undefined ? { db } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    maxRetriesPerRequest: null,
  };
}
