// The working copy of an environment the synthesis agent is building: out/drafts/<env-id>/, in the
// on-disk format of docs/env-format.md. The agent changes it only through the operations here:
// files under tools/, solutions/ and verifiers/; SQL on the database, run inside the sandbox (so an
// ATTACH or a runaway query cannot touch the host); tool probes in the sandbox on a copy of the
// state; and task files written by the pipeline after checks. The manifest belongs to the pipeline.
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Ajv } from 'ajv';
import { describeZodError, toolSchemaFileSchema, type Manifest } from '../format.js';
import { RUNTIME_ENV, runtimeLibDir } from '../runtime-lib.js';
import { langOfFile, runSandboxed } from '../sandbox.js';
import { StagingDir } from '../staging.js';

export const SUBMIT_TOOL = 'submit_result';
const WRITABLE = /^(tools|solutions|verifiers)\/[A-Za-z0-9_][A-Za-z0-9_.-]{0,80}$/;
const MAX_FILE_BYTES = 256 * 1024;
const SQL_LIMITS = { timeoutMs: 20_000, memoryMb: 512 };

/** A problem with what the agent asked for; the message goes back to the agent verbatim. */
export class DraftError extends Error {}

const RUN_SQL_PY = `import json, sqlite3, sys
sql = sys.stdin.read()
stmts, buf = [], ''
for part in sql.split(';'):
    buf += part + ';'
    if sqlite3.complete_statement(buf):
        if buf.strip(' \\n\\t\\r;'):
            stmts.append(buf)
        buf = ''
if buf.strip(' \\n\\t\\r;'):
    stmts.append(buf)
con = sqlite3.connect('/env/state/db.sqlite', isolation_level=None)
cols, rows, truncated = None, [], False
try:
    con.execute('BEGIN')
    for s in stmts:
        cur = con.execute(s)
        if cur.description:
            cols = [d[0] for d in cur.description]
            rows = cur.fetchmany(201)
            truncated = len(rows) > 200
            rows = [list(r) for r in rows[:200]]
    con.execute('COMMIT')
except sqlite3.Error as e:
    con.execute('ROLLBACK') if con.in_transaction else None
    sys.stderr.write('SQL error: %s\\n' % e)
    sys.exit(2)
out = {'statements': len(stmts), 'changes': con.total_changes}
if cols is not None:
    out.update(columns=cols, rows=rows, truncated=truncated)
print(json.dumps(out, default=str))
`;

export interface TableInfo {
  name: string;
  columns: string[];
  rows: number;
}

export class Draft {
  constructor(
    readonly dir: string,
    readonly envId: string,
  ) {}

  get dbPath(): string {
    return join(this.dir, 'db.sqlite');
  }

