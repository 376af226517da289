// `dsv32 data build`: reads the installed sources and our generators, splits, shuffles and writes the
// corpus as JSONL shards with a manifest and a data card. Everything is a function of the seed, the
// options and the installed packages' contents; nothing is downloaded.
//
// Resume safety: shards and the data card are written under temporary names and renamed; the
// manifest is written last. A killed build leaves no manifest, and the next run rebuilds (the shard
// names are the same, so the old files are replaced, and shards that the new build does not list are
// removed). A directory whose manifest already matches the requested options and whose shards verify
// is left as it is.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../envs/rng.js';
import { writeFileAtomic } from './atomic.js';
import { dataCard } from './card.js';
import { DataOptionError, DataSourceMissingError, CorpusError } from './errors.js';
import {
  corpusFingerprint,
  MANIFEST_FILE,
  readManifest,
  verifyCorpus,
  type CorpusManifest,
  type MissingSource,
  type ShardInfo,
  type SourceRecord,
  type SplitInfo,
  type SplitName,
} from './manifest.js';
import type { CorpusDocument, CorpusSource } from './source.js';
import { ALL_SOURCES } from './sources/index.js';
import { isValidation, orderKey } from './split.js';

export const DATA_CARD_FILE = 'DATA_CARD.md';
const SHARD_RE = /^(train|validation)-\d{5}\.jsonl$/;

export interface BuildOptions {
  outDir: string;
  seed?: number;
  /** Total text budget, split over the sources by weight; undefined: each source's default. */
  maxBytes?: number;
  /** Per-source weights replacing the sources' own in the --max-bytes split (name → weight > 0). */
  weights?: Record<string, number>;
  /** Only these sources (each then required). Default: every known source but the opt-in ones. */
  sources?: string[];
  /** Optional sources to require as well. */
  require?: string[];
  validationFraction?: number;
  shardBytes?: number;
  /** Rebuild even when the directory already holds this corpus. */
  force?: boolean;
  log?: (event: string, fields?: Record<string, unknown>) => void;
  /** Text bytes read so far out of the planned total (Infinity-budget sources count as read). */
  onProgress?: (source: string, bytes: number, documents: number) => void;
  /** The source list (tests substitute small ones). */
  registry?: readonly CorpusSource[];
}

export interface BuildResult {
  manifest: CorpusManifest;
  /** False when an up-to-date corpus was already there. */
  built: boolean;
}

function checkOptions(o: BuildOptions): Required<Pick<BuildOptions, 'seed' | 'validationFraction' | 'shardBytes'>> {
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1) throw new DataOptionError(`--seed must be an integer in [0, 2^32), got ${seed}`);
  const validationFraction = o.validationFraction ?? 0.02;
  if (!(validationFraction > 0 && validationFraction < 0.5)) throw new DataOptionError(`validation fraction must be in (0, 0.5), got ${validationFraction}`);
  const shardBytes = o.shardBytes ?? 8 * 2 ** 20;
  if (!Number.isInteger(shardBytes) || shardBytes < 1024) throw new DataOptionError(`shard size must be an integer ≥ 1024 bytes, got ${shardBytes}`);
  if (o.maxBytes !== undefined && !(Number.isInteger(o.maxBytes) && o.maxBytes > 0)) throw new DataOptionError(`--max-bytes must be a positive integer, got ${o.maxBytes}`);
  for (const [n, w] of Object.entries(o.weights ?? {})) {
    if (!(Number.isFinite(w) && w > 0)) throw new DataOptionError(`--weights: ${n}=${w}: a weight must be a positive number`);
    if (o.maxBytes === undefined) throw new DataOptionError('--weights splits the --max-bytes budget; give --max-bytes too');
  }
  return { seed, validationFraction, shardBytes };
}

/** Which sources to read, which are required, and which optional ones are missing. */
export interface PlannedSource {
  source: CorpusSource;
  required: boolean;
  /** The package found (for a pattern like linux-doc-6.x, the installed one) and its version. */
  package: string;
  version: string;
}

