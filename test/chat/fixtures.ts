// Loads the official DeepSeek-V3.2 encoding fixtures from ../shared/fixtures/dsv32-encoding (resolved
// from the repo root, which is three levels above this compiled file in dist/test/chat).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pyJsonLoads } from '../../src/chat/pyjson.js';
import type { ChatMessage } from '../../src/chat/message.js';
import { encodeMessages } from '../../src/chat/encode.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const FIXTURE_DIR = resolve(REPO_ROOT, '../shared/fixtures/dsv32-encoding');

export interface Fixture {
  name: string;
  messages: ChatMessage[];
  /** The gold prompt, `.strip()`ped as the official test does. */
  gold: string;
}

/** The three input/output pairs, with top-level tools moved onto messages[0] as the official test does. */
export function loadFixtures(): Fixture[] {
  return [
    ['test_input.json', 'test_output.txt'],
    ['test_input_search_wo_date.json', 'test_output_search_wo_date.txt'],
    ['test_input_search_w_date.json', 'test_output_search_w_date.txt'],
  ].map(([input, output]) => {
    const data = pyJsonLoads(readFileSync(resolve(FIXTURE_DIR, input!), 'utf8')) as unknown as { messages: ChatMessage[]; tools?: unknown };
    if (data.tools) (data.messages[0] as { tools?: unknown }).tools = data.tools;
    return { name: input!, messages: data.messages, gold: readFileSync(resolve(FIXTURE_DIR, output!), 'utf8').trim() };
  });
}

/** Every assistant turn of every fixture as the completion the model wrote (encoded in its context). */
export function assistantCompletions(): { where: string; message: ChatMessage; text: string }[] {
  const out: { where: string; message: ChatMessage; text: string }[] = [];
  for (const f of loadFixtures()) {
    f.messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      out.push({ where: `${f.name} message ${i}`, message: m, text: encodeMessages([m], { mode: 'thinking', context: f.messages.slice(0, i) }) });
    });
  }
  return out;
}
