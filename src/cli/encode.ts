// `dsv32 encode`: render a conversation file into the exact DeepSeek-V3.2 prompt text.
import { Command, Option } from 'commander';
import { DsvError } from '../errors.js';
import { encodeMessages } from '../chat/encode.js';
import { loadConversation } from '../chat/load.js';
import type { ThinkingMode } from '../chat/message.js';

export function register(program: Command): void {
  program
    .command('encode')
    .description('print the DeepSeek-V3.2 prompt for a conversation, byte-exact, without a trailing newline')
    .requiredOption('--messages <file>', 'JSON array of messages, or {"messages": [...], "tools": [...]} (tools go on the first system message)')
    .addOption(new Option('--mode <mode>', 'thinking or chat').choices(['thinking', 'chat']).default('thinking'))
    .option('--no-drop-thinking', 'keep reasoning of turns before the last user message (the official rules never render it)')
    .option('--no-bos', 'omit the begin-of-sentence token')
    .action((o: { messages: string; mode: ThinkingMode; dropThinking: boolean; bos: boolean }) => {
      const messages = loadConversation(o.messages);
      let prompt: string;
      try {
        prompt = encodeMessages(messages, { mode: o.mode, dropThinking: o.dropThinking, bos: o.bos });
      } catch (e) {
        if (e instanceof DsvError) throw new DsvError(`${o.messages}: ${e.message}`, { cause: e });
        throw e;
      }
      process.stdout.write(prompt);
    });
}
