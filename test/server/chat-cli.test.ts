// `dsv32 chat`'s conversation loop (ChatRepl) on a scripted engine: the reasoning streams dimmed, then the
// answer; the next turn's prompt carries the conversation in the V3.2 format; /reset starts over; chat
// mode (--no-thinking) shows no reasoning. The command on a real checkpoint runs in serve-cli.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { encodeMessages } from '../../src/chat/index.js';
import { ChatRepl } from '../../src/cli/chat.js';
import { ScriptedEngine } from './scripted-engine.js';
import { tokenizer } from './helpers.js';

function session(mode: 'thinking' | 'chat', lines: string[]) {
  const engine = new ScriptedEngine({
    tokenizer: tokenizer(),
    script: (ids) => {
      const p = tokenizer().decode(ids);
      const last = p.slice(p.lastIndexOf('<｜User｜>'));
      const answer = last.includes('Thanks') ? "You're welcome." : 'It is 4.';
      return mode === 'thinking' ? `Let me see.</think>${answer}` : answer;
    },
  });
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (d) => (text += d));
  const repl = new ChatRepl({ engine, codec: tokenizer(), mode, system: 'Be brief.', params: { maxTokens: 50 }, input, output, color: true, prompt: true });
  input.end(lines.join('\n') + '\n');
  return { engine, repl, out: () => text };
}

test('dsv32 chat loop: reasoning dimmed then the answer; the conversation is kept in the V3.2 format; /reset', async () => {
  const s = session('thinking', ['What is 2+2?', 'Thanks', '/reset', 'What is 2+2?']);
  await s.repl.run();
  const out = s.out();
  assert.ok(out.startsWith('> \x1b[2mLet me see.\x1b[22m\nIt is 4.\n> '), JSON.stringify(out.slice(0, 80)));
  assert.ok(out.includes("\x1b[2mLet me see.\x1b[22m\nYou're welcome.\n"));
  assert.ok(out.includes('(new conversation)'));
  const prompts = s.engine.requests.map((r) => tokenizer().decode(r.promptIds));
  assert.equal(prompts.length, 3);
  assert.equal(prompts[1], encodeMessages([
    { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: 'It is 4.', reasoning_content: 'Let me see.' }, { role: 'user', content: 'Thanks' },
  ], { mode: 'thinking' }));
  assert.equal(prompts[2], prompts[0], 'after /reset the conversation starts over');
});

test('dsv32 chat loop in chat mode: no reasoning, just the answer', async () => {
  const s = session('chat', ['What is 2+2?']);
  await s.repl.run();
  assert.equal(s.out(), '> It is 4.\n> ');
  assert.ok(tokenizer().decode(s.engine.requests[0]!.promptIds).endsWith('<｜Assistant｜></think>'));
});
