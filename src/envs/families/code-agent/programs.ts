// Programs shipped in every code-agent environment, all in Node (node's address-space headroom in
// the sandbox is what lets a tool start `node --test` children): a shared test runner
// (tools/_runner.js), the repository tools, the verifier, and the Python reference solution.

/** Materialises a repository in a scratch directory and runs its tests; per-test pass/fail. */
export const RUNNER = `'use strict';
// Shared by the tools, the verifier and the generator (which runs it on the host to measure
// fail-to-pass / pass-to-fail of each injected bug).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const TEST_TIMEOUT_MS = 15000;

function parse(lang, text) {
  const results = {};
  if (lang === 'python') {
    for (const m of text.matchAll(/^(test\\w*) \\(([\\w.]+)\\) \\.\\.\\. (ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$/gm)) {
      results[m[2]] = m[3] === 'ok' || m[3] === 'expected failure' ? 'pass' : 'fail';
    }
  } else {
    for (const m of text.matchAll(/^(not ok|ok) \\d+ - (.+?)(?: # .*)?$/gm)) results[m[2]] = m[1] === 'ok' ? 'pass' : 'fail';
  }
  return results;
}

function materialise(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'repo-'));
  for (const [rel, text] of Object.entries(files)) {
    if (rel.startsWith('/') || rel.split('/').includes('..')) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error('bad path ' + rel);
    }
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

function command(lang, tests) {
  return lang === 'python'
    ? ['/usr/bin/python3', ['-s', '-m', 'unittest', '-v']]
    : [process.execPath, ['--test', '--test-reporter=tap', ...tests]];
}

function summarise(lang, dir, stdout, stderr, timedOut) {
  // Timings and the scratch path vary between runs; tools must be deterministic, so they go.
  const output = ((stdout || '') + (stderr || ''))
    .split(dir).join('.')
    .replace(/duration_ms:? [0-9.]+/g, 'duration_ms -')
    .replace(/ in [0-9.]+s$/gm, ' in -s');
  return { results: parse(lang, output), timedOut, output: output.slice(-4000) };
}

function runTests(lang, files, tests) {
  const dir = materialise(files);
  try {
    const env = { PATH: '/usr/bin:/bin', HOME: dir, PYTHONDONTWRITEBYTECODE: '1' };
    const [bin, args] = command(lang, tests);
    const r = spawnSync(bin, args, { cwd: dir, env, encoding: 'utf8', timeout: TEST_TIMEOUT_MS });
    return summarise(lang, dir, r.stdout, r.stderr, r.error !== undefined && r.error.code === 'ETIMEDOUT');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The same run without blocking, so the generator can measure many injected bugs at once.
function runTestsAsync(lang, files, tests) {
  return new Promise((resolve, reject) => {
    let dir;
    try {
      dir = materialise(files);
    } catch (e) {
      reject(e);
      return;
    }
    const env = { PATH: '/usr/bin:/bin', HOME: dir, PYTHONDONTWRITEBYTECODE: '1' };
    const [bin, args] = command(lang, tests);
    const child = spawn(bin, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, TEST_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
      reject(e);
    });
    child.on('close', () => {
      clearTimeout(timer);
      const out = summarise(lang, dir, stdout, stderr, timedOut);
      fs.rmSync(dir, { recursive: true, force: true });
      resolve(out);
    });
  });
}

function openDb() {
  const Database = require('better-sqlite3');
  return new Database(process.env.DSV32_DB, { readonly: true });
}

function loadRepo(db, repo) {
  const meta = db.prepare('SELECT lang FROM repos WHERE name = ?').get(repo);
  if (!meta) {
    process.stderr.write('unknown repository ' + JSON.stringify(repo) + '\\n');
    process.exit(2);
  }
  const files = {};
  const tests = [];
  for (const f of db.prepare('SELECT path, content, is_test FROM files WHERE repo = ? ORDER BY path').all(repo)) {
    files[f.path] = f.content;
    if (f.is_test) tests.push(f.path);
  }
  return { lang: meta.lang, files, tests };
}

function readArgs() {
  return JSON.parse(fs.readFileSync(0, 'utf8'));
}

module.exports = { runTests, runTestsAsync, parse, openDb, loadRepo, readArgs };
`;

const repoArg = { type: 'string', description: 'repository name from the task' };

