// The code-agent family: tiny Python/JS repositories with injected bugs. A task is an issue text; the
// agent reads files, runs the tests and submits changed files; the verifier runs the tests. A bug (or
// pair of bugs) becomes a task only if, measured by actually running the suite on the host, the gold
// patch turns at least one failing test into a passing one (fail-to-pass > 0) and breaks none
// (pass-to-fail = 0).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import { type EnvFamily, type GenerateOptions, type GenerateResult, checkGenerateOptions, writeEnvFile } from '../registry.js';
import { codeAgentCandidates, type Candidate } from './catalog.js';
import { RUNNER, SOLUTION, SUBMIT_TOOL, VERIFIER, repoTools } from './programs.js';
import type { RepoTemplate } from './template.js';

type Results = Record<string, 'pass' | 'fail'>;
interface RunOutput {
  results: Results;
  timedOut: boolean;
  output: string;
}
interface Runner {
  runTestsAsync(lang: string, files: Record<string, string>, tests: string[]): Promise<RunOutput>;
}

/**
 * Candidate tasks per seed (single bugs and same-repository pairs that inject unambiguously). The
 * repositories' structure does not depend on the seed, only names and data do, so seed 0's count
 * holds for every seed (the test checks a range of seeds).
 */
export const CODE_AGENT_MAX_TASKS = codeAgentCandidates(0).length;

function loadRunner(): { runner: Runner; cleanup: () => void } {
  const d = mkdtempSync(join(tmpdir(), 'dsv32-runner-'));
  writeFileSync(join(d, 'runner.cjs'), RUNNER);
  return { runner: createRequire(import.meta.url)(join(d, 'runner.cjs')) as Runner, cleanup: () => rmSync(d, { recursive: true, force: true }) };
}

interface Measured {
  failToPass: string[];
  passToPass: string[];
  passToFail: string[];
}

