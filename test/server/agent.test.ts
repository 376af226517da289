// `dsv32 agent --base-url` against this server, as a user runs it: the agent CLI as a child process with
// a real stdio MCP server for tools, and the server in-process on a scripted engine whose completions are
// the DSML a V3.2 model writes. Turn 1 reasons and calls `add` in DSML; the server parses that into
// tool_calls, the agent runs the MCP tool and sends the result back; turn 2's prompt (rendered by the
// server's encoder) carries `<result>42</result>` and the reasoning of the turn, and its answer is
// printed. Streamed (default) and not (--no-stream), and through /v1/completions (--endpoint completion).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScriptedEngine } from './scripted-engine.js';
import { serve, tokenizer, type Running } from './helpers.js';

const MAIN = resolve('dist/src/cli/main.js');
const MCP_SERVER = fileURLToPath(new URL('../agent/mcp-test-server.js', import.meta.url));
const D = '｜DSML｜';
const CALL = `Let me add.</think>\n\n<${D}function_calls>\n<${D}invoke name="add">\n<${D}parameter name="a" string="false">40</${D}parameter>\n<${D}parameter name="b" string="false">2</${D}parameter>\n</${D}invoke>\n</${D}function_calls>`;

let engine: ScriptedEngine;
let srv: Running;
before(async () => {
  engine = new ScriptedEngine({
    tokenizer: tokenizer(),
    script: (ids) => {
      const p = tokenizer().decode(ids);
      if (p.includes('<result>42</result>')) return 'Got 42.</think>The answer is 42.';
      return CALL;
    },
  });
  srv = await serve(engine);
});
after(async () => srv.close());

function runAgent(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [MAIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      rej(new Error(`dsv32 agent did not finish; stderr: ${stderr}`));
    }, 60_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

const variants: { name: string; args: string[] }[] = [
  { name: 'chat endpoint, streaming', args: ['--extra-body', '{"chat_template_kwargs": {"thinking": true}}'] },
  { name: 'chat endpoint, --no-stream', args: ['--extra-body', '{"chat_template_kwargs": {"thinking": true}}', '--no-stream'] },
  // the agent renders the prompt itself and parses the raw completion text
  { name: '--endpoint completion, streaming', args: ['--endpoint', 'completion', '--extra-body', '{"max_tokens": 200}'] },
];
for (const v of variants) {
  test(`dsv32 agent --base-url against the server (${v.name}): DSML tool call → MCP tool → result in the next prompt → final answer`, { timeout: 90_000 }, async () => {
    const before = engine.requests.length;
    const r = await runAgent([
      '--base-url', srv.url + '/v1', '--model', 'dsv32-test', '--mcp', `"${process.execPath}" ${MCP_SERVER}`, ...v.args, 'What is 40 + 2?',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'The answer is 42.\n');
    const plain = r.stderr.replace(/\x1b\[\d+m/g, '');
    assert.match(plain, /→ add\(\{"a": 40, "b": 2\}\)/);
    assert.match(plain, /← add: 42/);
    assert.equal(engine.requests.length - before, 2);
    const second = tokenizer().decode(engine.requests.at(-1)!.promptIds);
    assert.ok(second.includes('What is 40 + 2?<｜Assistant｜><think>Let me add.</think>'), 'the turn keeps its reasoning');
    assert.ok(second.endsWith('<result>42</result>\n</function_results>\n\n<think>'), second.slice(-120));
    assert.ok(second.includes('## Tools') && second.includes('"name": "add"'));
  });
}
