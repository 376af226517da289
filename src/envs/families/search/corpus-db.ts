// Writes the search world to SQLite: the entity tables (for inspection and for verifiers) and the
// corpus in an FTS5 table. The BM25 query built here is the same one the search tool runs, so the
// generator can check that every lookup a reference solution makes finds its document.
import Database from 'better-sqlite3';
import type { SearchWorld } from './world.js';

/** Title hits weigh 5× body hits in bm25(); ties break on document id so rankings are deterministic. */
export const SEARCH_SQL =
  "SELECT rowid AS id, title, snippet(docs, 1, '', '', ' … ', 16) AS snippet FROM docs WHERE docs MATCH ? " +
  'ORDER BY bm25(docs, 5.0, 1.0), rowid LIMIT ?';

/** Free text to an FTS5 expression: every word quoted (no operator injection), OR-ed for BM25 ranking. */
export function ftsQuery(text: string): string | undefined {
  const words = text.match(/[A-Za-z0-9]+/g);
  return words ? words.map((w) => `"${w}"`).join(' OR ') : undefined;
}

export function writeSearchDb(w: SearchWorld, path: string): void {
  const db = new Database(path);
  try {
    db.exec(`
      CREATE VIRTUAL TABLE docs USING fts5(title, body, kind UNINDEXED, tokenize = 'unicode61');
      CREATE TABLE countries (name TEXT PRIMARY KEY, capital TEXT NOT NULL);
      CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT NOT NULL, founded INTEGER NOT NULL, population INTEGER NOT NULL);
      CREATE TABLE people (name TEXT PRIMARY KEY, born INTEGER NOT NULL, birth_city TEXT NOT NULL, occupation TEXT NOT NULL);
      CREATE TABLE companies (name TEXT PRIMARY KEY, founded INTEGER NOT NULL, founder TEXT NOT NULL, ceo TEXT NOT NULL,
        hq TEXT NOT NULL, industry TEXT NOT NULL);
    `);
    db.transaction(() => {
      const d = db.prepare('INSERT INTO docs (rowid, title, body, kind) VALUES (?, ?, ?, ?)');
      for (const x of w.docs) d.run(x.id, x.title, x.text, x.kind);
      const c = db.prepare('INSERT INTO countries VALUES (?, ?)');
      for (const x of w.countries) c.run(x.name, x.capital);
      const ci = db.prepare('INSERT INTO cities VALUES (?, ?, ?, ?)');
      for (const x of w.cities) ci.run(x.name, x.country, x.founded, x.population);
      const p = db.prepare('INSERT INTO people VALUES (?, ?, ?, ?)');
      for (const x of w.people) p.run(x.name, x.born, x.birthCity, x.occupation);
      const co = db.prepare('INSERT INTO companies VALUES (?, ?, ?, ?, ?, ?)');
      for (const x of w.companies) co.run(x.name, x.founded, x.founder, x.ceo, x.hq, x.industry);
    })();
  } finally {
    db.close();
  }
}

/** Runs the search tool's query on the host (generation-time checks). */
export function searchTitles(db: Database.Database, text: string, k: number): string[] {
  const q = ftsQuery(text);
  if (!q) return [];
  return (db.prepare(SEARCH_SQL).all(q, k) as Array<{ title: string }>).map((r) => r.title);
}
