// `dsv32 data tokenizer`: train the BPE on a built corpus's train split, write tokenizer.json, and
// check it on the validation split (never seen by the trainer): it must load through
// src/chat/tokenizer.ts (which checks the six chat tokens are single ids), decode every validation
// document back to its exact text, and we report the compression in UTF-8 bytes per token.
import { DeepSeekTokenizer } from '../chat/tokenizer.js';
import { writeFileAtomic } from './atomic.js';
import { TokenizerTrainError } from './errors.js';
import { readDocuments, readManifest, verifyCorpus } from './manifest.js';
import { ADDED_TOKENS } from './special-tokens.js';
import { trainTokenizerFromCounts, WordCounter } from './train-tokenizer.js';

export interface CorpusTokenizerOptions {
  corpusDir: string;
  vocabSize: number;
  outFile: string;
  minFrequency?: number;
  log?: (event: string, fields?: Record<string, unknown>) => void;
  onProgress?: (phase: 'count' | 'merge' | 'check', done: number, total: number) => void;
}

export interface TokenizerReport {
  outFile: string;
  vocabSize: number;
  merges: number;
  trainDocuments: number;
  trainBytes: number;
  distinctWords: number;
  countMs: number;
  mergeMs: number;
  validation: { documents: number; bytes: number; tokens: number; bytesPerToken: number; roundTripFailures: string[] };
  specialIds: Record<string, number>;
}

export function trainCorpusTokenizer(o: CorpusTokenizerOptions): TokenizerReport {
  const log = o.log ?? (() => {});
  const manifest = readManifest(o.corpusDir);
  verifyCorpus(o.corpusDir, manifest);
  const train = manifest.splits.train;
  log('tokenizer-start', { corpus: o.corpusDir, corpusSha256: manifest.corpusSha256, vocabSize: o.vocabSize, trainDocuments: train.documents, trainBytes: train.textBytes });

  const counter = new WordCounter(ADDED_TOKENS);
  const t0 = performance.now();
  for (const d of readDocuments(o.corpusDir, 'train', manifest)) {
    counter.add(d.text);
    if (counter.documents % 64 === 0) o.onProgress?.('count', counter.bytes, train.textBytes);
  }
  o.onProgress?.('count', counter.bytes, train.textBytes);
  const countMs = performance.now() - t0;
  log('tokenizer-counted', { documents: counter.documents, bytes: counter.bytes, words: counter.words, distinctWords: counter.counts.size, ms: Math.round(countMs) });

  const r = trainTokenizerFromCounts(counter, { vocabSize: o.vocabSize, minFrequency: o.minFrequency, countMs, onProgress: o.onProgress ? (_p, d, t) => o.onProgress!('merge', d, t) : undefined });
  if (r.model.shortfall > 0) log('tokenizer-shortfall', { wanted: o.vocabSize, made: r.stats.vocabSize, reason: 'no pair left with the minimum frequency' });
  log('tokenizer-trained', { vocabSize: r.stats.vocabSize, merges: r.stats.merges, ms: Math.round(r.stats.mergeMs) });

  const tok = new DeepSeekTokenizer(r.json, {}, o.outFile);
  const val = manifest.splits.validation;
  let bytes = 0;
  let tokens = 0;
  let docs = 0;
  const failures: string[] = [];
  for (const d of readDocuments(o.corpusDir, 'validation', manifest)) {
    const ids = tok.encode(d.text);
    if (tok.decode(ids) !== d.text) failures.push(d.id);
    bytes += Buffer.byteLength(d.text);
    tokens += ids.length;
    docs++;
    o.onProgress?.('check', bytes, val.textBytes);
  }
  if (failures.length) {
    throw new TokenizerTrainError(`${o.outFile}: ${failures.length} validation documents do not decode to their own text (first: ${failures[0]}); not written`);
  }
  writeFileAtomic(o.outFile, JSON.stringify(r.json) + '\n');
  const report: TokenizerReport = {
    outFile: o.outFile,
    vocabSize: r.stats.vocabSize,
    merges: r.stats.merges,
    trainDocuments: counter.documents,
    trainBytes: counter.bytes,
    distinctWords: counter.counts.size,
    countMs: Math.round(countMs),
    mergeMs: Math.round(r.stats.mergeMs),
    validation: { documents: docs, bytes, tokens, bytesPerToken: tokens ? bytes / tokens : 0, roundTripFailures: failures },
    specialIds: { ...tok.special },
  };
  log('tokenizer-written', { ...report, validation: { ...report.validation, roundTripFailures: failures.length } });
  return report;
}
