// The code-agent family: tiny Python/JS repositories with injected bugs. A task is an issue text; the
// agent reads files, runs the tests and submits changed files; the verifier runs the tests. A bug (or
// pair of bugs) becomes a task only if, measured by actually running the suite on the host, the gold
// patch turns at least one failing test into a passing one (fail-to-pass > 0) and breaks none
// (pass-to-fail = 0).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import type { EnvFamily, GenerateOptions, GenerateResult } from '../registry.js';
import { RUNNER, SOLUTION, SUBMIT_TOOL, VERIFIER, repoTools } from './programs.js';
import { REPOS, type RepoTemplate } from './repos.js';

type Edit = RepoTemplate['bugs'][number];
type Results = Record<string, 'pass' | 'fail'>;
interface Runner {
  runTests(lang: string, files: Record<string, string>, tests: string[]): { results: Results; timedOut: boolean; output: string };
}

/** Every single bug and every pair of bugs of the same repository. */
function candidates(): Array<{ tpl: RepoTemplate; edits: Edit[] }> {
  const out: Array<{ tpl: RepoTemplate; edits: Edit[] }> = [];
  for (const tpl of REPOS) {
    tpl.bugs.forEach((b) => out.push({ tpl, edits: [b] }));
    for (let i = 0; i < tpl.bugs.length; i++) for (let j = i + 1; j < tpl.bugs.length; j++) out.push({ tpl, edits: [tpl.bugs[i]!, tpl.bugs[j]!] });
  }
  return out;
}

export const CODE_AGENT_MAX_TASKS = candidates().length;

function inject(files: Record<string, string>, edits: Edit[]): Record<string, string> | undefined {
  const out = { ...files };
  for (const e of edits) {
    const src = out[e.path]!;
    if (src.split(e.fixed).length !== 2) return undefined;
    const buggy = src.replace(e.fixed, e.buggy);
    // The solution reverses the edit by locating the buggy snippet, so it must be unambiguous.
    if (buggy.split(e.buggy).length !== 2) return undefined;
    out[e.path] = buggy;
  }
  return out;
}

function loadRunner(): { runner: Runner; cleanup: () => void } {
  const d = mkdtempSync(join(tmpdir(), 'dsv32-runner-'));
  writeFileSync(join(d, 'runner.cjs'), RUNNER);
  return { runner: createRequire(import.meta.url)(join(d, 'runner.cjs')) as Runner, cleanup: () => rmSync(d, { recursive: true, force: true }) };
}

