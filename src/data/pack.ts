// `dsv32 data pack`: a built corpus tokenized into flat token files for pretraining, one per split:
//   <split>.tokens  ids as little-endian uint16 (vocabulary ≤ 65,536; uint32 above), documents back
//                   to back, each starting with BOS and ending with EOS (chat documents already do);
//   <split>.docs    little-endian uint32 start offset of every document, in tokens (then the total),
//                   so a loader can cut windows at document boundaries or mask across them;
//   <split>.mask    one byte per token, 1 where the token is a training target (loss-mask.ts: all of
//                   plain text but its BOS; the last exchange's assistant turns of a chat document),
//                   so SFT can train on completions only while pretraining ignores it;
//   pack.json       tokenizer and corpus fingerprints, dtype, token counts, sha256 of every file.
// uint16 halves the bytes of int32 ids and a 10–50M-parameter model's 8K–16K vocabulary fits it.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { BpeEncoder } from './bpe-encoder.js';
import { completionSpans, maskedIds } from './loss-mask.js';
import { CorpusError } from './errors.js';
import { readDocuments, readManifest, verifyCorpus, type SplitName } from './manifest.js';
import type { TokenizerJson } from './tokenizer-json.js';
import { BOS, EOS } from '../chat/tokens.js';

export const PACK_FILE = 'pack.json';
/** The tokenizer.json the pack was tokenized with, copied beside it (its sha256 is pack.json's tokenizerSha256). */
export const PACK_TOKENIZER_FILE = 'tokenizer.json';

export interface PackedSplit {
  tokensFile: string;
  docsFile: string;
  maskFile: string;
  /** Tokens whose mask is 1. */
  targets: number;
  documents: number;
  tokens: number;
  textBytes: number;
  tokensSha256: string;
  docsSha256: string;
  maskSha256: string;
}

export interface PackManifest {
  formatVersion: 1;
  corpusSha256: string;
  tokenizerSha256: string;
  vocabSize: number;
  dtype: 'uint16' | 'uint32';
  bos: number;
  eos: number;
  splits: Record<SplitName, PackedSplit>;
}

