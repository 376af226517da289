// The code-interpreter family: math and data-analysis questions answered by writing Python, run by
// the run_python tool in the sandbox. Integer answers must be exact, other
// numbers are within a relative tolerance, names are compared exactly.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import { type EnvFamily, type GenerateOptions, type GenerateResult, checkGenerateOptions, writeEnvFile } from '../registry.js';
import { generateDataset, writeDatasetDb } from './data.js';
import { LIST_TABLES, RUN_PYTHON, SNIPPET_TIMEOUT_S, SOLUTION, SUBMIT_TOOL } from './programs.js';
import { sampleCiTask } from './templates.js';

export const CI_MAX_TASKS = 2000;
/** Relative tolerance of numeric answers (|x - truth| <= REL_TOL * max(1, |truth|)). */
export const REL_TOL = 1e-6;

export function generateCodeInterpreter(opts: GenerateOptions): GenerateResult {
  const dir = checkGenerateOptions(opts, CI_MAX_TASKS);
  mkdirSync(dir, { recursive: true });

  const data = generateDataset(opts.seed);
  const envId = `code-interpreter-s${opts.seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'code-interpreter',
    description: 'Math and data-analysis questions (number theory, series, combinatorics, statistics over SQLite tables) solved by running Python.',
    provenance: { source: 'dsv32 env generate code-interpreter (offline, deterministic)', seed: opts.seed },
    difficulty: 'mixed',
    version: '1.0.0',
    submitTool: SUBMIT_TOOL.name,
    toolLimits: { timeoutMs: (SNIPPET_TIMEOUT_S + 5) * 1000, memoryMb: 512 },
  };
  writeEnvFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
  writeDatasetDb(data, join(dir, 'db.sqlite'));
  for (const t of [RUN_PYTHON, LIST_TABLES]) {
    writeEnvFile(dir, `tools/${t.schema.name}.py`, t.source);
    writeEnvFile(dir, `tools/${t.schema.name}.schema.json`, JSON.stringify(t.schema, null, 2) + '\n');
  }
  writeEnvFile(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
  writeEnvFile(dir, 'solutions/solve.py', SOLUTION);

  const rng = new Rng(opts.seed).fork('tasks');
  const seen = new Set<string>();
  let made = 0;
  for (let i = 0; made < opts.tasks; i++) {
    if (i > opts.tasks * 20) throw new FamilyError(`could only make ${made} distinct code-interpreter tasks for seed ${opts.seed}`);
    const t = sampleCiTask(rng, data, i);
    if (!t || seen.has(t.prompt)) continue;
    seen.add(t.prompt);
    const id = `ci-${String(made).padStart(4, '0')}`;
    const verifier =
      typeof t.truth === 'string'
        ? { exact: { answer: t.truth } }
        : Number.isInteger(t.truth)
          ? { numeric: t.truth, tolerance: 0, field: 'answer' }
          : { numeric: t.truth, tolerance: REL_TOL * Math.max(1, Math.abs(t.truth)), field: 'answer' };
    const task = {
      id,
      prompt: t.prompt + ' Use the run_python tool to compute it, then call submit_answer.',
      difficulty: t.difficulty,
      params: { kind: t.kind, answer_type: typeof t.truth === 'string' ? 'string' : 'number', reference_code: t.code },
      solution: { program: 'solutions/solve.py' },
      verifier,
    };
    writeEnvFile(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
    made++;
  }
  return { dir, envId, tasks: made, tools: 3 };
}

export const codeInterpreterFamily: EnvFamily = {
  name: 'code-interpreter',
  description: 'code interpreter: math and data questions over SQLite tables, solved with a sandboxed run_python tool',
  maxTasks: CI_MAX_TASKS,
  generate: generateCodeInterpreter,
};
