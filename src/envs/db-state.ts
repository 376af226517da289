// Content fingerprint of an SQLite database: schema plus every row of every table, ordered by all
// columns so the fingerprint depends on the logical content, not on page layout or rowid reuse.
// Used to check that tools are deterministic and to compare end states.
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function canonical(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { blob: v.toString('base64') };
  if (typeof v === 'bigint') return { int: v.toString() };
  return v;
}

export function dbFingerprint(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const h = createHash('sha256');
    const tables = db
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all() as Array<{ name: string; sql: string }>;
    for (const t of tables) {
      h.update(`table ${t.name}\n${t.sql}\n`);
      const cols = (db.prepare(`PRAGMA table_info(${quoteIdent(t.name)})`).all() as unknown[]).length;
      const order = Array.from({ length: cols }, (_, i) => String(i + 1)).join(', ');
      const stmt = db.prepare(`SELECT * FROM ${quoteIdent(t.name)} ORDER BY ${order}`).raw(true);
      for (const row of stmt.iterate() as Iterable<unknown[]>) h.update(JSON.stringify(row.map(canonical)) + '\n');
    }
    return h.digest('hex');
  } finally {
    db.close();
  }
}