export function planSources(o: Pick<BuildOptions, 'sources' | 'require' | 'registry'>): { use: PlannedSource[]; missing: MissingSource[] } {
  const registry = o.registry ?? ALL_SOURCES;
  const known = new Map(registry.map((s) => [s.name, s]));
  for (const n of [...(o.sources ?? []), ...(o.require ?? [])]) {
    if (!known.has(n)) throw new DataOptionError(`unknown corpus source "${n}"; known: ${[...known.keys()].join(', ')}`);
  }
  const selected = o.sources ? registry.filter((s) => o.sources!.includes(s.name)) : registry.filter((s) => !s.optIn || (o.require ?? []).includes(s.name));
  const required = new Set([...(o.sources ?? selected.filter((s) => s.requiredByDefault).map((s) => s.name)), ...(o.require ?? [])]);
  const use: PlannedSource[] = [];
  const missing: MissingSource[] = [];
  const fatal: string[] = [];
  for (const s of selected) {
    const p = s.probe();
    if (p.found) use.push({ source: s, required: required.has(s.name), package: p.package ?? s.package, version: p.version });
    else if (required.has(s.name)) fatal.push(`${s.name}: ${p.reason}; install it with ${s.install}`);
    else missing.push({ name: s.name, package: s.package, install: s.install, reason: p.reason });
  }
  if (fatal.length) throw new DataSourceMissingError(`required corpus source${fatal.length > 1 ? 's are' : ' is'} missing:\n  ${fatal.join('\n  ')}`);
  return { use, missing };
}

function sameRequest(m: CorpusManifest, seed: number, o: BuildOptions, vf: number, shardBytes: number, names: string[]): boolean {
  return (
    m.seed === seed &&
    m.maxBytes === (o.maxBytes ?? null) &&
    JSON.stringify(m.weights ?? null) === JSON.stringify(o.weights ?? null) &&
    m.validationFraction === vf &&
    m.shardBytes === shardBytes &&
    m.sources.map((s) => s.name).join(',') === names.join(',')
  );
}

function record(d: CorpusDocument): string {
  const r: Record<string, unknown> = { id: d.id, source: d.source, text: d.text };
  if (d.mode) r.mode = d.mode;
  if (d.messages) r.messages = d.messages;
  return JSON.stringify(r);
}

