// Context management strategies (paper §4.4), through the agent loop over loopback HTTP: for each,
// what fires, what is kept (system prompt, task, …) and what is dropped (and recorded as dropped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { SUMMARY_HEADER, SUMMARY_REQUEST, discard75, discardAll, rounds } from '../../src/agent/context.js';
import { runAgent } from '../../src/agent/loop.js';
import type { AgentMessage } from '../../src/agent/messages.js';
import { OpenAIChatClient } from '../../src/agent/openai-client.js';
import { runParallelFewestStep } from '../../src/agent/parallel.js';
import { defineTool } from '../../src/agent/tools.js';
import { Transcript } from '../../src/agent/transcript.js';
import { ApproximateTokenCounter } from '../../src/chat/tokenizer.js';
import { type RecordedRequest, startFakeModelServer } from './fake-model-server.js';

const SYSTEM = 'You are a research agent.';
const TASK = 'Read pages until you know the answer.';
// The V3.2 prompt with the tools block is ~400 approximate tokens before any step; each result adds
// ~600 (2000 ASCII chars × 0.3). With a 3000-token window at 0.8 the limit is 2400, passed after 4 pages.
const fetchPage = defineTool({ name: 'fetch', description: 'Fetch page n', input: z.object({ n: z.number().int() }), execute: ({ n }) => `page ${n}: ` + 'x'.repeat(2000) });
const WINDOW = { windowTokens: 3000 };
const LIMIT = 2400;

/** Tool-call ids in a request's messages, in order. */
const callIds = (req: RecordedRequest) => (req.body.messages as any[]).flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []).map((c: any) => c.id) : []));

/** Keeps every tool result right after its own call (the V3.2 format pairs them by position). */
function assertWellFormed(msgs: any[]): void {
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role !== 'assistant' || !msgs[i].tool_calls) continue;
    const ids = msgs[i].tool_calls.map((c: any) => c.id);
    assert.deepEqual(msgs.slice(i + 1, i + 1 + ids.length).map((m: any) => m.tool_call_id), ids);
  }
}

/**
 * A model that reads page 1, 2, … and answers after `pages` pages; it answers summary requests. Its
 * progress is server-side state, as a model's would be in its weights' reading of the context: after
 * a discard the conversation no longer shows every page read, but the script carries on.
 */
function reader(pages: number) {
  let n = 0;
  return (req: RecordedRequest) => {
    const last = (req.body.messages as any[]).at(-1);
    if (last.role === 'user' && last.content === SUMMARY_REQUEST) {
      assert.equal(req.body.tools, undefined, 'no tools offered for the summary');
      return { content: `I read pages up to ${n}.` };
    }
    n++;
    if (n > pages) return { content: `answer after ${pages} pages` };
    return { reasoning_content: `read page ${n}`, tool_calls: [{ id: `p${n}`, name: 'fetch', arguments: `{"n": ${n}}` }] };
  };
}

for (const [strategy, expectDropped] of [
  ['discard-75', (k: number) => Math.max(1, Math.floor(0.75 * k))],
  ['discard-all', (k: number) => k],
] as const) {
  test(`${strategy}: drops the earliest tool-call rounds, keeps system, task and the rest`, async (t) => {
    const server = await startFakeModelServer(reader(12));
    t.after(() => server.close());
    const transcript = new Transcript();
    const r = await runAgent({
      client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: false }),
      system: SYSTEM,
      task: TASK,
      tools: [fetchPage],
      maxSteps: 30,
      counter: new ApproximateTokenCounter(),
      context: { strategy, ...WINDOW },
      transcript,
    });
    assert.equal(r.status, 'final');
    assert.equal(r.finalAnswer, 'answer after 12 pages');
    const events = transcript.events.filter((e) => e.type === 'context');
    assert.ok(events.length >= 2, `fired ${events.length} times`);
    for (const ev of events) {
      assert.equal(ev.strategy, strategy);
      assert.equal(ev.action, 'compact');
      assert.equal(ev.limit, LIMIT);
      assert.ok(ev.tokensBefore > LIMIT && ev.tokensAfter! < ev.tokensBefore);
      // the request of this step is the compacted conversation; the one before had the full history
      const before = server.requests[ev.step - 2]!;
      const after = server.requests[ev.step - 1]!;
      const present = [...callIds(before), `p${callIds(before).length ? Number(callIds(before).at(-1)!.slice(1)) + 1 : 1}`];
      const k = present.length;
      const dropped = present.slice(0, expectDropped(k));
      assert.deepEqual(ev.dropped.filter((d) => d.role === 'assistant').map((d) => d.tool_calls![0]!.id), dropped);
      assert.deepEqual(ev.dropped.filter((d) => d.role === 'tool').map((d) => d.tool_call_id), dropped);
      assert.deepEqual(callIds(after), present.slice(dropped.length));
      assert.deepEqual(after.body.messages.slice(0, 2), [{ role: 'system', content: SYSTEM }, { role: 'user', content: TASK }]);
      assert.deepEqual(ev.kept.slice(0, 2).map((x) => x.role), ['system', 'user']);
      assertWellFormed(after.body.messages);
    }
  });
}