export function repoTools(exampleRepo: string, examplePath: string) {
  return [
    {
      schema: {
        name: 'list_files',
        description: 'List the files of a repository (test files are marked).',
        parameters: { type: 'object', properties: { repo: repoArg }, required: ['repo'], additionalProperties: false },
        examples: [{ repo: exampleRepo }],
      },
      source: `'use strict';
const { openDb, loadRepo, readArgs } = require('./_runner.js');
const a = readArgs();
const r = loadRepo(openDb(), a.repo);
console.log(JSON.stringify({ lang: r.lang, files: Object.keys(r.files).map((p) => ({ path: p, test: r.tests.includes(p) })) }));
`,
    },
    {
      schema: {
        name: 'read_file',
        description: 'Read one file of a repository.',
        parameters: { type: 'object', properties: { repo: repoArg, path: { type: 'string' } }, required: ['repo', 'path'], additionalProperties: false },
        examples: [{ repo: exampleRepo, path: examplePath }],
      },
      source: `'use strict';
const { openDb, loadRepo, readArgs } = require('./_runner.js');
const a = readArgs();
const r = loadRepo(openDb(), a.repo);
if (!(a.path in r.files)) {
  process.stderr.write('no file ' + JSON.stringify(a.path) + ' in ' + a.repo + '; list_files lists them\\n');
  process.exit(2);
}
console.log(JSON.stringify({ path: a.path, content: r.files[a.path] }));
`,
    },
    {
      schema: {
        name: 'run_tests',
        description:
          'Run the repository test suite (Python: python3 -m unittest; JS: node --test), optionally with some source files ' +
          'replaced by new contents. Returns per-test pass/fail and the tail of the output. Test files cannot be replaced.',
        parameters: {
          type: 'object',
          properties: { repo: repoArg, files: { type: 'object', additionalProperties: { type: 'string' }, description: 'path -> new content' } },
          required: ['repo'],
          additionalProperties: false,
        },
        examples: [{ repo: exampleRepo }],
      },
      source: `'use strict';
const { openDb, loadRepo, readArgs, runTests } = require('./_runner.js');
const a = readArgs();
const r = loadRepo(openDb(), a.repo);
for (const [p, text] of Object.entries(a.files || {})) {
  if (r.tests.includes(p)) {
    process.stderr.write('test file ' + p + ' cannot be replaced\\n');
    process.exit(2);
  }
  r.files[p] = text;
}
const out = runTests(r.lang, r.files, r.tests);
const names = Object.keys(out.results).sort();
console.log(JSON.stringify({
  passed: names.filter((n) => out.results[n] === 'pass'),
  failed: names.filter((n) => out.results[n] === 'fail'),
  timed_out: out.timedOut,
  output: out.output,
}));
`,
    },
  ];
}

export const SUBMIT_TOOL = {
  name: 'submit_patch',
  description: 'Submit the fix: the full new contents of every source file you changed (path -> content). Test files are ignored. Ends the task.',
  parameters: {
    type: 'object',
    properties: { files: { type: 'object', additionalProperties: { type: 'string' }, minProperties: 1 } },
    required: ['files'],
    additionalProperties: false,
  },
};

export const VERIFIER = `'use strict';
// Code-agent verifier: overlay the submitted source files on the buggy repository (never its test
// files), run the tests, and require every fail-to-pass and pass-to-pass test of the task to pass.
const fs = require('fs');
const { openDb, loadRepo, runTests } = require('/env/tools/_runner.js');

function verdict(score, reason) {
  console.log(JSON.stringify({ score, reason }));
  process.exit(0);
}

const inp = JSON.parse(fs.readFileSync(0, 'utf8'));
const p = inp.task.params;
const ans = inp.answer;
if (!ans || typeof ans !== 'object' || !ans.files || typeof ans.files !== 'object' || Array.isArray(ans.files)) {
  verdict(0, 'answer must be {"files": {path: content}}');
}
const r = loadRepo(openDb(), p.repo);
for (const [path, text] of Object.entries(ans.files)) {
  if (typeof text !== 'string') verdict(0, 'content of ' + path + ' must be a string');
  if (!(path in r.files)) verdict(0, 'no file ' + path + ' in ' + p.repo + ' (new files are not accepted)');
  if (!r.tests.includes(path)) r.files[path] = text;
}
const out = runTests(r.lang, r.files, r.tests);
if (out.timedOut) verdict(0, 'the test suite timed out');
const bad = [...p.fail_to_pass, ...p.pass_to_pass].filter((t) => out.results[t] !== 'pass');
if (bad.length) verdict(0, 'failing tests: ' + bad.join(', '));
verdict(1, 'all ' + (p.fail_to_pass.length + p.pass_to_pass.length) + ' tests pass (' + p.fail_to_pass.length + ' fail-to-pass)');
`;

export const SOLUTION = `"""Reference solution: read the buggy file, apply the gold edit, confirm with run_tests, submit."""
from dsv32_env import call, submit, task

p = task["params"]
fixed = {}
for edit in p["gold"]:
    path = edit["path"]
    src = fixed[path] if path in fixed else call("read_file", repo=p["repo"], path=path)["content"]
    if src.count(edit["buggy"]) != 1:
        raise SystemExit("the buggy snippet is not in %s exactly once" % path)
    fixed[path] = src.replace(edit["buggy"], edit["fixed"])
r = call("run_tests", repo=p["repo"], files=fixed)
if r["failed"]:
    raise SystemExit("tests still fail: %s" % r["failed"])
submit({"files": fixed})
`;
