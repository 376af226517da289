// Small corpora and tokenizers for the data tests: real sources (the pinned npm packages and our
// generators) under a byte budget that keeps each test file to a few seconds.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCorpus, type BuildOptions } from '../../src/data/build.js';
import type { CorpusManifest } from '../../src/data/manifest.js';
import { readDocuments } from '../../src/data/manifest.js';
import { trainTokenizer, type TrainTokenizerResult } from '../../src/data/train-tokenizer.js';

export const SMALL_SOURCES = ['sotu', 'moby-dick', 'arithmetic', 'tool-chat'];

const made: string[] = [];
// corpora are a few hundred KB each and every test file makes several: remove them when the file ends
process.on('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `dsv32-data-${tag}-`));
  made.push(d);
  return d;
}

export async function smallCorpus(opts: Partial<BuildOptions> = {}): Promise<{ dir: string; manifest: CorpusManifest }> {
  const dir = opts.outDir ?? join(tempDir('corpus'), 'c');
  const r = await buildCorpus({ outDir: dir, seed: 7, maxBytes: 400_000, sources: SMALL_SOURCES, validationFraction: 0.1, ...opts });
  return { dir, manifest: r.manifest };
}

/** A 1024-token tokenizer trained on a small corpus's train split, and that corpus's validation texts. */
export async function smallTokenizer(vocabSize = 1024): Promise<{ result: TrainTokenizerResult; validation: string[]; dir: string }> {
  const { dir } = await smallCorpus();
  const result = trainTokenizer([...readDocuments(dir, 'train')].map((d) => d.text), { vocabSize });
  return { result, validation: [...readDocuments(dir, 'validation')].map((d) => d.text), dir };
}
