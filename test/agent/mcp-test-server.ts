// A tiny MCP server built with the SDK's server side, for tests. Run as a script it serves over stdio
// (`node dist/test/agent/mcp-test-server.js`); tests of Streamable HTTP build it in-process.
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

export function buildTestMcpServer(): McpServer {
  const server = new McpServer({ name: 'dsv32-test-mcp', version: '1.0.0' });
  server.registerTool(
    'add',
    { description: 'Add two integers', inputSchema: { a: z.number().int(), b: z.number().int() } },
    async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  server.registerTool(
    'shout',
    { description: 'Upper-case a text', inputSchema: { text: z.string().min(1) } },
    async ({ text }) => ({ content: [{ type: 'text', text: text.toUpperCase() }] }),
  );
  server.registerTool(
    'explode',
    { description: 'Always fails', inputSchema: { reason: z.string() } },
    async ({ reason }) => {
      throw new Error(`exploded: ${reason}`);
    },
  );
  server.registerTool('pid', { description: 'Process id of the server', inputSchema: {} }, async () => ({
    content: [{ type: 'text', text: String(process.pid) }],
  }));
  return server;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildTestMcpServer().connect(new StdioServerTransport());
}