  /** Creates the skeleton (manifest, empty database, a generic submit tool) unless it exists. */
  init(manifest: Manifest): void {
    if (existsSync(join(this.dir, 'manifest.json'))) return;
    for (const d of ['tools', 'solutions', 'verifiers', 'tasks']) mkdirSync(join(this.dir, d), { recursive: true });
    new Database(this.dbPath).close();
    writeFileSync(
      join(this.dir, 'tools', `${SUBMIT_TOOL}.schema.json`),
      JSON.stringify(
        {
          name: SUBMIT_TOOL,
          description: 'Submit the final answer to the task; this ends the task.',
          parameters: { type: 'object', properties: { answer: { description: 'the answer, in the form the task asks for' } }, required: ['answer'], additionalProperties: false },
        },
        null,
        2,
      ) + '\n',
    );
    writeFileSync(join(this.dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  }

  private checkRel(rel: string, forWrite: boolean): string {
    if (forWrite && !WRITABLE.test(rel)) {
      throw new DraftError(`path "${rel}" is not writable: write tools/<name>.schema.json, tools/<name>.py|.js, solutions/<file> or verifiers/<file> (letters, digits, "_", ".", "-")`);
    }
    if (rel.startsWith('/') || rel.split('/').includes('..')) throw new DraftError(`path "${rel}" must be relative and stay inside the environment`);
    return join(this.dir, rel);
  }

  writeFile(rel: string, content: string): string {
    const p = this.checkRel(rel, true);
    if (Buffer.byteLength(content) > MAX_FILE_BYTES) throw new DraftError(`${rel}: ${Buffer.byteLength(content)} bytes is over the ${MAX_FILE_BYTES}-byte limit`);
    if (rel === `tools/${SUBMIT_TOOL}.py` || rel === `tools/${SUBMIT_TOOL}.js`) throw new DraftError(`${SUBMIT_TOOL} is the submit tool; it has a schema but no code`);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
    return `wrote ${rel} (${Buffer.byteLength(content)} bytes)`;
  }

  readFile(rel: string): string {
    if (rel === 'db.sqlite') throw new DraftError('db.sqlite is binary; inspect it with run_sql');
    const p = this.checkRel(rel, false);
    if (!existsSync(p) || !statSync(p).isFile()) throw new DraftError(`${rel} does not exist`);
    return readFileSync(p, 'utf8');
  }

  files(): string[] {
    const out: string[] = [];
    for (const d of ['tools', 'solutions', 'verifiers', 'tasks']) {
      const p = join(this.dir, d);
      if (existsSync(p)) for (const f of readdirSync(p).sort()) out.push(`${d}/${f}`);
    }
    return out;
  }

  tables(): TableInfo[] {
    const db = new Database(this.dbPath, { readonly: true, fileMustExist: true });
    try {
      const names = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{ name: string }>;
      return names.map(({ name }) => {
        const q = `"${name.replace(/"/g, '""')}"`;
        const columns = (db.prepare(`PRAGMA table_info(${q})`).all() as Array<{ name: string; type: string }>).map((c) => `${c.name} ${c.type}`.trim());
        const { n } = db.prepare(`SELECT count(*) AS n FROM ${q}`).get() as { n: number };
        return { name, columns, rows: n };
      });
    } finally {
      db.close();
    }
  }

  /** Tools with a schema file, the submit tool excluded. */
  toolNames(): string[] {
    return this.files()
      .filter((f) => f.startsWith('tools/') && f.endsWith('.schema.json') && !f.includes('/_'))
      .map((f) => f.slice('tools/'.length, -'.schema.json'.length))
      .filter((n) => n !== SUBMIT_TOOL);
  }

  /** Runs SQL on the draft database inside the sandbox; the change is kept only if every statement succeeds. */
  async runSql(sql: string): Promise<unknown> {
    const stage = new StagingDir('dsv32-synth-sql-');
    try {
      stage.writableDir('state');
      stage.copyFile(this.dbPath, 'state/db.sqlite', 0o666);
      stage.writeFile('prog/run_sql.py', RUN_SQL_PY);
      const r = await runSandboxed({
        lang: 'python',
        program: '/prog/run_sql.py',
        stdin: sql,
        mounts: [
          { hostPath: join(stage.root, 'state'), sandboxPath: '/env/state', writable: true },
          { hostPath: join(stage.root, 'prog'), sandboxPath: '/prog' },
        ],
        limits: SQL_LIMITS,
      });
      if (r.timedOut) throw new DraftError(`SQL timed out after ${SQL_LIMITS.timeoutMs} ms; nothing was changed`);
      if (r.exitCode !== 0) throw new DraftError(`${r.stderr.trim().slice(-1500) || `SQL runner exited with ${r.exitCode}`}; nothing was changed`);
      cpSync(join(stage.root, 'state', 'db.sqlite'), this.dbPath);
      return JSON.parse(r.stdout);
    } finally {
      stage.remove();
    }
  }

  /** Calls one draft tool in the sandbox on a throw-away copy of the database. */
  async runTool(name: string, args: Record<string, unknown>): Promise<{ ok: boolean; result?: unknown; error?: string }> {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) throw new DraftError(`"${name}" is not a tool name`);
    const schemaRel = `tools/${name}.schema.json`;
    let parsed;
    try {
      parsed = toolSchemaFileSchema.safeParse(JSON.parse(this.readFile(schemaRel)));
    } catch (e) {
      throw new DraftError(`${schemaRel}: ${(e as Error).message}`);
    }
    if (!parsed.success) throw new DraftError(`${schemaRel}: ${describeZodError(parsed.error)}`);
    let validate;
    try {
      validate = new Ajv({ strict: true, allErrors: true }).compile(parsed.data.parameters);
    } catch (e) {
      throw new DraftError(`${schemaRel}: parameters is not a valid JSON Schema: ${(e as Error).message}`);
    }
    if (!validate(args)) throw new DraftError(`arguments do not match ${schemaRel}: ${(validate.errors ?? []).map((e) => `${e.instancePath || '(arguments)'} ${e.message}`).join('; ')}`);
    const code = this.files().filter((f) => f.startsWith(`tools/${name}.`) && langOfFile(f));
    if (code.length !== 1) throw new DraftError(code.length ? `tool ${name} has several code files: ${code.join(', ')}` : `tool ${name} has no code file tools/${name}.py|.js`);
    const stage = new StagingDir('dsv32-synth-tool-');
    try {
      stage.copyDir(join(this.dir, 'tools'), 'tools');
      stage.writableDir('state');
      stage.copyFile(this.dbPath, 'state/db.sqlite', 0o666);
      const r = await runSandboxed({
        lang: langOfFile(code[0]!)!,
        program: `/env/${code[0]}`,
        stdin: JSON.stringify(args),
        mounts: [
          { hostPath: join(stage.root, 'tools'), sandboxPath: '/env/tools' },
          { hostPath: runtimeLibDir(), sandboxPath: '/opt/dsv32' },
          { hostPath: join(stage.root, 'state'), sandboxPath: '/env/state', writable: true },
        ],
        env: { ...RUNTIME_ENV, DSV32_DB: '/env/state/db.sqlite', DSV32_TOOL: name },
        limits: { timeoutMs: 10_000, memoryMb: 512 },
      });
      if (r.timedOut) return { ok: false, error: 'timed out after 10 s' };
      if (r.exitCode !== 0) return { ok: false, error: `exited with status ${r.exitCode}: ${r.stderr.trim().slice(-1500) || '(no stderr)'}` };
      try {
        return { ok: true, result: JSON.parse(r.stdout) };
      } catch {
        return { ok: false, error: `printed output that is not JSON: ${r.stdout.slice(0, 300)}` };
      }
    } finally {
      stage.remove();
    }
  }

  writeManifest(m: Manifest): void {
    writeFileSync(join(this.dir, 'manifest.json'), JSON.stringify(m, null, 2) + '\n');
  }

  writeTask(task: { id: string } & Record<string, unknown>): string {
    const rel = `tasks/${task.id}.json`;
    writeFileSync(join(this.dir, rel), JSON.stringify(task, null, 2) + '\n');
    return rel;
  }

  removeTask(id: string): void {
    rmSync(join(this.dir, 'tasks', `${id}.json`), { force: true });
  }

  taskIds(): string[] {
    const p = join(this.dir, 'tasks');
    return existsSync(p) ? readdirSync(p).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort() : [];
  }

  snapshot(to: string): void {
    rmSync(to, { recursive: true, force: true });
    mkdirSync(join(to, '..'), { recursive: true });
    cpSync(this.dir, to, { recursive: true });
  }

  restore(from: string): void {
    rmSync(this.dir, { recursive: true, force: true });
    cpSync(from, this.dir, { recursive: true });
  }
}
