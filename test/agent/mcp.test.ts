// MCP tool sources against real MCP servers: a child process over stdio, and Streamable HTTP on
// 127.0.0.1; then an agent run whose model (scripted, over HTTP) calls MCP tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpConnectError, connectMcp, parseMcpSpec } from '../../src/agent/mcp.js';
import { runAgent } from '../../src/agent/loop.js';
import { OpenAIChatClient } from '../../src/agent/openai-client.js';
import { TOOL_ERROR_MARK, ToolBox } from '../../src/agent/tools.js';
import type { AgentToolCall } from '../../src/agent/messages.js';
import { buildTestMcpServer } from './mcp-test-server.js';
import { startFakeModelServer } from './fake-model-server.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./mcp-test-server.js', import.meta.url));
const call = (name: string, args: string, id = 'c'): AgentToolCall => ({ id, type: 'function', function: { name, arguments: args } });

test('stdio MCP server: tools discovered with listTools, called, validated, errors marked', { timeout: 30_000 }, async (t) => {
  const conn = await connectMcp({ kind: 'stdio', command: process.execPath, args: [SERVER_SCRIPT] }, { stderr: 'ignore' });
  t.after(() => conn.close());
  assert.equal(conn.name, 'dsv32-test-mcp');
  assert.deepEqual(conn.tools.map((x) => x.name).sort(), ['add', 'explode', 'pid', 'shout']);
  assert.deepEqual(conn.warnings, []);
  const add = conn.tools.find((x) => x.name === 'add')!;
  assert.equal(add.source, 'mcp:dsv32-test-mcp');
  assert.equal(add.description, 'Add two integers');
  assert.deepEqual((add.parameters as any).required, ['a', 'b']);
  const box = new ToolBox(conn.tools);
  assert.deepEqual(await box.call(call('add', '{"a": 2, "b": 40}')), { content: '42', ok: true });
  // it is a real separate process
  const pid = Number((await box.call(call('pid', '{}'))).content);
  assert.ok(pid > 0 && pid !== process.pid);
  // validated locally against the server's inputSchema before any call
  const bad = await box.call(call('add', '{"a": 2.5}'));
  assert.equal(bad.errorKind, 'invalid_arguments');
  assert.match(bad.content, /- a: .*\n- b: /s);
  // a tool that throws on the server comes back as an MCP isError result, marked
  const boom = await box.call(call('explode', '{"reason": "test"}'));
  assert.equal(boom.errorKind, 'tool_exception');
  assert.ok(boom.content.startsWith(`${TOOL_ERROR_MARK}tool_exception] Tool "explode" (MCP server dsv32-test-mcp) reported an error:`));
  assert.match(boom.content, /exploded: test/);
});

test('a stdio command that is not an MCP server gives a typed connect error', { timeout: 30_000 }, async () => {
  await assert.rejects(
    connectMcp({ kind: 'stdio', command: process.execPath, args: ['-e', 'process.exit(3)'] }, { stderr: 'ignore', connectTimeoutMs: 5000 }),
    (e: unknown) => e instanceof McpConnectError && /MCP server .*node.* -e process\.exit\(3\)/.test(e.message),
  );
});

test('Streamable HTTP MCP server on loopback', { timeout: 30_000 }, async (t) => {
  // Stateless Streamable HTTP: a fresh server + transport per POST.
  const http = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const server = buildTestMcpServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    http.closeAllConnections();
    http.close(() => r());
  }));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  const conn = await connectMcp(parseMcpSpec(url));
  t.after(() => conn.close());
  assert.deepEqual(conn.tools.map((x) => x.name).sort(), ['add', 'explode', 'pid', 'shout']);
  const box = new ToolBox(conn.tools);
  assert.equal((await box.call(call('shout', '{"text": "hi"}'))).content, 'HI');
  assert.equal(Number((await box.call(call('pid', '{}'))).content), process.pid, 'served in-process over HTTP');
  assert.equal((await box.call(call('shout', '{"text": ""}'))).errorKind, 'invalid_arguments');
});

test('agent run over HTTP whose model calls tools of a stdio MCP server', { timeout: 30_000 }, async (t) => {
  const conn = await connectMcp(parseMcpSpec(`"${process.execPath}" ${SERVER_SCRIPT}`), { stderr: 'ignore' });
  t.after(() => conn.close());
  const model = await startFakeModelServer([
    { reasoning_content: 'add then shout', tool_calls: [{ id: 'x1', name: 'add', arguments: '{"a": 20, "b": 22}' }, { id: 'x2', name: 'shout', arguments: '{"text": "done"}' }] },
    { reasoning_content: 'a bad call', tool_calls: [{ id: 'x3', name: 'add', arguments: '{"a": "2", "b": 1}' }] },
    { content: 'The sum is 42.' },
  ]);
  t.after(() => model.close());
  const r = await runAgent({ client: new OpenAIChatClient({ baseUrl: model.url, model: 'm', stream: true }), task: 'add 20 and 22', tools: conn.tools });
  assert.equal(r.status, 'final');
  assert.equal(r.finalAnswer, 'The sum is 42.');
  assert.deepEqual(model.requests[0]!.body.tools.map((x: any) => x.function.name).sort(), ['add', 'explode', 'pid', 'shout']);
  const m2 = model.requests[1]!.body.messages;
  assert.deepEqual(m2.slice(-2), [
    { role: 'tool', tool_call_id: 'x1', content: '42' },
    { role: 'tool', tool_call_id: 'x2', content: 'DONE' },
  ]);
  const m3 = model.requests[2]!.body.messages;
  assert.equal(m3.at(-1).tool_call_id, 'x3');
  assert.ok(m3.at(-1).content.startsWith(`${TOOL_ERROR_MARK}invalid_arguments]`));
});

test('--mcp values: URLs are HTTP servers, anything else a command line with quotes', () => {
  assert.deepEqual(parseMcpSpec('https://example.com/mcp'), { kind: 'http', url: 'https://example.com/mcp' });
  assert.deepEqual(parseMcpSpec(`npx -y "@scope/server name" --root '/tmp/a b' plain\\ word`), {
    kind: 'stdio',
    command: 'npx',
    args: ['-y', '@scope/server name', '--root', '/tmp/a b', 'plain word'],
  });
  assert.deepEqual(parseMcpSpec('cmd ""'), { kind: 'stdio', command: 'cmd', args: [''] });
  assert.throws(() => parseMcpSpec('cmd "open'), /unterminated " quote/);
  assert.throws(() => parseMcpSpec('   '), /--mcp: empty command/);
});