/** Runs `jobs` at a time; results keep the input order. */
async function pool<T, R>(items: T[], width: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

export async function generateCodeAgent(opts: GenerateOptions): Promise<GenerateResult> {
  const dir = checkGenerateOptions(opts, CODE_AGENT_MAX_TASKS);

  const all = codeAgentCandidates(opts.seed);
  const order = new Rng(opts.seed).fork('code-agent').shuffle(all);
  const { runner, cleanup } = loadRunner();
  // Test runs are child processes that mostly wait on interpreter start-up, so a few per core overlap well.
  const width = Math.max(2, Math.min(16, availableParallelism() * 2));
  const accepted: Array<{ c: Candidate; m: Measured }> = [];
  try {
    // Gold runs, once per repository and only for repositories that come up: every test must pass,
    // or the template itself is broken.
    const gold = new Map<string, Results>();
    const checkGold = async (tpls: RepoTemplate[]) => {
      const runs = await pool(tpls, width, (t) => runner.runTestsAsync(t.lang, t.files, t.tests));
      tpls.forEach((t, i) => {
        const g = runs[i]!;
        const failing = Object.keys(g.results).filter((n) => g.results[n] !== 'pass');
        if (!Object.keys(g.results).length || failing.length || g.timedOut) {
          throw new FamilyError(`code-agent repository ${t.name} (seed ${opts.seed}): the unmodified tests do not all pass (${failing.join(', ') || 'no tests found'}):\n${g.output}`);
        }
        gold.set(t.name, g.results);
      });
    };
    // Measure candidates in windows and accept in shuffled order, so the chosen set does not depend
    // on which child process finishes first.
    for (let at = 0; at < order.length && accepted.length < opts.tasks; at += width) {
      const window = order.slice(at, at + width);
      await checkGold([...new Set(window.map((c) => c.tpl))].filter((t) => !gold.has(t.name)));
      const runs = await pool(window, width, (c) => runner.runTestsAsync(c.tpl.lang, c.buggy, c.tpl.tests));
      window.forEach((c, i) => {
        if (accepted.length >= opts.tasks || runs[i]!.timedOut) return;
        const m = measure(gold.get(c.tpl.name)!, runs[i]!.results);
        if (m.failToPass.length > 0 && m.passToFail.length === 0) accepted.push({ c, m });
      });
    }
  } finally {
    cleanup();
  }
  if (accepted.length < opts.tasks) {
    throw new FamilyError(`only ${accepted.length} injected bugs pass the fail-to-pass > 0, pass-to-fail = 0 check for seed ${opts.seed}; asked for ${opts.tasks}`);
  }
  return writeEnvironment(dir, opts.seed, accepted);
}

function measure(gold: Results, before: Results): Measured {
  const names = Object.keys(gold).sort();
  return {
    failToPass: names.filter((t) => gold[t] === 'pass' && before[t] !== 'pass'),
    passToPass: names.filter((t) => gold[t] === 'pass' && before[t] === 'pass'),
    passToFail: Object.keys(before).filter((t) => before[t] === 'pass' && gold[t] !== 'pass'),
  };
}

function describe(tpl: RepoTemplate): string {
  return tpl.lang === 'python' ? 'Python, tests: python3 -m unittest' : 'JavaScript, tests: node --test';
}

function writeEnvironment(dir: string, seed: number, accepted: Array<{ c: Candidate; m: Measured }>): GenerateResult {
  mkdirSync(dir, { recursive: true });
  const envId = `code-agent-s${seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'code-agent',
    description: 'Fix injected bugs in tiny Python (unittest) and JavaScript (node --test) repositories from an issue text; verified by running the tests.',
    provenance: { source: 'dsv32 env generate code-agent (offline, deterministic)', seed },
    difficulty: 'mixed',
    version: '1.1.0',
    submitTool: SUBMIT_TOOL.name,
    toolLimits: { timeoutMs: 30_000, memoryMb: 512 },
  };
  writeEnvFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
  const db = new Database(join(dir, 'db.sqlite'));
  try {
    db.exec(`
      CREATE TABLE repos (name TEXT PRIMARY KEY, lang TEXT NOT NULL, template TEXT NOT NULL);
      CREATE TABLE files (repo TEXT NOT NULL REFERENCES repos(name), path TEXT NOT NULL, content TEXT NOT NULL,
        is_test INTEGER NOT NULL, PRIMARY KEY (repo, path));
    `);
    const insRepo = db.prepare('INSERT INTO repos VALUES (?, ?, ?)');
    const insFile = db.prepare('INSERT INTO files VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      accepted.forEach(({ c, m }, made) => {
        const repo = `${c.tpl.name}-${String(made).padStart(3, '0')}`;
        insRepo.run(repo, c.tpl.lang, c.tpl.name);
        for (const [path, text] of Object.entries(c.buggy)) insFile.run(repo, path, text, c.tpl.tests.includes(path) ? 1 : 0);
        const id = `code-${String(made).padStart(4, '0')}`;
        const issue = c.edits.map((e) => `- ${e.issue}`).join('\n');
        const task = {
          id,
          prompt:
            `Repository \`${repo}\` (${describe(c.tpl)}) has ${c.edits.length === 1 ? 'a bug report' : 'bug reports'}:\n${issue}\n\n` +
            'Fix the source code (not the tests) with the repository tools, then call submit_patch with the full contents of each file you changed.',
          difficulty: c.edits.length === 1 ? 'easy' : 'medium',
          params: { repo, lang: c.tpl.lang, gold: c.edits.map((e) => ({ path: e.path, buggy: e.buggy, fixed: e.fixed })), fail_to_pass: m.failToPass, pass_to_pass: m.passToPass },
          solution: { program: 'solutions/solve.py' },
          verifier: { program: 'verifiers/verify.js' },
        };
        writeEnvFile(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
      });
    })();
    const first = db.prepare('SELECT repo, path FROM files WHERE is_test = 0 ORDER BY repo LIMIT 1').get() as { repo: string; path: string };
    writeEnvFile(dir, 'tools/_runner.js', RUNNER);
    for (const t of repoTools(first.repo, first.path)) {
      writeEnvFile(dir, `tools/${t.schema.name}.js`, t.source);
      writeEnvFile(dir, `tools/${t.schema.name}.schema.json`, JSON.stringify(t.schema, null, 2) + '\n');
    }
    writeEnvFile(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
    writeEnvFile(dir, 'solutions/solve.py', SOLUTION);
    writeEnvFile(dir, 'verifiers/verify.js', VERIFIER);
    return { dir, envId, tasks: accepted.length, tools: 4 };
  } finally {
    db.close();
  }
}

export const codeAgentFamily: EnvFamily = {
  name: 'code-agent',
  description: 'code agent: fix injected bugs in tiny Python/JS repositories from an issue text; verified by running the tests',
  maxTasks: CODE_AGENT_MAX_TASKS,
  generate: generateCodeAgent,
};
