// Tool-use trajectories from the environment families' reference solutions: real tool results,
// verified to full score, rendered as conversations that re-parse. Runs one small code-interpreter
// environment in the sandbox (about a second); skipped where bubblewrap is unavailable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessages } from '../../src/chat/encode.js';
import { parseCompletion } from '../../src/chat/parse-strict.js';
import { pyJsonLoads } from '../../src/chat/pyjson.js';
import { makeTrajectorySource, trajectoryConversation } from '../../src/data/synthetic/trajectories.js';
import { Rng } from '../../src/envs/rng.js';

test('trajectoryConversation: one assistant turn per recorded call, ending in the submit call and a closing turn', () => {
  const trace = [
    { tool: 'run_python', args: { code: 'print(2**10)' }, ok: true, result: { stdout: '1024\n' } },
    { tool: 'run_python', args: { code: 'oops(' }, ok: false, error: 'SyntaxError' },
    { tool: 'submit_answer', args: { answer: 1024 }, ok: true, result: 'submitted' },
  ];
  for (const mode of ['thinking', 'chat'] as const) {
    const messages = trajectoryConversation({ family: 'code-interpreter', prompt: 'Compute 2^10.', tools: [], submitTool: 'submit_answer', trace, mode });
    assert.deepEqual(messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant', 'tool', 'assistant', 'tool', 'assistant']);
    assert.equal(messages[5]!.content, JSON.stringify({ error: 'SyntaxError' }));
    const text = encodeMessages(messages, { mode });
    const prompt = encodeMessages(messages.slice(0, 6), { mode });
    const turn = encodeMessages(messages.slice(0, 7), { mode });
    const parsed = parseCompletion(turn.slice(prompt.length), mode);
    assert.equal(parsed.tool_calls[0]!.function.name, 'submit_answer');
    assert.deepEqual(JSON.parse(JSON.stringify(pyJsonLoads(parsed.tool_calls[0]!.function.arguments))), { answer: 1024 });
    assert.ok(text.startsWith(turn));
  }
});

test('the source runs reference solutions in the sandbox and keeps verified trajectories', async (t) => {
  const src = makeTrajectorySource({ families: ['code-interpreter'], tasksPerEnv: 2 });
  const probe = src.probe();
  if (!probe.found) return t.skip(`sandbox unavailable: ${probe.reason}`);
  const events: { event: string; fields?: Record<string, unknown> }[] = [];
  const docs = [];
  for await (const d of src.documents({ rng: new Rng(1), budgetBytes: 3000, log: (event, fields) => events.push({ event, fields }) })) docs.push(d);
  assert.ok(docs.length >= 1, JSON.stringify(events));
  for (const d of docs) {
    assert.match(d.id, /^env-trajectories\/code-interpreter\/\d+\//);
    const msgs = d.messages!;
    assert.equal(encodeMessages(msgs, { mode: d.mode! }), d.text);
    const calls = msgs.flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []));
    assert.equal(calls.at(-1)!.function.name, 'submit_answer');
    assert.ok(calls.some((c) => c.function.name === 'run_python'), 'the solution used a tool before submitting');
  }
  assert.ok(events.some((e) => e.event === 'trajectory-environment'));
});
