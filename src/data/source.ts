// What a corpus source is: something installed on this machine (an npm or Debian package) or a
// generator of ours, that yields documents. Sources never download: `probe` only looks at the disk,
// and a missing package is reported with the command that installs it.
import type { ChatMessage, ThinkingMode } from '../chat/message.js';
import type { Rng } from '../envs/rng.js';

export type SourceKind = 'npm' | 'debian' | 'synthetic';

/** One training document. `text` is exactly what the model is trained on. */
export interface CorpusDocument {
  /** Unique in the corpus: `<source>/<name>`. It decides the split, so it must not depend on order. */
  id: string;
  source: string;
  text: string;
  /** For chat documents: the messages `text` was encoded from, so SFT can mask the prompt part. */
  messages?: ChatMessage[];
  mode?: ThinkingMode;
}

export type SourceProbe =
  /** `package`: the package actually found, where the source accepts several (linux-doc-6.1, -6.12). */
  | { found: true; version: string; location: string; package?: string }
  | { found: false; reason: string };

export interface SourceContext {
  /** This source's own stream (forked from the build seed by the source's name). */
  rng: Rng;
  /** Stop after about this many UTF-8 bytes of text (the last document may cross it). */
  budgetBytes: number;
  log: (event: string, fields?: Record<string, unknown>) => void;
}

export interface CorpusSource {
  name: string;
  kind: SourceKind;
  /** The package that provides it (npm name, Debian package, or `dsv32` for our generators). */
  package: string;
  /** The shell command that installs the package, for the missing-source message. */
  install: string;
  licence: string;
  description: string;
  /** Included by default when found; `requiredByDefault` sources fail the build when missing. */
  requiredByDefault: boolean;
  /**
   * Read only when a build names it (--sources or --require); a build without either leaves it out, so
   * adding an opt-in source does not change default corpora (passkey).
   */
  optIn?: boolean;
  /** Byte budget when the build sets no --max-bytes (Infinity: all of it). */
  defaultBudgetBytes: number;
  /**
   * Share of a --max-bytes budget: source i gets maxBytes · weight_i / Σ weight over the included
   * sources. Weights are the sources' nominal sizes in MB, so a capped corpus keeps the mixture of the
   * full one.
   */
  weight: number;
  probe(): SourceProbe;
  documents(ctx: SourceContext): AsyncIterable<CorpusDocument>;
}

/** A document of a file-backed source, read only when the budget reaches it. */
export interface DocumentRef {
  name: string;
  read(): string;
}

/**
 * Yields `refs` in a seeded shuffled order until the budget is spent, so a budget smaller than the
 * source takes an unbiased sample of it (a prefix would be, say, only the 1790s addresses).
 */
export async function* takeShuffled(source: string, refs: readonly DocumentRef[], ctx: SourceContext): AsyncIterable<CorpusDocument> {
  let used = 0;
  const sorted = [...refs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const ref of ctx.rng.shuffle(sorted)) {
    if (used >= ctx.budgetBytes) break;
    const text = ref.read();
    if (!text.trim()) continue;
    used += Buffer.byteLength(text);
    yield { id: `${source}/${ref.name}`, source, text };
  }
}
