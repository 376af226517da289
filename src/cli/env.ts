// `dsv32 env ...`: generate built-in environments, validate an environment directory, describe one.
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import { intArg } from './args.js';
import { progress } from './progress.js';
import { registerBuiltinFamilies } from '../envs/families/index.js';
import { getFamily, listFamilies } from '../envs/families/registry.js';
import { listTools, loadEnvironment } from '../envs/load.js';
import { validateEnvironment, type TaskValidation } from '../envs/validate.js';


function taskLine(t: TaskValidation): string {
  const mark = t.ok ? 'ok  ' : 'FAIL';
  const parts = [
    `reference ${t.reference.ok ? `score ${t.reference.verdict?.score}` : `failed (${t.reference.error ?? t.reference.verdict?.reason})`}`,
    `perturbations rejected ${t.perturbations.rejected}/${t.perturbations.total}${t.perturbations.error ? ` (${t.perturbations.error})` : ''}`,
    `determinism ${t.determinism.ok ? 'ok' : `FAILED (${t.determinism.detail})`}`,
    `${t.toolCalls} tool calls, ${t.durationMs} ms`,
  ];
  return `${mark} ${t.taskId}: ${parts.join('; ')}`;
}

export function register(program: Command): void {
  const env = program.command('env').description('agentic environments: generate, validate, inspect');

  env
    .command('validate')
    .description('check every task: reference solution accepted, perturbed answers rejected, tools deterministic')
    .argument('<dir>', 'environment directory')
    .option('--jobs <n>', 'tasks validated concurrently', intArg('--jobs', 1), Math.max(1, Math.min(4, availableParallelism())))
    .option('--task <id...>', 'only these tasks')
    .option('--json', 'print the full report as JSON')
    .action(async (dir: string, o: { jobs: number; task?: string[]; json?: boolean }) => {
      const e = loadEnvironment(dir);
      const t0 = performance.now();
      const bar = progress('validate', o.task ? o.task.length : e.tasks.length);
      let failed = 0;
      const report = await validateEnvironment(e, {
        jobs: o.jobs,
        ...(o.task ? { taskIds: o.task } : {}),
        onTask: (t) => {
          if (!t.ok) failed++;
          if (!o.json) bar.line(taskLine(t));
          bar.tick(failed ? `· ${failed} failed` : '');
        },
      }).finally(() => bar.stop());
      if (o.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      } else {
        for (const x of report.toolExamples.filter((x) => !x.ok)) process.stdout.write(`FAIL tool example: ${x.detail}\n`);
        if (report.unexercisedTools.length) {
          process.stdout.write(`note: never called by a solution or example (determinism unchecked): ${report.unexercisedTools.join(', ')}\n`);
        }
        const bad = report.tasks.filter((t) => !t.ok).length;
        const calls = report.tasks.reduce((s, t) => s + t.toolCalls, 0);
        process.stdout.write(
          `${report.envId}: ${report.tasks.length - bad}/${report.tasks.length} tasks valid, ` +
            `${report.toolExamples.filter((x) => x.ok).length}/${report.toolExamples.length} tool examples deterministic, ` +
            `${calls} tool calls in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
        );
      }
      if (!report.ok) process.exitCode = 1;
    });

  env
    .command('generate')
    .description('generate a built-in environment family offline from a seed')
    .argument('<family>', 'family name (see `dsv32 env families`)')
    .requiredOption('--out <dir>', 'output directory (must not exist or be empty)')
    .option('--seed <n>', 'random seed', intArg('--seed', 0), 0)
    .option('--tasks <n>', 'number of tasks', intArg('--tasks', 1), 20)
    .action(async (family: string, o: { out: string; seed: number; tasks: number }) => {
      registerBuiltinFamilies();
      const r = await getFamily(family).generate({ seed: o.seed, tasks: o.tasks, outDir: o.out });
      process.stdout.write(`wrote ${r.envId} to ${r.dir}: ${r.tasks} tasks, ${r.tools} tools\n`);
    });

  env
    .command('families')
    .description('list the built-in environment families')
    .action(() => {
      registerBuiltinFamilies();
      for (const f of listFamilies()) process.stdout.write(`${f.name}\t${f.description}\n`);
    });

  env
    .command('info')
    .description('load an environment (validating its format) and list its tools and tasks')
    .argument('<dir>', 'environment directory')
    .action((dir: string) => {
      const e = loadEnvironment(dir);
      const m = e.manifest;
      process.stdout.write(`${m.id} (${m.family} ${m.version}, ${m.difficulty}): ${m.description}\nprovenance: ${m.provenance.source}\n`);
      process.stdout.write(`tools (${e.tools.size}):\n`);
      for (const t of listTools(e)) process.stdout.write(`  ${t.name}: ${t.description}\n`);
      process.stdout.write(`tasks: ${e.tasks.length}\n`);
    });
}
