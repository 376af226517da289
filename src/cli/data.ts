// `dsv32 data build` (the offline training corpus: shards, manifest, data card) and `dsv32 data
// tokenizer` (byte-level BPE trained on a built corpus). Events go to a JSONL log, progress to a bar
// on stderr when it is a terminal, and outputs are written under temporary names and renamed.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { intArg } from './args.js';
import { progress } from './progress.js';
import { buildCorpus, DATA_CARD_FILE, planSources } from '../data/build.js';
import { ALL_SOURCES } from '../data/sources/index.js';
import { DEFAULT_VOCAB_SIZE } from '../data/train-tokenizer.js';
import { trainCorpusTokenizer } from '../data/tokenizer-build.js';
import { packCorpus, PACK_FILE } from '../data/pack.js';

function jsonlLog(file: string): (event: string, fields?: Record<string, unknown>) => void {
  mkdirSync(dirname(file), { recursive: true });
  return (event, fields = {}) => appendFileSync(file, JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n');
}

function listArg(v: string): string[] {
  const xs = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (!xs.length) throw new InvalidArgumentError(`expected a comma-separated list of source names, got "${v}"`);
  return xs;
}

function weightsArg(v: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of listArg(v)) {
    const m = /^([\w-]+)=(.+)$/.exec(part);
    const w = m ? Number(m[2]) : NaN;
    if (!m || !(Number.isFinite(w) && w > 0)) throw new InvalidArgumentError(`--weights: expected name=weight with a positive weight, got "${part}"`);
    out[m[1]!] = w;
  }
  return out;
}

function fractionBelowHalf(v: string): number {
  const n = Number(v);
  if (!(n > 0 && n < 0.5)) throw new InvalidArgumentError(`--validation-fraction must be in (0, 0.5), got "${v}"`);
  return n;
}

