// `dsv32 synth`: agentic task synthesis for a category (src/envs/synth/pipeline.ts); `dsv32 synth
// export`: the kept tasks as an RL prompt set (JSONL). Progress lines go to stderr, events to
// <out>/synth.log.jsonl, the state to --db (default <out>/synth.sqlite); rerunning resumes.
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { intArg } from './args.js';
import { maxRetriesOption, requestTimeoutOption, requestPolicy, type RequestCliOptions } from './http-options.js';
import { makeRunner } from '../envs/queue/runner.js';
import { DEFAULT_QUEUE_NAME } from '../envs/queue/bull.js';
import { exportPrompts } from '../envs/synth/export.js';
import { runSynth } from '../envs/synth/pipeline.js';
import { SynthError } from '../envs/synth/errors.js';


function price(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n >= 0)) throw new InvalidArgumentError(`${name} must be a non-negative number (USD per million tokens), got "${v}"`);
    return n;
  };
}

interface SynthCli extends RequestCliOptions {
  category: string;
  baseUrl: string;
  model: string;
  policyBaseUrl?: string;
  policyModel?: string;
  out: string;
  db?: string;
  k: number;
  maxEnvs: number;
  levels: number;
  maxSteps: number;
  policyMaxSteps: number;
  priceIn: number;
  priceOut: number;
  jobs: number;
  queue?: string;
  queueName: string;
  temperature?: number;
}

export function register(program: Command): void {
  const synth = program
    .command('synth')
    .description('synthesize environments and tasks for a category with an LLM agent; keep tasks with pass@k > 0')
    .option('--category <name>', 'task category, e.g. "travel itinerary"')
    .option('--base-url <url>', 'OpenAI-compatible endpoint of the synthesis model (key from $DSV32_API_KEY)')
    .option('--model <name>', 'synthesis model name')
    .option('--policy-base-url <url>', 'endpoint of the policy that must solve the tasks (default: --base-url)')
    .option('--policy-model <name>', 'policy model name (default: --model)')
    .option('--out <dir>', 'output directory: drafts/, envs/, prompts.jsonl, synth.log.jsonl')
    .option('--db <file>', 'state database (default <out>/synth.sqlite)')
    .option('--k <n>', 'policy attempts per task; kept iff one passes (the paper used 100)', intArg('--k', 1), 8)
    .option('--max-envs <n>', 'environments to build', intArg('--max-envs', 1), 1)
    .option('--levels <n>', 'difficulty levels (tasks) per environment', intArg('--levels', 1), 3)
    .option('--max-steps <n>', 'model calls per synthesis stage', intArg('--max-steps', 1), 40)
    .option('--policy-max-steps <n>', 'model calls per policy attempt', intArg('--policy-max-steps', 1), 30)
    .option('--price-in <usd>', 'USD per million prompt tokens (cost line)', price('--price-in'), 0)
    .option('--price-out <usd>', 'USD per million completion tokens (cost line)', price('--price-out'), 0)
    .option('--temperature <t>', 'sampling temperature of both models', (v) => Number(v))
    .option('--jobs <n>', 'environments built at once (local pool)', intArg('--jobs', 1), 1)
    .option('--queue <url>', 'send environment jobs to a BullMQ queue on Redis (served by `dsv32 worker`)')
    .option('--queue-name <name>', 'BullMQ queue name (the workers\' --queue-name)', DEFAULT_QUEUE_NAME)
    .addOption(requestTimeoutOption())
    .addOption(maxRetriesOption())
    .action(async (o: SynthCli) => {
      // Checked here rather than with requiredOption, which commander would also enforce on `synth export`.
      const missing = (['category', 'baseUrl', 'model', 'out'] as const).filter((k) => !o[k]).map((k) => `--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
      if (missing.length) throw new SynthError(`synth: missing required option${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
      const temp = { ...(o.temperature !== undefined ? { temperature: o.temperature } : {}), ...requestPolicy(o) };
      const runner = await makeRunner({ ...(o.queue ? { queue: o.queue, queueName: o.queueName } : {}), jobs: o.jobs, log: (e) => e.line && process.stderr.write(`${String(e.line)}\n`) });
      try {
        const r = await runSynth(
          {
            category: o.category,
            outDir: o.out,
            dbPath: o.db ?? join(o.out, 'synth.sqlite'),
            synth: { baseUrl: o.baseUrl, model: o.model, ...temp },
            policy: { baseUrl: o.policyBaseUrl ?? o.baseUrl, model: o.policyModel ?? o.model, ...temp },
            k: o.k,
            maxEnvs: o.maxEnvs,
            levels: o.levels,
            maxSteps: o.maxSteps,
            policyMaxSteps: o.policyMaxSteps,
            priceIn: o.priceIn,
            priceOut: o.priceOut,
          },
          runner,
          o.queue ? (l) => process.stderr.write(l + '\n') : undefined,
        );
        for (const e of r.envs) {
          process.stdout.write(e.ok ? `${e.envId}: ${e.kept}/${e.validated} tasks kept${e.published ? '' : ' (not published)'}\n` : `${e.envId}: FAILED ${e.error}\n`);
        }
        process.stdout.write(`${r.summary}\nexported ${r.exported} prompts to ${r.promptsFile}\n`);
        if (r.envs.some((e) => !e.ok)) process.exitCode = 1;
      } finally {
        await runner.close();
      }
    });

  synth
    .command('export')
    .description('write the kept tasks of a synthesis run as an RL prompt set (JSONL)')
    // Option names differ from the parent's (--out, --db), which commander would otherwise claim.
    .requiredOption('--from <dir>', 'the synthesis output directory (--out of the run)')
    .option('--state-db <file>', 'state database (default <from>/synth.sqlite)')
    .requiredOption('--file <path>', 'JSONL file to write')
    .action((o: { from: string; stateDb?: string; file: string }) => {
      const n = exportPrompts(o.stateDb ?? join(o.from, 'synth.sqlite'), o.from, o.file);
      process.stdout.write(`exported ${n} prompts to ${o.file}\n`);
    });
}
