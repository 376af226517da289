// The Collaborative International Dictionary of English (Debian dict-gcide): Webster's 1913 with
// later additions, as a dictd database. gcide.dict.dz is dictzip, i.e. gzip with a random-access
// index in an extra field, so a plain gunzip reads it. Each entry starts with its headword at column 0
// and continues with indented lines; the first entries ("00-database-…") describe the database and are
// skipped. Entries are grouped to about 32 KB a document, in dictionary order.
import { join } from 'node:path';
import { DataSourceFormatError, DataSourceMissingError } from '../errors.js';
import { takeShuffled, type CorpusSource, type DocumentRef } from '../source.js';
import { probeDebian, readMaybeGz } from './debian-tree.js';

const DOC_BYTES = 32 * 1024;
const spec = { package: 'dict-gcide', packageHint: 'dict-gcide', root: () => '/usr/share/dictd' };

export function gcideEntries(text: string): string[] {
  const entries: string[] = [];
  let cur: string[] = [];
  const flush = (): void => {
    const e = cur.join('\n').trim();
    if (e && !e.startsWith('00-database') && !e.startsWith('00-gcide') && !e.startsWith('00-web1913')) entries.push(e);
    cur = [];
  };
  for (const line of text.split('\n')) {
    if (line && !/^\s/.test(line) && (cur.length === 0 || cur[cur.length - 1] === '')) flush();
    cur.push(line.replace(/\s+$/, ''));
  }
  flush();
  return entries;
}

export const gcideSource: CorpusSource = {
  name: 'gcide',
  kind: 'debian',
  package: 'dict-gcide',
  install: 'apt-get install dict-gcide',
  licence: 'GPL-2.0-or-later (GCIDE; see /usr/share/doc/dict-gcide/copyright)',
  description: 'GCIDE dictionary entries (Webster 1913 and additions), about 32 KB per document',
  requiredByDefault: false,
  defaultBudgetBytes: 8 * 2 ** 20,
  weight: 8,
  probe: () => probeDebian(spec),
  documents(ctx) {
    const p = this.probe();
    if (!p.found) throw new DataSourceMissingError(`source gcide: ${p.reason}; install it with ${this.install}`);
    const file = join(p.location, 'gcide.dict.dz');
    let entries: string[];
    try {
      entries = gcideEntries(readMaybeGz(file));
    } catch (e) {
      throw new DataSourceFormatError(`source gcide: cannot read ${file} (${(e as Error).message}); expected dict-gcide's dictzip database`);
    }
    if (entries.length < 1000) throw new DataSourceFormatError(`source gcide: ${file} has ${entries.length} entries; expected about 200,000`);
    const refs: DocumentRef[] = [];
    let chunk: string[] = [];
    let size = 0;
    const push = (): void => {
      const body = chunk.join('\n\n') + '\n';
      refs.push({ name: String(refs.length).padStart(5, '0'), read: () => body });
      chunk = [];
      size = 0;
    };
    for (const e of entries) {
      chunk.push(e);
      size += e.length + 2;
      if (size >= DOC_BYTES) push();
    }
    if (chunk.length) push();
    return takeShuffled('gcide', refs, ctx);
  },
};
