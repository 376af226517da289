// Built-in environment families. A family turns (seed, task count) into an environment directory in
// the format of docs/env-format.md, offline and deterministically. Families register themselves here;
// `dsv32 env generate <family>` and the synthesis pipeline look them up by name.
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
