// A source made of text files that a Debian package installs under one directory (gzip-compressed
// or plain, as Debian's doc packages ship them). One document per file.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataSourceFormatError, DataSourceMissingError } from '../errors.js';
import { debianPackagesMatching, debianVersion } from '../debian-package.js';
import { takeShuffled, type CorpusSource, type DocumentRef, type SourceProbe } from '../source.js';

export function listFiles(root: string, include: RegExp, exclude?: RegExp): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const rel = relative(root, p);
      if (exclude?.test(rel)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && include.test(rel)) out.push(p);
    }
  };
  walk(root);
  return out.sort();
}

export function readMaybeGz(path: string): string {
  const buf = readFileSync(path);
  // gzip magic 1f 8b (dictzip .dz files are gzip too)
  return (buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf) : buf).toString('utf8');
}

export interface DebianTreeSpec {
  name: string;
  /** Package name, or a pattern for versioned names (linux-doc-6.1, python3.11-doc): newest wins. */
  package: string | RegExp;
  /** Shown in the install hint when nothing matches. */
  packageHint: string;
  /** Directory of the package's files; may depend on the package found. */
  root: (pkg: string) => string;
  include: RegExp;
  exclude?: RegExp;
  licence: string;
  description: string;
  defaultBudgetBytes: number;
  weight: number;
  /** Cleans a file's text (strip markup); return '' to drop it. */
  clean?: (text: string, rel: string) => string;
}

function newest(pkgs: string[]): string | undefined {
  // numeric-aware: linux-doc-6.10 after linux-doc-6.9
  return [...pkgs].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
}

export function resolveDebianPackage(spec: { package: string | RegExp }): string | undefined {
  if (typeof spec.package === 'string') return debianVersion(spec.package) ? spec.package : undefined;
  return newest(debianPackagesMatching(spec.package));
}

export function probeDebian(spec: { package: string | RegExp; packageHint: string; root: (pkg: string) => string }): SourceProbe {
  const pkg = resolveDebianPackage(spec);
  if (!pkg) return { found: false, reason: `Debian package ${spec.packageHint} is not installed` };
  const root = spec.root(pkg);
  try {
    statSync(root);
  } catch {
    return { found: false, reason: `Debian package ${pkg} is installed but ${root} is missing` };
  }
  return { found: true, version: debianVersion(pkg)!, location: root, package: pkg };
}

export function debianTreeSource(spec: DebianTreeSpec): CorpusSource {
  return {
    name: spec.name,
    kind: 'debian',
    package: spec.packageHint,
    install: `apt-get install ${spec.packageHint}`,
    licence: spec.licence,
    description: spec.description,
    requiredByDefault: false,
    defaultBudgetBytes: spec.defaultBudgetBytes,
    weight: spec.weight,
    probe: () => probeDebian(spec),
    documents(ctx) {
      const p = this.probe();
      if (!p.found) throw new DataSourceMissingError(`source ${spec.name}: ${p.reason}; install it with ${this.install}`);
      const files = listFiles(p.location, spec.include, spec.exclude);
      if (!files.length) throw new DataSourceFormatError(`source ${spec.name}: no files matching ${spec.include} under ${p.location}`);
      const refs: DocumentRef[] = files.map((f) => {
        const rel = relative(p.location, f);
        return { name: rel.replace(/\.gz$/, ''), read: () => (spec.clean ? spec.clean(readMaybeGz(f), rel) : readMaybeGz(f)) };
      });
      return takeShuffled(spec.name, refs, ctx);
    },
  };
}