export async function buildCorpus(o: BuildOptions): Promise<BuildResult> {
  const { seed, validationFraction, shardBytes } = checkOptions(o);
  const log = o.log ?? (() => {});
  const { use, missing } = planSources(o);
  for (const u of use) log('source-found', { source: u.source.name, package: u.package, version: u.version, required: u.required });
  for (const m of missing) log('source-missing', { source: m.name, package: m.package, reason: m.reason, install: m.install });

  if (!o.force && existsSync(join(o.outDir, MANIFEST_FILE))) {
    try {
      const old = readManifest(o.outDir);
      if (sameRequest(old, seed, o, validationFraction, shardBytes, use.map((u) => u.source.name))) {
        verifyCorpus(o.outDir, old);
        log('up-to-date', { dir: o.outDir, corpusSha256: old.corpusSha256 });
        return { manifest: old, built: false };
      }
    } catch (e) {
      if (!(e instanceof CorpusError)) throw e;
      log('rebuild', { reason: e.message });
    }
  }

  for (const n of Object.keys(o.weights ?? {})) {
    if (!use.some((u) => u.source.name === n)) throw new DataOptionError(`--weights: "${n}" is not a source of this build (${use.map((u) => u.source.name).join(', ')})`);
  }
  const weightOf = (s: CorpusSource): number => o.weights?.[s.name] ?? s.weight;
  const totalWeight = use.reduce((a, u) => a + weightOf(u.source), 0);
  const docs: CorpusDocument[] = [];
  const records: SourceRecord[] = [];
  const seen = new Set<string>();
  for (const { source, required, package: pkg, version } of use) {
    const budget = o.maxBytes !== undefined ? Math.floor((o.maxBytes * weightOf(source)) / totalWeight) : source.defaultBudgetBytes;
    const t0 = performance.now();
    let bytes = 0;
    let n = 0;
    const rng = new Rng(seed).fork(source.name);
    for await (const d of source.documents({ rng, budgetBytes: budget, log })) {
      if (seen.has(d.id)) throw new CorpusError(`source ${source.name} produced document id "${d.id}" twice; ids must be unique`);
      seen.add(d.id);
      docs.push(d);
      bytes += Buffer.byteLength(d.text);
      n++;
      o.onProgress?.(source.name, bytes, n);
    }
    log('source-read', { source: source.name, documents: n, textBytes: bytes, budgetBytes: Number.isFinite(budget) ? budget : null, ms: Math.round(performance.now() - t0) });
    records.push({
      name: source.name,
      kind: source.kind,
      package: pkg,
      version,
      licence: source.licence,
      description: source.description,
      required,
      budgetBytes: Number.isFinite(budget) ? budget : null,
      documents: n,
      textBytes: bytes,
      train: { documents: 0, textBytes: 0 },
      validation: { documents: 0, textBytes: 0 },
    });
  }
  if (!docs.length) throw new CorpusError('no documents: every selected source was empty or missing');

  const bySource = new Map(records.map((r) => [r.name, r]));
  const split: Record<SplitName, { key: string; doc: CorpusDocument }[]> = { train: [], validation: [] };
  for (const d of docs) {
    const s: SplitName = isValidation(seed, d.id, validationFraction) ? 'validation' : 'train';
    split[s].push({ key: orderKey(seed, d.id), doc: d });
    const r = bySource.get(d.source)!;
    r[s].documents++;
    r[s].textBytes += Buffer.byteLength(d.text);
  }

  mkdirSync(o.outDir, { recursive: true });
  const splits = {} as Record<SplitName, SplitInfo>;
  const written = new Set<string>();
  for (const name of ['train', 'validation'] as const) {
    const items = split[name].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const shards: ShardInfo[] = [];
    let lines: string[] = [];
    let size = 0;
    let textBytes = 0;
    const flush = (): void => {
      if (!lines.length) return;
      const file = `${name}-${String(shards.length).padStart(5, '0')}.jsonl`;
      const body = Buffer.from(lines.join('\n') + '\n');
      writeFileAtomic(join(o.outDir, file), body);
      shards.push({ file, documents: lines.length, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
      written.add(file);
      log('shard-written', { file, documents: lines.length, bytes: body.length });
      lines = [];
      size = 0;
    };
    for (const { doc } of items) {
      const line = record(doc);
      const b = Buffer.byteLength(line) + 1;
      if (size > 0 && size + b > shardBytes) flush();
      lines.push(line);
      size += b;
      textBytes += Buffer.byteLength(doc.text);
    }
    flush();
    splits[name] = { documents: items.length, textBytes, shards };
  }
  // shards of an earlier build that this one does not list (a smaller corpus) would mislead a reader
  for (const f of readdirSync(o.outDir)) {
    if (SHARD_RE.test(f) && !written.has(f)) rmSync(join(o.outDir, f));
  }

  const manifest: CorpusManifest = {
    formatVersion: 1,
    createdBy: 'dsv32 data build',
    seed,
    maxBytes: o.maxBytes ?? null,
    weights: o.weights ?? null,
    validationFraction,
    shardBytes,
    sources: records,
    missing,
    splits,
    corpusSha256: corpusFingerprint(splits),
  };
  writeFileAtomic(join(o.outDir, DATA_CARD_FILE), dataCard(manifest));
  writeFileAtomic(join(o.outDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  log('built', { dir: o.outDir, documents: docs.length, corpusSha256: manifest.corpusSha256 });
  return { manifest, built: true };
}