function write(dir: string, rel: string, text: string): void {
  const p = join(dir, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
}

export function generateCodeAgent(opts: GenerateOptions): GenerateResult {
  if (!Number.isInteger(opts.seed) || opts.seed < 0) throw new FamilyError(`--seed must be a non-negative integer, got ${opts.seed}`);
  if (!Number.isInteger(opts.tasks) || opts.tasks < 1 || opts.tasks > CODE_AGENT_MAX_TASKS) {
    throw new FamilyError(`--tasks must be an integer in 1..${CODE_AGENT_MAX_TASKS} (single and paired injected bugs), got ${opts.tasks}`);
  }
  const dir = resolve(opts.outDir);
  if (existsSync(dir) && readdirSync(dir).length) throw new FamilyError(`output directory ${opts.outDir} exists and is not empty`);
  mkdirSync(dir, { recursive: true });

  const envId = `code-agent-s${opts.seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'code-agent',
    description: 'Fix injected bugs in tiny Python (unittest) and JavaScript (node --test) repositories from an issue text; verified by running the tests.',
    provenance: { source: 'dsv32 env generate code-agent (offline, deterministic)', seed: opts.seed },
    difficulty: 'mixed',
    version: '1.0.0',
    submitTool: SUBMIT_TOOL.name,
    toolLimits: { timeoutMs: 30_000, memoryMb: 512 },
  };
  write(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');

  const order = new Rng(opts.seed).fork('code-agent').shuffle(candidates());
  const { runner, cleanup } = loadRunner();
  const db = new Database(join(dir, 'db.sqlite'));
  try {
    db.exec(`
      CREATE TABLE repos (name TEXT PRIMARY KEY, lang TEXT NOT NULL, template TEXT NOT NULL);
      CREATE TABLE files (repo TEXT NOT NULL REFERENCES repos(name), path TEXT NOT NULL, content TEXT NOT NULL,
        is_test INTEGER NOT NULL, PRIMARY KEY (repo, path));
    `);
    const insRepo = db.prepare('INSERT INTO repos VALUES (?, ?, ?)');
    const insFile = db.prepare('INSERT INTO files VALUES (?, ?, ?, ?)');
    // Gold results per template are the same for every task of that template.
    const goldRuns = new Map<string, Results>();
    let made = 0;
    for (const c of order) {
      if (made >= opts.tasks) break;
      const buggy = inject(c.tpl.files, c.edits);
      if (!buggy) continue;
      let gold = goldRuns.get(c.tpl.name);
      if (!gold) {
        gold = runner.runTests(c.tpl.lang, c.tpl.files, c.tpl.tests).results;
        goldRuns.set(c.tpl.name, gold);
      }
      const before = runner.runTests(c.tpl.lang, buggy, c.tpl.tests).results;
      const names = Object.keys(gold).sort();
      const failToPass = names.filter((t) => gold[t] === 'pass' && before[t] !== 'pass');
      const passToPass = names.filter((t) => gold[t] === 'pass' && before[t] === 'pass');
      const passToFail = Object.keys(before).filter((t) => before[t] === 'pass' && gold[t] !== 'pass');
      if (!names.length || failToPass.length === 0 || passToFail.length > 0) continue;
      const repo = `${c.tpl.name}-${String(made).padStart(3, '0')}`;
      insRepo.run(repo, c.tpl.lang, c.tpl.name);
      for (const [path, text] of Object.entries(buggy)) insFile.run(repo, path, text, c.tpl.tests.includes(path) ? 1 : 0);
      const id = `code-${String(made).padStart(4, '0')}`;
      const issue = c.edits.map((e) => `- ${e.issue}`).join('\n');
      const task = {
        id,
        prompt:
          `Repository \`${repo}\` (${c.tpl.lang === 'python' ? 'Python, tests: python3 -m unittest' : 'JavaScript, tests: node --test'}) has ` +
          `${c.edits.length === 1 ? 'a bug report' : 'bug reports'}:\n${issue}\n\nFix the source code (not the tests) with the repository tools, ` +
          'then call submit_patch with the full contents of each file you changed.',
        difficulty: c.edits.length === 1 ? 'easy' : 'medium',
        params: { repo, lang: c.tpl.lang, gold: c.edits.map((e) => ({ path: e.path, buggy: e.buggy, fixed: e.fixed })), fail_to_pass: failToPass, pass_to_pass: passToPass },
        solution: { program: 'solutions/solve.py' },
        verifier: { program: 'verifiers/verify.js' },
      };
      write(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
      made++;
    }
    if (made < opts.tasks) throw new FamilyError(`only ${made} injected bugs pass the fail-to-pass > 0, pass-to-fail = 0 check; asked for ${opts.tasks}`);
    const first = (db.prepare('SELECT repo, path FROM files WHERE is_test = 0 ORDER BY repo LIMIT 1').get() as { repo: string; path: string });
    write(dir, 'tools/_runner.js', RUNNER);
    for (const t of repoTools(first.repo, first.path)) {
      write(dir, `tools/${t.schema.name}.js`, t.source);
      write(dir, `tools/${t.schema.name}.schema.json`, JSON.stringify(t.schema, null, 2) + '\n');
    }
    write(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
    write(dir, 'solutions/solve.py', SOLUTION);
    write(dir, 'verifiers/verify.js', VERIFIER);
    return { dir, envId, tasks: made, tools: 4 };
  } finally {
    db.close();
    cleanup();
  }
}

export const codeAgentFamily: EnvFamily = {
  name: 'code-agent',
  description: 'code agent: fix injected bugs in tiny Python/JS repositories from an issue text; verified by running the tests',
  maxTasks: CODE_AGENT_MAX_TASKS,
  generate: generateCodeAgent,
};
