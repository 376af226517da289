// `dsv32 eval --envs DIR --base-url URL --model NAME -k 4`: runs the agent on every task, verifies,
// and prints pass@1 / pass@k per family as a table (or JSON with --json; --out writes the JSON too).
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { intArg } from './args.js';
import { maxRetriesOption, requestTimeoutOption, requestPolicy, type RequestCliOptions } from './http-options.js';
import { progress, type Progress } from './progress.js';
import { formatReportTable, runEval } from '../envs/eval/run.js';
import { makeRunner } from '../envs/queue/runner.js';
import { DEFAULT_QUEUE_NAME } from '../envs/queue/bull.js';


export function register(program: Command): void {
  program
    .command('eval')
    .description('run the agent on environment tasks and report pass@1 / pass@k per family')
    .requiredOption('--envs <dir>', 'an environment directory, or a directory of them')
    .requiredOption('--base-url <url>', 'OpenAI-compatible endpoint including /v1 (key from $DSV32_API_KEY)')
    .requiredOption('--model <name>', 'model name')
    .option('-k, --k <n>', 'k of pass@k', intArg('-k', 1), 4)
    .option('--attempts <n>', 'attempts per task (>= k; default k)', intArg('--attempts', 1))
    .option('--max-steps <n>', 'model calls per attempt', intArg('--max-steps', 1), 30)
    .option('--tasks-per-env <n>', 'only the first N tasks of each environment', intArg('--tasks-per-env', 1))
    .option('--temperature <t>', 'sampling temperature', (v) => Number(v))
    .option('--thinking', 'ask the server for thinking mode (chat_template_kwargs.thinking; dsv32 serve defaults to chat mode)')
    .option('--db <file>', 'results database (resumable)', '')
    .option('--run <id>', 'run id (default: derived from endpoint, model and envs)')
    .option('--jobs <n>', 'attempts run at once (local pool)', intArg('--jobs', 1), 4)
    .option('--queue <url>', 'send attempts to a BullMQ queue on Redis (served by `dsv32 worker`)')
    .option('--queue-name <name>', 'BullMQ queue name (the workers\' --queue-name)', DEFAULT_QUEUE_NAME)
    .option('--json', 'print the report as JSON instead of a table')
    .option('--out <file>', 'also write the JSON report here')
    .addOption(requestTimeoutOption())
    .addOption(maxRetriesOption())
    .action(async (o: RequestCliOptions & { envs: string; baseUrl: string; model: string; k: number; attempts?: number; maxSteps: number; tasksPerEnv?: number; temperature?: number; thinking?: boolean; db: string; run?: string; jobs: number; queue?: string; queueName: string; json?: boolean; out?: string }) => {
      const runner = await makeRunner({ ...(o.queue ? { queue: o.queue, queueName: o.queueName } : {}), jobs: o.jobs });
      let bar: Progress | undefined;
      try {
        const report = await runEval({
          envsDir: o.envs,
          model: { baseUrl: o.baseUrl, model: o.model, ...(o.temperature !== undefined ? { temperature: o.temperature } : {}), ...(o.thinking ? { thinking: true } : {}), ...requestPolicy(o) },
          k: o.k,
          ...(o.attempts ? { attempts: o.attempts } : {}),
          dbPath: o.db || join(resolve(o.envs), 'eval.sqlite'),
          ...(o.run ? { runId: o.run } : {}),
          maxSteps: o.maxSteps,
          ...(o.tasksPerEnv ? { tasksPerEnv: o.tasksPerEnv } : {}),
          runner,
          onOutcome: (oc, done, total) => {
            bar ??= progress('eval', total);
            bar.line(`[eval] ${done}/${total} ${oc.ok ? 'ok' : `FAILED ${oc.error}`} ${oc.id}`, 'stderr');
            bar.update(done);
          },
        }).finally(() => bar?.stop());
        if (o.out) writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
        process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : formatReportTable(report));
        if (report.failedJobs.length) {
          process.stderr.write(`[eval] ${report.failedJobs.length} attempts failed (endpoint errors); rerun to retry them\n`);
          process.exitCode = 1;
        }
      } finally {
        await runner.close();
      }
    });
}