export interface PackOptions {
  corpusDir: string;
  tokenizerFile: string;
  outDir: string;
  onProgress?: (split: SplitName, bytes: number, total: number) => void;
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

export function packCorpus(o: PackOptions): PackManifest {
  const log = o.log ?? (() => {});
  const manifest = readManifest(o.corpusDir);
  verifyCorpus(o.corpusDir, manifest);
  let raw: string;
  try {
    raw = readFileSync(o.tokenizerFile, 'utf8');
  } catch (e) {
    throw new CorpusError(`${o.tokenizerFile}: cannot read tokenizer (${(e as Error).message})`, { cause: e });
  }
  const json = JSON.parse(raw) as TokenizerJson;
  const enc = new BpeEncoder(json, o.tokenizerFile);
  const bos = json.added_tokens.find((t) => t.content === BOS)?.id;
  const eos = json.added_tokens.find((t) => t.content === EOS)?.id;
  if (bos === undefined || eos === undefined) throw new CorpusError(`${o.tokenizerFile}: expected ${BOS} and ${EOS} among added_tokens`);
  const dtype = enc.vocabSize <= 65536 ? 'uint16' : 'uint32';
  mkdirSync(o.outDir, { recursive: true });

  const splits = {} as Record<SplitName, PackedSplit>;
  for (const split of ['train', 'validation'] as const) {
    const t0 = performance.now();
    const ids: number[] = [];
    const mask: number[] = [];
    const starts: number[] = [];
    let bytes = 0;
    const encode = (t: string): number[] => enc.encode(t);
    for (const d of readDocuments(o.corpusDir, split, manifest)) {
      starts.push(ids.length);
      const doc = d.messages && d.mode ? maskedIds(d.id, d.text, completionSpans(d.messages, d.mode), encode) : { ids: encode(d.text), mask: null };
      if (doc.ids[0] !== bos) {
        ids.push(bos);
        mask.push(0);
      }
      doc.ids.forEach((id, i) => {
        ids.push(id);
        mask.push(doc.mask ? doc.mask[i]! : 1);
      });
      if (doc.ids.at(-1) !== eos) {
        ids.push(eos);
        mask.push(doc.mask ? 0 : 1);
      }
      bytes += Buffer.byteLength(d.text);
      o.onProgress?.(split, bytes, manifest.splits[split].textBytes);
    }
    starts.push(ids.length);
    if (ids.length > 2 ** 32 - 1) throw new CorpusError(`${split}: ${ids.length} tokens do not fit the uint32 document offsets`);
    const tokens = dtype === 'uint16' ? Buffer.from(Uint16Array.from(ids).buffer) : Buffer.from(Uint32Array.from(ids).buffer);
    const docs = Buffer.from(Uint32Array.from(starts).buffer);
    // typed arrays are host-endian; every platform Node ships on is little-endian, and the files say so
    if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new CorpusError('this host is big-endian; the packed format is little-endian');
    const tokensFile = `${split}.tokens`;
    const docsFile = `${split}.docs`;
    const maskFile = `${split}.mask`;
    const maskBuf = Buffer.from(Uint8Array.from(mask));
    writeFileAtomic(join(o.outDir, tokensFile), tokens);
    writeFileAtomic(join(o.outDir, docsFile), docs);
    writeFileAtomic(join(o.outDir, maskFile), maskBuf);
    splits[split] = {
      tokensFile,
      docsFile,
      maskFile,
      targets: mask.reduce((a, m) => a + m, 0),
      documents: starts.length - 1,
      tokens: ids.length,
      textBytes: bytes,
      tokensSha256: createHash('sha256').update(tokens).digest('hex'),
      docsSha256: createHash('sha256').update(docs).digest('hex'),
      maskSha256: createHash('sha256').update(maskBuf).digest('hex'),
    };
    log('pack-split', { split, documents: starts.length - 1, tokens: ids.length, textBytes: bytes, bytesPerToken: bytes / ids.length, ms: Math.round(performance.now() - t0) });
  }
  const pack: PackManifest = {
    formatVersion: 1,
    corpusSha256: manifest.corpusSha256,
    tokenizerSha256: createHash('sha256').update(raw).digest('hex'),
    vocabSize: enc.vocabSize,
    dtype,
    bos,
    eos,
    splits,
  };
  // the tokenizer travels with its ids: a training run on this pack puts it into every checkpoint, so
  // `dsv32 serve` / `chat` on a checkpoint decode with the vocabulary it was trained on
  writeFileAtomic(join(o.outDir, PACK_TOKENIZER_FILE), raw);
  writeFileAtomic(join(o.outDir, PACK_FILE), JSON.stringify(pack, null, 2) + '\n');
  return pack;
}

/** Reads one split's token ids back (for loaders and tests). */
export function readPackedTokens(dir: string, split: SplitName): { tokens: Uint16Array | Uint32Array; starts: Uint32Array; mask: Uint8Array; pack: PackManifest } {
  const pack = JSON.parse(readFileSync(join(dir, PACK_FILE), 'utf8')) as PackManifest;
  const s = pack.splits[split];
  // copies into fresh ArrayBuffers: a Buffer's byteOffset need not be aligned for a typed-array view
  const t = new Uint8Array(readFileSync(join(dir, s.tokensFile)));
  const d = new Uint8Array(readFileSync(join(dir, s.docsFile)));
  const tokens = pack.dtype === 'uint16' ? new Uint16Array(t.buffer, t.byteOffset, t.length / 2) : new Uint32Array(t.buffer, t.byteOffset, t.length / 4);
  return { tokens, starts: new Uint32Array(d.buffer, d.byteOffset, d.length / 4), mask: new Uint8Array(readFileSync(join(dir, s.maskFile))), pack };
}
