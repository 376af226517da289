// Files every environment program can use inside the sandbox, staged once per host process under
// /opt/dsv32 (read-only):
//   /opt/dsv32/py/dsv32_env.py        solution helper for Python (on PYTHONPATH)
//   /opt/dsv32/node/dsv32_env.js      solution helper for Node (on NODE_PATH)
//   /opt/dsv32/node/better-sqlite3    SQLite for Node tools/verifiers (Node 20 has no node:sqlite)
//
// Solution channel protocol (newline-delimited JSON): the first stdin line is {"task": {...}}. The
// program writes requests to fd 3, {"type":"call","tool":T,"args":{...}} or {"type":"submit",
// "answer":A}, and reads one reply line from stdin for each: {"ok":true,"result":R} or
// {"ok":false,"error":"..."}. Solutions get no database mount, so tools are their only way to the state.
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { StagingDir } from './staging.js';

const PY_HELPER = `"""dsv32 environment helper for reference solutions: call tools, submit the answer."""
import json
import os
import sys

os.set_blocking(3, True)
_requests = os.fdopen(3, "w", encoding="utf-8")
_first = sys.stdin.readline()
task = json.loads(_first)["task"] if _first else {}


class ToolError(Exception):
    """A tool call failed (bad arguments, tool crashed, unknown tool)."""


def _request(msg):
    _requests.write(json.dumps(msg) + "\\n")
    _requests.flush()
    line = sys.stdin.readline()
    if not line:
        raise ToolError("the host closed the tool channel")
    return json.loads(line)


def call(tool, args=None, **kwargs):
    """Call a tool by name; arguments as a dict or as keywords. Returns the tool's JSON result."""
    payload = dict(args or {})
    payload.update(kwargs)
    reply = _request({"type": "call", "tool": tool, "args": payload})
    if not reply.get("ok"):
        raise ToolError(reply.get("error", "tool call failed"))
    return reply.get("result")


def submit(answer):
    """Submit the final answer (ends the episode)."""
    reply = _request({"type": "submit", "answer": answer})
    if not reply.get("ok"):
        raise ToolError(reply.get("error", "submit failed"))
`;

const JS_HELPER = `'use strict';
// dsv32 environment helper for reference solutions: call tools, submit the answer (synchronous).
const fs = require('fs');
const sleeper = new Int32Array(new SharedArrayBuffer(4));
let pending = Buffer.alloc(0);

function readLine() {
  const buf = Buffer.alloc(65536);
  for (;;) {
    const nl = pending.indexOf(10);
    if (nl >= 0) {
      const line = pending.subarray(0, nl).toString('utf8');
      pending = pending.subarray(nl + 1);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 1); continue; }
      throw e;
    }
    if (n === 0) return null;
    pending = Buffer.concat([pending, buf.subarray(0, n)]);
  }
}

function writeAll(fd, text) {
  let b = Buffer.from(text, 'utf8');
  while (b.length) {
    try {
      b = b.subarray(fs.writeSync(fd, b));
    } catch (e) {
      if (e.code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 1); continue; }
      throw e;
    }
  }
}

class ToolError extends Error {}

function request(msg) {
  writeAll(3, JSON.stringify(msg) + '\\n');
  const line = readLine();
  if (line === null) throw new ToolError('the host closed the tool channel');
  return JSON.parse(line);
}

const first = readLine();
const task = first ? JSON.parse(first).task : {};

function call(tool, args) {
  const reply = request({ type: 'call', tool, args: args || {} });
  if (!reply.ok) throw new ToolError(reply.error || 'tool call failed');
  return reply.result;
}

function submit(answer) {
  const reply = request({ type: 'submit', answer });
  if (!reply.ok) throw new ToolError(reply.error || 'submit failed');
}

module.exports = { task, call, submit, ToolError };
`;

let staged: StagingDir | undefined;

/** Host directory to bind read-only at /opt/dsv32 (created on first use, removed at process exit). */
export function runtimeLibDir(): string {
  if (staged && existsSync(staged.root)) return staged.root;
  const s = new StagingDir('dsv32-runtime-');
  s.writeFile('py/dsv32_env.py', PY_HELPER);
  s.writeFile('node/dsv32_env.js', JS_HELPER);
  // Only the runtime pieces of better-sqlite3 and its loader, not the package's sources or the
  // project's node_modules.
  const require = createRequire(import.meta.url);
  const bsq = dirname(require.resolve('better-sqlite3/package.json'));
  s.copyFile(join(bsq, 'package.json'), 'node/better-sqlite3/package.json');
  s.copyDir(join(bsq, 'lib'), 'node/better-sqlite3/lib');
  s.copyFile(join(bsq, 'build/Release/better_sqlite3.node'), 'node/better-sqlite3/build/Release/better_sqlite3.node');
  const bsqRequire = createRequire(join(bsq, 'package.json'));
  const bindings = dirname(bsqRequire.resolve('bindings/package.json'));
  s.copyDir(bindings, 'node/bindings');
  const fileUri = dirname(createRequire(join(bindings, 'package.json')).resolve('file-uri-to-path/package.json'));
  s.copyDir(fileUri, 'node/file-uri-to-path');
  staged = s;
  process.once('exit', () => rmSync(s.root, { recursive: true, force: true }));
  return s.root;
}

/** Sandbox environment variables that make the helpers importable. */
export const RUNTIME_ENV = { PYTHONPATH: '/opt/dsv32/py', NODE_PATH: '/opt/dsv32/node' };