export function register(program: Command): void {
  const data = program.command('data').description('offline training data: build the corpus, train the tokenizer');

  data
    .command('build')
    .description('build the training corpus from installed packages and dsv32 generators (no downloads): JSONL shards, manifest.json, DATA_CARD.md')
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'seed for sampling, synthetic data, split and order', intArg('--seed', 0, 2 ** 32 - 1), 0)
    .option('--max-bytes <n>', 'total text budget in bytes, shared by the sources by weight; whole documents are kept, so each source may pass its share by one document (default: each source in full or at its own cap)', intArg('--max-bytes', 1))
    .option('--weights <list>', 'source weights replacing their own in the --max-bytes split, e.g. arithmetic=30,sotu=10', weightsArg)
    .option('--sources <list>', `only these sources, each then required (known: ${ALL_SOURCES.map((s) => (s.optIn ? `${s.name} (opt-in)` : s.name)).join(', ')})`, listArg)
    .option('--require <list>', 'optional sources that must be present', listArg)
    .option('--validation-fraction <f>', 'share of documents held out for validation', fractionBelowHalf, 0.02)
    .option('--shard-bytes <n>', 'largest shard file in bytes', intArg('--shard-bytes', 1024), 8 * 2 ** 20)
    .option('--force', 'rebuild even if the directory already holds this corpus')
    .option('--log <file>', 'JSONL event log (default <out>/build.log.jsonl)')
    .action(async (o: { out: string; seed: number; maxBytes?: number; weights?: Record<string, number>; sources?: string[]; require?: string[]; validationFraction: number; shardBytes: number; force?: boolean; log?: string }) => {
      const log = jsonlLog(o.log ?? join(o.out, 'build.log.jsonl'));
      // the bar counts sources read (a source's size is unknown until it is read), with the current
      // source's MiB as its note; a missing required source fails here, before anything is read
      const planned = planSources({ sources: o.sources, require: o.require }).use.length;
      const bar = progress('data build (sources)', planned);
      let sourcesRead = 0;
      const say = (event: string, f: Record<string, unknown> = {}): void => {
        log(event, f);
        if (event === 'source-found') bar.line(`found   ${f.source} (${f.package} ${f.version})${f.required ? '' : ' [optional]'}`, 'stderr');
        else if (event === 'source-missing') bar.line(`missing ${f.source}: ${f.reason} — optional, skipped (install: ${f.install})`, 'stderr');
        else if (event === 'source-read') {
          bar.update(++sourcesRead);
          bar.line(`read    ${f.source}: ${f.documents} documents, ${(Number(f.textBytes) / 2 ** 20).toFixed(2)} MiB in ${f.ms} ms`, 'stderr');
        }
        else if (event === 'up-to-date') bar.line(`${o.out} already holds this corpus (sha256 ${f.corpusSha256}); use --force to rebuild`, 'stderr');
      };
      try {
        const r = await buildCorpus({
          outDir: o.out,
          seed: o.seed,
          maxBytes: o.maxBytes,
          weights: o.weights,
          sources: o.sources,
          require: o.require,
          validationFraction: o.validationFraction,
          shardBytes: o.shardBytes,
          force: o.force,
          log: say,
          onProgress: (source, bytes) => bar.update(sourcesRead, `${source} ${(bytes / 2 ** 20).toFixed(1)} MiB`),
        });
        bar.stop();
        const m = r.manifest;
        const total = m.splits.train.textBytes + m.splits.validation.textBytes;
        process.stdout.write(
          `${r.built ? 'built' : 'kept'} ${o.out}: ${m.splits.train.documents} train + ${m.splits.validation.documents} validation documents, ` +
            `${total} bytes of text (${(total / 2 ** 20).toFixed(1)} MiB), ${m.splits.train.shards.length + m.splits.validation.shards.length} shards, sha256 ${m.corpusSha256}\n` +
            `data card: ${join(o.out, DATA_CARD_FILE)}\n`,
        );
      } finally {
        bar.stop();
      }
    });

  data
    .command('tokenizer')
    .description('train a byte-level BPE tokenizer (tokenizer.json with the V3.2 chat tokens) on a built corpus')
    .requiredOption('--corpus <dir>', 'corpus directory from `dsv32 data build`')
    .requiredOption('--out <file>', 'tokenizer.json to write')
    .option('--vocab <n>', `vocabulary size including added tokens (default ${DEFAULT_VOCAB_SIZE}, see src/data/train-tokenizer.ts)`, intArg('--vocab', 300, 2 ** 21 - 1), DEFAULT_VOCAB_SIZE)
    .option('--min-frequency <n>', 'never merge a pair seen fewer times', intArg('--min-frequency', 1), 2)
    .option('--log <file>', 'JSONL event log (default tokenizer.log.jsonl beside --out)')
    .action((o: { corpus: string; out: string; vocab: number; minFrequency: number; log?: string }) => {
      const log = jsonlLog(o.log ?? join(dirname(o.out), 'tokenizer.log.jsonl'));
      mkdirSync(dirname(o.out), { recursive: true });
      let phase = '';
      let bar = progress('tokenizer', 1, { enabled: false });
      try {
        const r = trainCorpusTokenizer({
          corpusDir: o.corpus,
          vocabSize: o.vocab,
          outFile: o.out,
          minFrequency: o.minFrequency,
          log,
          onProgress: (p, d, t) => {
            if (p !== phase) {
              bar.stop();
              phase = p;
              bar = progress(p === 'count' ? 'count words (bytes)' : p === 'merge' ? 'learn merges' : 'check validation (bytes)', t);
            }
            bar.update(d);
          },
        });
        bar.stop();
        process.stdout.write(
          `wrote ${r.outFile}: vocabulary ${r.vocabSize} (${r.merges} merges) from ${r.trainDocuments} documents, ${(r.trainBytes / 2 ** 20).toFixed(1)} MiB; ` +
            `count ${(r.countMs / 1000).toFixed(1)} s, merges ${(r.mergeMs / 1000).toFixed(1)} s\n` +
            `validation: ${r.validation.documents} documents, ${r.validation.bytes} bytes → ${r.validation.tokens} tokens, ${r.validation.bytesPerToken.toFixed(3)} bytes/token, exact round trip\n` +
            `special ids: ${Object.entries(r.specialIds).map(([k, v]) => `${k}=${v}`).join(' ')}\n`,
        );
      } finally {
        bar.stop();
      }
    });

  data
    .command('pack')
    .description('tokenize a built corpus into flat token files (<split>.tokens, <split>.docs, pack.json) for pretraining')
    .requiredOption('--corpus <dir>', 'corpus directory from `dsv32 data build`')
    .requiredOption('--tokenizer <file>', 'tokenizer.json from `dsv32 data tokenizer`')
    .requiredOption('--out <dir>', 'output directory')
    .option('--log <file>', 'JSONL event log (default <out>/pack.log.jsonl)')
    .action((o: { corpus: string; tokenizer: string; out: string; log?: string }) => {
      const log = jsonlLog(o.log ?? join(o.out, 'pack.log.jsonl'));
      let current = '';
      let bar = progress('pack', 1, { enabled: false });
      try {
        const p = packCorpus({
          corpusDir: o.corpus,
          tokenizerFile: o.tokenizer,
          outDir: o.out,
          log,
          onProgress: (split, done, total) => {
            if (split !== current) {
              bar.stop();
              current = split;
              bar = progress(`pack ${split} (bytes)`, total);
            }
            bar.update(done);
          },
        });
        bar.stop();
        for (const [name, s] of Object.entries(p.splits)) {
          process.stdout.write(`${name}: ${s.documents} documents, ${s.tokens} tokens (${p.dtype}), ${(s.textBytes / s.tokens).toFixed(3)} bytes/token\n`);
        }
        process.stdout.write(`wrote ${join(o.out, PACK_FILE)}\n`);
      } finally {
        bar.stop();
      }
    });
}
