// The search-agent family: multi-hop questions over an offline corpus of generated documents about a
// synthetic world, answered with BM25 search (SQLite FTS5) and an open-document tool.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import { type EnvFamily, type GenerateOptions, type GenerateResult, checkGenerateOptions, writeEnvFile } from '../registry.js';
import { searchTitles, writeSearchDb } from './corpus-db.js';
import { OPEN_TOOL, SOLUTION, SUBMIT_TOOL, TOP_K, VERIFIER, searchTool } from './programs.js';
import { sampleQuestion } from './questions.js';
import { generateSearchWorld } from './world.js';

export const SEARCH_MAX_TASKS = 1000;

export function generateSearch(opts: GenerateOptions): GenerateResult {
  const dir = checkGenerateOptions(opts, SEARCH_MAX_TASKS);
  mkdirSync(dir, { recursive: true });

  const world = generateSearchWorld(opts.seed);
  const envId = `search-s${opts.seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'search',
    description: `Multi-hop questions over ${world.docs.length} generated documents about people, companies, cities and countries; BM25 search and open tools.`,
    provenance: { source: 'dsv32 env generate search (offline, deterministic)', seed: opts.seed },
    difficulty: 'mixed',
    version: '1.0.0',
    submitTool: SUBMIT_TOOL.name,
    toolLimits: { timeoutMs: 10_000, memoryMb: 256 },
  };
  writeEnvFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
  const dbPath = join(dir, 'db.sqlite');
  writeSearchDb(world, dbPath);
  const search = searchTool(world.companies[0]!.name);
  for (const t of [search, OPEN_TOOL]) {
    writeEnvFile(dir, `tools/${t.schema.name}.py`, t.source);
    writeEnvFile(dir, `tools/${t.schema.name}.schema.json`, JSON.stringify(t.schema, null, 2) + '\n');
  }
  writeEnvFile(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
  writeEnvFile(dir, 'solutions/solve.py', SOLUTION);
  writeEnvFile(dir, 'verifiers/verify.py', VERIFIER);

  const db = new Database(dbPath, { readonly: true });
  try {
    const rng = new Rng(opts.seed).fork('questions');
    const seen = new Set<string>();
    let made = 0;
    for (let i = 0; made < opts.tasks; i++) {
      if (i > opts.tasks * 20) throw new FamilyError(`could only make ${made} distinct search questions for seed ${opts.seed}`);
      const q = sampleQuestion(rng, world, i);
      if (!q || seen.has(q.prompt)) continue;
      // Every search the reference solution makes must surface its page in the default top k.
      if (!q.searches.every((s) => searchTitles(db, s.query, TOP_K).includes(s.title))) continue;
      seen.add(q.prompt);
      const id = `search-${String(made).padStart(4, '0')}`;
      const task = {
        id,
        prompt: `${q.prompt} Use the search and open tools over the document collection, then call submit_answer with just the answer.`,
        difficulty: q.hops >= 3 ? 'hard' : 'medium',
        params: { kind: q.kind, hops: q.hops, steps: q.steps, answer: q.answer },
        solution: { program: 'solutions/solve.py' },
        verifier: { program: 'verifiers/verify.py' },
      };
      writeEnvFile(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
      made++;
    }
    return { dir, envId, tasks: made, tools: 3 };
  } finally {
    db.close();
  }
}

export const searchFamily: EnvFamily = {
  name: 'search',
  description: 'search agent: 2-3 hop questions over a few thousand generated documents (BM25 search via SQLite FTS5, open)',
  maxTasks: SEARCH_MAX_TASKS,
  generate: generateSearch,
};
