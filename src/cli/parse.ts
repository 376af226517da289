// `dsv32 parse`: read a completion from stdin and print the assistant message it encodes, as JSON. The
// JSON gets a `warnings` array only when the parse has some (a `string="false"` value that is not JSON,
// see parse-strict.ts), so a clean parse prints exactly the message; each warning also goes to stderr.
import { Command, Option } from 'commander';
import { DsvError } from '../errors.js';
import { parseCompletionChecked } from '../chat/parse-strict.js';
import type { ParseWarning } from '../chat/dsml.js';
import { parseCompletionLenient } from '../chat/parse-lenient.js';
import { loadTools } from '../chat/load.js';
import type { ParsedMessage, ThinkingMode } from '../chat/message.js';

function print(message: ParsedMessage, warnings: readonly ParseWarning[]): void {
  process.stdout.write(JSON.stringify(warnings.length ? { ...message, warnings } : message, null, 2) + '\n');
  for (const w of warnings) process.stderr.write(`dsv32 parse: warning: tool call ${w.tool_call} "${w.name}" parameter "${w.parameter}": ${w.problem}\n`);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function register(program: Command): void {
  program
    .command('parse')
    .description('parse a DeepSeek-V3.2 completion (stdin) into {role, content, reasoning_content, tool_calls} JSON')
    .addOption(new Option('--mode <mode>', 'mode of the prompt the completion continues').choices(['thinking', 'chat']).default('thinking'))
    .option('--lenient', 'repair malformed output; repairs and unrecoverable calls go to stderr, exit status 1 if a call was lost')
    .option('--tools <file>', 'tool declarations (JSON array, or an object with "tools") whose schema types steer --lenient coercion')
    .action(async (o: { mode: ThinkingMode; lenient?: boolean; tools?: string }) => {
      const text = await readStdin();
      if (!o.lenient) {
        if (o.tools) throw new DsvError('--tools only applies with --lenient');
        let r;
        try {
          r = parseCompletionChecked(text, o.mode);
        } catch (e) {
          if (e instanceof DsvError) throw new DsvError(`stdin: ${e.message} (try --lenient)`, { cause: e });
          throw e;
        }
        print(r.message, r.warnings);
        return;
      }
      const r = parseCompletionLenient(text, o.mode, o.tools ? { tools: loadTools(o.tools) } : {});
      print(r.message, r.warnings);
      for (const x of r.repairs) process.stderr.write(`dsv32 parse: repaired: ${x}\n`);
      for (const x of r.errors) process.stderr.write(`dsv32 parse: unrecoverable tool call${x.name ? ` "${x.name}"` : ''}: ${x.reason}\n`);
      if (r.errors.length) process.exitCode = 1;
    });
}