test('summary: the model summarises, the run restarts from system + task + summary', async (t) => {
  const server = await startFakeModelServer(reader(8));
  t.after(() => server.close());
  const transcript = new Transcript();
  const r = await runAgent({
    client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: true }),
    system: SYSTEM,
    task: TASK,
    tools: [fetchPage],
    maxSteps: 30,
    context: { strategy: 'summary', ...WINDOW, threshold: 0.8 },
    transcript,
  });
  assert.equal(r.status, 'final');
  assert.equal(r.finalAnswer, 'answer after 8 pages');
  const ev = transcript.events.find((e) => e.type === 'context')!;
  assert.ok(ev && ev.type === 'context');
  const summaryReq = server.requests.find((q) => q.body.messages.at(-1).content === SUMMARY_REQUEST)!;
  const pagesRead = callIds(summaryReq).length;
  assert.ok(pagesRead >= 2, `summary fired after ${pagesRead} pages`);
  assert.equal(ev.summary, `I read pages up to ${pagesRead}.`);
  // the summary call saw the whole overflowing trajectory, and its tokens are recorded
  assert.deepEqual(callIds(summaryReq), Array.from({ length: pagesRead }, (_, i) => `p${i + 1}`));
  assert.ok(ev.summaryTokens!.prompt > 0 && ev.summaryTokens!.completion > 0);
  // everything after the task was dropped: every round of (assistant + tool)
  assert.deepEqual(ev.dropped.map((d) => d.role), Array.from({ length: pagesRead }, () => ['assistant', 'tool']).flat());
  assert.deepEqual(summaryReq.body.messages.slice(0, 2), [{ role: 'system', content: SYSTEM }, { role: 'user', content: TASK }]);
  const next = server.requests[server.requests.indexOf(summaryReq) + 1]!;
  assert.deepEqual(next.body.messages, [
    { role: 'system', content: SYSTEM },
    { role: 'user', content: TASK },
    { role: 'user', content: `${SUMMARY_HEADER}\n\nI read pages up to ${pagesRead}.` },
  ]);
  // the summary call counts in the totals, not as a step
  const steps = transcript.events.filter((e) => e.type === 'step').length;
  assert.equal(r.steps, steps);
  assert.equal(server.requests.length, steps + transcript.events.filter((e) => e.type === 'context').length);
});

test('parallel-fewest-step: overflowing trajectories are abandoned, the fewest-step finisher is kept', async (t) => {
  // Each trajectory gets a plan when its first request arrives; tool-call ids carry the trajectory.
  const plans = [2, 1, Infinity];
  let next = 0;
  const server = await startFakeModelServer((req) => {
    const ids = callIds(req);
    const k = ids.length ? Number(/^T(\d+)_/.exec(ids[0]!)![1]) : next++;
    const done = ids.length;
    if (done >= plans[k]!) return { content: `answer of plan ${plans[k]}` };
    return { tool_calls: [{ id: `T${k}_${done}`, name: 'fetch', arguments: `{"n": ${done}}` }] };
  });
  t.after(() => server.close());
  const transcript = new Transcript();
  const { chosen, runs } = await runParallelFewestStep(
    {
      client: new OpenAIChatClient({ baseUrl: server.url, model: 'm', stream: false }),
      system: SYSTEM,
      task: TASK,
      tools: [fetchPage],
      maxSteps: 30,
      context: { strategy: 'parallel-fewest-step', ...WINDOW },
      transcript,
    },
    3,
  );
  assert.equal(runs.length, 3);
  assert.deepEqual(runs.map((r) => r.status).sort(), ['context_overflow', 'final', 'final'], JSON.stringify(runs.map((r) => [r.status, r.steps, r.error])));
  assert.equal(chosen!.finalAnswer, 'answer of plan 1');
  assert.equal(chosen!.steps, 2);
  const overflow = runs.find((r) => r.status === 'context_overflow')!;
  const abandon = transcript.events.find((e) => e.type === 'context' && e.run === overflow.run);
  assert.ok(abandon && abandon.type === 'context' && abandon.action === 'abandon' && abandon.tokensBefore > LIMIT);
  const sel = transcript.events.find((e) => e.type === 'selection')!;
  assert.ok(sel.type === 'selection');
  assert.equal(sel.chosen, chosen!.run);
  assert.equal(sel.candidates.length, 3);
  // every trajectory started from the system prompt and the task
  const firsts = server.requests.filter((q) => callIds(q).length === 0 && q.body.messages.length === 2);
  assert.equal(firsts.length, 3);
  for (const q of firsts) assert.deepEqual(q.body.messages, [{ role: 'system', content: SYSTEM }, { role: 'user', content: TASK }]);
});

