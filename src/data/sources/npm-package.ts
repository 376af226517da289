// Finds an installed npm package's directory and version through Node's own resolution, so the
// pipeline reads exactly the copy that package-lock.json pinned (npm ci installs it).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SourceProbe } from '../source.js';

export function probeNpmPackage(name: string): SourceProbe {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    pkgJson = require.resolve(`${name}/package.json`);
  } catch {
    return { found: false, reason: `npm package ${name} is not installed` };
  }
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version?: string }).version ?? 'unknown';
  return { found: true, version, location: dirname(pkgJson) };
}
