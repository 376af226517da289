// Looks up an installed Debian package's version without apt: dpkg's status database is a text file
// of stanzas ("Package: x", "Status: install ok installed", "Version: v"). Reading it needs no root,
// no network and no dpkg binary, and a missing package simply has no installed stanza.
import { readFileSync } from 'node:fs';

const STATUS = '/var/lib/dpkg/status';
let cache: Map<string, string> | undefined;

function installed(): Map<string, string> {
  if (cache) return cache;
  cache = new Map();
  let text = '';
  try {
    text = readFileSync(STATUS, 'utf8');
  } catch {
    return cache; // not a Debian system: every Debian source reports itself missing
  }
  for (const stanza of text.split('\n\n')) {
    const pkg = /^Package: (.+)$/m.exec(stanza)?.[1];
    const status = /^Status: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (pkg && version && status?.endsWith(' installed')) cache.set(pkg, version);
  }
  return cache;
}

/** The installed version of `pkg`, or undefined. */
export function debianVersion(pkg: string): string | undefined {
  return installed().get(pkg);
}

/** Installed packages whose names match `re` (e.g. every linux-doc-6.x), sorted. */
export function debianPackagesMatching(re: RegExp): string[] {
  return [...installed().keys()].filter((p) => re.test(p)).sort();
}
