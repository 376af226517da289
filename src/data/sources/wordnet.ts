// WordNet 3.0 glosses (Debian wordnet-base): every synset of data.{noun,verb,adj,adv} as one line
// "lemma, lemma (part of speech): gloss; \"example\"". A synset line is
//   offset lex_filenum ss_type w_cnt(hex) [word lex_id]×w_cnt p_cnt [pointer]×p_cnt [frames] | gloss
// and we need only the words (before the pointers) and the gloss (after "| "). Lines that start with
// two spaces are the licence header. Synsets are grouped 256 to a document in file order, since one
// synset alone is too short to be a useful context.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSourceFormatError, DataSourceMissingError } from '../errors.js';
import { takeShuffled, type CorpusSource, type DocumentRef } from '../source.js';
import { probeDebian } from './debian-tree.js';

const POS: Record<string, string> = { noun: 'noun', verb: 'verb', adj: 'adjective', adv: 'adverb' };
const PER_DOCUMENT = 256;
const spec = { package: 'wordnet-base', packageHint: 'wordnet-base', root: () => '/usr/share/wordnet' };

export function wordnetLine(line: string, pos: string, file = 'data'): string | null {
  if (line.startsWith('  ') || !line.trim()) return null;
  const bar = line.indexOf(' | ');
  if (bar < 0) throw new DataSourceFormatError(`${file}: synset line without " | " before its gloss: ${line.slice(0, 80)}`);
  const f = line.slice(0, bar).split(' ');
  const count = parseInt(f[3] ?? '', 16);
  if (!(count > 0)) throw new DataSourceFormatError(`${file}: synset line with word count ${JSON.stringify(f[3])}, expected a hex number > 0`);
  const words: string[] = [];
  for (let i = 0; i < count; i++) {
    // adjectives may carry a syntactic marker such as "(p)" glued to the word
    const w = (f[4 + 2 * i] ?? '').replace(/\([a-z]+\)$/, '').replace(/_/g, ' ');
    if (w && !words.includes(w)) words.push(w);
  }
  return `${words.join(', ')} (${pos}): ${line.slice(bar + 3).trim()}`;
}

export const wordnetSource: CorpusSource = {
  name: 'wordnet',
  kind: 'debian',
  package: 'wordnet-base',
  install: 'apt-get install wordnet-base',
  licence: 'WordNet 3.0 licence (permissive, BSD-like; Princeton University)',
  description: 'WordNet 3.0 synsets with glosses and examples, 256 synsets per document',
  requiredByDefault: false,
  defaultBudgetBytes: 6 * 2 ** 20,
  weight: 6,
  probe: () => probeDebian(spec),
  documents(ctx) {
    const p = this.probe();
    if (!p.found) throw new DataSourceMissingError(`source wordnet: ${p.reason}; install it with ${this.install}`);
    const refs: DocumentRef[] = [];
    for (const [suffix, pos] of Object.entries(POS)) {
      const file = join(p.location, `data.${suffix}`);
      let lines: string[];
      try {
        lines = readFileSync(file, 'utf8').split('\n');
      } catch (e) {
        throw new DataSourceFormatError(`source wordnet: cannot read ${file} (${(e as Error).message}); expected wordnet-base's data files`);
      }
      const synsets = lines.map((l) => wordnetLine(l, pos, file)).filter((l): l is string => l !== null);
      for (let i = 0; i < synsets.length; i += PER_DOCUMENT) {
        const chunk = synsets.slice(i, i + PER_DOCUMENT);
        refs.push({ name: `${suffix}-${String(i / PER_DOCUMENT).padStart(4, '0')}`, read: () => chunk.join('\n') + '\n' });
      }
    }
    return takeShuffled('wordnet', refs, ctx);
  },
};
