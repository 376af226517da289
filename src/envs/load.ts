// Loads and validates an environment directory. Every problem found is collected with the file it
// belongs to, and loading fails with one EnvFormatError listing them all, so an author fixes a broken
// environment in one pass instead of one error at a time.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { Ajv, type ValidateFunction } from 'ajv';
import { EnvFormatError, type FormatProblem } from './errors.js';
import {
  describeZodError,
  manifestSchema,
  taskFileSchema,
  toolSchemaFileSchema,
  type Manifest,
  type SolutionSpec,
  type VerifierSpec,
} from './format.js';
import { langOfFile, type SandboxLang } from './sandbox.js';

export interface ToolInfo {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
}

export interface LoadedTool extends ToolInfo {
  /** Code file relative to the env root; undefined for the submit tool. */
  file?: string;
  lang?: SandboxLang;
  isSubmit: boolean;
  validateArgs: ValidateFunction;
  examples: Array<Record<string, unknown>>;
}

export interface LoadedTask {
  id: string;
  prompt: string;
  difficulty?: string;
  params: Record<string, unknown>;
  solution: SolutionSpec;
  verifier: VerifierSpec;
  /** tasks/<id>.json */
  file: string;
}

export interface Environment {
  /** Absolute path of the environment directory. */
  dir: string;
  manifest: Manifest;
  tools: Map<string, LoadedTool>;
  tasks: LoadedTask[];
  taskById: Map<string, LoadedTask>;
}

export interface LoadOptions {
  /** Parse every Python/JS file (without running it). Default true. */
  checkSyntax?: boolean;
}

