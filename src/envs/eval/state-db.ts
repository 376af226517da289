// Opens a pipeline state database (evaluation results, synthesis steps). WAL lets several processes
// (a local run, `dsv32 worker`s sharing the directory) read while one writes; busy_timeout makes a
// writer wait for the lock instead of failing.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';

export type StateDb = Database.Database;

export function openStateDb(path: string): StateDb {
  const p = resolve(path);
  mkdirSync(dirname(p), { recursive: true });
  const db = new Database(p);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 15000');
  db.pragma('synchronous = NORMAL');
  return db;
}
