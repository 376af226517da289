// Shape of a code-agent repository and the seeded variation applied to it. A spec's build() draws
// identifier names, constants and test data from its own Rng, so one seed always gives the same
// repository while different seeds give different code, data and issue texts for the same bug kinds.
import type { Rng } from '../../rng.js';

export interface Bug {
  path: string;
  /** Snippet of the correct source; occurs exactly once in `path`. */
  fixed: string;
  /** What the snippet becomes in the buggy repository; must also be unique after injection. */
  buggy: string;
  /** The bug report: a symptom as a user would see it, never the fix. */
  issue: string;
}

export interface RepoTemplate {
  name: string;
  lang: 'python' | 'node';
  files: Record<string, string>;
  /** Paths of test files: the verifier always uses the repository's own copies. */
  tests: string[];
  bugs: Bug[];
}

export interface RepoSpec {
  name: string;
  lang: 'python' | 'node';
  build(rng: Rng): RepoTemplate;
}

/** Python literal for the JSON-like values the templates put in tests. */
export function py(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number' || typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(py).join(', ')}]`;
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${py(x)}`).join(', ')}}`;
  throw new Error(`no Python literal for ${typeof v}`);
}

/** Python tuple literal. */
export function tup(xs: readonly unknown[]): string {
  return xs.length === 1 ? `(${py(xs[0])},)` : `(${xs.map(py).join(', ')})`;
}

/** JavaScript literal (JSON is valid JS for the values used here). */
export function js(v: unknown): string {
  return JSON.stringify(v);
}

/** `n` distinct integers in [lo, hi], in draw order. */
export function distinctInts(rng: Rng, n: number, lo: number, hi: number): number[] {
  if (hi - lo + 1 < n) throw new Error(`cannot draw ${n} distinct integers from [${lo}, ${hi}]`);
  const seen = new Set<number>();
  while (seen.size < n) seen.add(rng.int(lo, hi));
  return [...seen];
}

/** Identifier / word pools the templates draw from. */
export const WORDS = ['alpha', 'bravo', 'cedar', 'delta', 'ember', 'fjord', 'gamma', 'harbor', 'iris', 'juniper', 'kepler', 'lumen', 'maple', 'nectar', 'orbit', 'pixel', 'quartz', 'raven', 'sierra', 'tundra', 'umber', 'violet', 'willow', 'zephyr'];
