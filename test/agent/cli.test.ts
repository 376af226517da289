// `dsv32 agent` as a user runs it: a child process against the scripted model server and a real stdio
// MCP server, all on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeModelServer, startSilentServer } from './fake-model-server.js';

const MAIN = resolve('dist/src/cli/main.js');
const MCP_SERVER = fileURLToPath(new URL('./mcp-test-server.js', import.meta.url));

function runCli(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      rej(new Error(`dsv32 agent did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

test('dsv32 agent: streams reasoning, tool calls and results; prints the final answer; writes the transcript', { timeout: 30_000 }, async (t) => {
  const server = await startFakeModelServer([
    { reasoning_content: 'Let me add.', tool_calls: [{ id: 'k1', name: 'add', arguments: '{"a": 40, "b": 2}' }, { id: 'k2', name: 'explode', arguments: '{"reason": "demo"}' }] },
    { reasoning_content: 'Got 42.', content: 'The answer is 42.' },
  ]);
  t.after(() => server.close());
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-cli-'));
  const transcript = join(dir, 'run.jsonl');
  const r = await runCli([
    'agent', '--base-url', server.url, '--model', 'deepseek-reasoner',
    '--mcp', `"${process.execPath}" ${MCP_SERVER}`,
    '--context-strategy', 'discard-all', '--transcript', transcript, '--color',
    'What is 40 + 2?',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'The answer is 42.\n');
  assert.match(r.stderr, /note: token counts are approximate/);
  assert.match(r.stderr, /mcp: dsv32-test-mcp: add, shout, explode, pid/);
  // reasoning streams in pieces, each dimmed
  assert.ok(r.stderr.includes('\x1b[2mLet\x1b[22m'), 'reasoning is dimmed');
  const plain = r.stderr.replace(/\x1b\[\d+m/g, '');
  assert.match(plain, /thinking: Let me add\.\n/);
  assert.match(plain, /thinking: Got 42\.\nThe answer is 42\.\n/);
  assert.match(plain, /→ add\(\{"a": 40, "b": 2\}\)/);
  assert.match(plain, /← add: 42/);
  assert.match(plain, /✗ explode: .*\[tool_error:tool_exception\].*exploded: demo/);
  assert.match(r.stderr, /\[final after 2 steps; tokens prompt \d+, completion \d+ \(approximate\)\]/);
  const events = readFileSync(transcript, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => e.type), ['run_start', 'step', 'step', 'run_end']);
  assert.deepEqual(events[0].context, { strategy: 'discard-all', windowTokens: 131072, threshold: 0.8 });
  assert.deepEqual(events[0].tools.sort(), ['add (mcp:dsv32-test-mcp)', 'explode (mcp:dsv32-test-mcp)', 'pid (mcp:dsv32-test-mcp)', 'shout (mcp:dsv32-test-mcp)']);
});

test('dsv32 agent: bad arguments and unreachable endpoints are reported without stack traces', { timeout: 30_000 }, async () => {
  const bad = await runCli(['agent', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--max-steps', '0', 'x']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--max-steps must be a positive integer, got "0"/);
  const strat = await runCli(['agent', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--context-strategy', 'compress', 'x']);
  assert.match(strat.stderr, /Allowed choices are summary, discard-75, discard-all, parallel-fewest-step/);
  const tok = await runCli(['agent', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--tokenizer', '/nonexistent/tok', 'x']);
  assert.equal(tok.code, 2);
  assert.equal(tok.stderr, 'dsv32: /nonexistent/tok: no such tokenizer file or model directory\n');
  // port 9 (discard) on loopback: connection refused → the run ends with status error, exit 1
  const down = await runCli(['agent', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', '--max-retries', '1', 'x']);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /dsv32 agent: POST http:\/\/127\.0\.0\.1:9\/v1\/chat\/completions: connection failed: connect ECONNREFUSED 127\.0\.0\.1:9 \(2 attempts\)\n/);
  assert.doesNotMatch(down.stderr, /\n\s+at /);
  for (const [flag, v, why] of [
    ['--request-timeout', '0', /--request-timeout must be an integer from 1 to 2147483647, got "0"/],
    ['--request-timeout', '2147483648', /--request-timeout must be an integer from 1 to 2147483647, got "2147483648"/],
    ['--request-timeout', '5s', /--request-timeout must be an integer from 1 to 2147483647, got "5s"/],
    ['--max-retries', '-1', /--max-retries must be an integer >= 0, got "-1"/],
  ] as const) {
    const r = await runCli(['agent', '--base-url', 'http://127.0.0.1:9/v1', '--model', 'm', flag, v, 'x']);
    assert.notEqual(r.code, 0, `${flag} ${v} refused`);
    assert.match(r.stderr, why);
  }
});

test('dsv32 agent: a server that accepts and never answers ends the run after --request-timeout, not minutes', { timeout: 30_000 }, async (t) => {
  const silent = await startSilentServer();
  t.after(() => silent.close());
  for (const stream of [[], ['--no-stream']]) {
    const t0 = Date.now();
    const r = await runCli(['agent', '--base-url', silent.url, '--model', 'm', '--request-timeout', '300', ...stream, 'x']);
    const ms = Date.now() - t0;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`dsv32 agent: POST ${silent.url.replace(/[./]/g, '\\$&')}/chat/completions: no response within 300 ms \\(3 attempts\\)\n`));
    assert.doesNotMatch(r.stderr, /\n\s+at |Headers Timeout/);
    assert.ok(ms < 15_000, `took ${ms} ms`);
  }
});
