// The corpus manifest (manifest.json) and reading a built corpus back. The manifest is written last,
// so its presence means the build finished; it holds no timestamps or paths that vary between runs,
// so the same seed, options and installed sources give a byte-identical manifest (and corpusSha256).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CorpusError } from './errors.js';
import type { CorpusDocument, SourceKind } from './source.js';

export type SplitName = 'train' | 'validation';

export interface ShardInfo {
  file: string;
  documents: number;
  /** Bytes of the JSONL file. */
  bytes: number;
  sha256: string;
}

export interface SplitInfo {
  documents: number;
  /** UTF-8 bytes of document text (what the model sees), not of the JSONL. */
  textBytes: number;
  shards: ShardInfo[];
}

export interface SourceRecord {
  name: string;
  kind: SourceKind;
  package: string;
  /** Installed version, or `dsv32` for generators. */
  version: string;
  licence: string;
  description: string;
  required: boolean;
  budgetBytes: number | null;
  documents: number;
  textBytes: number;
  train: { documents: number; textBytes: number };
  validation: { documents: number; textBytes: number };
}

export interface MissingSource {
  name: string;
  package: string;
  install: string;
  reason: string;
}

export interface CorpusManifest {
  formatVersion: 1;
  createdBy: string;
  seed: number;
  maxBytes: number | null;
  /** --weights (source → weight) replacing the sources' own; null or absent: their own */
  weights?: Record<string, number> | null;
  validationFraction: number;
  shardBytes: number;
  sources: SourceRecord[];
  /** Optional sources that were not installed and so are not in this corpus. */
  missing: MissingSource[];
  splits: Record<SplitName, SplitInfo>;
  /** sha256 over the shard hashes in order: the corpus's fingerprint. */
  corpusSha256: string;
}

export const MANIFEST_FILE = 'manifest.json';

export function corpusFingerprint(splits: Record<SplitName, SplitInfo>): string {
  const h = createHash('sha256');
  for (const s of ['train', 'validation'] as const) for (const sh of splits[s].shards) h.update(`${s}/${sh.file}:${sh.sha256}\n`);
  return h.digest('hex');
}

export function readManifest(dir: string): CorpusManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) throw new CorpusError(`${path}: no manifest; expected a corpus directory built by \`dsv32 data build\` (an interrupted build has none)`);
  let m: CorpusManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as CorpusManifest;
  } catch (e) {
    throw new CorpusError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (m.formatVersion !== 1 || !m.splits?.train || !m.splits?.validation) {
    throw new CorpusError(`${path}: expected formatVersion 1 with splits.train and splits.validation`);
  }
  return m;
}

/** Checks every shard's size and sha256 against the manifest. */
export function verifyCorpus(dir: string, m: CorpusManifest = readManifest(dir)): void {
  for (const split of ['train', 'validation'] as const) {
    for (const sh of m.splits[split].shards) {
      const path = join(dir, sh.file);
      if (!existsSync(path)) throw new CorpusError(`${path}: shard listed in ${MANIFEST_FILE} is missing`);
      const buf = readFileSync(path);
      const sum = createHash('sha256').update(buf).digest('hex');
      if (buf.length !== sh.bytes || sum !== sh.sha256) {
        throw new CorpusError(`${path}: ${buf.length} bytes with sha256 ${sum}; ${MANIFEST_FILE} expects ${sh.bytes} bytes with sha256 ${sh.sha256}`);
      }
    }
  }
}

/** The documents of one split, shard by shard, in corpus order. */
export function* readDocuments(dir: string, split: SplitName, m: CorpusManifest = readManifest(dir)): Generator<CorpusDocument> {
  for (const sh of m.splits[split].shards) {
    const path = join(dir, sh.file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new CorpusError(`${path}: cannot read shard (${(e as Error).message})`, { cause: e });
    }
    let line = 0;
    for (const l of text.split('\n')) {
      line++;
      if (!l) continue;
      let d: CorpusDocument;
      try {
        d = JSON.parse(l) as CorpusDocument;
      } catch (e) {
        throw new CorpusError(`${path}:${line}: not a JSON document (${(e as Error).message})`, { cause: e });
      }
      if (typeof d.text !== 'string' || typeof d.id !== 'string') throw new CorpusError(`${path}:${line}: expected {id: string, source: string, text: string}`);
      yield d;
    }
  }
}
