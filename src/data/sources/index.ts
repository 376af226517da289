// Every corpus source the pipeline knows, in a fixed order (the build iterates them in this order, so
// the order is part of what a seed reproduces).
import type { CorpusSource } from '../source.js';
import { arithmeticSource } from '../synthetic/arithmetic.js';
import { passkeySource } from '../synthetic/passkey.js';
import { toolChatSource } from '../synthetic/tool-chat.js';
import { trajectorySource } from '../synthetic/trajectories.js';
import { fortunesSource } from './fortunes.js';
import { gcideSource } from './gcide.js';
import { linuxDocSource } from './linux-doc.js';
import { mobyDickSource } from './moby-dick.js';
import { pythonDocSource } from './python-doc.js';
import { sotuSource } from './sotu.js';
import { wordnetSource } from './wordnet.js';

export const ALL_SOURCES: readonly CorpusSource[] = [
  sotuSource,
  mobyDickSource,
  pythonDocSource,
  linuxDocSource,
  wordnetSource,
  gcideSource,
  fortunesSource,
  arithmeticSource,
  toolChatSource,
  trajectorySource,
  passkeySource, // opt-in: only when --sources or --require names it
];

export function sourceNames(): string[] {
  return ALL_SOURCES.map((s) => s.name);
}