function readJson(dir: string, rel: string, problems: FormatProblem[]): unknown {
  const p = join(dir, rel);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    problems.push({ file: rel, problem: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    problems.push({ file: rel, problem: `not valid JSON: ${(e as Error).message}` });
    return undefined;
  }
}

function listFiles(dir: string, sub: string): string[] {
  const p = join(dir, sub);
  if (!existsSync(p) || !statSync(p).isDirectory()) return [];
  return readdirSync(p).sort();
}

function checkDb(dir: string, problems: FormatProblem[]): void {
  const p = join(dir, 'db.sqlite');
  if (!existsSync(p)) {
    problems.push({ file: 'db.sqlite', problem: 'missing (every environment keeps its state in an SQLite database)' });
    return;
  }
  try {
    const db = new Database(p, { readonly: true, fileMustExist: true });
    try {
      const ok = db.pragma('quick_check', { simple: true });
      if (ok !== 'ok') problems.push({ file: 'db.sqlite', problem: `SQLite quick_check failed: ${String(ok)}` });
      const n = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").get() as { n: number };
      if (n.n === 0) problems.push({ file: 'db.sqlite', problem: 'has no tables' });
    } finally {
      db.close();
    }
  } catch (e) {
    problems.push({ file: 'db.sqlite', problem: `not a readable SQLite database: ${(e as Error).message}` });
  }
}

function programProblem(dir: string, rel: string, folder: string): string | undefined {
  if (!rel.startsWith(folder + '/')) return `program path "${rel}" must be inside ${folder}/`;
  if (!langOfFile(rel)) return `program "${rel}" must end in .py, .js, .mjs or .cjs`;
  const p = join(dir, rel);
  if (!existsSync(p) || !statSync(p).isFile()) return `program "${rel}" does not exist`;
  return undefined;
}

/** Parses (never runs) every program; returns problems keyed by relative path. */
function checkSyntax(dir: string, files: string[], problems: FormatProblem[]): void {
  const py = files.filter((f) => f.endsWith('.py'));
  if (py.length) {
    const script =
      'import ast, json, sys\n' +
      'out = {}\n' +
      'for f in json.loads(sys.stdin.read()):\n' +
      '    try:\n' +
      '        ast.parse(open(f, encoding="utf-8").read(), f)\n' +
      '    except SyntaxError as e:\n' +
      '        out[f] = f"Python syntax error at line {e.lineno}: {e.msg}"\n' +
      'print(json.dumps(out))\n';
    const r = spawnSync('/usr/bin/python3', ['-I', '-c', script], {
      input: JSON.stringify(py.map((f) => join(dir, f))),
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.status !== 0) {
      problems.push({ file: '.', problem: `cannot check Python syntax: ${r.stderr || r.error?.message}` });
    } else {
      const bad = JSON.parse(r.stdout) as Record<string, string>;
      for (const [abs, msg] of Object.entries(bad)) problems.push({ file: abs.slice(dir.length + 1), problem: msg });
    }
  }
  for (const f of files.filter((x) => langOfFile(x) === 'node')) {
    const r = spawnSync(process.execPath, ['--check', join(dir, f)], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) {
      const msg = (r.stderr.split('\n').find((l) => /Error/.test(l)) ?? r.stderr).trim();
      problems.push({ file: f, problem: `JavaScript syntax error: ${msg}` });
    }
  }
}

/** Loads `dir`, validating manifest, database, tools, tasks and programs; throws EnvFormatError. */
export function loadEnvironment(dirArg: string, opts: LoadOptions = {}): Environment {
  const dir = resolve(dirArg);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new EnvFormatError(dirArg, [{ file: '.', problem: 'not a directory' }]);
  }
  const problems: FormatProblem[] = [];

  let manifest: Manifest | undefined;
  const rawManifest = readJson(dir, 'manifest.json', problems);
  if (rawManifest !== undefined) {
    const m = manifestSchema.safeParse(rawManifest);
    if (m.success) manifest = m.data;
    else problems.push({ file: 'manifest.json', problem: describeZodError(m.error) });
  }

  checkDb(dir, problems);

  // Tools: tools/<name>.schema.json + tools/<name>.(py|js|mjs|cjs). Names starting with "_" are
  // shared helper modules the tools may import; they are staged but are not tools.
  const ajv = new Ajv({ strict: true, allErrors: true });
  const tools = new Map<string, LoadedTool>();
  const toolFiles = listFiles(dir, 'tools');
  if (!toolFiles.length) problems.push({ file: 'tools/', problem: 'missing or empty' });
  const codeByName = new Map<string, string[]>();
  for (const f of toolFiles) {
    if (f.startsWith('_') || f.endsWith('.schema.json')) continue;
    const lang = langOfFile(f);
    if (!lang) {
      problems.push({ file: `tools/${f}`, problem: 'unexpected file: tools/ holds <name>.schema.json and <name>.py|.js|.mjs|.cjs' });
      continue;
    }
    const name = f.replace(/\.(py|js|mjs|cjs)$/, '');
    codeByName.set(name, [...(codeByName.get(name) ?? []), f]);
  }
  for (const f of toolFiles.filter((x) => x.endsWith('.schema.json') && !x.startsWith('_'))) {
    const rel = `tools/${f}`;
    const raw = readJson(dir, rel, problems);
    if (raw === undefined) continue;
    const parsed = toolSchemaFileSchema.safeParse(raw);
    if (!parsed.success) {
      problems.push({ file: rel, problem: describeZodError(parsed.error) });
      continue;
    }
    const t = parsed.data;
    const stem = f.slice(0, -'.schema.json'.length);
    if (t.name !== stem) {
      problems.push({ file: rel, problem: `name "${t.name}" must match the file name "${stem}"` });
      continue;
    }
    let validateArgs: ValidateFunction;
    try {
      validateArgs = ajv.compile(t.parameters);
    } catch (e) {
      problems.push({ file: rel, problem: `parameters is not a valid JSON Schema: ${(e as Error).message}` });
      continue;
    }
    const badExample = (t.examples ?? []).findIndex((ex) => !validateArgs(ex));
    if (badExample >= 0) {
      problems.push({ file: rel, problem: `examples.${badExample} does not match parameters: ${ajv.errorsText(validateArgs.errors)}` });
      continue;
    }
    const isSubmit = manifest?.submitTool === t.name;
    const code = codeByName.get(t.name) ?? [];
    codeByName.delete(t.name);
    if (isSubmit && code.length) {
      problems.push({ file: `tools/${code[0]}`, problem: `"${t.name}" is the submit tool (manifest.submitTool); it takes no code` });
      continue;
    }
    if (!isSubmit && code.length !== 1) {
      problems.push({
        file: rel,
        problem: code.length ? `more than one code file: ${code.join(', ')}` : `no code file tools/${t.name}.py|.js|.mjs|.cjs`,
      });
      continue;
    }
    tools.set(t.name, {
      name: t.name,
      description: t.description,
      parameters: t.parameters,
      isSubmit,
      validateArgs,
      examples: t.examples ?? [],
      ...(isSubmit ? {} : { file: `tools/${code[0]}`, lang: langOfFile(code[0]!) }),
    });
  }
  for (const [name, files] of codeByName) {
    problems.push({ file: `tools/${files[0]}`, problem: `no schema file tools/${name}.schema.json` });
  }
  if (manifest && !tools.has(manifest.submitTool)) {
    problems.push({ file: 'manifest.json', problem: `submitTool "${manifest.submitTool}" has no tools/${manifest.submitTool}.schema.json` });
  } else if (manifest?.finalAnswer && !tools.get(manifest.submitTool)!.validateArgs({ answer: 0 })) {
    problems.push({ file: 'manifest.json', problem: `finalAnswer "${manifest.finalAnswer}" submits {"answer": <integer>}, which the submit tool ${manifest.submitTool} does not accept` });
  }

  // Tasks.
  const tasks: LoadedTask[] = [];
  const taskFiles = listFiles(dir, 'tasks');
  if (!taskFiles.length) problems.push({ file: 'tasks/', problem: 'missing or empty' });
  const programs = new Set<string>();
  for (const f of taskFiles) {
    const rel = `tasks/${f}`;
    if (!f.endsWith('.json')) {
      problems.push({ file: rel, problem: 'unexpected file: tasks/ holds <id>.json files' });
      continue;
    }
    const raw = readJson(dir, rel, problems);
    if (raw === undefined) continue;
    const parsed = taskFileSchema.safeParse(raw);
    if (!parsed.success) {
      problems.push({ file: rel, problem: describeZodError(parsed.error) });
      continue;
    }
    const t = parsed.data;
    if (`${t.id}.json` !== f) {
      problems.push({ file: rel, problem: `id "${t.id}" must match the file name` });
      continue;
    }
    let ok = true;
    if ('program' in t.solution) {
      const p = programProblem(dir, t.solution.program, 'solutions');
      if (p) (ok = false), problems.push({ file: rel, problem: `solution: ${p}` });
      else programs.add(t.solution.program);
    } else {
      t.solution.calls.forEach((c, i) => {
        const tool = tools.get(c.tool);
        if (!tool || tool.isSubmit) {
          ok = false;
          problems.push({ file: rel, problem: `solution.calls.${i}: unknown tool "${c.tool}"` });
        } else if (!tool.validateArgs(c.args)) {
          ok = false;
          problems.push({ file: rel, problem: `solution.calls.${i}: arguments for ${c.tool}: ${ajv.errorsText(tool.validateArgs.errors)}` });
        }
      });
    }
    if ('program' in t.verifier) {
      const p = programProblem(dir, t.verifier.program, 'verifiers');
      if (p) (ok = false), problems.push({ file: rel, problem: `verifier: ${p}` });
      else programs.add(t.verifier.program);
    }
    if (ok) {
      tasks.push({
        id: t.id,
        prompt: t.prompt,
        ...(t.difficulty ? { difficulty: t.difficulty } : {}),
        params: t.params,
        solution: t.solution,
        verifier: t.verifier,
        file: rel,
      });
    }
  }

  if (opts.checkSyntax !== false) {
    const code = [...[...tools.values()].flatMap((t) => (t.file ? [t.file] : [])), ...programs];
    for (const f of toolFiles.filter((x) => x.startsWith('_') && langOfFile(x))) code.push(`tools/${f}`);
    checkSyntax(dir, code, problems);
  }

  if (problems.length || !manifest) throw new EnvFormatError(dirArg, problems);
  return { dir, manifest, tools, tasks, taskById: new Map(tasks.map((t) => [t.id, t])) };
}

/** The tool list an agent sees (submit tool included), in a stable order. */
export function listTools(env: Environment): ToolInfo[] {
  return [...env.tools.values()]
    .sort((a, b) => Number(a.isSubmit) - Number(b.isSubmit) || a.name.localeCompare(b.name))
    .map(({ name, description, parameters }) => ({ name, description, parameters }));
}