test('discard strategies keep non-tool messages after the task and refuse when only the head is left', async () => {
  const tc = (id: string) => ({ id, type: 'function' as const, function: { name: 'f', arguments: '{}' } });
  const msgs: AgentMessage[] = [
    { role: 'system', content: 's' },
    { role: 'user', content: 'task' },
    { role: 'assistant', content: '', tool_calls: [tc('a'), tc('b')] },
    { role: 'tool', tool_call_id: 'a', content: 'A' },
    { role: 'tool', tool_call_id: 'b', content: 'B' },
    { role: 'user', content: 'note from an earlier compaction' },
    { role: 'assistant', content: '', reasoning_content: 'r', tool_calls: [tc('c')] },
    { role: 'tool', tool_call_id: 'c', content: 'C' },
    { role: 'assistant', content: 'interim text' },
    { role: 'assistant', content: '', tool_calls: [tc('d')] },
    { role: 'tool', tool_call_id: 'd', content: 'D' },
  ];
  assert.deepEqual(rounds(msgs).map((r) => [r.messages.length, r.isToolRound]), [[3, true], [1, false], [2, true], [1, false], [2, true]]);
  const input = { messages: msgs, tools: [], client: undefined as never, counter: new ApproximateTokenCounter() };
  const d75 = (await discard75.compact(input))!;
  // 3 tool rounds → floor(2.25) = 2 dropped: (a,b) and (c)
  assert.deepEqual(d75.messages.map((m) => (m.role === 'tool' ? m.tool_call_id : m.role)), ['system', 'user', 'user', 'assistant', 'assistant', 'd']);
  assert.deepEqual(d75.dropped.map((d) => d.tool_call_id ?? d.tool_calls?.map((c) => c.id).join(',')), ['a,b', 'a', 'b', 'c', 'c']);
  const all = (await discardAll.compact(input))!;
  assert.deepEqual(all.messages.map((m) => m.role), ['system', 'user', 'user', 'assistant']);
  assert.equal(await discardAll.compact({ ...input, messages: all.messages }), null);
  // an explicit head (earlier turns + task) is never touched
  const keepHead = (await discardAll.compact({ ...input, headLength: 5 }))!;
  assert.deepEqual(keepHead.messages.slice(0, 5), msgs.slice(0, 5));
});

test('a head alone over the limit ends the run with context_overflow instead of looping', async (t) => {
  const server = await startFakeModelServer(() => ({ content: 'never called' }));
  t.after(() => server.close());
  const transcript = new Transcript();
  const r = await runAgent({
    client: new OpenAIChatClient({ baseUrl: server.url, model: 'm' }),
    task: 'x'.repeat(4000),
    context: { strategy: 'discard-all', windowTokens: 1000 },
    transcript,
  });
  assert.equal(r.status, 'context_overflow');
  assert.match(r.error!, /limit of 800/);
  assert.equal(server.requests.length, 0);
  await assert.rejects(
    runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm' }), task: 't', context: { strategy: 'summary', windowTokens: 10, threshold: 1.5 } }),
    /context threshold 1.5: expected a fraction/,
  );
  await assert.rejects(
    runAgent({ client: new OpenAIChatClient({ baseUrl: server.url, model: 'm' }), task: 't', context: { strategy: 'compress' as never, windowTokens: 10 } }),
    /--context-strategy "compress": expected one of summary, discard-75, discard-all, parallel-fewest-step/,
  );
});
