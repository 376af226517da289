// A tiny hand-written environment used by the format/episode/validate tests: named integer counters
// in SQLite, a Python and a Node tool, Python and Node solutions, a program verifier checking both
// the answer and the final state, and a fixed-calls task with an exact verifier.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

export type Files = Record<string, string | null>;

export const counterFiles = (): Files => ({
  'manifest.json': JSON.stringify({
    formatVersion: 1,
    id: 'counter-test',
    family: 'test',
    description: 'Named counters for tests',
    provenance: { source: 'hand-written test fixture' },
    difficulty: 'easy',
    version: '1.0.0',
    submitTool: 'submit_answer',
  }),
  'tools/get_counter.schema.json': JSON.stringify({
    name: 'get_counter',
    description: 'Current value of a counter',
    parameters: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false },
    examples: [{ name: 'a' }, { name: 'b' }],
  }),
  'tools/get_counter.py': `import json, os, sqlite3, sys
from _common import connect
args = json.load(sys.stdin)
row = connect().execute('SELECT value FROM counters WHERE name = ?', (args['name'],)).fetchone()
if row is None:
    sys.stderr.write('no counter named %r\\n' % args['name']); sys.exit(2)
print(json.dumps({'name': args['name'], 'value': row[0]}))
`,
  'tools/_common.py': `import os, sqlite3
def connect():
    return sqlite3.connect(os.environ['DSV32_DB'])
`,
  'tools/add_to_counter.schema.json': JSON.stringify({
    name: 'add_to_counter',
    description: 'Adds delta to a counter and returns the new value',
    parameters: {
      type: 'object',
      properties: { name: { type: 'string' }, delta: { type: 'integer' } },
      required: ['name', 'delta'],
      additionalProperties: false,
    },
    examples: [{ name: 'a', delta: 3 }],
  }),
  'tools/add_to_counter.js': `const Database = require('better-sqlite3');
let input = '';
process.stdin.on('data', (d) => (input += d)).on('end', () => {
  const { name, delta } = JSON.parse(input);
  const db = new Database(process.env.DSV32_DB);
  const r = db.prepare('UPDATE counters SET value = value + ? WHERE name = ?').run(delta, name);
  if (r.changes === 0) { process.stderr.write('no counter named ' + name + '\\n'); process.exit(2); }
  db.prepare('INSERT INTO log (name, delta) VALUES (?, ?)').run(name, delta);
  const { value } = db.prepare('SELECT value FROM counters WHERE name = ?').get(name);
  console.log(JSON.stringify({ name, value }));
});
`,
  'tools/submit_answer.schema.json': JSON.stringify({
    name: 'submit_answer',
    description: 'Submit the final answer',
    parameters: { type: 'object', properties: { total: { type: 'integer' } }, required: ['total'], additionalProperties: false },
  }),
  'solutions/solve.py': `from dsv32_env import task, call, submit
call('add_to_counter', name='a', delta=task['params']['delta'])
a = call('get_counter', name='a')['value']
b = call('get_counter', {'name': 'b'})['value']
submit({'total': a + b})
`,
  'solutions/solve.js': `const { task, call, submit } = require('dsv32_env');
call('add_to_counter', { name: 'a', delta: task.params.delta });
const a = call('get_counter', { name: 'a' }).value;
const b = call('get_counter', { name: 'b' }).value;
submit({ total: a + b });
`,
  'verifiers/check.py': `import json, os, sqlite3, sys
inp = json.load(sys.stdin)
db = sqlite3.connect('file:' + os.environ['DSV32_DB'] + '?mode=ro', uri=True)
vals = dict(db.execute('SELECT name, value FROM counters'))
delta = inp['task']['params']['delta']
ans = inp['answer'] if isinstance(inp['answer'], dict) else {}
if vals['a'] != 1 + delta:
    print(json.dumps({'score': 0, 'reason': 'counter a is %d, expected %d' % (vals['a'], 1 + delta)}))
elif ans.get('total') != vals['a'] + vals['b']:
    print(json.dumps({'score': 0, 'reason': 'total %r != %d' % (ans.get('total'), vals['a'] + vals['b'])}))
else:
    print(json.dumps({'score': 1, 'reason': 'ok'}))
`,
  'tasks/add-py.json': JSON.stringify({
    id: 'add-py',
    prompt: 'Add 3 to counter a, then report the sum of a and b.',
    params: { delta: 3 },
    solution: { program: 'solutions/solve.py' },
    verifier: { program: 'verifiers/check.py' },
  }),
  'tasks/add-js.json': JSON.stringify({
    id: 'add-js',
    prompt: 'Add 10 to counter a, then report the sum of a and b.',
    params: { delta: 10 },
    solution: { program: 'solutions/solve.js' },
    verifier: { program: 'verifiers/check.py' },
  }),
  'tasks/fixed.json': JSON.stringify({
    id: 'fixed',
    prompt: 'Report the sum of a and b.',
    solution: { calls: [{ tool: 'get_counter', args: { name: 'a' } }], answer: { total: 6 } },
    verifier: { exact: { total: 6 } },
  }),
});

/** Writes an environment directory from `files` (null = omit) and a counters database. */
export function writeEnv(files: Files, opts: { db?: boolean | string } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'env-test-'));
  for (const [rel, text] of Object.entries(files)) {
    if (text === null) continue;
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
  }
  if (typeof opts.db === 'string') writeFileSync(join(dir, 'db.sqlite'), opts.db);
  else if (opts.db !== false) {
    const db = new Database(join(dir, 'db.sqlite'));
    db.exec(`CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE log (id INTEGER PRIMARY KEY, name TEXT, delta INTEGER);
             INSERT INTO counters VALUES ('a', 1), ('b', 5);`);
    db.close();
  }
  return dir;
}
