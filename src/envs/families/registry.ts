// Built-in environment families. A family turns (seed, task count) into an environment directory in
// the format of docs/env-format.md, offline and deterministically. Families register themselves here;
// `dsv32 env generate <family>` and the synthesis pipeline look them up by name.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FamilyError } from '../errors.js';

export interface GenerateOptions {
  seed: number;
  tasks: number;
  /** Output directory; must not exist or be empty. */
  outDir: string;
}

export interface GenerateResult {
  dir: string;
  envId: string;
  tasks: number;
  tools: number;
}

export interface EnvFamily {
  name: string;
  description: string;
  /** Largest task count the generator can produce for one environment. */
  maxTasks: number;
  generate(opts: GenerateOptions): Promise<GenerateResult> | GenerateResult;
}

const families = new Map<string, EnvFamily>();

export function registerFamily(f: EnvFamily): void {
  if (families.has(f.name)) throw new FamilyError(`environment family "${f.name}" is registered twice`);
  families.set(f.name, f);
}

export function getFamily(name: string): EnvFamily {
  const f = families.get(name);
  if (!f) throw new FamilyError(`unknown environment family "${name}"; known: ${[...families.keys()].sort().join(', ') || '(none)'}`);
  return f;
}

export function listFamilies(): EnvFamily[] {
  return [...families.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The checks every family's generate() makes first — a seed ≥ 0, 1 ≤ tasks ≤ maxTasks, an output
 * directory that is absent or empty (nothing the user has is overwritten) — with the messages the CLI
 * shows; returns the output directory's absolute path (not created yet).
 */
export function checkGenerateOptions(opts: GenerateOptions, maxTasks: number): string {
  if (!Number.isInteger(opts.seed) || opts.seed < 0) throw new FamilyError(`--seed must be a non-negative integer, got ${opts.seed}`);
  if (!Number.isInteger(opts.tasks) || opts.tasks < 1 || opts.tasks > maxTasks) {
    throw new FamilyError(`--tasks must be an integer in 1..${maxTasks}, got ${opts.tasks}`);
  }
  const dir = resolve(opts.outDir);
  if (existsSync(dir) && readdirSync(dir).length) throw new FamilyError(`output directory ${opts.outDir} exists and is not empty`);
  return dir;
}

/** Writes one file of an environment directory (dir/rel), creating its folders. */
export function writeEnvFile(dir: string, rel: string, text: string): void {
  const p = join(dir, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
}
